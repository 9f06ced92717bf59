"""How good are these examples? Cross-validation of a few-shot set, before the user relies on it.

Cohere's playground never said whether the examples were any good. ``evaluate`` answers with
the numbers a user can act on: accuracy and F1 out of sample, the rows the model gets wrong
or is least sure of (a mislabelled row shows up first), near-duplicate texts that carry
different labels, and a learning curve saying what more examples per label would buy.

Each text is embedded once; every fold only refits the head, so even 2,500 examples take
seconds beyond the embedding. The heads are the ones Train saves and ``classify`` runs
(``classifier.py``), the scores come from ``metrics.py``. Single-label sets use
``FewShotClassifier``: each fold's head is uncalibrated and the out-of-fold logits
(``classifier.out_of_fold_logits``, the routine the temperature is fitted on) are scaled by the
temperature the full fit finds, so the confidences shown are the ones ``classify`` would give.
Multi-label sets (``MultiLabelExample``) use ``MultiLabelHead`` (balanced weights, a threshold
per label chosen inside each fold; leave-one-out only up to 20 examples, as each fold tunes its
thresholds) and report micro- and macro-F1.

>>> report = evaluate([("The order is 5 days late", "negative"), ...], model="small")
>>> report.accuracy, report.macro_f1, report.flagged[0].text
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np

from .classifier import (
    FewShotClassifier,
    indicator,
    kfold_splits,
    leave_one_out,
    multi_label_out_of_fold,
    out_of_fold_logits,
    softmax,
    stratified_folds,
)
from .data import MultiLabelExample
from .embeddings import BASE_MODELS, get_encoder
from .engine import embed_checked
from .metrics import multi_label_metrics, reliability_bins, single_label_metrics
from .validation import (
    ClassificationType,
    ExampleLike,
    ValidationError,
    as_examples,
    check_examples,
    check_truncate,
)

LOO_MAX_EXAMPLES = 200
"""Up to this many examples, leave-one-out; above, stratified k-fold (LOO costs one fit per row)."""
MULTI_LABEL_LOO_MAX_EXAMPLES = 20
"""The same switch for multi-label data, lower: each fold fits ``MultiLabelHead``, which picks every
label's threshold on its own inner folds (1 + 5 fits per label per fold)."""
N_FOLDS = 5
NEAR_DUPLICATE_THRESHOLD = 0.95
"""Cosine similarity above which two texts count as near-duplicates (embeddings are unit length)."""
MAX_FLAGGED = 20
MAX_NEAR_DUPLICATES = 50
LEARNING_CURVE_REPEATS = 5

Method = Literal["leave-one-out", "stratified-k-fold", "k-fold"]


@dataclass(frozen=True)
class LabelMetrics:
    """Out-of-fold precision, recall and F1 of one label; ``support`` = examples with it."""

    label: str
    precision: float
    recall: float
    f1: float
    support: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class FlaggedExample:
    """An example the model got wrong or was unsure of when it was held out.

    ``index`` is its position in the list given to ``evaluate`` (0-based); ``predicted`` and
    ``confidence`` are the held-out prediction; ``label_confidence`` is the probability the
    model gave the example's own label (low on a wrong row: likely mislabelled).
    For multi-label data, labels are joined with ``"; "``.
    """

    index: int
    text: str
    label: str
    predicted: str
    confidence: float
    label_confidence: float
    correct: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class NearDuplicate:
    """Two examples whose texts mean nearly the same but whose labels differ."""

    first: int
    second: int
    first_text: str
    second_text: str
    first_label: str
    second_label: str
    similarity: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class LearningCurvePoint:
    """Mean accuracy on the held-out rest when training on ``per_label`` examples of each label.

    A label with fewer than ``per_label + 1`` examples contributes all but one (so it is still
    scored); ``n_train`` is the mean training-set size actually used.
    """

    per_label: int
    accuracy: float
    std: float
    n_train: float
    repeats: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class EvaluationReport:
    """Everything ``evaluate`` measured. ``to_dict()`` is JSON-safe.

    ``accuracy`` is exact-match (subset) accuracy for multi-label data. ``confusion_matrix``
    rows are the true labels and columns the predicted ones, both in the order of ``labels``
    (single-label only; empty for multi-label). ``micro_f1`` equals accuracy for single-label.
    ``reliability`` bins the out-of-fold confidences against how often they were right
    (``metrics.reliability_bins``): of each example's answer, or of each label decision for multi-label data.
    """

    model: str
    classification_type: ClassificationType
    method: Method
    n_folds: int
    n_examples: int
    labels: tuple[str, ...]
    accuracy: float
    macro_f1: float
    micro_f1: float
    per_label: tuple[LabelMetrics, ...]
    confusion_matrix: tuple[tuple[int, ...], ...]
    n_wrong: int
    flagged: tuple[FlaggedExample, ...]
    near_duplicates: tuple[NearDuplicate, ...]
    learning_curve: tuple[LearningCurvePoint, ...]
    seconds: float
    reliability: tuple[dict[str, float], ...] = ()

    def __post_init__(self) -> None:
        for name in ("accuracy", "macro_f1", "micro_f1"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1. But it was: {value!r}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model, "classification_type": self.classification_type, "method": self.method,
            "n_folds": self.n_folds, "n_examples": self.n_examples, "labels": list(self.labels),
            "accuracy": self.accuracy, "macro_f1": self.macro_f1, "micro_f1": self.micro_f1,
            "per_label": [m.to_dict() for m in self.per_label],
            "confusion_matrix": [list(row) for row in self.confusion_matrix],
            "n_wrong": self.n_wrong,
            "flagged": [f.to_dict() for f in self.flagged],
            "near_duplicates": [d.to_dict() for d in self.near_duplicates],
            "learning_curve": [p.to_dict() for p in self.learning_curve],
            "seconds": self.seconds,
            "reliability": [dict(b) for b in self.reliability],
        }


