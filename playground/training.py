"""Custom models: SetFit's method with sentence-transformers, then a head, saved by the store.

SetFit (Tunstall et al., 2022) in two steps: (1) contrastive fine-tuning of the sentence
encoder on pairs drawn from the examples (same label → cosine 1, different → 0;
``CosineSimilarityLoss``, SetFit's default), (2) a classification head on the tuned
embeddings: the few-shot ``FewShotClassifier`` for single-label data, one-vs-rest logistic
regression with a per-label threshold for multi-label data.

Why not the ``setfit`` library: setfit 1.2.0 runs with our pins only once ``datasets``,
``evaluate`` and ``accelerate`` and a dozen of their dependencies are added (the benchmark does
so, ``requirements-bench.txt``, to run it as a peer); and it saves its head with ``joblib``
(pickle), which this project refuses. The loop below is a
plain torch loop over sentence-transformers' own loss: no new package, and cancel / progress
hooks at every step.

The number of pairs is capped (``TrainingSettings.max_pairs``, default 640 = 40 steps of 16)
so 40-200 examples train in about a minute on 2 CPU cores with the small model; SetFit's own
default would draw 40 pairs per example (8,000 for 200 examples).
"""

from __future__ import annotations

import json
import math
import os
import random
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, train_test_split
from sklearn.utils.validation import check_is_fitted

from .classifier import FewShotClassifier
from .data import DataFileError, MultiLabelExample, decode_text, read_examples_csv, read_multilabel_jsonl
from .embeddings import BASE_MODELS, get_encoder, model_path
from .store import (
    ModelInfo,
    models_dir,
    now_iso,
    remove_leftovers,
    save_model,
    validate_model_name,
)
from .validation import ValidationError, as_example

MIN_TRAIN_EXAMPLES = 40
MIN_TRAIN_LABELS = 2
MIN_TRAIN_PER_LABEL = 5
SETFIT_PAIRS_PER_EXAMPLE = 40
"""SetFit's default (20 iterations × a positive and a negative pair per example), before the cap."""
LOCK_NAME = ".training.lock"


class TrainingBusyError(RuntimeError):
    """Another training is running (one at a time per machine's models folder)."""


class TrainingCancelled(RuntimeError):
    """The user cancelled; nothing was saved."""


