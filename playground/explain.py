"""Why an answer: word weights and the nearest examples, over engine's classifier.

Word weights are found by occlusion: each word of the input is left out in turn, the original
and every variant are embedded in one batched encoder call, and a word's weight is how much the
explained label's log-odds fall without it (the head's ``decision_function``, before the softmax
or sigmoid, so a confident answer still shows which words hold it up). Positive pushes toward the
label, negative away. Single-label heads score a label against all the others
(``z_label - logsumexp(z_others)``, which a softmax shift cannot change); multi-label heads give
each label its own log-odds.

Truncation is read exactly as ``classify`` reads it (``Encoder.kept_span``): words past the
model's window were never seen, so they get weight 0, no variant is embedded for them, and the
explanation says the text was cut and where. Past ``MAX_VARIANTS`` words in the window, runs of
consecutive words are left out together (``Occlusion``), so a 5,000-character text costs at most
64 extra embeddings (about 4-5 s on small with the machine shared).

The nearest examples are cosine neighbours on the same embeddings. Saved custom models keep no
training examples (``store.py`` saves the head, the body and the config only), so their
explanations have no nearest examples and say so in ``note``.

>>> result = classify(["The refund never arrived"], examples, explain=True)[0]
>>> result.explanation.label, result.explanation.strongest(2)
"""

from __future__ import annotations

import html
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from .classifier import Head
from .embeddings import Encoder
from .engine import Classification, Classifier, FewShotModel, check_fits, get_classifier
from .engine import classify as classify_only  # this module's classify adds explain=True
from .validation import check_truncate

NEAREST_EXAMPLES = 3
MAX_VARIANTS = 64
"""At most this many texts are embedded besides the input: past it, words are left out in runs (``Occlusion``)."""
FIT_OPTIONS = ("truncate", "precision", "label_names", "descriptions")
"""The options of ``engine.classify`` that choose the fitted classifier (``get_classifier``'s)."""
_CHUNK = re.compile(r"\S+")


@dataclass(frozen=True)
class WordWeight:
    """One word of the input, where it stands (``text[start:end]``) and how much it pushes toward the label.

    ``weight`` is the fall in the label's log-odds when the word is left out: positive toward the
    label, negative away, 0 for a word past the model's token window (never read).
    """

    word: str
    start: int
    end: int
    weight: float


@dataclass(frozen=True)
class Neighbour:
    """An example close to the input: its text, its label and the cosine similarity (-1 to 1)."""

    text: str
    label: str
    similarity: float


@dataclass(frozen=True)
class Explanation:
    """Why one input got its answer.

    ``label`` is the label explained: the prediction, or the top label when a multi-label model
    predicts none (or ``unknown_below`` answered "unknown"). ``words`` weigh toward it; for a
    multi-label answer with several labels, ``other_labels`` holds the words' weights toward each
    of the others. ``truncated`` says the model read only part of the text (``note`` says where).

    >>> explanation.strongest(1)[0].word
    'refund'
    """

    label: str
    words: tuple[WordWeight, ...] = ()
    nearest: tuple[Neighbour, ...] = ()
    truncated: bool = False
    note: str = ""
    other_labels: dict[str, tuple[WordWeight, ...]] = field(default_factory=dict)

    def strongest(self, k: int = 3) -> list[WordWeight]:
        """The ``k`` words pushing hardest toward the label, strongest first (ties keep text order)."""
        return sorted(self.words, key=lambda w: -w.weight)[:k]

    def to_dict(self) -> dict:
        """JSON-safe: the words and neighbours as dicts (``WordWeight`` and ``Neighbour``'s fields)."""
        return {
            "label": self.label, "words": [asdict(w) for w in self.words],
            "nearest": [asdict(n) for n in self.nearest], "truncated": self.truncated, "note": self.note,
            "other_labels": {label: [asdict(w) for w in words] for label, words in self.other_labels.items()},
        }


# ----------------------------------------------------------------------------------------------
# Words and their variants


def is_punctuation(char: str) -> bool:
    return unicodedata.category(char).startswith("P")


def word_spans(text: str) -> list[tuple[int, int]]:
    """The words of ``text`` as ``(start, end)`` spans: runs between spaces, outer punctuation trimmed.

    "excellent!" weighs as "excellent"; "don't" and "e-mail" stay whole; an emoji is a word;
    a run of punctuation alone ("--", "!!!") is none.
    """
    spans = []
    for match in _CHUNK.finditer(text):
        start, end = match.span()
        while start < end and is_punctuation(text[start]):
            start += 1
        while end > start and is_punctuation(text[end - 1]):
            end -= 1
        if start < end:
            spans.append((start, end))
    return spans