def evaluate(examples: Iterable[ExampleLike | MultiLabelExample], model: str = "small", *, precision: str | None = None,
             truncate: str = "END", near_duplicate_threshold: float = NEAR_DUPLICATE_THRESHOLD,
             max_flagged: int = MAX_FLAGGED, learning_curve_repeats: int = LEARNING_CURVE_REPEATS,
             random_state: int = 0, progress: Callable[[str], None] | None = None) -> EvaluationReport:
    """Cross-validate labelled examples with a base model; every number is out of sample.

    Parameters
    ----------
    examples : iterable of Example, (text, label), {"text", "label"} or MultiLabelExample
        The few-shot set (Cohere's rules apply), or multi-label data (all ``MultiLabelExample``).
    model : {"small", "large"}, default="small"
    precision : {"auto", "fp32", "bf16", "int8"}, optional
        Default: the same as ``classify`` (one encoder in memory, the same confidences).
    truncate : {"END", "START", "NONE"}, default="END"
    near_duplicate_threshold : float, default=0.95
        Pairs of texts with cosine similarity above it and different labels are listed.
    max_flagged : int, default=20
        How many wrong / least-sure examples to list (wrong ones first).
    learning_curve_repeats : int, default=5
        Random subsets per learning-curve point (single-label only).
    progress : callable(str), optional
        Told what is being done ("embedding", "cross-validating", ...), for a spinner.

    Examples
    --------
    >>> r = evaluate(load_preset("review-sentiment").examples)
    >>> r.method, r.accuracy, [f.text for f in r.flagged if not f.correct]
    """
    started = time.perf_counter()
    items = list(examples)
    if model not in BASE_MODELS:
        raise ValidationError(f"model {model!r} cannot be evaluated from examples: "
                              f"choose one of {', '.join(BASE_MODELS)}")
    if not 0.0 < near_duplicate_threshold <= 1.0:
        raise ValueError(f"near_duplicate_threshold must be in (0, 1]. But it was: {near_duplicate_threshold!r}")
    if not (isinstance(max_flagged, int) and max_flagged >= 0):
        raise ValueError(f"max_flagged must be a non-negative integer. But it was: {max_flagged!r}")
    if not (isinstance(learning_curve_repeats, int) and learning_curve_repeats >= 1):
        raise ValueError(f"learning_curve_repeats must be a positive integer. But it was: {learning_curve_repeats!r}")
    truncate = check_truncate(truncate)
    say = progress or (lambda _: None)
    multi = [isinstance(item, MultiLabelExample) for item in items]
    if any(multi) and not all(multi):
        raise ValidationError("examples mixes multi-label (MultiLabelExample) and single-label items: use one kind")
    encoder = get_encoder(model) if precision is None else get_encoder(model, precision=precision)
    if items and all(multi):
        return _evaluate_multi_label(items, encoder, model, truncate, near_duplicate_threshold, max_flagged,
                                     random_state, say, started)

    exs = as_examples(items)
    check_examples(exs)
    texts = [ex.text for ex in exs]
    y = np.array([ex.label for ex in exs], dtype=object)
    say("embedding")
    X = embed_checked(encoder, texts, truncate=truncate, what="examples").astype(np.float64)

    say("cross-validating")
    full = FewShotClassifier().fit(X, y)
    classes = [str(c) for c in full.classes_]
    splits, method, n_folds = _splits(X, y, stratified=True, random_state=random_state)
    template = FewShotClassifier()
    logits = out_of_fold_logits(X, y, full.classes_, splits, C=template.C, max_iter=template.max_iter, warm_start=True)
    proba = softmax(logits / full.temperature_, axis=1)
    predicted = full.classes_[np.argmax(proba, axis=1)]

    index = {label: i for i, label in enumerate(full.classes_)}
    own = proba[np.arange(len(y)), [index[label] for label in y]]
    correct = predicted == y
    scores = single_label_metrics(list(y), list(predicted), list(full.classes_))
    per_label = _label_metrics(classes, scores)
    order = np.lexsort((own, correct))  # wrong first, then by the probability of the example's own label
    flagged = tuple(
        FlaggedExample(int(i), texts[i], str(y[i]), str(predicted[i]), float(proba[i].max()), float(own[i]),
                       bool(correct[i]))
        for i in order[:max_flagged]
    )
    matrix = scores["confusion_matrix"]["matrix"]

    say("checking near-duplicates")
    duplicates = _near_duplicates(X, texts, [str(v) for v in y], near_duplicate_threshold)
    say("learning curve")
    curve = _learning_curve(X, y, learning_curve_repeats, random_state)
    return EvaluationReport(
        model=model, classification_type="single-label", method=method, n_folds=n_folds, n_examples=len(y),
        labels=tuple(classes), accuracy=scores["accuracy"], macro_f1=scores["macro_f1"],
        micro_f1=scores["accuracy"], per_label=per_label,
        confusion_matrix=tuple(tuple(int(v) for v in row) for row in matrix),
        n_wrong=int((~correct).sum()), flagged=flagged, near_duplicates=duplicates, learning_curve=curve,
        seconds=time.perf_counter() - started, reliability=tuple(reliability_bins(proba.max(axis=1), correct)),
    )