def _check_int(name: str, value: Any, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{name} must be an integer from {low} to {high}. But it was: {value!r}")


def _check_float(name: str, value: Any, low: float, high: float, *, low_open: bool = True) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and (
        (low < value if low_open else low <= value) and value <= high)
    if not ok:
        bracket = "(" if low_open else "["
        raise ValueError(f"{name} must be a number in {bracket}{low}, {high}]. But it was: {value!r}")


@dataclass(frozen=True)
class TrainingSettings:
    """How a custom model is trained; saved in the model's config.

    Parameters
    ----------
    epochs : int, default=1
        Passes over the contrastive pairs.
    max_pairs : int, default=640
        Cap on the pairs drawn (SetFit would draw 40 per example); the main time knob.
    batch_size : int, default=16
        Pairs per optimiser step.
    learning_rate : float, default=2e-5
    warmup_proportion : float, default=0.1
        Share of steps with a linearly rising learning rate.
    max_seq_length : int, default=128
        Tokens per text while tuning (longer texts are cut; classifying keeps the model's limit).
    validation_fraction : float, default=0.2
        Held out (stratified) when no validation file is given.
    seed : int, default=42
    num_threads : int or None, default=None
        Torch threads while tuning (None: leave torch's setting). On a busy machine 1 can be faster.

    >>> TrainingSettings(epochs=2, max_pairs=1000)
    """

    epochs: int = 1
    max_pairs: int = 640
    batch_size: int = 16
    learning_rate: float = 2e-5
    warmup_proportion: float = 0.1
    max_seq_length: int = 128
    validation_fraction: float = 0.2
    seed: int = 42
    num_threads: int | None = None

    def __post_init__(self) -> None:
        _check_int("epochs", self.epochs, 1, 50)
        _check_int("max_pairs", self.max_pairs, 2, 1_000_000)
        _check_int("batch_size", self.batch_size, 2, 1024)
        _check_float("learning_rate", self.learning_rate, 0.0, 0.1)
        _check_float("warmup_proportion", self.warmup_proportion, 0.0, 0.9, low_open=False)
        _check_int("max_seq_length", self.max_seq_length, 8, 512)
        _check_float("validation_fraction", self.validation_fraction, 0.0, 0.5)
        _check_int("seed", self.seed, 0, 2**32 - 1)
        if self.num_threads is not None:
            _check_int("num_threads", self.num_threads, 1, 256)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainingSettings:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown training settings: {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        return cls(**data)


@dataclass(frozen=True)
class TrainingProgress:
    """One progress report: ``phase`` is checking | tuning | head | evaluating | saving | done."""

    phase: str
    step: int
    total: int
    elapsed: float
    seconds_left: float | None
    message: str

    @property
    def fraction(self) -> float:
        return 0.0 if self.total <= 0 else min(1.0, self.step / self.total)


ProgressCallback = Callable[[TrainingProgress], None]
CancelFlag = threading.Event | Callable[[], bool]


# ----------------------------------------------------------------------------------------------
# Data in: reading, the rules, the split


@dataclass(frozen=True)
class TrainingData:
    """Examples with where each came from ("row 7", "line 3", "examples[2]") for messages."""

    examples: list  # list[Example] | list[MultiLabelExample]
    where: list[str]
    multi_label: bool
    source: str = "examples"

    @property
    def labels(self) -> list[str]:
        if self.multi_label:
            return sorted({label for ex in self.examples for label in ex.labels})
        return sorted({ex.label for ex in self.examples})


def load_training_data(data: Any, *, multi_label: bool | None = None, what: str = "training") -> TrainingData:
    """Read a CSV / JSONL path, bytes or an in-memory list into ``TrainingData``.

    ``multi_label=None`` decides from the file suffix (``.jsonl`` / ``.json`` → multi-label) or
    from the list's items (``MultiLabelExample`` → multi-label).
    """
    if isinstance(data, (str, Path, bytes)):
        path = None if isinstance(data, bytes) else Path(data)
        if multi_label is None:
            if path is None:
                raise ValidationError(f"{what} data given as bytes: say multi_label=True (JSONL) or False (CSV)")
            multi_label = path.suffix.lower() in (".jsonl", ".json", ".ndjson")
        raw = data if path is None else (path.read_bytes() if path.is_file() else b"")
        if path is not None and not path.is_file():
            raise DataFileError(f"{what} file not found: {path}")
        source = str(path) if path is not None else f"{what} data"
        if multi_label:
            examples = read_multilabel_jsonl(raw)
            text, _, _ = decode_text(raw)
            lines = [n for n, line in enumerate(text.splitlines(), start=1) if line.strip()]
            return TrainingData(examples, [f"line {n}" for n in lines], True, source)
        parsed = read_examples_csv(raw)
        return TrainingData(parsed.examples, [f"row {n}" for n in parsed.rows], False, source)
    items = list(data)
    if multi_label is None:
        multi_label = bool(items) and isinstance(items[0], MultiLabelExample)
    if multi_label:
        bad = [i for i, item in enumerate(items) if not isinstance(item, MultiLabelExample)]
        if bad:
            raise ValidationError(f"{what} examples[{bad[0]}] is not a MultiLabelExample: {items[bad[0]]!r}")
        examples = items
    else:
        examples = [as_example(item, i) for i, item in enumerate(items)]
    return TrainingData(examples, [f"examples[{i}]" for i in range(len(examples))], bool(multi_label))


def check_training_data(data: TrainingData) -> None:
    """Every rule for training data, all problems listed at once (each names its row / line).

    At least 40 examples; at least 2 labels; at least 5 examples per label (multi-label: each
    label on at least 5 examples, and not on every one); no empty text; no text twice (and,
    single-label, no text with two labels).
    """
    problems: list[str] = []
    ex, where = data.examples, data.where
    unit = "rows" if where and where[0].startswith("row") else "lines" if where and where[0].startswith("line") else "examples"
    if len(ex) < MIN_TRAIN_EXAMPLES:
        problems.append(f"training needs at least {MIN_TRAIN_EXAMPLES} examples - found {len(ex)}: "
                        f"add {MIN_TRAIN_EXAMPLES - len(ex)} more {unit}")
    empty = [where[i] for i, e in enumerate(ex) if not e.text.strip()]
    if empty:
        problems.append(f"empty text at {', '.join(empty[:10])}: fill it in or delete it")
    if data.multi_label:
        counts = Counter(label for e in ex for label in e.labels)
    else:
        counts = Counter(e.label for e in ex)
        empty_labels = [where[i] for i, e in enumerate(ex) if not e.label.strip()]
        if empty_labels:
            problems.append(f"empty label at {', '.join(empty_labels[:10])}: fill it in or delete it")
    if len(counts) < MIN_TRAIN_LABELS:
        found = ", ".join(repr(label) for label in counts) or "none"
        problems.append(f"training needs at least {MIN_TRAIN_LABELS} labels - found {found}")
    short = {label: n for label, n in counts.items() if n < MIN_TRAIN_PER_LABEL}
    if short:
        listed = ", ".join(f"{label!r} ({n})" for label, n in sorted(short.items()))
        per = "examples with each label" if data.multi_label else "examples per label"
        problems.append(f"training needs at least {MIN_TRAIN_PER_LABEL} {per} - too few for: {listed}: "
                        "add examples or remove the label")
    if data.multi_label:
        everywhere = [label for label, n in counts.items() if n == len(ex)]
        if everywhere and len(ex) >= MIN_TRAIN_EXAMPLES:
            problems.append(f"label {', '.join(map(repr, everywhere))} is on every example, so the model cannot "
                            "learn when it is absent: add examples without it")
    seen: dict[str, int] = {}
    for i, e in enumerate(ex):
        key = e.text.strip()
        if not key:
            continue
        first = seen.setdefault(key, i)
        if first == i:
            continue
        a, b = ex[first], e
        if not data.multi_label and a.label != b.label:
            problems.append(f"{where[i]} repeats the text of {where[first]} with a different label "
                            f"({b.label!r} vs {a.label!r}): keep one of them")
        elif data.multi_label and set(a.labels) != set(b.labels):
            problems.append(f"{where[i]} repeats the text of {where[first]} with different labels "
                            f"({sorted(b.labels)} vs {sorted(a.labels)}): keep one of them")
        else:
            problems.append(f"{where[i]} is an exact duplicate of {where[first]}: delete one of them")
    if problems:
        raise ValidationError(_limit(problems))


def check_validation_data(data: TrainingData, train: TrainingData) -> list[str]:
    """Rules for a validation file: same kind, known labels, at least 1 example; returns warnings."""
    problems: list[str] = []
    if data.multi_label != train.multi_label:
        problems.append("the validation file must be the same kind as the training file (CSV for single-label, "
                        "JSONL for multi-label)")
        raise ValidationError(problems)
    known = set(train.labels)
    for i, e in enumerate(data.examples):
        labels = e.labels if data.multi_label else (e.label,)
        unknown = [label for label in labels if label not in known]
        if unknown:
            problems.append(f"validation {data.where[i]} has labels not in the training data: "
                            f"{', '.join(map(repr, unknown))}; fix the label or add training examples")
    if not data.examples:
        problems.append("the validation data is empty")
    if problems:
        raise ValidationError(_limit(problems))
    train_texts = {e.text.strip() for e in train.examples}
    overlap = sum(1 for e in data.examples if e.text.strip() in train_texts)
    return [f"{overlap} validation texts are also in the training data: the scores will look better than they are"] \
        if overlap else []


def _limit(problems: list[str], n: int = 20) -> list[str]:
    return problems if len(problems) <= n else problems[:n] + [f"… and {len(problems) - n} more like these"]


def split_data(data: TrainingData, fraction: float, seed: int) -> tuple[TrainingData, TrainingData]:
    """A stratified split (multi-label: stratified on each example's rarest label), seed fixed."""
    n = len(data.examples)
    indices = np.arange(n)
    if data.multi_label:
        counts = Counter(label for e in data.examples for label in e.labels)
        keys = [min(e.labels, key=lambda label: (counts[label], label)) if e.labels else "" for e in data.examples]
        key_counts = Counter(keys)
        keys = [k if key_counts[k] >= 2 else "<rare>" for k in keys]
        n_strata = len(set(keys))
    else:
        keys = [e.label for e in data.examples]
        n_strata = len(set(keys))
    n_test = max(int(round(fraction * n)), n_strata)
    stratify = keys if min(Counter(keys).values()) >= 2 and n - n_test >= n_strata else None
    train_idx, test_idx = train_test_split(indices, test_size=n_test, random_state=seed, stratify=stratify)
    train_idx, test_idx = sorted(train_idx), sorted(test_idx)

    def part(idx: Iterable[int]) -> TrainingData:
        idx = list(idx)
        return TrainingData([data.examples[i] for i in idx], [data.where[i] for i in idx], data.multi_label, data.source)

    return part(train_idx), part(test_idx)


# ----------------------------------------------------------------------------------------------
# Pairs and contrastive tuning


def make_pairs(data: TrainingData, n_pairs: int, seed: int) -> list[tuple[int, int, float]]:
    """SetFit-style balanced pairs ``(i, j, target)``: alternately a positive and a negative per anchor.

    Single-label: target 1 for the same label, 0 otherwise. Multi-label: target is the Jaccard
    overlap of the two label sets (two texts with no label count as alike).
    """
    rng = random.Random(seed)
    ex = data.examples
    n = len(ex)
    if data.multi_label:
        sets = [frozenset(e.labels) for e in ex]

        def target(i: int, j: int) -> float:
            a, b = sets[i], sets[j]
            return 1.0 if not a and not b else len(a & b) / len(a | b)
    else:
        labels = [e.label for e in ex]

        def target(i: int, j: int) -> float:
            return 1.0 if labels[i] == labels[j] else 0.0

    positives: list[list[int]] = []
    negatives: list[list[int]] = []
    for i in range(n):
        pos, neg = [], []
        for j in range(n):
            if j != i:
                (pos if target(i, j) > 0 else neg).append(j)
        positives.append(pos)
        negatives.append(neg)
    pairs: list[tuple[int, int, float]] = []
    anchors: list[int] = []
    while len(pairs) < n_pairs:
        if not anchors:
            anchors = list(range(n))
            rng.shuffle(anchors)
        i = anchors.pop()
        for pool in (positives[i], negatives[i]):
            if pool and len(pairs) < n_pairs:
                j = rng.choice(pool)
                pairs.append((i, j, target(i, j)))
        if all(not positives[k] and not negatives[k] for k in range(n)):  # pragma: no cover - n < 2
            break
    return pairs


def pair_count(n_examples: int, settings: TrainingSettings) -> int:
    return max(2, min(settings.max_pairs, SETFIT_PAIRS_PER_EXAMPLE * n_examples))


def total_steps(n_examples: int, settings: TrainingSettings) -> int:
    """Optimiser steps a training will take (for the progress bar)."""
    return settings.epochs * math.ceil(pair_count(n_examples, settings) / settings.batch_size)


def _cancelled(cancel: CancelFlag | None) -> bool:
    if cancel is None:
        return False
    if isinstance(cancel, threading.Event):
        return cancel.is_set()
    return bool(cancel())


def tune_body(data: TrainingData, base_model: str, settings: TrainingSettings, *,
              on_step: Callable[[int, int, float], None] | None = None, cancel: CancelFlag | None = None):
    """Contrastive fine-tuning of a fresh copy of the base encoder; returns the tuned ``SentenceTransformer``.

    A fresh copy, never the shared encoder of ``get_encoder``, which other users keep using.
    """
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.losses import CosineSimilarityLoss

    torch.manual_seed(settings.seed)
    model = SentenceTransformer(str(model_path(base_model)), device="cpu", local_files_only=True)
    full_length = model.max_seq_length
    model.max_seq_length = min(full_length, settings.max_seq_length)
    texts = [e.text for e in data.examples]
    pairs = make_pairs(data, pair_count(len(texts), settings), settings.seed)
    steps_per_epoch = math.ceil(len(pairs) / settings.batch_size)
    total = settings.epochs * steps_per_epoch
    warmup = int(settings.warmup_proportion * total)
    loss_fn = CosineSimilarityLoss(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings.learning_rate)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: (s + 1) / (warmup + 1) if s < warmup else max(0.0, (total - s) / max(1, total - warmup)))
    rng = random.Random(settings.seed)
    old_threads = torch.get_num_threads()
    if settings.num_threads:
        torch.set_num_threads(settings.num_threads)
    step = 0
    try:
        model.train()
        for _ in range(settings.epochs):
            order = list(pairs)
            rng.shuffle(order)
            for start in range(0, len(order), settings.batch_size):
                if _cancelled(cancel):
                    raise TrainingCancelled("training cancelled: nothing was saved")
                batch = order[start:start + settings.batch_size]
                features_a = model.preprocess([texts[i] for i, _, _ in batch])
                features_b = model.preprocess([texts[j] for _, j, _ in batch])
                targets = torch.tensor([t for _, _, t in batch], dtype=torch.float32)
                loss = loss_fn([features_a, features_b], targets)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                step += 1
                if on_step is not None:
                    on_step(step, total, float(loss.detach()))
    finally:
        if settings.num_threads:
            torch.set_num_threads(old_threads)
        model.eval()
        model.max_seq_length = full_length
    return model


def embed_with(model, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
    """Embeddings as the store's ``Encoder`` makes them (L2-normalised float32)."""
    return model.encode(list(texts), batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True,
                        show_progress_bar=False).astype(np.float32, copy=False)


# ----------------------------------------------------------------------------------------------
# The multi-label head


class MultiLabelHead(BaseEstimator):
    """One-vs-rest logistic regression with a threshold per label, chosen on the training data.

    Each threshold maximises that label's F1 on out-of-fold probabilities of the training
    examples (in-sample probabilities after tuning are near 0 or 1 and would say nothing).
    ``fit(X, Y)`` takes an indicator matrix ``Y`` of shape ``(n_samples, n_labels)``.

    >>> head = MultiLabelHead(labels=["biology", "physics"]).fit(X, Y)
    >>> head.predict_proba(X_new)  # (n_inputs, 2), each column on its own
    """

    def __init__(self, labels: Sequence[str] | None = None, *, C: float = 10.0, max_iter: int = 1000) -> None:
        self.labels = labels
        self.C = C
        self.max_iter = max_iter

    def fit(self, X: np.ndarray, Y: np.ndarray) -> MultiLabelHead:
        X = np.asarray(X, dtype=np.float64)
        Y = np.asarray(Y, dtype=int)
        if Y.ndim != 2 or len(X) != len(Y):
            raise ValueError(f"Y must be an indicator matrix with one row per row of X: X {X.shape}, Y {Y.shape}")
        labels = list(self.labels) if self.labels is not None else [str(i) for i in range(Y.shape[1])]
        if len(labels) != Y.shape[1]:
            raise ValueError(f"labels has {len(labels)} names for {Y.shape[1]} columns of Y")
        coefs, intercepts, thresholds = [], [], []
        for k, label in enumerate(labels):
            y = Y[:, k]
            pos = int(y.sum())
            if pos == 0 or pos == len(y):
                raise ValueError(f"label {label!r} is on {'no' if pos == 0 else 'every'} training example; "
                                 "it needs examples with and without it")
            lr = self._new_lr().fit(X, y)
            coefs.append(lr.coef_[0])
            intercepts.append(lr.intercept_[0])
            thresholds.append(self._threshold(X, y))
        self.classes_ = np.array(labels, dtype=object)
        self.coef_ = np.vstack(coefs)
        self.intercept_ = np.array(intercepts)
        self.thresholds_ = np.array(thresholds)
        self.n_features_in_ = X.shape[1]
        return self

    def _new_lr(self) -> LogisticRegression:
        return LogisticRegression(C=self.C, max_iter=self.max_iter, class_weight="balanced")

    def _threshold(self, X: np.ndarray, y: np.ndarray) -> float:
        folds = min(5, int(y.sum()), int(len(y) - y.sum()))
        if folds < 2:
            return 0.5
        oof = np.zeros(len(y))
        for train, test in StratifiedKFold(n_splits=folds, shuffle=True, random_state=0).split(X, y):
            oof[test] = self._new_lr().fit(X[train], y[train]).predict_proba(X[test])[:, 1]
        candidates = np.unique(np.concatenate([[0.5], (np.sort(oof)[1:] + np.sort(oof)[:-1]) / 2]))
        best, best_key = 0.5, (-1.0, 0.0)
        for t in candidates:
            pred = oof >= t
            tp = int((pred & (y == 1)).sum())
            f1 = 2 * tp / max(1, int(pred.sum()) + int(y.sum()))
            key = (round(f1, 9), -abs(t - 0.5))
            if key > best_key:
                best, best_key = float(t), key
        return float(np.clip(best, 0.01, 0.99))

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        check_is_fitted(self, "coef_", msg="This MultiLabelHead is not fitted yet: call fit(X, Y) first.")
        return np.asarray(X, dtype=np.float64) @ self.coef_.T + self.intercept_

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-self.decision_function(X)))

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Indicator matrix: 1 where a label's probability reaches its threshold."""
        return (self.predict_proba(X) >= self.thresholds_).astype(int)

    @property
    def thresholds(self) -> dict[str, float]:
        check_is_fitted(self, "thresholds_")
        return {str(label): float(t) for label, t in zip(self.classes_, self.thresholds_)}

    def to_arrays(self) -> dict[str, np.ndarray]:
        check_is_fitted(self, "coef_")
        return {"coef": self.coef_.astype(np.float32), "intercept": self.intercept_.astype(np.float32)}

    def to_config(self) -> dict[str, Any]:
        check_is_fitted(self, "coef_")
        return {"C": self.C, "classes": [str(c) for c in self.classes_], "thresholds": self.thresholds}

    @classmethod
    def from_saved(cls, config: dict[str, Any], arrays: dict[str, np.ndarray]) -> MultiLabelHead:
        labels = list(config["classes"])
        head = cls(labels=labels, C=float(config["C"]))
        head.classes_ = np.array(labels, dtype=object)
        head.coef_ = np.asarray(arrays["coef"], dtype=np.float64)
        head.intercept_ = np.asarray(arrays["intercept"], dtype=np.float64)
        head.thresholds_ = np.array([float(config["thresholds"][label]) for label in labels])
        if head.coef_.ndim != 2 or head.coef_.shape[0] != len(labels) or head.intercept_.shape != (len(labels),):
            raise ValueError(f"saved head does not match its labels: coef {head.coef_.shape}, "
                             f"intercept {head.intercept_.shape}, {len(labels)} labels")
        head.n_features_in_ = head.coef_.shape[1]
        return head