@dataclass(frozen=True)
class Occlusion:
    """One input's words, which of them the model reads, and the runs of read words left out in turn.

    Each run is one word, unless the window holds more than ``MAX_VARIANTS`` words: then runs of
    consecutive words are left out together and share their run's weight equally, so a long text
    costs at most ``MAX_VARIANTS`` extra embeddings.
    """

    text: str
    spans: tuple[tuple[int, int], ...]
    read: tuple[bool, ...]
    kept: tuple[int, int]
    runs: tuple[tuple[int, ...], ...]

    @classmethod
    def of(cls, encoder: Encoder, text: str, truncate: str) -> Occlusion:
        # NONE: a text over the limit was refused before this (check_fits); the whole text is read
        kept = encoder.kept_span(text, "END" if truncate == "NONE" else truncate)
        spans = tuple(word_spans(text))
        read = tuple(start < kept[1] and end > kept[0] for start, end in spans)
        words = [i for i, r in enumerate(read) if r]
        size = max(1, -(-len(words) // MAX_VARIANTS))
        runs = tuple(tuple(words[i:i + size]) for i in range(0, len(words), size))
        return cls(text, spans, read, kept, runs)

    @property
    def truncated(self) -> bool:
        return self.kept != (0, len(self.text))

    @property
    def variants(self) -> list[str]:
        """The text without each run (from its first word's start to its last word's end)."""
        return [self.text[:self.spans[run[0]][0]] + self.text[self.spans[run[-1]][1]:] for run in self.runs]

    def weights(self, original: float, variants: np.ndarray) -> tuple[WordWeight, ...]:
        """Each word's weight: ``original`` minus the score without its run, shared by the run's words
        (0 for words never read)."""
        weight = [0.0] * len(self.spans)
        for run, score in zip(self.runs, variants):
            for i in run:
                weight[i] = float(original - score) / len(run)
        return tuple(WordWeight(self.text[s:e], s, e, w) for (s, e), w in zip(self.spans, weight))

    def note(self, truncate: str) -> str:
        if not self.spans:
            return "no words to weigh: the text has only spaces and punctuation"
        notes = []
        if len(self.spans) == 1:
            notes.append("one word: its weight compares the text with the text without it")
        if self.runs and len(self.runs[0]) > 1:
            notes.append(f"{sum(self.read)} words were read, so they were left out in runs of up to "
                         f"{len(self.runs[0])} and each word shows its run's weight shared out")
        if self.truncated and self.kept[0] > 0:
            notes.append(f"the text was cut (truncate {truncate} keeps the end): the model read from character "
                         f"{self.kept[0]} on, so the words before it weigh 0")
        elif self.truncated:
            notes.append(f"the text was cut (truncate {truncate} keeps the start): the model read up to character "
                         f"{self.kept[1]} of {len(self.text)}, so the words after it weigh 0")
        return "; ".join(notes)


# ----------------------------------------------------------------------------------------------
# Scores and neighbours


def label_log_odds(head: Head, X: np.ndarray, *, multi_label: bool) -> np.ndarray:
    """Each row's log-odds for every class (columns in ``head.classes_`` order), before any sigmoid or softmax.

    Multi-label heads score each label on its own; a single-label head's class is scored against
    the rest, ``z_c - logsumexp(z_others)``, which is the same whatever constant a softmax drops.
    """
    Z = np.asarray(head.decision_function(X), dtype=np.float64)
    if multi_label:
        return Z
    out = np.empty_like(Z)
    for column in range(Z.shape[1]):
        out[:, column] = Z[:, column] - np.logaddexp.reduce(np.delete(Z, column, axis=1), axis=1)
    return out


def explained_labels(result: Classification) -> list[str]:
    """The predicted labels of a multi-label answer; else (or when it predicts none) the top label."""
    if result.classification_type == "multi-label" and result.predictions:
        return list(result.predictions)
    return [next(iter(result.labels))]


def nearest_examples(classifier: Classifier, X: np.ndarray, *, truncate: str,
                     k: int = NEAREST_EXAMPLES) -> list[tuple[Neighbour, ...]]:
    """For each row of ``X``, the ``k`` most similar examples (cosine: the embeddings are normalised).

    Only few-shot models hold their examples; a saved custom model gives an empty tuple per row.
    """
    if not isinstance(classifier, FewShotModel):
        return [() for _ in range(len(X))]
    examples = classifier.examples
    E = classifier.encoder.embed([ex.text for ex in examples], truncate=truncate)  # cached since the fit
    similarity = X @ E.T
    order = np.argsort(-similarity, axis=1, kind="stable")[:, :k]
    return [tuple(Neighbour(examples[j].text, examples[j].label, float(row[j])) for j in top)
            for row, top in zip(similarity, order)]


# ----------------------------------------------------------------------------------------------
# The public calls


def explain_texts(classifier: Classifier, texts: Sequence[str], *, truncate: str = "END",
                  results: Sequence[Classification] | None = None, batch_size: int = 64) -> list[Explanation]:
    """An ``Explanation`` per text: word weights by occlusion and the nearest examples.

    ``results`` are the texts' answers from ``classifier`` (computed when left out); each is
    explained for its own label(s). Every text and its variants go through the encoder in one
    batch. Empty or punctuation-only texts get no words and a note, never an error; under
    ``truncate="NONE"`` a text over the limit is refused as ``classify`` refuses it.
    """
    texts = list(texts)
    truncate = check_truncate(truncate)
    if not texts:
        return []
    check_fits(classifier.encoder, texts, truncate=truncate)
    if results is None:
        results = classifier.classify(texts, truncate=truncate)
    plans = [Occlusion.of(classifier.encoder, text, truncate) for text in texts]
    batch, originals = [], []
    for plan in plans:
        originals.append(len(batch))
        batch += [plan.text, *plan.variants]
    X = classifier.encoder.embed(batch, truncate=truncate, batch_size=batch_size)
    scores = label_log_odds(classifier.head, X, multi_label=classifier.type == "multi-label")
    columns = {str(c): j for j, c in enumerate(classifier.head.classes_)}
    nearest = nearest_examples(classifier, X[originals], truncate=truncate)
    no_examples = "" if isinstance(classifier, FewShotModel) else "a saved model keeps no examples, so none are shown"
    explanations = []
    for plan, row, result, neighbours in zip(plans, originals, results, nearest):
        rows = slice(row + 1, row + 1 + len(plan.variants))
        weights = {label: plan.weights(scores[row, columns[label]], scores[rows, columns[label]])
                   for label in explained_labels(result)}
        label, *others = weights
        note = "; ".join(n for n in (plan.note(truncate), no_examples) if n)
        explanations.append(Explanation(label, weights[label], neighbours, plan.truncated, note,
                                        {other: weights[other] for other in others}))
    return explanations


def classify(inputs: str | Sequence[str], examples: Any = None, model: str = "small", *, explain: bool = False,
             **options: Any) -> Classification | list[Classification]:
    """``engine.classify`` (every option of it), and with ``explain=True`` each answer's ``explanation``.

    Off by default: an explanation embeds one variant per word, so it costs a few times a plain
    answer. The classifier is the one ``classify`` fitted or loaded (from its cache).

    >>> r = classify(["The refund never arrived"], examples, explain=True)[0]
    >>> [(w.word, round(w.weight, 2)) for w in r.explanation.strongest(3)]
    """
    results = classify_only(inputs, examples, model, **options)
    if not explain:
        return results
    answers = [results] if isinstance(inputs, str) else results
    classifier = get_classifier(examples, model, **{k: v for k, v in options.items() if k in FIT_OPTIONS})
    explained = with_explanations(classifier, answers, truncate=options.get("truncate", "END"))
    return explained[0] if isinstance(inputs, str) else explained


def with_explanations(classifier: Classifier, results: Sequence[Classification], *,
                      truncate: str = "END") -> list[Classification]:
    """``results`` (``classifier``'s answers) each with its ``explanation``: for callers that hold the classifier."""
    explanations = explain_texts(classifier, [r.input for r in results], truncate=truncate, results=results)
    return [replace(r, explanation=e) for r, e in zip(results, explanations)]


# ----------------------------------------------------------------------------------------------
# Showing it

TOWARD_RGB, AWAY_RGB = "22, 163, 74", "220, 38, 38"
"""Green toward the label, red away (the page's legend says so)."""


def tinted_html(text: str, words: Sequence[WordWeight]) -> str:
    """``text`` as HTML, each weighed word on a background as strong as its weight (the strongest word at full tint).

    The user's text is escaped (``html.escape``) and its line breaks become ``<br>``, so the result
    is one inert HTML block whatever the text holds; a word's weight is in its ``title`` (hover).
    """
    strongest = max((abs(w.weight) for w in words), default=0.0) or 1.0
    parts, at = [], 0
    for w in words:
        parts.append(html.escape(text[at:w.start]))
        alpha = round(0.75 * abs(w.weight) / strongest, 2)
        rgb = TOWARD_RGB if w.weight >= 0 else AWAY_RGB
        parts.append(f'<span style="background-color: rgba({rgb}, {alpha}); border-radius: 3px; padding: 0 2px" '
                     f'title="{w.weight:+.3f}">{html.escape(w.word)}</span>')
        at = w.end
    parts.append(html.escape(text[at:]))
    return '<div style="line-height: 1.9">' + "".join(parts).replace("\n", "<br>") + "</div>"