def _splits(X: np.ndarray, y: np.ndarray | None, *, stratified: bool, random_state: int,
            loo_max: int | None = None):
    """Leave-one-out up to ``loo_max`` examples (default ``LOO_MAX_EXAMPLES``), else (stratified) k-fold."""
    n = len(X)
    if n <= (LOO_MAX_EXAMPLES if loo_max is None else loo_max):
        return leave_one_out(n), "leave-one-out", n
    if stratified:  # a label with fewer than N_FOLDS examples is simply missing from some folds' test rows
        return stratified_folds(y, N_FOLDS, seed=random_state), "stratified-k-fold", N_FOLDS
    return kfold_splits(n, N_FOLDS, seed=random_state), "k-fold", N_FOLDS


def _label_metrics(labels: Sequence[str], scores: dict) -> tuple[LabelMetrics, ...]:
    rows = scores["per_label"]
    return tuple(LabelMetrics(label, rows[label]["precision"], rows[label]["recall"], rows[label]["f1"],
                              rows[label]["support"]) for label in labels)


def _near_duplicates(X: np.ndarray, texts: Sequence[str], labels: Sequence[str],
                     threshold: float) -> tuple[NearDuplicate, ...]:
    """Pairs above ``threshold`` cosine similarity with different labels, most similar first."""
    Xn = X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12)
    pairs = []
    block = 512  # bounded memory for 2,500 examples
    for start in range(0, len(Xn), block):
        sims = Xn[start:start + block] @ Xn.T
        rows, cols = np.nonzero(sims > threshold)
        for r, c in zip(rows, cols):
            i = start + int(r)
            j = int(c)
            if i < j and labels[i] != labels[j]:
                pairs.append((float(sims[r, c]), i, j))
    pairs.sort(key=lambda p: (-p[0], p[1], p[2]))
    return tuple(NearDuplicate(i, j, texts[i], texts[j], labels[i], labels[j], min(sim, 1.0))
                 for sim, i, j in pairs[:MAX_NEAR_DUPLICATES])


def learning_curve_sizes(counts: Iterable[int]) -> list[int]:
    """2, 4, 8, … while some label still has an example left over to score on."""
    largest = max(counts, default=0)
    sizes, k = [], 2
    while k < largest:
        sizes.append(k)
        k *= 2
    return sizes