def indicator(examples: Sequence[MultiLabelExample], labels: Sequence[str]) -> np.ndarray:
    index = {label: k for k, label in enumerate(labels)}
    Y = np.zeros((len(examples), len(labels)), dtype=int)
    for i, e in enumerate(examples):
        for label in e.labels:
            if label in index:
                Y[i, index[label]] = 1
    return Y


def fit_head(data: TrainingData, X: np.ndarray):
    if data.multi_label:
        labels = data.labels
        return MultiLabelHead(labels=labels).fit(X, indicator(data.examples, labels))
    return FewShotClassifier().fit(X, [e.label for e in data.examples])


# ----------------------------------------------------------------------------------------------
# Metrics


def single_label_metrics(y_true: Sequence[str], y_pred: Sequence[str], labels: Sequence[str]) -> dict:
    """Accuracy, macro precision / recall / F1, a per-label table and the confusion matrix (rows: true)."""
    from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support

    labels = list(labels)
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    mp, mr, mf, _ = precision_recall_fscore_support(y_true, y_pred, labels=labels, average="macro", zero_division=0)
    return {
        "n": len(y_true),
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_precision": float(mp), "macro_recall": float(mr), "macro_f1": float(mf),
        "per_label": {label: {"precision": float(p[k]), "recall": float(r[k]), "f1": float(f[k]), "support": int(s[k])}
                      for k, label in enumerate(labels)},
        "confusion_matrix": {"labels": labels,
                             "matrix": confusion_matrix(y_true, y_pred, labels=labels).tolist()},
    }


