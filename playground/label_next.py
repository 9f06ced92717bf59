"""Label next: an unlabelled pool, batches of suggestions, progress you can see, a review queue, ``unknown``.

The workflow around ``active.py`` (which only does the maths on vectors and probabilities):

- ``read_pool(source)``: the unlabelled texts from a CSV (a ``text`` column, else the first) or a
  text file (one text per line), streamed, up to ``MAX_POOL_ROWS`` rows, empty and repeated texts
  dropped.
- ``LabelPool(texts, model)``: the pool embedded once (with progress); ``suggest(examples)``
  fits the same calibrated head ``classify`` uses and returns a batch of ``Suggestion`` (the
  model's guess and confidence) ranked by ``active.suggest`` (uncertainty + diversity);
  ``accept(examples, decisions)`` adds the labelled rows to the examples and takes every
  decided row out of the pool.
- ``score_examples(examples)``: cross-validated accuracy and examples per label after each
  batch, a point of the learning curve.
- ``choose_threshold(examples, target_precision=0.9)``: an ``unknown`` threshold from the
  examples' out-of-fold predictions (``classifier.out_of_fold_logits``, the routine the head's
  temperature is fitted on), with the coverage it costs.
- ``review_queue(results_csv)`` / ``corrections_csv(rows)``: a bulk output's least sure rows first,
  and the checked rows back as a ``text,label`` file the examples uploader reads.

>>> pool = LabelPool(read_pool("tickets.csv").texts, "small")
>>> batch = pool.suggest(examples, k=10)
>>> examples = pool.accept(examples, [(s.index, s.guess) for s in batch])
"""

from __future__ import annotations

import csv
import heapq
import io
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np

from . import active
from .active import ThresholdChoice
from .bulk import (
    CONFIDENCE_PREFIX,
    ERROR_COLUMN,
    inspect_csv,
    open_binary,
    read_head,
    read_rows,
)
from .classifier import MAX_FOLDS, FewShotClassifier, out_of_fold_logits, softmax, stratified_folds
from .data import escape_cell, examples_to_csv, unescape_cell
from .embeddings import BASE_MODELS, DEFAULT_PRECISION, get_encoder
from .engine import embed_checked
from .validation import (
    UNKNOWN,
    Example,
    ExampleLike,
    ValidationError,
    as_examples,
    check_examples,
    check_truncate,
    label_counts,
)

MAX_POOL_ROWS = 100_000
"""The most unlabelled texts a pool takes (about 150 MB of small-model embeddings)."""
TEXT_SUFFIXES = (".txt", ".text")
"""Files read as one text per line; anything else is read as a CSV with a header row."""
PROGRESS_ROWS = 10_000
"""Rows read between two progress reports."""
EMBED_CHUNK = 512
"""Pool texts embedded per step, so progress moves and a long pool can report time left."""
DEFAULT_TARGET_PRECISION = 0.9
REVIEW_ROWS = 50
SKIP = ""
"""A decision without a label: the text leaves the pool and is not added to the examples."""


# ----------------------------------------------------------------------------------------------
# Reading the pool


@dataclass(frozen=True)
class PoolProgress:
    """Where reading or embedding a pool stands: ``phase`` is ``"reading"`` or ``"embedding"``."""

    phase: str
    done: int
    total: int
    seconds_elapsed: float

    @property
    def fraction(self) -> float:
        return min(self.done / self.total, 1.0) if self.total else 1.0

    @property
    def seconds_left(self) -> float | None:
        if self.done == 0 or self.seconds_elapsed <= 0:
            return None
        return max(self.total - self.done, 0) * self.seconds_elapsed / self.done


@dataclass(frozen=True)
class PoolFile:
    """The texts of a pool file, and what was left out on the way."""

    texts: list[str]
    rows: int
    empty: int
    repeated: int
    text_column: str | None

    @property
    def summary(self) -> str:
        dropped = [f"{n:,} {what}" for n, what in ((self.empty, "empty"), (self.repeated, "repeated")) if n]
        column = f" (column {self.text_column!r})" if self.text_column else ""
        return f"{len(self.texts):,} texts from {self.rows:,} rows{column}" + (
            f"; left out {', '.join(dropped)}" if dropped else "")


Source = str | Path | bytes | IO[bytes]


