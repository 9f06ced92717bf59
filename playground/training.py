"""Custom models: SetFit's method with sentence-transformers, then a head, saved by the store.

SetFit (Tunstall et al., 2022) in two steps: (1) contrastive fine-tuning of the sentence
encoder on pairs drawn from the examples (same label → cosine 1, different → 0;
``CosineSimilarityLoss``, SetFit's default), (2) a classification head on the tuned
embeddings: the few-shot ``FewShotClassifier`` for single-label data, ``MultiLabelHead``
(one-vs-rest logistic regression with a per-label threshold) for multi-label data; both live in
``classifier.py``, scores in ``metrics.py``, the folder and the training lock in ``store.py``.
This module imports the store, never the engine.

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

import math
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.model_selection import train_test_split

from ._files import now_iso
from .classifier import FewShotClassifier, Head, MultiLabelHead, indicator
from .data import DataFileError, MultiLabelExample, decode_text, is_jsonl, read_examples_csv, read_multilabel_jsonl
from .embeddings import BASE_MODELS, get_encoder, model_path
from .metrics import multi_label_metrics, single_label_metrics
from .store import ModelInfo, TrainingLock, models_dir, remove_leftovers, save_model, validate_model_name
from .validation import ValidationError, as_example

MIN_TRAIN_EXAMPLES = 40
MIN_TRAIN_LABELS = 2
MIN_TRAIN_PER_LABEL = 5
SETFIT_PAIRS_PER_EXAMPLE = 40
"""SetFit's default (20 iterations × a positive and a negative pair per example), before the cap."""


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

    ``multi_label=None`` decides from the file suffix (``data.is_jsonl``: ``.jsonl`` / ``.json`` /
    ``.ndjson`` → multi-label) or from the list's items (``MultiLabelExample`` → multi-label).
    """
    if isinstance(data, (str, Path, bytes)):
        path = None if isinstance(data, bytes) else Path(data)
        if multi_label is None:
            if path is None:
                raise ValidationError(f"{what} data given as bytes: say multi_label=True (JSONL) or False (CSV)")
            multi_label = is_jsonl(path.name)
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
    The one place that tunes: ``train`` only needs a ``SentenceTransformer`` back, so another
    tuning method can replace this function without touching the rest of the module.
    """
    import torch  # heavy: loaded when a training starts, not when the package is imported
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
# The head on tuned embeddings, and its scores


def fit_head(data: TrainingData, X: np.ndarray) -> Head:
    """``FewShotClassifier`` for single-label data, ``MultiLabelHead`` for multi-label (classifier.py)."""
    if data.multi_label:
        labels = data.labels
        return MultiLabelHead(labels=labels).fit(X, indicator(data.examples, labels))
    return FewShotClassifier().fit(X, [e.label for e in data.examples])


def evaluate_head(head: Head, X: np.ndarray, data: TrainingData, labels: Sequence[str]) -> dict:
    """The head's scores on ``data`` (embedded as ``X``), as ``metrics`` computes them."""
    if data.multi_label:
        return multi_label_metrics(indicator(data.examples, labels), head.predict(X), labels)
    return single_label_metrics([e.label for e in data.examples], [str(p) for p in head.predict(X)], labels)


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