def multi_label_metrics(Y_true: np.ndarray, Y_pred: np.ndarray, labels: Sequence[str]) -> dict:
    """Micro and macro F1, exact-match ratio, Hamming loss, per-label precision / recall / F1."""
    from sklearn.metrics import accuracy_score, f1_score, hamming_loss, precision_recall_fscore_support

    p, r, f, s = precision_recall_fscore_support(Y_true, Y_pred, zero_division=0)
    return {
        "n": int(len(Y_true)),
        "micro_f1": float(f1_score(Y_true, Y_pred, average="micro", zero_division=0)),
        "macro_f1": float(f1_score(Y_true, Y_pred, average="macro", zero_division=0)),
        "exact_match": float(accuracy_score(Y_true, Y_pred)),
        "hamming_loss": float(hamming_loss(Y_true, Y_pred)),
        "per_label": {label: {"precision": float(p[k]), "recall": float(r[k]), "f1": float(f[k]), "support": int(s[k])}
                      for k, label in enumerate(labels)},
    }


def evaluate_head(head, X: np.ndarray, data: TrainingData, labels: Sequence[str]) -> dict:
    if data.multi_label:
        return multi_label_metrics(indicator(data.examples, labels), head.predict(X), labels)
    return single_label_metrics([e.label for e in data.examples], [str(p) for p in head.predict(X)], labels)