def read_pool(source: Source, *, name: str | None = None, text_column: str | None = None,
              max_rows: int = MAX_POOL_ROWS, progress: Callable[[PoolProgress], None] | None = None) -> PoolFile:
    """The unlabelled texts of a CSV (header row; ``text`` column, else the first) or a ``.txt`` file.

    ``name`` is the file's name when ``source`` is bytes or a file object (an upload): its
    suffix decides text or CSV. The file is streamed; more than ``max_rows`` rows is an error
    that says how many there are. Empty texts and repeats of an earlier text are left out.
    """
    if isinstance(max_rows, bool) or not isinstance(max_rows, int) or max_rows < 1:
        raise ValueError(f"max_rows must be a positive whole number. But it was: {max_rows!r}")
    if isinstance(source, bytes):
        source = io.BytesIO(source)
    suffix = Path(name if name is not None else (source if isinstance(source, (str, Path)) else "")).suffix.lower()
    started = time.perf_counter()
    report = progress or (lambda _: None)
    if suffix in TEXT_SUFFIXES:
        encoding, total = _inspect_text(source)
        _check_size(total, max_rows)
        lines = _text_lines(source, encoding)
        column = None
    else:
        layout, total = inspect_csv(source, text_column)
        _check_size(total, max_rows)
        lines = (row[layout.text_index] if layout.text_index < len(row) else ""
                 for row in _data_rows(source, layout))
        column = layout.text_column
    texts: list[str] = []
    seen: set[str] = set()
    rows = empty = repeated = 0
    for raw in lines:
        rows += 1
        text = unescape_cell(raw).strip()
        if not text:
            empty += 1
        elif text in seen:
            repeated += 1
        else:
            seen.add(text)
            texts.append(text)
        if rows % PROGRESS_ROWS == 0:
            report(PoolProgress("reading", rows, total, time.perf_counter() - started))
    if not texts:
        raise ValidationError("the pool file has no texts: give a CSV with a header row and a text column, "
                              "or a .txt file with one text per line")
    return PoolFile(texts, rows, empty, repeated, column)


def _check_size(total: int, max_rows: int) -> None:
    if total > max_rows:
        raise ValidationError(f"the pool takes at most {max_rows:,} texts, and this file has {total:,} rows: "
                              "split it, or label from a sample of it")


def _data_rows(source: Any, layout) -> Iterable[list[str]]:
    rows = read_rows(source, layout)
    next(rows, None)  # the header
    return (row for row in rows if row)


def _text_lines(source: Any, encoding: str) -> Iterator[str]:
    """The lines of a text file (any newline convention), streamed."""
    binary, owned = open_binary(source, "pool file")
    stream = io.TextIOWrapper(binary, encoding=encoding, newline=None)
    try:
        for line in stream:
            yield line.rstrip("\n")
    finally:
        stream.detach()
        if owned:
            binary.close()


def _inspect_text(source: Any) -> tuple[str, int]:
    """Encoding (UTF-8, BOM allowed, else Windows-1252) and line count of a text file, read once, streamed."""
    head = read_head(source, "pool file")
    if not head.strip():
        raise ValidationError("the pool file is empty: give one text per line")
    if b"\x00" in head:
        raise ValidationError("the pool file contains NUL bytes, so it is binary or UTF-16: save it as UTF-8 text")
    for encoding in ("utf-8-sig", "cp1252"):
        try:
            return encoding, sum(1 for _ in _text_lines(source, encoding))
        except UnicodeDecodeError:
            continue
    raise ValidationError("the pool file is neither UTF-8 nor Windows-1252: save it as UTF-8 text")  # pragma: no cover


# ----------------------------------------------------------------------------------------------
# Out-of-fold probabilities, the learning curve and the "unknown" threshold


