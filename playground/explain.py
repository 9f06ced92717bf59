"""Why an answer: word weights and the nearest examples, over engine's classifier.

Word weights are found by occlusion: a word's weight is how much the explained label's log-odds
fall when the word is left out (the head's ``decision_function``, before the softmax or sigmoid,
so a confident answer still shows which words hold it up). Positive pushes toward the label,
negative away. Single-label heads score a label against all the others
(``z_label - logsumexp(z_others)``, which a softmax shift cannot change); multi-label heads give
each label its own log-odds.

Embedding one variant per word cost 7x a plain answer on a 20-word input (issue #26 asks for 3x),
so occlusion runs in two steps. One forward pass keeps the input's token vectors
(``Encoder.token_states``); leaving a word's tokens out of their mean estimates the text without
it, for every word at once. Then the ``EXACT_WORDS`` words with the largest estimated weights are
measured for real: the text without each is embedded, all in one batch. Their weights are exact
(``WordWeight.exact``), the others estimated. On the deletion test (docs/BENCHMARKS.md) the
estimate alone kept 70-92 % of full occlusion's fall, this mix 81-92 % (``EXACT_WORDS``) at
about 2.5x the cost of classifying. ``explain_texts(..., exact_words=None)`` measures every word (the full cost).

Truncation is read exactly as ``classify`` reads it (``Encoder.kept_span``): words past the
model's window were never seen, so they get weight 0 and the explanation says the text was cut and
where. When every word is measured and the window holds more than ``MAX_VARIANTS`` words, runs of
consecutive words are left out together (``Occlusion``), so a 5,000-character text costs at most
64 extra embeddings.

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
from .validation import MAX_INPUTS, check_inputs, check_truncate

NEAREST_EXAMPLES = 3
EXACT_WORDS = 3
"""Words per input whose weight is measured by embedding the input without them (the strongest by the estimate).

Measured on cr, sst2, trec and emotion (small, 100 texts each, the deletion test, k = 1-3 words removed): the
estimate alone kept 70-92 % of full occlusion's fall, 3 measured words 81-92 %, 4 words 84-96 %, 6 words 92-99 %.
Each measured word costs about 0.3 of a plain answer; 3 keeps a 20-word input's explanation within 3x."""
MAX_VARIANTS = 64
"""When every word is measured: at most this many texts embedded besides the input, past it words go in runs."""
FIT_OPTIONS = ("truncate", "precision", "label_names", "descriptions")
"""The options of ``engine.classify`` that choose the fitted classifier (``get_classifier``'s)."""
_CHUNK = re.compile(r"\S+")