# ----------------------------------------------------------------------------------------------
# One training at a time


_PROCESS_LOCK = threading.Lock()
_RUNNING: dict[str, Any] = {}


class TrainingLock:
    """A process-wide lock plus a lock file in the models folder (other processes: CLI, page, server)."""

    def __init__(self, directory: Path, name: str) -> None:
        self.path = directory / LOCK_NAME
        self.name = name

    def __enter__(self) -> TrainingLock:
        if not _PROCESS_LOCK.acquire(blocking=False):
            raise TrainingBusyError(_busy_message(_RUNNING))
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._take_file()
        except BaseException:
            _PROCESS_LOCK.release()
            raise
        _RUNNING.update(name=self.name, started=now_iso(), pid=os.getpid())
        return self

    def _take_file(self) -> None:
        record = json.dumps({"pid": os.getpid(), "name": self.name, "started": now_iso()})
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                try:
                    other = json.loads(self.path.read_text(encoding="utf-8"))
                except (OSError, json.JSONDecodeError, UnicodeDecodeError):
                    other = {}
                if _alive(other.get("pid")):
                    raise TrainingBusyError(_busy_message(other)) from None
                self.path.unlink(missing_ok=True)  # left by a process that died: stale
                continue
            with os.fdopen(fd, "w") as f:
                f.write(record)
            return
        raise TrainingBusyError(f"could not take the training lock {self.path}; delete it if no training is running")

    def __exit__(self, *exc: object) -> None:
        _RUNNING.clear()
        self.path.unlink(missing_ok=True)
        _PROCESS_LOCK.release()