def out_of_fold_proba(X: np.ndarray, y: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Classes and each example's probabilities from the head fitted without it, calibrated as ``classify`` is.

    Stratified folds (at most ``classifier.MAX_FOLDS``, at least 2 examples per label), the
    logits from ``classifier.out_of_fold_logits`` and the temperature of the head fitted on all
    the examples: the confidences a user would have seen on texts like these.
    """
    y_arr = np.asarray([str(v) for v in y], dtype=object)
    head = FewShotClassifier().fit(X, y_arr)
    counts = np.unique(y_arr, return_counts=True)[1]
    folds = stratified_folds(y_arr, min(MAX_FOLDS, int(counts.min())), seed=0)
    logits = out_of_fold_logits(np.asarray(X, dtype=np.float64), y_arr, head.classes_, folds)
    return head.classes_, softmax(logits / head.temperature_, axis=1)


@dataclass(frozen=True)
class LearningPoint:
    """Cross-validated accuracy of a set of examples, and how many examples each label has."""

    n_examples: int
    accuracy: float
    per_label: dict[str, int]

    def to_dict(self) -> dict[str, Any]:
        return {"n_examples": self.n_examples, "accuracy": self.accuracy, "per_label": dict(self.per_label)}


def _embedded(examples: Iterable[ExampleLike], model: str, precision: str, truncate: str
              ) -> tuple[list[Example], np.ndarray]:
    if model not in BASE_MODELS:
        raise ValidationError(f"model {model!r} does not take examples: choose one of {', '.join(BASE_MODELS)}")
    examples = as_examples(examples)
    check_examples(examples)
    encoder = get_encoder(model, precision=precision)
    X = embed_checked(encoder, [ex.text for ex in examples], truncate=check_truncate(truncate), what="examples")
    return examples, X


def score_examples(examples: Iterable[ExampleLike], model: str = "small", *, precision: str = DEFAULT_PRECISION,
                   truncate: str = "END") -> LearningPoint:
    """A point of the learning curve: out-of-fold accuracy of the examples and their count per label."""
    examples, X = _embedded(examples, model, precision, truncate)
    y = [ex.label for ex in examples]
    classes, proba = out_of_fold_proba(X, y)
    accuracy = float((classes[proba.argmax(axis=1)] == np.asarray(y, dtype=object)).mean())
    return LearningPoint(len(examples), accuracy, label_counts(examples))


def choose_threshold(examples: Iterable[ExampleLike], model: str = "small", *,
                     target_precision: float = DEFAULT_TARGET_PRECISION, precision: str = DEFAULT_PRECISION,
                     truncate: str = "END") -> ThresholdChoice:
    """The ``unknown`` threshold for ``target_precision`` on the examples held out in turn (see ``ThresholdChoice``).

    >>> choice = choose_threshold(examples, target_precision=0.9)
    >>> classify(texts, examples, unknown_below=choice.threshold)
    >>> choice.summary  # what it costs in coverage
    """
    try:
        target = float(target_precision)
    except (TypeError, ValueError):
        raise ValidationError(f"target precision must be a number in (0, 1]. But it was: {target_precision!r}") from None
    if isinstance(target_precision, bool) or not 0 < target <= 1:
        raise ValidationError(f"target precision must be a number in (0, 1]. But it was: {target_precision!r}")
    examples, X = _embedded(examples, model, precision, truncate)
    y = [ex.label for ex in examples]
    classes, proba = out_of_fold_proba(X, y)
    return active.choose_unknown_threshold(proba, y, [str(c) for c in classes], target_precision=target)


# ----------------------------------------------------------------------------------------------
# The pool


@dataclass(frozen=True)
class Suggestion:
    """A pool text to label: the model's guess with its confidence, every label's confidence."""

    index: int
    text: str
    guess: str
    confidence: float
    labels: dict[str, float] = field(repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "text": self.text, "guess": self.guess, "confidence": self.confidence,
                "labels": dict(self.labels)}


class LabelPool:
    """Unlabelled texts embedded once; which are left; the next batch to label.

    Parameters
    ----------
    texts : sequence of str
        The pool (``read_pool(...).texts``), at most ``MAX_POOL_ROWS``.
    model : "small" | "large"
        The base model the examples are classified with.
    progress : callable(PoolProgress), optional
        Called after every ``EMBED_CHUNK`` texts while embedding.

    >>> pool = LabelPool(["where is my parcel", ...], "small")
    >>> batch = pool.suggest(examples)          # 10 Suggestions, least sure first
    >>> examples = pool.accept(examples, [(batch[0].index, "shipping"), (batch[1].index, "")])  # "" = skip
    """

    def __init__(self, texts: Sequence[str], model: str = "small", *, precision: str = DEFAULT_PRECISION,
                 truncate: str = "END", progress: Callable[[PoolProgress], None] | None = None) -> None:
        if model not in BASE_MODELS:
            raise ValidationError(f"model {model!r} cannot label a pool: choose one of {', '.join(BASE_MODELS)}")
        texts = [str(t) for t in texts]
        if not texts:
            raise ValidationError("the pool is empty: give at least one unlabelled text")
        if len(texts) > MAX_POOL_ROWS:
            raise ValidationError(f"the pool takes at most {MAX_POOL_ROWS:,} texts. But it had {len(texts):,}")
        empty = [i for i, t in enumerate(texts) if not t.strip()]
        if empty:
            raise ValidationError(f"pool texts must not be empty: rows {empty[:10]} are")
        self.texts = texts
        self.model = model
        self.precision = precision
        self.truncate = check_truncate(truncate)
        encoder = get_encoder(model, precision=precision)
        started = time.perf_counter()
        report = progress or (lambda _: None)
        parts = []
        report(PoolProgress("embedding", 0, len(texts), 0.0))
        for start in range(0, len(texts), EMBED_CHUNK):
            parts.append(embed_checked(encoder, texts[start:start + EMBED_CHUNK], truncate=self.truncate,
                                       what="pool", batch_size=64))
            report(PoolProgress("embedding", min(start + EMBED_CHUNK, len(texts)), len(texts),
                                time.perf_counter() - started))
        self.vectors = np.concatenate(parts).astype(np.float32)
        self.left = np.ones(len(texts), dtype=bool)
        self.rounds = 0

    @property
    def remaining(self) -> int:
        return int(self.left.sum())

    def suggest(self, examples: Iterable[ExampleLike], k: int = active.DEFAULT_BATCH, *,
                strategy: active.Strategy = "uncertainty+diversity", seed: int | None = None) -> list[Suggestion]:
        """The next ``k`` texts to label, least sure first, each with the model's guess.

        The head is the one ``classify`` fits on these examples; pool texts equal to an example
        (or a near-duplicate of one) are not suggested.
        """
        examples, X = _embedded(examples, self.model, self.precision, self.truncate)
        head = FewShotClassifier().fit(X, [ex.label for ex in examples])
        known = {ex.text for ex in examples}
        self.left &= ~np.fromiter((t in known for t in self.texts), dtype=bool, count=len(self.texts))  # labelled already
        exclude = ~self.left
        proba = np.zeros((len(self.texts), len(head.classes_)))
        proba[:, 0] = 1.0  # placeholder rows, excluded below
        keep = np.flatnonzero(~exclude)
        if keep.size:
            proba[keep] = head.predict_proba(self.vectors[keep])
        picks = active.suggest(self.vectors, proba, k=k, labelled_vectors=X, strategy=strategy, exclude=exclude,
                               seed=self.rounds if seed is None else seed)
        self.rounds += 1
        classes = [str(c) for c in head.classes_]
        out = []
        for i in picks:
            row = proba[i]
            order = np.argsort(-row, kind="stable")
            out.append(Suggestion(int(i), self.texts[i], classes[order[0]], float(row[order[0]]),
                                  {classes[j]: float(row[j]) for j in order}))
        return out

    def accept(self, examples: Iterable[ExampleLike], decisions: Iterable[tuple[int, str | None]]) -> list[Example]:
        """The examples with each decided text added under its label; every decided text leaves the pool.

        ``decisions`` are ``(pool index, label)``; an empty label (``SKIP``) or ``None`` takes the
        text out of the pool without adding it.
        """
        examples = as_examples(examples)
        added: list[Example] = []
        taken: list[int] = []
        for position, (index, label) in enumerate(decisions):
            if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or not 0 <= index < len(self.texts):
                raise ValidationError(f"decisions[{position}]: pool index must be in [0, {len(self.texts)}). "
                                      f"But it was {index!r}")
            if not self.left[index]:
                raise ValidationError(f"decisions[{position}]: pool text {index} was already labelled or skipped")
            taken.append(int(index))
            label = "" if label is None else str(label).strip()
            if label:
                added.append(Example(self.texts[index], label))
        self.left[taken] = False
        return examples + added


def decisions_from_rows(rows: Iterable[Mapping[str, Any]]) -> list[tuple[int, str | None]]:
    """``(index, label)`` from the batch grid's rows (``index`` and ``label`` keys; a blank label skips)."""
    out = []
    for n, row in enumerate(rows):
        try:
            index = int(row["index"])
        except (KeyError, TypeError, ValueError):
            raise ValidationError(f"batch row {n + 1}: it lost its pool index; suggest the batch again") from None
        label = row.get("label")
        out.append((index, None if label is None or (isinstance(label, float) and np.isnan(label)) else str(label)))
    return out


# ----------------------------------------------------------------------------------------------
# The review queue of a bulk output


@dataclass(frozen=True)
class ReviewRow:
    """A row of a bulk output to check by hand: its 1-based data row number, text, prediction, confidence."""

    row: int
    text: str
    prediction: str
    confidence: float
    uncertainty: float

    def to_dict(self) -> dict[str, Any]:
        return {"row": self.row, "text": self.text, "prediction": self.prediction, "confidence": self.confidence,
                "uncertainty": self.uncertainty}


def review_queue(results: Source, *, top: int = REVIEW_ROWS, text_column: str | None = None,
                 kind: active.UncertaintyKind = "margin") -> list[ReviewRow]:
    """The ``top`` rows of a bulk output (``bulk.classify_file``'s CSV) the model was least sure of, first.

    Streamed: only ``top`` rows are kept, so any output size works. Rows with an ``error`` are
    left out (they have no prediction). Ties keep file order.
    """
    if isinstance(top, bool) or not isinstance(top, int) or top < 1:
        raise ValidationError(f"top must be a positive whole number. But it was: {top!r}")
    layout, _ = inspect_csv(results, text_column)
    header = list(layout.header)
    score_cols = [i for i, h in enumerate(header) if h.startswith(CONFIDENCE_PREFIX)]
    missing = [name for name, ok in (("prediction", "prediction" in header), ("confidence", "confidence" in header),
                                     ("confidence_<label>", bool(score_cols))) if not ok]
    if missing:
        raise ValidationError(f"this is not a bulk classify output: it has no {', '.join(missing)} column; "
                              "classify the file first (Bulk page or python -m playground classify --output)")
    pred_i, conf_i = header.index("prediction"), header.index("confidence")
    err_i = header.index(ERROR_COLUMN) if ERROR_COLUMN in header else None
    heap: list[tuple[float, int, ReviewRow]] = []
    for number, row in enumerate(_data_rows(results, layout), start=1):
        if err_i is not None and err_i < len(row) and row[err_i].strip():
            continue
        try:
            scores = np.array([[float(row[i]) for i in score_cols]])
            confidence = float(row[conf_i])
        except (ValueError, IndexError):
            continue
        if scores.shape[1] < 2 or abs(scores.sum() - 1) > 1e-3:  # multi-label outputs do not sum to 1
            u = float(1 - abs(2 * confidence - 1))
        else:
            u = float(active.uncertainty(scores, kind)[0])
        item = (u, -number, ReviewRow(number, unescape_cell(row[layout.text_index]), unescape_cell(row[pred_i]),
                                      confidence, u))
        if len(heap) < top:
            heapq.heappush(heap, item)
        elif item[:2] > heap[0][:2]:
            heapq.heapreplace(heap, item)
    return [item[2] for item in sorted(heap, key=lambda it: (-it[0], -it[1]))]


def corrections_csv(rows: Iterable[Mapping[str, Any]]) -> str:
    """Checked review rows as a ``text,label`` CSV the examples uploader reads (unchecked or unlabelled rows left out).

    Each row needs ``text`` and ``label``; a ``checked`` key, when present, must be true for the
    row to be kept.
    """
    examples = []
    for row in rows:
        if "checked" in row and not bool(row["checked"]):
            continue
        text = "" if row.get("text") is None else str(row["text"]).strip()
        label = row.get("label")
        label = "" if label is None or (isinstance(label, float) and np.isnan(label)) else str(label).strip()
        if text and label and label != UNKNOWN:
            examples.append(Example(text, label))
    return examples_to_csv(examples)


def review_csv(queue: Sequence[ReviewRow]) -> str:
    """The review queue as a CSV (row, text, prediction, confidence, label = the prediction to correct)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["row", "text", "prediction", "confidence", "label"])
    for r in queue:
        writer.writerow([r.row, escape_cell(r.text), escape_cell(r.prediction), f"{r.confidence:.6f}",
                         escape_cell(r.prediction)])
    return buffer.getvalue()