def _learning_curve(X: np.ndarray, y: np.ndarray, repeats: int, random_state: int) -> tuple[LearningCurvePoint, ...]:
    """Accuracy on the held-out rest after training on ``k`` random examples per label."""
    rng = np.random.default_rng(random_state)
    by_label = {label: np.flatnonzero(y == label) for label in np.unique(y)}
    points = []
    for k in learning_curve_sizes(len(rows) for rows in by_label.values()):
        scores, sizes = [], []
        for _ in range(repeats):
            train = np.concatenate([rng.choice(rows, size=min(k, len(rows) - 1), replace=False)
                                    for rows in by_label.values()])
            test = np.setdiff1d(np.arange(len(y)), train)
            head = FewShotClassifier(calibration="none").fit(X[train], y[train])
            scores.append(float((head.predict(X[test]) == y[test]).mean()))
            sizes.append(len(train))
        points.append(LearningCurvePoint(k, float(np.mean(scores)), float(np.std(scores)), float(np.mean(sizes)),
                                         repeats))
    return tuple(points)


def check_multi_label(examples: Sequence[MultiLabelExample]) -> list[str]:
    """The labels, sorted; raise listing every problem (empty text, fewer than 2 labels or uses)."""
    problems = []
    empty = [i for i, ex in enumerate(examples) if not ex.text.strip()]
    if empty:
        problems.append(f"examples contains an empty text at index {', '.join(map(str, empty[:10]))}")
    if len(examples) < 4:
        problems.append(f"multi-label evaluation needs at least 4 examples - received {len(examples)}")
    counts = Counter(label for ex in examples for label in ex.labels)
    if len(counts) < 2:
        problems.append(f"multi-label data must use at least 2 labels - found {', '.join(map(repr, counts)) or 'none'}")
    rare = sorted(label for label, n in counts.items() if n < 2)
    if rare:
        problems.append(f"each label must be on at least 2 examples; add more for: {', '.join(rare)}")
    always = sorted(label for label, n in counts.items() if n == len(examples))
    if always:
        problems.append(f"label on every example (nothing to tell apart): {', '.join(always)}; "
                        "add examples without it")
    if problems:
        raise ValidationError(problems)
    return sorted(counts)


def _evaluate_multi_label(examples: list[MultiLabelExample], encoder, model: str, truncate: str, threshold: float,
                          max_flagged: int, random_state: int, say: Callable[[str], None],
                          started: float) -> EvaluationReport:
    labels = check_multi_label(examples)
    texts = [ex.text for ex in examples]
    Y = indicator(examples, labels)
    say("embedding")
    X = embed_checked(encoder, texts, truncate=truncate, what="examples").astype(np.float64)
    say("cross-validating")
    splits, method, n_folds = _splits(X, None, stratified=False, random_state=random_state,
                                      loo_max=MULTI_LABEL_LOO_MAX_EXAMPLES)
    proba, predicted = multi_label_out_of_fold(X, Y, labels, splits)

    scores = multi_label_metrics(Y, predicted, labels)
    per_label = _label_metrics(labels, scores)
    correct = (predicted == Y).all(axis=1)
    # Sureness of a row: its least certain label decision; for the given label set, the product.
    decided = np.where(predicted == 1, proba, 1 - proba)  # the confidence of each label decision
    sure = decided.min(axis=1)
    own = np.where(Y == 1, proba, 1 - proba).prod(axis=1)
    order = np.lexsort((own, correct))

    def names(row: np.ndarray) -> str:
        return "; ".join(label for label, on in zip(labels, row) if on)

    flagged = tuple(FlaggedExample(int(i), texts[i], names(Y[i]), names(predicted[i]), float(sure[i]),
                                   float(own[i]), bool(correct[i])) for i in order[:max_flagged])
    say("checking near-duplicates")
    duplicates = _near_duplicates(X, texts, [names(row) for row in Y], threshold)
    return EvaluationReport(
        model=model, classification_type="multi-label", method=method, n_folds=n_folds, n_examples=len(texts),
        labels=tuple(labels), accuracy=scores["exact_match"], macro_f1=scores["macro_f1"],
        micro_f1=scores["micro_f1"], per_label=per_label, confusion_matrix=(), n_wrong=int((~correct).sum()), flagged=flagged,
        near_duplicates=duplicates, learning_curve=(), seconds=time.perf_counter() - started,
        reliability=tuple(reliability_bins(decided.ravel(), (predicted == Y).ravel())),
    )