def _alive(pid: Any) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _busy_message(running: dict) -> str:
    what = f" (model {running['name']!r}, started {running.get('started', '?')})" if running.get("name") else ""
    return f"a training is already running{what}: wait for it to finish or cancel it, then try again"


def is_training() -> bool:
    """Whether this process is training now (the page disables its Train button)."""
    return _PROCESS_LOCK.locked()


# ----------------------------------------------------------------------------------------------
# train()


def train(data: Any, name: str, *, base_model: str = "small", multi_label: bool | None = None,
          validation: Any = None, settings: TrainingSettings | None = None,
          progress: ProgressCallback | None = None, cancel: CancelFlag | None = None,
          directory: Path | None = None) -> ModelInfo:
    """Train a custom model and save it under ``name``; returns its ``ModelInfo`` (metrics included).

    Parameters
    ----------
    data : path to a CSV (single-label) or JSONL (multi-label) file, or a list of ``Example`` /
        ``MultiLabelExample``. At least 40 examples, 2 labels, 5 examples per label.
    name : str
        Letters, digits, ``-`` and ``_``; must not exist yet.
    base_model : {"small", "large"}
    multi_label : bool or None
        None decides from the file suffix or the list's items.
    validation : same kinds as ``data``, optional
        Scored on; without it a stratified ``settings.validation_fraction`` is held out (seed fixed).
    progress : callable taking a ``TrainingProgress``, optional
    cancel : threading.Event or callable returning bool, optional
        Checked before every step; raises ``TrainingCancelled`` and saves nothing.

    The saved model is trained on the training part only, so its scores are honest ones.

    >>> info = train("tickets.csv", "support-topics")
    >>> info.metrics["trained"]["accuracy"], info.metrics["baseline"]["accuracy"]
    """
    settings = settings or TrainingSettings()
    if not isinstance(settings, TrainingSettings):
        raise TypeError(f"settings must be a TrainingSettings, got {type(settings).__name__}")
    if base_model not in BASE_MODELS:
        raise ValidationError(f"base_model must be one of {', '.join(BASE_MODELS)} - received {base_model!r}")
    validate_model_name(name)
    directory = directory or models_dir()
    if (directory / name).exists():
        raise ValidationError(f"a model named {name!r} already exists in {directory}: delete it or pick another name")
    started = time.monotonic()

    def report(phase: str, step: int, total: int, left: float | None, message: str) -> None:
        if progress is not None:
            progress(TrainingProgress(phase, step, total, time.monotonic() - started, left, message))

    everything = load_training_data(data, multi_label=multi_label)
    check_training_data(everything)
    warnings: list[str] = []
    if validation is not None:
        valid = load_training_data(validation, multi_label=everything.multi_label, what="validation")
        warnings += check_validation_data(valid, everything)
        train_part = everything
        validation_info = {"source": "file", "file": valid.source, "n": len(valid.examples)}
    else:
        train_part, valid = split_data(everything, settings.validation_fraction, settings.seed)
        validation_info = {"source": "split", "fraction": settings.validation_fraction, "seed": settings.seed,
                           "n": len(valid.examples)}
    labels = everything.labels
    total = total_steps(len(train_part.examples), settings)

    with TrainingLock(directory, name):
        remove_leftovers(directory)  # temp folders of a save that was killed (kill -9, power cut)
        report("checking", 0, total, None, f"{len(train_part.examples)} training and {len(valid.examples)} "
               f"validation examples; loading the {base_model} model")
        tune_started = time.monotonic()

        def on_step(step: int, steps: int, loss: float) -> None:
            per_step = (time.monotonic() - tune_started) / step
            report("tuning", step, steps, per_step * (steps - step), f"contrastive tuning, step {step}/{steps} "
                   f"(loss {loss:.4f})")

        body = tune_body(train_part, base_model, settings, on_step=on_step, cancel=cancel)
        tune_seconds = time.monotonic() - tune_started
        if _cancelled(cancel):
            raise TrainingCancelled("training cancelled: nothing was saved")
        report("head", total, total, None, "fitting the classification head on the tuned embeddings")
        X_train = embed_with(body, [e.text for e in train_part.examples])
        head = fit_head(train_part, X_train)
        report("evaluating", total, total, None, "scoring the trained model and the plain few-shot baseline")
        trained = evaluate_head(head, embed_with(body, [e.text for e in valid.examples]), valid, labels)
        base = get_encoder(base_model, precision="fp32")  # same precision as the tuned body here
        base_head = fit_head(train_part, base.embed([e.text for e in train_part.examples]))
        baseline = evaluate_head(base_head, base.embed([e.text for e in valid.examples]), valid, labels)
        if _cancelled(cancel):
            raise TrainingCancelled("training cancelled: nothing was saved")
        report("saving", total, total, None, f"saving to {directory / name}")
        n_pairs = pair_count(len(train_part.examples), settings)
        metrics = {
            "validation": validation_info,
            "trained": trained,
            "baseline": baseline,
            "training_seconds": round(time.monotonic() - started, 1),
            "tuning_seconds": round(tune_seconds, 1),
            "n_pairs": n_pairs,
            "steps": total,
            "warnings": warnings,
        }
        model_type = "multi-label" if everything.multi_label else "single-label"
        config = {
            "type": model_type,
            "base_model": base_model,
            "base_model_id": BASE_MODELS[base_model].hub_id,
            "labels": [str(c) for c in head.classes_],
            "thresholds": head.thresholds if everything.multi_label else {},
            "head": head.to_config(),
            "metrics": metrics,
            "n_examples": len(everything.examples),
            "n_train": len(train_part.examples),
            "created": now_iso(),
            "training": {**settings.to_dict(), "method": "setfit (contrastive CosineSimilarityLoss + head)",
                         "source": everything.source},
        }
        info = save_model(name, config=config, head_arrays=head.to_arrays(),
                          write_body=lambda path: body.save(str(path), safe_serialization=True),
                          directory=directory)
        report("done", total, total, 0.0, f"saved model {name!r}")
    return info


