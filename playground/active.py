"""Label next: which texts to label, which results to review, and an opt-in ``unknown`` answer (issue #19).

Plain numpy / scipy / scikit-learn over vectors and probabilities the caller already has (the
encoder's L2-normalised embeddings, the calibrated head's ``predict_proba``); nothing here
loads a model or imports the rest of the package (but validation.py's ``UNKNOWN``).

- ``uncertainty(proba, kind)``: how unsure the head is about each row, in [0, 1].
- ``suggest(pool_vectors, pool_proba, k=...)``: the pool rows to label next, in the order to
  show. ``"uncertainty+diversity"`` (the default) clusters the pool into ``k`` groups with
  k-means weighted by ``uncertainty ** 4`` and shows the row nearest each group's centre, so ten
  picks are not ten paraphrases of one ambiguous text; pool rows that repeat a labelled example
  are left out. ``"uncertainty"`` is the ``k`` least sure rows; ``"random"`` is the baseline.
- ``review_order(proba)``: bulk results, least sure first.
- ``choose_unknown_threshold(oof_proba, y_true, classes, target_precision=0.9)``: the lowest
  confidence threshold whose answered out-of-fold predictions reach the target precision, with
  the coverage it costs; ``apply_unknown`` turns the rows below it into ``"unknown"``.

Simulated on seven public sets (start from 2 examples per label, 10 rounds of a batch of 10 or
one per label, 5 seeds): see the docstring of ``suggest`` and the report of issue #19.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

import numpy as np

from .validation import UNKNOWN

UncertaintyKind = Literal["margin", "entropy", "least-confidence"]
Strategy = Literal["uncertainty+diversity", "uncertainty", "random"]
KINDS: tuple[str, ...] = get_args(UncertaintyKind)
STRATEGIES: tuple[str, ...] = get_args(Strategy)

DEFAULT_BATCH = 10
POWER = 4.0
"""``uncertainty+diversity`` weighs each row by ``uncertainty ** POWER`` in its k-means."""
CANDIDATE_FACTOR = 10
"""``uncertainty+diversity`` always clusters the ``CANDIDATE_FACTOR * k`` least sure rows."""
MAX_CANDIDATES = 5000
"""... and a uniform sample of the rest up to this many rows (pools this size or smaller: all rows)."""
DUPLICATE_SIMILARITY = 0.95
"""Cosine similarity at or above which a pool row counts as a near-duplicate of a labelled example."""
CHUNK_ROWS = 8192
"""Rows per block when comparing pool rows with labelled examples (bounds memory at any pool size)."""
PROBA_SUM_TOLERANCE = 1e-3


# ----------------------------------------------------------------------------------------------
# Validation helpers: every error names the argument and shows the value.


def _matrix(value: Any, name: str, *, min_columns: int = 1) -> np.ndarray:
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be a 2-D array of numbers. But it was: {_short(value)}") from exc
    if array.ndim != 2:
        raise ValueError(f"{name} must be 2-D (one row per text). But its shape was {array.shape}")
    if array.shape[1] < min_columns:
        raise ValueError(f"{name} must have at least {min_columns} columns. But its shape was {array.shape}")
    if not np.isfinite(array).all():
        row = int(np.argwhere(~np.isfinite(array))[0][0])
        raise ValueError(f"{name} must be finite. But row {row} was {_short(array[row])}")
    return array


def _proba(value: Any, name: str = "proba") -> np.ndarray:
    proba = _matrix(value, name, min_columns=2)
    if proba.size and (proba.min() < 0 or proba.max() > 1):
        row = int(np.argwhere((proba < 0) | (proba > 1))[0][0])
        raise ValueError(f"{name} must hold probabilities in [0, 1]. But row {row} was {_short(proba[row])}")
    sums = proba.sum(axis=1)
    bad = np.flatnonzero(np.abs(sums - 1) > PROBA_SUM_TOLERANCE)
    if bad.size:
        raise ValueError(f"{name} rows must sum to 1 (one probability per label). "
                         f"But row {int(bad[0])} summed to {sums[bad[0]]:.6g}")
    return proba


def _positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive whole number. But it was: {value!r}")
    return int(value)


def _choice(value: Any, name: str, allowed: Sequence[str]) -> str:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, allowed))}. But it was: {value!r}")
    return value


def _fraction(value: Any, name: str, *, open_low: bool = False) -> float:
    ok = isinstance(value, (int, float, np.floating, np.integer)) and not isinstance(value, bool)
    if ok:
        value = float(value)
        ok = math.isfinite(value) and (0 < value <= 1 if open_low else 0 <= value <= 1)
    if not ok:
        interval = "(0, 1]" if open_low else "[0, 1]"
        raise ValueError(f"{name} must be a number in {interval}. But it was: {value!r}")
    return float(value)


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# ----------------------------------------------------------------------------------------------
# Uncertainty and the review queue


def uncertainty(proba: Any, kind: UncertaintyKind = "margin") -> np.ndarray:
    """How unsure the head is about each row, in [0, 1] (1 = a coin toss between labels).

    ``margin``: 1 - (top probability - runner-up); ``entropy``: entropy / log(number of labels);
    ``least-confidence``: (1 - top probability) scaled so a uniform row gives 1.
    """
    kind = _choice(kind, "kind", KINDS)
    proba = _proba(proba)
    n_labels = proba.shape[1]
    if kind == "margin":
        top2 = np.partition(proba, n_labels - 2, axis=1)[:, -2:]
        return np.clip(1.0 - (top2[:, 1] - top2[:, 0]), 0.0, 1.0)
    if kind == "entropy":
        with np.errstate(divide="ignore", invalid="ignore"):
            plogp = np.where(proba > 0, proba * np.log(proba), 0.0)
        return np.clip(-plogp.sum(axis=1) / np.log(n_labels), 0.0, 1.0)
    return np.clip((1.0 - proba.max(axis=1)) * n_labels / (n_labels - 1), 0.0, 1.0)


def _least_sure_first(scores: np.ndarray, count: int | None = None) -> np.ndarray:
    """Indices by descending score, ties by ascending index; only the first ``count`` when given."""
    n = len(scores)
    if count is not None and count < n:
        part = np.argpartition(-scores, count - 1)[:count]
        # rows tied with the cut-off score may sit on either side: take every tie, then sort.
        cut = scores[part].min()
        part = np.flatnonzero(scores >= cut)
        order = part[np.lexsort((part, -scores[part]))]
        return order[:count]
    return np.lexsort((np.arange(n), -scores))


def review_order(proba: Any, kind: UncertaintyKind = "margin") -> np.ndarray:
    """Row indices of bulk results, the ones the model is least sure of first (ties: input order)."""
    return _least_sure_first(uncertainty(proba, kind))


# ----------------------------------------------------------------------------------------------
# What to label next


def suggest(pool_vectors: Any, pool_proba: Any, *, k: int = DEFAULT_BATCH, labelled_vectors: Any = None,
            strategy: Strategy = "uncertainty+diversity", kind: UncertaintyKind = "margin",
            exclude: Any = None, power: float = POWER, candidate_factor: int = CANDIDATE_FACTOR,
            max_candidates: int = MAX_CANDIDATES, duplicate_similarity: float = DUPLICATE_SIMILARITY,
            seed: int = 0) -> np.ndarray:
    """Indices of ``k`` pool rows to label next, least sure first.

    Parameters
    ----------
    pool_vectors : (n, d) array
        L2-normalised embeddings of the unlabelled texts (cosine = dot product).
    pool_proba : (n, labels) array
        The calibrated head's probabilities for the same rows.
    k : int
        Batch size (``DEFAULT_BATCH`` = 10). Fewer come back when fewer rows are available.
    labelled_vectors : (m, d) array, optional
        Embeddings of the examples already labelled: pool rows with cosine similarity of at least
        ``duplicate_similarity`` to one of them are not suggested (diversity strategy only), unless
        fewer than ``k`` other rows are left: then they fill the batch, after the others.
    strategy : ``"uncertainty+diversity"`` | ``"uncertainty"`` | ``"random"``
    kind : ``"margin"`` | ``"entropy"`` | ``"least-confidence"``
    exclude : indices or boolean mask of pool rows never to suggest (e.g. already labelled).
    power : float
        Diversity strategy: each row weighs ``uncertainty ** power`` in the clustering.
    candidate_factor, max_candidates : int
        Diversity strategy: the ``candidate_factor * k`` least sure rows are always clustered; a
        uniform sample of the other rows fills up to ``max_candidates`` (each sampled row standing
        for the rows it represents). Pools up to ``max_candidates`` rows are clustered whole.
    seed : int
        Seeds ``random``, the sample and the k-means initialisation: same inputs, same answer.

    The diversity strategy is weighted k-means on the embeddings (after Zhdanov, "Diverse
    mini-batch active learning", 2019, without its hard prefilter): ``k`` clusters, each row
    weighted by ``uncertainty ** power``, and the row nearest each weighted centre is shown. With
    calibrated confidences this adapts by itself: while the head knows little, every row is
    uncertain and the picks are representative texts spread over the pool; as it learns, the
    weight gathers on the boundary and the picks become the distinct kinds of text it is unsure
    about. Cost: linear in the pool (uncertainty, a partial sort) plus k-means on at most
    ``max_candidates`` rows: about 0.2 s of one core for 100,000 rows and k = 10, 0.7 s for k = 77.

    ``power`` = 4 was chosen from 0, 1, 2, 4, 8 on the issue #19 simulation (seven public sets,
    2 examples per label to start, 10 rounds, 5 seeds). Power 0 (clusters alone) lost to random on
    cr (by 3 points at the end) and sst2; plain uncertainty fell up to 10 points behind random in early rounds.
    """
    strategy = _choice(strategy, "strategy", STRATEGIES)
    kind = _choice(kind, "kind", KINDS)
    k = _positive_int(k, "k")
    candidate_factor = _positive_int(candidate_factor, "candidate_factor")
    max_candidates = _positive_int(max_candidates, "max_candidates")
    if isinstance(power, bool) or not isinstance(power, (int, float, np.integer, np.floating)) \
            or not (0 <= float(power) <= 64):
        raise ValueError(f"power must be a number in [0, 64]. But it was: {power!r}")
    duplicate_similarity = _fraction(duplicate_similarity, "duplicate_similarity", open_low=True)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"seed must be a whole number. But it was: {seed!r}")
    proba = _proba(pool_proba, "pool_proba")
    vectors = np.asarray(pool_vectors)
    if vectors.ndim != 2:
        raise ValueError(f"pool_vectors must be 2-D (one row per text). But its shape was {vectors.shape}")
    if len(vectors) != len(proba):
        raise ValueError(f"pool_vectors and pool_proba must have one row per pool text. "
                         f"But they had {len(vectors)} and {len(proba)} rows")
    labelled = None
    if labelled_vectors is not None:
        labelled = _matrix(labelled_vectors, "labelled_vectors")
        if labelled.shape[1] != vectors.shape[1]:
            raise ValueError(f"labelled_vectors must have {vectors.shape[1]} columns like pool_vectors. "
                             f"But its shape was {labelled.shape}")
    available = _available(len(proba), exclude)
    if available.size == 0:
        return np.empty(0, dtype=np.int64)
    rng = np.random.default_rng(seed)
    if strategy == "random":
        return np.sort(rng.choice(available, size=min(k, available.size), replace=False))

    scores = uncertainty(proba[available], kind)
    if strategy == "uncertainty":
        return available[_least_sure_first(scores, min(k, available.size))]

    top = _least_sure_first(scores, min(available.size, candidate_factor * k))  # positions in `available`
    stands_for = np.ones(top.size)
    room = max_candidates - top.size
    if room > 0 and available.size > top.size:
        rest = np.ones(available.size, dtype=bool)
        rest[top] = False
        rest = np.flatnonzero(rest)
        share = 1.0
        if rest.size > room:
            share = rest.size / room
            rest = np.sort(rng.choice(rest, size=room, replace=False))
        top = np.concatenate([top, rest])
        stands_for = np.concatenate([stands_for, np.full(rest.size, share)])
    cand, cand_vectors = top, _matrix(vectors[available[top]], "pool_vectors")
    repeats = np.empty(0, dtype=np.int64)
    if labelled is not None and len(labelled):
        fresh = _max_similarity(cand_vectors, labelled) < duplicate_similarity
        repeats = cand[~fresh]
        cand, cand_vectors, stands_for = cand[fresh], cand_vectors[fresh], stands_for[fresh]
    if cand.size <= k:  # too few distinct rows to cluster: all of them, then repeats of examples to fill the batch
        chosen = np.concatenate([cand[np.lexsort((cand, -scores[cand]))],
                                 repeats[np.lexsort((repeats, -scores[repeats]))][: k - cand.size]])
        return available[chosen]
    weights = stands_for * np.maximum(scores[cand], 1e-6) ** float(power)
    from sklearn.cluster import KMeans  # scikit-learn only when suggesting: the CLI and server start without it

    km = KMeans(n_clusters=k, n_init=1, random_state=int(rng.integers(2**31 - 1)), max_iter=100)
    labels = km.fit(cand_vectors, sample_weight=weights).labels_
    picks = []
    for c in range(k):
        members = np.flatnonzero(labels == c)
        if members.size == 0:
            continue
        centre = np.average(cand_vectors[members], axis=0, weights=weights[members])
        distance = ((cand_vectors[members] - centre) ** 2).sum(axis=1)
        picks.append(members[np.lexsort((members, distance))[0]])
    picks = np.array(picks, dtype=np.int64)
    if picks.size < k:  # an empty cluster: fill up with the least sure candidates not yet picked
        rest = np.setdiff1d(np.arange(cand.size), picks)
        picks = np.concatenate([picks, rest[np.lexsort((rest, -scores[cand[rest]]))][: k - picks.size]])
    chosen = cand[picks]
    return available[chosen[np.lexsort((chosen, -scores[chosen]))]]


def _available(n: int, exclude: Any) -> np.ndarray:
    if exclude is None:
        return np.arange(n)
    ex = np.asarray(exclude)
    if ex.dtype == bool:
        if ex.shape != (n,):
            raise ValueError(f"exclude as a mask must have one entry per pool row ({n}). But its shape was {ex.shape}")
        return np.flatnonzero(~ex)
    if ex.size and (ex.ndim != 1 or not np.issubdtype(ex.dtype, np.integer) or ex.min() < 0 or ex.max() >= n):
        raise ValueError(f"exclude must be pool row indices in [0, {n}) or a boolean mask. But it was: {_short(exclude)}")
    keep = np.ones(n, dtype=bool)
    keep[ex.astype(np.int64)] = False
    return np.flatnonzero(keep)


def _max_similarity(rows: np.ndarray, others: np.ndarray) -> np.ndarray:
    """For each row, its highest dot product with ``others``, in blocks of ``CHUNK_ROWS`` others."""
    best = np.full(len(rows), -np.inf)
    for start in range(0, len(others), CHUNK_ROWS):
        best = np.maximum(best, (rows @ others[start:start + CHUNK_ROWS].T).max(axis=1))
    return best


# ----------------------------------------------------------------------------------------------
# The "unknown" answer


@dataclass(frozen=True)
class ThresholdChoice:
    """A confidence threshold for ``unknown``, and the out-of-fold evidence behind it.

    Predictions whose confidence (top probability) is below ``threshold`` become ``unknown``.
    On the examples' out-of-fold predictions, the answered ones (``coverage`` of them) were right
    ``precision`` of the time; ``met`` says whether that reaches ``target_precision``. When it
    cannot be reached, ``threshold`` is the one with the best precision (most coverage on ties).
    ``curve`` lists (threshold, precision, coverage) for every candidate threshold.
    """

    threshold: float
    target_precision: float
    precision: float
    coverage: float
    met: bool
    n_examples: int
    n_answered: int
    n_correct: int
    accuracy_without: float
    """Precision at full coverage (no ``unknown``): the out-of-fold accuracy."""
    curve: tuple[tuple[float, float, float], ...] = field(repr=False)

    def __post_init__(self) -> None:
        for name in ("threshold", "target_precision", "precision", "coverage", "accuracy_without"):
            _fraction(getattr(self, name), name)
        if not (0 <= self.n_correct <= self.n_answered <= self.n_examples) or self.n_examples < 1:
            raise ValueError("counts must satisfy 0 <= n_correct <= n_answered <= n_examples and n_examples >= 1. "
                             f"But they were {self.n_correct}, {self.n_answered}, {self.n_examples}")
        if not math.isclose(self.coverage, self.n_answered / self.n_examples, abs_tol=1e-9):
            raise ValueError(f"coverage must be n_answered / n_examples = {self.n_answered / self.n_examples:.6g}. "
                             f"But it was {self.coverage!r}")

    @property
    def summary(self) -> str:
        verdict = "reaches" if self.met else "does not reach"
        return (f"Below {self.threshold:.0%} confidence the answer is 'unknown': on your examples (held out in turn) "
                f"that {verdict} {self.target_precision:.0%} precision ({self.precision:.0%}, "
                f"{self.n_correct}/{self.n_answered}) and answers {self.coverage:.0%} of them "
                f"(without it: {self.accuracy_without:.0%} right, all answered).")


def choose_unknown_threshold(oof_proba: Any, y_true: Sequence[Any], classes: Sequence[Any], *,
                             target_precision: float = 0.9) -> ThresholdChoice:
    """The lowest confidence threshold whose answered out-of-fold predictions reach ``target_precision``.

    ``oof_proba`` are the examples' held-out probabilities (columns follow ``classes``), ``y_true``
    their labels. Candidate thresholds are midway between consecutive distinct confidences, so
    each splits the examples where the data does; the lowest one that reaches the target keeps
    the most coverage. Only in-scope texts are among the examples: the precision promised is for
    inputs that belong to one of the labels (texts about something else lower it; see #19).
    """
    proba = _proba(oof_proba, "oof_proba")
    target = _fraction(target_precision, "target_precision", open_low=True)
    classes = list(classes)
    if len(classes) != proba.shape[1]:
        raise ValueError(f"classes must name the {proba.shape[1]} columns of oof_proba. But it had {len(classes)}: "
                         f"{_short(classes)}")
    y = np.asarray(y_true, dtype=object)
    if y.ndim != 1 or len(y) != len(proba):
        raise ValueError(f"y_true must have one label per row of oof_proba ({len(proba)}). "
                         f"But it had shape {y.shape}")
    if len(y) == 0:
        raise ValueError("oof_proba must have at least one row. But it had none")
    unknown_labels = sorted({str(v) for v in set(y.tolist()) - set(classes)})
    if unknown_labels:
        raise ValueError(f"y_true has labels that are not in classes: {_short(unknown_labels)}")
    confidence = proba.max(axis=1)
    correct = np.asarray(classes, dtype=object)[proba.argmax(axis=1)] == y
    order = np.argsort(-confidence, kind="stable")
    conf_sorted, correct_sorted = confidence[order], correct[order].astype(np.int64)
    n = len(y)
    # Cut after position i (answer rows 0..i); only where the confidence changes.
    last_of_run = np.append(conf_sorted[1:] < conf_sorted[:-1], True)
    answered = np.arange(1, n + 1)[last_of_run]
    right = np.cumsum(correct_sorted)[last_of_run]
    below = np.append(conf_sorted[1:], 0.0)[last_of_run]
    thresholds = np.where(answered == n, 0.0, (conf_sorted[last_of_run] + below) / 2)
    precision = right / answered
    meets = np.flatnonzero(precision >= target - 1e-12)
    if meets.size:
        best = int(meets[-1])  # the most answered rows that still reach the target
    else:  # the best precision; most coverage on ties
        best = int(np.flatnonzero(precision == precision.max())[-1])
    curve = tuple((float(t), float(p), float(a / n)) for t, p, a in zip(thresholds, precision, answered))
    return ThresholdChoice(threshold=float(thresholds[best]), target_precision=target,
                           precision=float(precision[best]), coverage=float(answered[best] / n),
                           met=bool(meets.size), n_examples=n, n_answered=int(answered[best]),
                           n_correct=int(right[best]), accuracy_without=float(correct.mean()), curve=curve)


def apply_unknown(proba: Any, classes: Sequence[Any], threshold: float | ThresholdChoice, *,
                  unknown: str = UNKNOWN) -> np.ndarray:
    """Predicted labels (object array), ``unknown`` where the top probability is below ``threshold``."""
    if isinstance(threshold, ThresholdChoice):
        threshold = threshold.threshold
    threshold = _fraction(threshold, "threshold")
    proba = _proba(proba)
    classes = list(classes)
    if len(classes) != proba.shape[1]:
        raise ValueError(f"classes must name the {proba.shape[1]} columns of proba. But it had {len(classes)}: "
                         f"{_short(classes)}")
    if unknown in classes:
        raise ValueError(f"unknown must differ from every label. But {unknown!r} is one of the classes")
    labels = np.asarray(classes, dtype=object)[proba.argmax(axis=1)]
    labels[proba.max(axis=1) < threshold] = unknown
    return labels