@dataclass(frozen=True)
class WordWeight:
    """One word of the input, where it stands (``text[start:end]``) and how much it pushes toward the label.

    ``weight`` is the fall in the label's log-odds when the word is left out: positive toward the
    label, negative away, 0 for a word past the model's token window (never read). ``exact`` when
    the text without the word was embedded; else the weight is the one-pass estimate (its tokens
    left out of the mean).
    """

    word: str
    start: int
    end: int
    weight: float
    exact: bool = True


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
    def of(cls, encoder: Encoder, text: str, truncate: str, *, max_runs: int | None = MAX_VARIANTS) -> Occlusion:
        """``max_runs=None``: one run per read word, however many (when most are only estimated)."""
        # NONE: a text over the limit was refused before this (check_fits); the whole text is read
        kept = encoder.kept_span(text, "END" if truncate == "NONE" else truncate)
        spans = tuple(word_spans(text))
        read = tuple(start < kept[1] and end > kept[0] for start, end in spans)
        words = [i for i, r in enumerate(read) if r]
        size = max(1, -(-len(words) // max_runs)) if max_runs else 1
        runs = tuple(tuple(words[i:i + size]) for i in range(0, len(words), size))
        return cls(text, spans, read, kept, runs)

    @property
    def truncated(self) -> bool:
        return self.kept != (0, len(self.text))

    def without(self, run: tuple[int, ...]) -> str:
        """The text without ``run`` (from its first word's start to its last word's end)."""
        return self.text[:self.spans[run[0]][0]] + self.text[self.spans[run[-1]][1]:]

    def weights(self, falls: Sequence[float], exact: Sequence[bool]) -> tuple[WordWeight, ...]:
        """Each word's weight: its run's fall in log-odds shared by the run's words (0 for words never read)."""
        weight, measured = [0.0] * len(self.spans), [True] * len(self.spans)
        for run, fall, is_exact in zip(self.runs, falls, exact):
            for i in run:
                weight[i], measured[i] = float(fall) / len(run), bool(is_exact)
        return tuple(WordWeight(self.text[s:e], s, e, w, m) for (s, e), w, m in zip(self.spans, weight, measured))

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
                  results: Sequence[Classification] | None = None, batch_size: int = 64,
                  exact_words: int | None = EXACT_WORDS) -> list[Explanation]:
    """An ``Explanation`` per text: word weights by occlusion and the nearest examples.

    ``results`` are the texts' answers from ``classifier`` (computed when left out); each is
    explained for its own label(s). Every word is estimated in one forward pass and the
    ``exact_words`` strongest are measured (``None``: every word measured, one variant each; so too
    for a model read through the full ``SentenceTransformer``, which gives no token vectors). All the
    variants go through the encoder in one batch. Empty or punctuation-only texts get no words and a
    note, never an error; under ``truncate="NONE"`` a text over the limit is refused as ``classify``
    refuses it.
    """
    texts = list(texts)
    truncate = check_truncate(truncate)
    if not texts:
        return []
    encoder = classifier.encoder
    check_fits(encoder, texts, truncate=truncate)
    # a long text under WINDOWS is the mean of several windows' passes, which one pass's token vectors cannot
    # estimate: every word of it is measured (in runs past MAX_VARIANTS words)
    estimated = [exact_words is not None and encoder.body is not None
                 and not (truncate == "WINDOWS" and encoder.reading(text, "WINDOWS").longer) for text in texts]
    plans = [Occlusion.of(encoder, text, truncate, max_runs=None if est else MAX_VARIANTS)
             for text, est in zip(texts, estimated)]
    read = iter(encoder.token_states([t for t, est in zip(texts, estimated) if est], truncate=truncate))
    states = [next(read) if est else None for est in estimated]  # token_states cached the inputs' embeddings
    if results is None:
        results = classifier.classify(texts, truncate=truncate)
    columns = [[list(map(str, classifier.head.classes_)).index(label) for label in explained_labels(result)]
               for result in results]
    multi_label = classifier.type == "multi-label"
    measured = []  # per text: the runs embedded without them
    estimates = []  # per text: each run's estimated fall per explained label, (runs, labels)
    for i, plan in enumerate(plans):
        if states[i] is None or not plan.runs:
            measured.append(list(range(len(plan.runs))))
            estimates.append(np.zeros((len(plan.runs), len(columns[i]))))
            continue
        state = states[i]
        pooled = state.pooled([[t for w in run for t in state.tokens_in(*plan.spans[w])] for run in plan.runs])
        odds = label_log_odds(classifier.head, pooled, multi_label=multi_label)[:, columns[i]]
        falls = odds[0] - odds[1:]
        estimates.append(falls)
        measured.append(sorted(np.argsort(-np.abs(falls[:, 0]), kind="stable")[:exact_words].tolist()))
    batch, originals = [], []
    for plan, runs in zip(plans, measured):
        originals.append(len(batch))
        batch += [plan.text, *(plan.without(plan.runs[r]) for r in runs)]
    X = encoder.embed(batch, truncate=truncate, batch_size=batch_size)
    odds = label_log_odds(classifier.head, X, multi_label=multi_label)
    nearest = nearest_examples(classifier, X[originals], truncate=truncate)
    no_examples = "" if isinstance(classifier, FewShotModel) else "a saved model keeps no examples, so none are shown"
    explanations = []
    for plan, row, runs, falls, labels, result, neighbours in zip(plans, originals, measured, estimates, columns,
                                                                    results, nearest):
        falls = falls.copy()
        exact = np.zeros(len(plan.runs), dtype=bool)
        exact[runs] = True
        falls[runs] = odds[row, labels] - odds[row + 1:row + 1 + len(runs)][:, labels]
        weights = {label: plan.weights(falls[:, j], exact) for j, label in enumerate(explained_labels(result))}
        label, *others = weights
        note = "; ".join(n for n in (plan.note(truncate), estimated_note(exact), no_examples) if n)
        explanations.append(Explanation(label, weights[label], neighbours, plan.truncated, note,
                                        {other: weights[other] for other in others}))
    return explanations


def estimated_note(exact: np.ndarray) -> str:
    if exact.all():
        return ""
    return (f"the {int(exact.sum())} strongest words were measured by leaving each out; "
            f"the other {int((~exact).sum())} are estimated from one pass")


def classify(inputs: str | Sequence[str], examples: Any = None, model: str = "small", *, explain: bool = False,
             **options: Any) -> Classification | list[Classification]:
    """``engine.classify`` (every option of it), and with ``explain=True`` each answer's ``explanation``.

    Off by default: an explanation embeds the input's token vectors and ``EXACT_WORDS`` variants,
    about 2.5x a plain answer. The classifier is the one ``classify`` fitted or loaded (from its cache).

    >>> r = classify(["The refund never arrived"], examples, explain=True)[0]
    >>> [(w.word, round(w.weight, 2)) for w in r.explanation.strongest(3)]
    """
    if not explain:
        return classify_only(inputs, examples, model, **options)
    texts = [inputs] if isinstance(inputs, str) else list(inputs)
    check_inputs(texts, max_inputs=options.get("max_inputs", MAX_INPUTS))  # before any work, as classify checks
    truncate = check_truncate(options.get("truncate", "END"))
    classifier = get_classifier(examples, model, **{k: v for k, v in options.items() if k in FIT_OPTIONS})
    explanations = explain_texts(classifier, texts, truncate=truncate)
    results = classify_only(texts, examples, model, **options)  # the inputs' embeddings come from the cache
    explained = [replace(r, explanation=e) for r, e in zip(results, explanations)]
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
                     f'title="{w.weight:+.3f}{"" if w.exact else " (estimated)"}">{html.escape(w.word)}</span>')
        at = w.end
    parts.append(html.escape(text[at:]))
    return '<div style="line-height: 1.9">' + "".join(parts).replace("\n", "<br>") + "</div>"