# ----------------------------------------------------------------------------------------------
# Terminal


def format_metrics(metrics: dict) -> str:
    """The trained-vs-baseline table for a terminal."""
    trained, baseline = metrics.get("trained", {}), metrics.get("baseline", {})
    keys = ["accuracy", "macro_precision", "macro_recall", "macro_f1"] if "accuracy" in trained else \
        ["micro_f1", "macro_f1", "exact_match", "hamming_loss"]
    v = metrics.get("validation", {})
    where = f"{v.get('n')} held-out examples ({v.get('source')})"
    lines = [f"on {where}:", f"  {'metric':<16}{'trained':>10}{'few-shot':>10}"]
    lines += [f"  {k:<16}{trained.get(k, float('nan')):>10.3f}{baseline.get(k, float('nan')):>10.3f}" for k in keys]
    lines.append(f"  {'label':<16}{'F1 trained':>12}{'F1 few-shot':>13}{'support':>9}")
    for label, row in trained.get("per_label", {}).items():
        b = baseline.get("per_label", {}).get(label, {})
        lines.append(f"  {label[:15]:<16}{row['f1']:>12.3f}{b.get('f1', float('nan')):>13.3f}{row['support']:>9}")
    return "\n".join(lines)


def run_training_cli(args) -> int:
    """``python -m playground train FILE --name NAME [--multi-label] …``: progress on stderr, info JSON on stdout."""
    overrides = {key: getattr(args, key) for key in ("epochs", "max_pairs", "batch_size")
                 if getattr(args, key, None) is not None}
    try:
        settings = TrainingSettings(**overrides)
    except ValueError as exc:
        raise ValidationError(str(exc)) from None
    multi_label = True if args.multi_label else None
    if multi_label is None and str(args.data).lower().endswith((".jsonl", ".ndjson")):
        multi_label = True
    tty = sys.stderr.isatty()
    last = {"shown": -1.0}
    try:  # our own progress line replaces the libraries' bars
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    except ImportError:  # pragma: no cover - transformers is pinned
        pass

    def show(p: TrainingProgress) -> None:
        left = f", ~{p.seconds_left:.0f}s left" if p.seconds_left is not None else ""
        line = f"[{p.phase}] {p.step}/{p.total} steps{left} · {p.message}"
        if tty:
            sys.stderr.write("\r\033[K" + line)
            if p.phase == "done":
                sys.stderr.write("\n")
        elif p.phase != "tuning" or p.step == p.total or time.monotonic() - last["shown"] > 5:
            sys.stderr.write(line + "\n")
            last["shown"] = time.monotonic()
        sys.stderr.flush()

    try:
        info = train(args.data, args.name, base_model=args.base, multi_label=multi_label,
                     validation=args.validation, settings=settings, progress=show)
    except (TrainingBusyError, TrainingCancelled) as exc:
        print(f"\nerror: {exc}", file=sys.stderr)
        return 2
    print(format_metrics(info.metrics), file=sys.stderr)
    json.dump(info.to_dict(), sys.stdout, ensure_ascii=False, indent=2)
    sys.stdout.write("\n")
    return 0
