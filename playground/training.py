"""Custom models: tune the encoder on the user's examples (``tuning.py``), fit a head, score it honestly.

SetFit's idea (Tunstall et al., 2022), made fast enough for a page: (1) tune the encoder so
same-label examples move together (``playground.tuning``: the frozen lower layers run once, only
the top layers train, a step count fixed before the first step, label names as extra examples when
out-of-fold accuracy says they help); (2) a head on the tuned embeddings:
``FewShotClassifier`` for single-label data, ``MultiLabelHead`` for multi-label data (both in
``classifier.py``, scores in ``metrics.py``, folders and the training lock in ``store.py``).

The saved model learns from every example. Its scores come from cross-validation of the whole
recipe (each fold tunes its own copy without the fold it is scored on, for half the steps: ``fold_steps``;
in worker processes beside the final tuning when CPUs are idle: ``processes.py``) or from a validation file,
beside the untuned head on the same folds; when they say tuning did not help, the untuned model is kept, and
when they tie, a blend of the two (``guard_decision``).
Classify's rules apply: 2 labels, 2 examples each.

Why not the ``setfit`` library: it needs ``datasets``, ``evaluate`` and ``accelerate``, tunes every
layer on pairs (minutes on a CPU), and saves its head with ``joblib`` (pickle), which this project
refuses. This module imports the store, never the engine.
"""

from __future__ import annotations

import copy
import hashlib
import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args

import numpy as np

from ._files import cache_dir, now_iso
from .classifier import FewShotClassifier, Head, MultiLabelHead, indicator, kfold_splits, stratified_folds
from .data import DataFileError, MultiLabelExample, decode_text, is_jsonl, read_examples_csv, read_multilabel_jsonl
from .embeddings import BASE_MODELS, model_path
from .metrics import multi_label_metrics, single_label_metrics
from .processes import JobsStopped, WorkersUnavailable, run_in_processes
from .store import (
    ModelInfo,
    TrainingLock,
    delete_model,
    models_dir,
    remove_leftovers,
    save_model,
    validate_model_name,
)
from .validation import (
    LABEL_NAME_MODES,
    MIN_EXAMPLES_PER_LABEL,
    MIN_LABELS,
    LabelNamesMode,
    ValidationError,
    as_example,
    check_float,
    check_int,
)
from .windows import combine_windows, max_windows_setting, window_texts

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

    from .tuning import TuningReport, TuningSettings

MIN_TRAIN_LABELS = MIN_LABELS
MIN_TRAIN_PER_LABEL = MIN_EXAMPLES_PER_LABEL
"""The same rules as classify: any example set that classify accepts can be tuned on."""


class TrainingCancelled(RuntimeError):
    """The user cancelled; nothing was saved."""


KeepChoice = Literal["best", "tuned"]
KEEP_CHOICES: tuple[str, ...] = get_args(KeepChoice)
LongTexts = Literal["END", "WINDOWS"]
"""How the head and scores read an example over the window: cut (END), or all of its windows (WINDOWS, ``windows.py``)."""
LONG_TEXT_CHOICES: tuple[str, ...] = get_args(LongTexts)


@dataclass(frozen=True)
class TrainingSettings:
    """How a custom model is trained; saved in the model's config.

    Parameters
    ----------
    steps : int or None, default=None
        Tuning steps (each on all examples, or on a label-stratified sample when they are many). None:
        the recipe's (40; ``tuning.RECIPES``). Fixed before tuning starts: the same examples give the
        same model on any machine, busy or not.
    time_budget_s : float or None, default=None
        Optional cap on the seconds of the final tuning: it stops early when the planned steps would not
        fit, and the folds then tune half its step count. The result then follows the machine's speed.
    use_label_names : {"auto", "always", "never"}, default="auto"
        Label names (and descriptions) as extra training texts; "auto" uses them only when they
        raise the out-of-fold accuracy on your examples.
    cv_folds : int, default=2
        Folds for the honest before/after scores (each fold tunes a copy on the other folds, for half the
        final tuning's steps: ``fold_steps``);
        0 skips them. Ignored when a validation file is given: it is scored instead. 2, not 3: on every
        small draw of the benchmark (55) the guard kept as good a model either way, and the wait is a
        quarter to a third shorter (docs/TUNING_RECIPE.md, "The guard, measured" and "Time").
    max_seq_length : int, default=128
        Tokens per text while tuning (longer texts are cut; classifying keeps the model's limit).
    seed : int, default=42
    num_threads : int or None, default=None
        Torch threads while tuning (None: on idle CPUs the folds run in worker processes beside the final
        tuning, one thread each; a number runs them one after another here).
    keep : {"best", "tuned"}, default="best"
        "best": when the honest scores say the tuned model is worse than the untuned one, the untuned model
        is kept; when they tie, a blend of the two (the reason said, with both scores). "tuned": keep the
        tuned one anyway.
    long_texts : {"END", "WINDOWS"}, default="END"
        How the head and the honest scores read an example over the model's window: "WINDOWS" as
        ``truncate="WINDOWS"`` does (all of it, in windows of the model's length, averaged; classify such a
        model with that ``truncate``), "END" cut. Either way the encoder tunes on each example's first
        ``max_seq_length`` pieces: tuning it on every window of a long example scored lower (small, imdb,
        5 seeds: 67.8 against 69.5 at N = 8, 74.7 against 79.8 at N = 64; docs/BENCHMARKS.md, "Long texts,
        tuned").

    >>> TrainingSettings(steps=20, cv_folds=0)
    """

    steps: int | None = None
    time_budget_s: float | None = None
    use_label_names: LabelNamesMode = "auto"
    cv_folds: int = 2
    max_seq_length: int = 128
    seed: int = 42
    num_threads: int | None = None
    keep: KeepChoice = "best"
    long_texts: LongTexts = "END"

    def __post_init__(self) -> None:
        if self.steps is not None:
            check_int("steps", self.steps, 1, 100_000)
        if self.time_budget_s is not None:
            check_float("time_budget_s", self.time_budget_s, 0.0, 86_400.0)
        if self.use_label_names not in LABEL_NAME_MODES:
            raise ValueError(f"use_label_names must be one of {', '.join(LABEL_NAME_MODES)}. "
                             f"But it was: {self.use_label_names!r}")
        if not (type(self.cv_folds) is int and (self.cv_folds == 0 or 2 <= self.cv_folds <= 20)):  # never False, 0.0
            raise ValueError(f"cv_folds must be 0 (no scores) or an integer from 2 to 20. But it was: {self.cv_folds!r}")
        check_int("max_seq_length", self.max_seq_length, 8, 512)
        check_int("seed", self.seed, 0, 2**32 - 1)
        if self.num_threads is not None:
            check_int("num_threads", self.num_threads, 1, 256)
        if self.keep not in KEEP_CHOICES:
            raise ValueError(f"keep must be one of {', '.join(KEEP_CHOICES)}. But it was: {self.keep!r}")
        if self.long_texts not in LONG_TEXT_CHOICES:
            raise ValueError(f"long_texts must be one of {', '.join(LONG_TEXT_CHOICES)}. But it was: {self.long_texts!r}")

    @property
    def windows(self) -> bool:
        return self.long_texts == "WINDOWS"

    def tuning(self, *, steps: int | None = None, threads: int | None = None) -> TuningSettings:
        """The encoder tuning these settings ask for. ``steps`` fixes the step count and drops the time cap (the
        folds of a capped run tune half the final tuning's count); ``threads`` overrides ``num_threads``."""
        from .tuning import TuningSettings  # heavy: tuning imports torch, which --help and listing never need

        return TuningSettings(steps=steps if steps is not None else self.steps,
                              time_budget_s=None if steps is not None else self.time_budget_s,
                              use_label_names=self.use_label_names, max_seq_length=self.max_seq_length,
                              seed=self.seed, threads=threads or self.num_threads)

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
    """One progress report: ``phase`` is checking | tuning | cross-validating | saving | done."""

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
    descriptions: dict[str, str] = field(default_factory=dict)
    """{label: description} from a CSV's optional ``description`` column."""

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
        return TrainingData(parsed.examples, [f"row {n}" for n in parsed.rows], False, source, parsed.descriptions)
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

    Classify's rules: at least 2 labels, at least 2 examples per label (multi-label: each label on
    at least 2 examples, and not on every one); no empty text; no text twice (and, single-label,
    no text with two labels).
    """
    problems: list[str] = []
    ex, where = data.examples, data.where
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
        if everywhere:
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


def stratum_keys(data: TrainingData) -> list[str]:
    """What folds are stratified on: the label, or (multi-label) each example's rarest label."""
    if not data.multi_label:
        return [e.label for e in data.examples]
    counts = Counter(label for e in data.examples for label in e.labels)
    keys = [min(e.labels, key=lambda label: (counts[label], label)) if e.labels else "" for e in data.examples]
    key_counts = Counter(keys)
    return [k if key_counts[k] >= 2 else "<rare>" for k in keys]


def fold_indices(data: TrainingData, folds: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Stratified ``(train, test)`` index pairs; ``folds`` is lowered to the smallest stratum (at least 2)."""
    keys = stratum_keys(data)
    smallest = min(Counter(keys).values())
    k = max(2, min(folds, smallest))
    return stratified_folds(np.asarray(keys), k, seed=seed) if smallest >= 2 else kfold_splits(len(keys), k, seed=seed)


def subset(data: TrainingData, idx: Iterable[int]) -> TrainingData:
    idx = list(idx)
    return TrainingData([data.examples[i] for i in idx], [data.where[i] for i in idx], data.multi_label, data.source)


# ----------------------------------------------------------------------------------------------
# Tuning the encoder (playground.tuning) and the head on its embeddings


def _cancelled(cancel: CancelFlag | None) -> bool:
    if cancel is None:
        return False
    if isinstance(cancel, threading.Event):
        return cancel.is_set()
    return bool(cancel())


def load_base(base_model: str) -> SentenceTransformer:
    """A fresh copy of a base encoder to tune, never the shared one of ``get_encoder``."""
    from sentence_transformers import SentenceTransformer  # heavy: only when a tuning starts

    return SentenceTransformer(str(model_path(base_model)), device="cpu", local_files_only=True)


def tune_body(body: SentenceTransformer, data: TrainingData, tuning: TuningSettings, *,
              descriptions: dict[str, str] | None = None,
              on_step: Callable[[int, int, float], None] | None = None,
              cancel: CancelFlag | None = None) -> TuningReport:
    """Tune ``body`` in place on ``data`` (playground.tuning: cached lower layers, top layers trained).

    ``on_step(step, total_steps, seconds_left)``; a cancel raises ``TrainingCancelled``. An example longer
    than ``tuning.max_seq_length`` tunes with its start, whatever ``long_texts`` says: giving the encoder
    every window of it, each with the example's label, scored lower (docs/BENCHMARKS.md, "Long texts, tuned").
    """
    from .tuning import TuningCancelled, tune_encoder  # heavy: torch

    labels = [list(e.labels) if data.multi_label else e.label for e in data.examples]
    texts = [e.text for e in data.examples]
    try:
        return tune_encoder(body, texts, labels, settings=tuning,
                            label_descriptions=descriptions,
                            progress=None if on_step is None else
                            (lambda p: on_step(p.step, p.total_steps, p.seconds_left)),
                            should_stop=None if cancel is None else (lambda: _cancelled(cancel)))
    except TuningCancelled:
        raise TrainingCancelled("training cancelled: nothing was saved") from None


def embed_with(model, texts: Sequence[str], batch_size: int = 64, *, windows: bool = False) -> np.ndarray:
    """Embeddings as the store's ``Encoder`` makes them (L2-normalised float32); ``windows``: as it makes them under
    ``truncate="WINDOWS"`` (a long text's windows of the model's length, embedded together, token-weighted mean)."""
    if not windows:
        return model.encode(list(texts), batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True,
                            show_progress_bar=False).astype(np.float32, copy=False)
    cut = [window_texts(model.tokenizer, text, limit=int(model.max_seq_length) - 2, max_windows=max_windows_setting())
           for text in texts]
    pieces = embed_with(model, [part for parts, _ in cut for part in parts], batch_size)
    out, at = np.empty((len(texts), pieces.shape[1]), dtype=np.float32), 0
    for i, (parts, tokens) in enumerate(cut):
        out[i] = pieces[at] if len(parts) == 1 else combine_windows(pieces[at:at + len(parts)], tokens)
        at += len(parts)
    return out


# ----------------------------------------------------------------------------------------------
# The head on tuned embeddings, and its scores


def fit_head(data: TrainingData, X: np.ndarray) -> Head:
    """``FewShotClassifier`` for single-label data, ``MultiLabelHead`` for multi-label (classifier.py)."""
    if data.multi_label:
        labels = data.labels
        return MultiLabelHead(labels=labels).fit(X, indicator(data.examples, labels))
    return FewShotClassifier().fit(X, [e.label for e in data.examples])


# ----------------------------------------------------------------------------------------------
# tune(): a tuned model in memory, with honest scores; train(): tune() and save it by name


MODEL_CHOICES: tuple[str, ...] = ("tuned", "untuned", "blended")
"""What a tuning can answer with: the tuned encoder, the untuned one, or (made when the honest scores tie) a
blend of the two (``guard_decision``)."""


@dataclass
class TunedModel:
    """A tuned encoder and its head, not saved yet, with the untuned model (and, on a tie, a blend) beside it.

    ``config["metrics"]["guard"]`` says which the honest scores keep (``choice``: "tuned", "untuned" or
    "blended", and why); ``chosen()`` is that pair, which ``train`` and ``save_tuned`` save, and
    ``with_choice`` lets the user overrule it. ``train`` saves one by name; the Classify page keeps one per grid.
    """

    body: SentenceTransformer
    head: Head
    config: dict[str, Any]
    base: SentenceTransformer | None = None
    base_head: Head | None = None
    blend: SentenceTransformer | None = None
    blend_head: Head | None = None

    @property
    def metrics(self) -> dict[str, Any]:
        return self.config["metrics"]

    @property
    def guard(self) -> dict[str, Any]:
        return self.metrics.get("guard") or {"choice": "tuned"}

    @property
    def choices(self) -> list[str]:
        """The models this tuning can answer with (the untuned one and the blend only when kept)."""
        return (["tuned"] + (["untuned"] if self.base is not None else [])
                + (["blended"] if self.blend is not None else []))

    @property
    def choice(self) -> str:
        choice = self.guard.get("choice")
        return choice if choice in self.choices else "tuned"

    def chosen(self) -> tuple[SentenceTransformer, Head]:
        """(encoder, head) of the model the guard keeps."""
        if self.choice == "untuned":
            return self.base, self.base_head  # type: ignore[return-value]
        if self.choice == "blended":
            return self.blend, self.blend_head  # type: ignore[return-value]
        return self.body, self.head

    def with_choice(self, choice: str) -> TunedModel:
        """The same tuning, keeping ``choice`` ("tuned", "untuned" or "blended") whatever the scores said."""
        if choice not in MODEL_CHOICES:
            raise ValueError(f"choice must be one of {', '.join(map(repr, MODEL_CHOICES))}. But it was: {choice!r}")
        if choice not in self.choices:
            made = "no untuned model" if choice == "untuned" else "no blend (one is made when the honest scores tie)"
            raise ValueError(f"this tuning kept {made} to choose")
        config = copy.deepcopy(self.config)
        config["metrics"]["guard"] = {**self.guard, "choice": choice, "chosen_by": "user"}
        return TunedModel(self.body, self.head, config, self.base, self.base_head, self.blend, self.blend_head)

    def saved_config(self) -> dict[str, Any]:
        """The config of the chosen model: its head, and "tuned": false when the untuned encoder is kept."""
        head = self.chosen()[1]
        return {**self.config, "head": head.to_config(), "labels": [str(c) for c in head.classes_],
                "thresholds": head.thresholds if isinstance(head, MultiLabelHead) else {},
                "tuned": self.choice != "untuned"}

    def write_body(self, path: Path) -> None:
        self.chosen()[0].save(str(path), safe_serialization=True)


def _predictions(head: Head, X: np.ndarray, labels: Sequence[str], multi_label: bool) -> np.ndarray:
    """Predictions as labels (single-label) or an indicator over ``labels`` (a fold may lack a label)."""
    predicted = head.predict(X)
    if not multi_label:
        return np.asarray([str(p) for p in predicted], dtype=object)
    out = np.zeros((len(X), len(labels)), dtype=int)
    for j, label in enumerate(head.classes_):
        out[:, labels.index(str(label))] = np.asarray(predicted)[:, j]
    return out


def _scores(data: TrainingData, predicted: np.ndarray, labels: Sequence[str],
            true_probability: np.ndarray | None = None) -> dict:
    """The metrics; single-label ones also carry ``log_loss`` (mean -log p(true label)) when given the
    probability each example's true label got, the guard's tie-breaker."""
    if data.multi_label:
        return multi_label_metrics(indicator(data.examples, labels), predicted, labels)
    out = single_label_metrics([e.label for e in data.examples], [str(p) for p in predicted], labels)
    if true_probability is not None:
        out["log_loss"] = float(-np.log(np.clip(true_probability, 1e-12, 1.0)).mean())
    return out


def _true_probability(head: Head, X: np.ndarray, truth: Sequence[str]) -> np.ndarray:
    classes = [str(c) for c in head.classes_]
    P = head.predict_proba(X)
    return np.asarray([P[i, classes.index(t)] if t in classes else 0.0 for i, t in enumerate(truth)])


def _fit_fold_head(part: TrainingData, X: np.ndarray) -> tuple[Head | None, list[str]]:
    """``fit_head`` on a fold's training part, and the labels it predicts on every held-out example.

    Multi-label: a label on every example of the part (the data has examples without it, but the fold
    left them all out) cannot be learnt as absent, so the head leaves it out and it is predicted present.
    """
    if not part.multi_label:
        return fit_head(part, X), []
    always = [label for label in part.labels if all(label in e.labels for e in part.examples)]
    rest = [label for label in part.labels if label not in always]
    head = MultiLabelHead(labels=rest).fit(X, indicator(part.examples, rest)) if rest else None
    return head, always


def _fold_predictions(fitted: tuple[Head | None, list[str]], X: np.ndarray, labels: Sequence[str],
                      multi_label: bool) -> np.ndarray:
    head, always = fitted
    out = np.zeros((len(X), len(labels)), dtype=int) if head is None else _predictions(head, X, labels, multi_label)
    for label in always:
        out[:, labels.index(label)] = 1
    return out


CV_SEED_TRIES = 10


def usable_folds(data: TrainingData, folds: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """``fold_indices`` whose every training part has at least 2 labels to tune on (the next seeds are
    tried when one does not: multi-label data with rare label sets); a ``ValidationError`` if none does."""
    for s in range(seed, seed + CV_SEED_TRIES):
        split = fold_indices(data, folds, s)
        if all(len(subset(data, train_idx).labels) >= MIN_TRAIN_LABELS for train_idx, _ in split):
            return split
    raise ValidationError(f"cross-validation found no split of these {len(data.examples)} examples into folds "
                          f"that each leave at least {MIN_TRAIN_LABELS} labels to tune on: add examples, "
                          "give a validation file, or set cv_folds=0 (no scores)")


@dataclass
class _FoldResult:
    test_idx: np.ndarray
    tuned: np.ndarray
    tuned_true_p: np.ndarray | None


def fold_steps(final_steps: int) -> int:
    """Steps each cross-validation fold tunes: half the final tuning's (at least 1).

    The folds only rank the tuned model against the untuned one; they need not tune as long as the final
    model does. On every benchmark draw (11 sets × 5 seeds, small and large) the guard kept as good a model
    with half the steps (small 71.41 against 71.39, large 78.03 against 77.99, none more than 2 points below
    untuned), and ``train`` on 16 examples waited 6-18% less (docs/TUNING_RECIPE.md, "Fewer steps per fold").
    """
    return max(1, (int(final_steps) + 1) // 2)


def _fold_job(base: SentenceTransformer, data: TrainingData, train_idx: np.ndarray, test_idx: np.ndarray,
              settings: TrainingSettings, steps: int | None, descriptions: dict[str, str] | None,
              on_step: Callable[[int, int, float], None], cancel: CancelFlag | None,
              threads: int | None, *, copy_base: bool = True) -> _FoldResult:
    """Tune a fresh copy of ``base`` (``base`` itself when ``copy_base`` is False) without the fold ``test_idx``
    and predict it. ``steps``: None tunes ``fold_steps`` of the settings' plan."""
    if steps is None:
        steps = fold_steps(settings.tuning().resolved(base).steps)  # type: ignore[arg-type]
    texts = [e.text for e in data.examples]
    part = subset(data, train_idx)
    body = copy.deepcopy(base) if copy_base else base
    tune_body(body, part, settings.tuning(steps=steps, threads=threads), descriptions=descriptions, cancel=cancel,
              on_step=on_step)
    fitted = _fit_fold_head(part, embed_with(body, [texts[i] for i in train_idx], windows=settings.windows))
    X_test = embed_with(body, [texts[i] for i in test_idx], windows=settings.windows)
    predicted = _fold_predictions(fitted, X_test, data.labels, data.multi_label)
    true_p = None
    if not data.multi_label and fitted[0] is not None:
        true_p = _true_probability(fitted[0], X_test, [data.examples[i].label for i in test_idx])
    return _FoldResult(test_idx, predicted, true_p)


def baseline_scores(X_base: np.ndarray, data: TrainingData,
                    folds: Sequence[tuple[np.ndarray, np.ndarray]]) -> dict:
    """The untuned head on the base encoder's embeddings, on the same folds: the guard's other side."""
    labels = data.labels
    shape = (len(data.examples), len(labels)) if data.multi_label else (len(data.examples),)
    plain = np.zeros(shape, dtype=int) if data.multi_label else np.empty(shape, dtype=object)
    true_p = np.zeros(len(data.examples))
    for train_idx, test_idx in folds:
        fitted = _fit_fold_head(subset(data, train_idx), X_base[train_idx])
        plain[test_idx] = _fold_predictions(fitted, X_base[test_idx], labels, data.multi_label)
        if not data.multi_label:
            true_p[test_idx] = _true_probability(fitted[0], X_base[test_idx],
                                                 [data.examples[i].label for i in test_idx])
    return _scores(data, plain, labels, None if data.multi_label else true_p)


def _tuned_scores(data: TrainingData, results: Sequence[_FoldResult]) -> dict:
    labels = data.labels
    shape = (len(data.examples), len(labels)) if data.multi_label else (len(data.examples),)
    tuned = np.zeros(shape, dtype=int) if data.multi_label else np.empty(shape, dtype=object)
    true_p = np.zeros(len(data.examples))
    for r in results:
        tuned[r.test_idx] = r.tuned
        if r.tuned_true_p is not None:
            true_p[r.test_idx] = r.tuned_true_p
    return _scores(data, tuned, labels, None if data.multi_label else true_p)


def cross_validate(base: SentenceTransformer, data: TrainingData, settings: TrainingSettings, steps: int | None = None,
                   *, descriptions: dict[str, str] | None = None,
                   on_fold: Callable[[int, int, int, int], None] | None = None,
                   cancel: CancelFlag | None = None) -> tuple[dict, dict, int]:
    """Out-of-fold scores of the tuned model and of the untuned head, on the same folds, one fold after another.

    Each fold tunes a fresh copy of ``base`` on the other folds (``steps`` steps, default ``fold_steps`` of the
    plan's), fits the head, and predicts the held-out fold. Returns (tuned scores, baseline scores, folds).
    ``on_fold(fold, folds, step, steps)`` reports progress. (``tune`` runs the folds side by side with the final
    tuning where CPUs are idle; this is the sequential form, for studies and tests.)
    """
    folds = usable_folds(data, settings.cv_folds, settings.seed)
    X_base = embed_with(base, [e.text for e in data.examples], windows=settings.windows)
    results = [
        _fold_job(base, data, train_idx, test_idx, settings, steps, descriptions,
                  (lambda step, total, left, k=k: on_fold(k, len(folds), step, total)) if on_fold else (lambda *a: None),
                  cancel, settings.num_threads)
        for k, (train_idx, test_idx) in enumerate(folds, start=1)
    ]
    return _tuned_scores(data, results), baseline_scores(X_base, data, folds), len(folds)


GUARD_TOLERANCE = 1e-9


def guard_decision(trained: dict, baseline: dict, keep: str, *, scored_on: str) -> dict[str, Any]:
    """Keep the tuned model only when the honest scores say it is better than the untuned one.

    Better: a higher accuracy (multi-label: micro-F1). Worse: the untuned model is kept. Level: a blend of the
    two ("blended": the tuned encoder part of the way back to the untuned one, ``tuning.blend_encoders``); on
    110 small draws (11 sets × 10 seeds) the blend on ties kept 0.38 points more than log-loss's pick of one of
    the two (docs/TUNING_RECIPE.md, "The guard, measured"). ``keep == "tuned"`` keeps the tuned model whatever
    the scores. Returns a JSON-safe dict: choice ("tuned", "untuned" or "blended"), chosen_by, metric, tuned,
    untuned (and the log-losses), message in plain words.
    """
    if not trained or not baseline:
        return {"choice": "tuned", "chosen_by": "no scores", "metric": None, "tuned": None, "untuned": None,
                "message": "Not scored (cross-validation was switched off), so the tuned model is used without a check "
                           "against the untuned one."}
    metric = "accuracy" if "accuracy" in trained else "micro_f1"
    name = "accuracy" if metric == "accuracy" else "micro-F1"
    t, u = float(trained[metric]), float(baseline[metric])
    scores = f"{scored_on} {name} {u:.0%} untuned, {t:.0%} tuned"
    out = {"metric": metric, "tuned": t, "untuned": u,
           "tuned_log_loss": trained.get("log_loss"), "untuned_log_loss": baseline.get("log_loss")}
    if t > u + GUARD_TOLERANCE:
        return {**out, "choice": "tuned", "chosen_by": "scores",
                "message": f"Tuning helped on your examples ({scored_on} {name} {u:.0%} untuned → {t:.0%} tuned), "
                           "so the tuned model is used."}
    if keep == "tuned":
        return {**out, "choice": "tuned", "chosen_by": "settings",
                "message": f"Tuning did not beat the untuned model ({scores}); the tuned model is kept as asked."}
    if t >= u - GUARD_TOLERANCE:
        return {**out, "choice": "blended", "chosen_by": "scores",
                "message": f"Tuning and the untuned model scored the same on your examples ({scores}), so a blend "
                           "of the two is used: the tuned encoder moved part of the way back to the untuned one. "
                           "You can still choose the tuned or the untuned one."}
    return {**out, "choice": "untuned", "chosen_by": "scores",
            "message": f"Tuning did not beat the untuned model on your examples ({scores}), so the untuned model is "
                       "kept. You can still choose the tuned one."}


def tune(data: Any, *, base_model: str = "small", multi_label: bool | None = None, validation: Any = None,
         settings: TrainingSettings | None = None, descriptions: dict[str, str] | None = None,
         progress: ProgressCallback | None = None, cancel: CancelFlag | None = None) -> TunedModel:
    """Tune the encoder on every example, fit the head, and score it honestly; nothing is saved.

    Parameters
    ----------
    data : path to a CSV (single-label) or JSONL (multi-label) file, or a list of ``Example`` /
        ``MultiLabelExample`` / (text, label) pairs. Classify's rules: 2 labels, 2 examples each.
    base_model : {"small", "large"}
    validation : same kinds as ``data``, optional
        Scored on (held out). Without it, ``settings.cv_folds`` folds cross-validate the whole recipe
        (each fold tunes its own copy); ``cv_folds=0`` skips the scores.
    descriptions : {label: description}, optional
        Extra words about each label, used with the label names while tuning.
    progress : callable taking a ``TrainingProgress``, optional
        Phases: checking, tuning, cross-validating, done; ``seconds_left`` estimates the whole call.
    cancel : threading.Event or callable returning bool, optional
        Checked at every step; raises ``TrainingCancelled``.

    The model learns from every example; the scores come from folds (or the validation file) that
    the scored copy never saw, next to the untuned model's on the same folds.

    >>> tuned = tune([("The order is 5 days late", "negative"), ...], base_model="small")
    >>> tuned.metrics["trained"]["accuracy"], tuned.metrics["baseline"]["accuracy"]
    """
    return _tune(_checked_inputs(data, base_model, multi_label, validation, settings, descriptions),
                 progress=progress, cancel=cancel)


@dataclass(frozen=True)
class _Inputs:
    """``tune``'s arguments, read and checked (so ``train`` can check them before it takes the lock)."""

    everything: TrainingData
    valid: TrainingData | None
    warnings: list[str]
    base_model: str
    settings: TrainingSettings
    descriptions: dict[str, str] | None


def _checked_inputs(data: Any, base_model: str, multi_label: bool | None, validation: Any,
                    settings: TrainingSettings | None, descriptions: dict[str, str] | None) -> _Inputs:
    settings = settings or TrainingSettings()
    if not isinstance(settings, TrainingSettings):
        raise TypeError(f"settings must be a TrainingSettings, got {type(settings).__name__}")
    if base_model not in BASE_MODELS:
        raise ValidationError(f"base_model must be one of {', '.join(BASE_MODELS)} - received {base_model!r}")
    everything = load_training_data(data, multi_label=multi_label)
    check_training_data(everything)
    given = {str(k): str(v) for k, v in (descriptions or {}).items() if str(v).strip()}
    descriptions = {**everything.descriptions, **given} or None  # the argument wins over the file's column
    strangers = sorted(set(descriptions or {}) - set(everything.labels))
    if strangers:
        raise ValidationError(f"descriptions name labels that no example has: {', '.join(map(repr, strangers))}; "
                              f"the labels are {', '.join(map(repr, everything.labels))}")
    warnings: list[str] = []
    valid = None
    if validation is not None:
        valid = load_training_data(validation, multi_label=everything.multi_label, what="validation")
        warnings += check_validation_data(valid, everything)
    elif settings.cv_folds:
        usable_folds(everything, settings.cv_folds, settings.seed)  # refused now, not after the tuning
    return _Inputs(everything, valid, warnings, base_model, settings, descriptions)


def _tune(inputs: _Inputs, *, progress: ProgressCallback | None, cancel: CancelFlag | None) -> TunedModel:
    """The final tuning on every example and, unless a validation file is scored, the cross-validation folds:
    the folds in worker processes beside the final tuning when CPUs are idle (``processes.py``: each its own
    core and its own random numbers, so the scores repeat exactly), else one after another here; then the
    head, the honest scores and the guard's choice."""
    from .tuning import TuningSettings, blend_encoders, idle_cpus, recipe_for, usable_cpus  # heavy: torch

    everything, valid, warnings = inputs.everything, inputs.valid, inputs.warnings
    base_model, settings, descriptions = inputs.base_model, inputs.settings, inputs.descriptions
    started = time.monotonic()

    def report(phase: str, step: int, total: int, left: float | None, message: str) -> None:
        if progress is not None:
            progress(TrainingProgress(phase, step, total, time.monotonic() - started, left, message))

    n = len(everything.examples)
    report("checking", 0, 1, None, f"{n} examples, {len(everything.labels)} labels; loading the {base_model} model")
    base = load_base(base_model)
    folds = [] if valid is not None or not settings.cv_folds else usable_folds(everything, settings.cv_folds,
                                                                                 settings.seed)
    plan = settings.tuning().resolved(base)  # type: ignore[union-attr]
    fold_plan = fold_steps(plan.steps)  # type: ignore[arg-type]
    # side by side: on 2 or more idle CPUs, and not when the user fixed the threads, nor under a time cap (the
    # folds then tune half the final tuning's step count, known only at its end). Every fold gets a worker process
    # at once, started before the base embeddings and the final tuning so that their start (importing torch,
    # reading the model: seconds) overlaps this process's work; measured on 2 cores, 2 workers for 3 folds left
    # the third fold to start, alone, after the other two
    side_by_side = (bool(folds) and settings.time_budget_s is None and settings.num_threads is None
                    and min(usable_cpus(), idle_cpus() + 0.3) >= 2)
    stop = threading.Event()  # set when one job fails, so the others stop at their next step

    def stopped() -> bool:
        return stop.is_set() or _cancelled(cancel)

    # progress: steps done over all jobs (the final tuning and the folds), paced by the steps done so far
    steps_done: dict[int, tuple[int, int]] = {}
    lock = threading.Lock()

    def on_step(job: int, step: int, total: int, _left: float) -> None:
        with lock:
            steps_done[job] = (step, total)
            done = sum(s for s, _ in steps_done.values())
            planned = sum(t for _, t in steps_done.values()) + sum(
                plan.steps if j == 0 else fold_plan for j in range(1 + len(folds)) if j not in steps_done)
            final_step, final_total = steps_done.get(0, (0, plan.steps))
            cv_done = sum(s for j, (s, _) in steps_done.items() if j)
            cv_planned = planned - final_total
        left = (time.monotonic() - tune_started) / max(done, 1) * (planned - done)
        if job == 0 or final_step < final_total:
            alongside = f" ({len(folds)} folds for the scores alongside: step {cv_done}/{cv_planned})" if aside else ""
            report("tuning", final_step, final_total, left,
                   f"tuning the encoder on all {n} examples, step {final_step}/{final_total}{alongside}")
        else:
            report("cross-validating", cv_done, cv_planned, left,
                   f"scoring on held-out examples: {len(folds)} folds, each tuned without its fold, "
                   f"step {cv_done}/{cv_planned}")

    tuning_report: list[TuningReport] = []

    def final_job(job_threads: int | None) -> None:
        tuning_report.append(tune_body(body, everything, settings.tuning(threads=job_threads), descriptions=descriptions,
                                       on_step=lambda s, t, left: on_step(0, s, t, left), cancel=stopped))

    def folds_here() -> list[_FoldResult]:
        steps = fold_steps(tuning_report[0].steps) if settings.time_budget_s is not None else None
        return [_fold_job(base, everything, train_idx, test_idx, settings, steps, descriptions,
                          lambda s, t, left, k=k: on_step(k, s, t, left), stopped, settings.num_threads)
                for k, (train_idx, test_idx) in enumerate(folds, start=1)]

    tune_started = time.monotonic()
    aside = None
    if side_by_side:  # the examples and settings cross to the workers as JSON, once for all folds
        data_json, settings_json = _data_json(everything), settings.to_dict()
        aside = _FoldsAside([(base_model, data_json, train_idx.tolist(), test_idx.tolist(), settings_json,
                              descriptions, k) for k, (train_idx, test_idx) in enumerate(folds, start=1)],
                            on_step, stop, stopped)
    try:
        X_base = embed_with(base, [e.text for e in everything.examples], windows=settings.windows)
        body = copy.deepcopy(base)
        final_job(1 if aside else settings.num_threads)
        fold_json = aside.results() if aside else None
        fold_results = None if fold_json is None else [_fold_result(v, everything.multi_label) for v in fold_json]
        parallel_jobs = 1 + len(folds) if fold_results is not None else 1
        if fold_results is None:  # one after another here (also when worker processes could not start)
            fold_results = folds_here()
    except BaseException as exc:
        stop.set()
        error = aside.ended() if aside else None
        if error is not None and isinstance(exc, TrainingCancelled) and not _cancelled(cancel):
            raise error from None  # a fold failed; the final tuning only stopped for it
        if isinstance(exc, TrainingCancelled):
            raise TrainingCancelled("training cancelled: nothing was saved") from None
        raise
    if _cancelled(cancel):
        raise TrainingCancelled("training cancelled: nothing was saved")
    tune_seconds = time.monotonic() - tune_started
    tuned_report = tuning_report[0]
    texts = [e.text for e in everything.examples]
    head = fit_head(everything, embed_with(body, texts, windows=settings.windows))
    base_head = fit_head(everything, X_base)
    labels = everything.labels
    if valid is not None:
        v_texts = [e.text for e in valid.examples]
        truth = None if valid.multi_label else [e.label for e in valid.examples]
        X_valid = embed_with(body, v_texts, windows=settings.windows)
        X_valid_base = embed_with(base, v_texts, windows=settings.windows)
        trained = _scores(valid, _predictions(head, X_valid, labels, valid.multi_label), labels,
                          None if truth is None else _true_probability(head, X_valid, truth))
        baseline = _scores(valid, _predictions(base_head, X_valid_base, labels, valid.multi_label), labels,
                           None if truth is None else _true_probability(base_head, X_valid_base, truth))
        validation_info = {"source": "file", "file": valid.source, "n": len(valid.examples)}
        scored_on = "held-out"
    elif folds:
        trained, baseline = _tuned_scores(everything, fold_results), baseline_scores(X_base, everything, folds)
        validation_info = {"source": "cross-validation", "folds": len(folds), "n": n}
        scored_on = "cross-validated"
    else:
        trained = baseline = {}
        validation_info = {"source": "none", "n": 0}
        scored_on = ""
    guard = guard_decision(trained, baseline, settings.keep, scored_on=scored_on)
    blend = blend_head = None
    if guard["choice"] == "blended":  # the tuned layers at the recipe's tie interpolation instead of its own
        tie_w = recipe_for(base).tie_interpolation
        applied = tuned_report.interpolation  # in (0, 1]: TuningSettings refuses 0
        blend = blend_encoders(base, body, min(1.0, tie_w / applied))
        blend_head = fit_head(everything, embed_with(blend, texts, windows=settings.windows))
        guard["blend_interpolation"] = min(tie_w, applied)
    metrics = {
        "validation": validation_info,
        "trained": trained,
        "baseline": baseline,
        "guard": guard,
        "training_seconds": round(time.monotonic() - started, 1),
        "tuning_seconds": round(tune_seconds, 1),
        "steps": tuned_report.steps,
        "parallel_jobs": parallel_jobs,
        "used_label_names": tuned_report.used_label_names,
        "warnings": warnings,
    }
    config = {
        "type": "multi-label" if everything.multi_label else "single-label",
        "base_model": base_model,
        "base_model_id": BASE_MODELS[base_model].hub_id,
        "labels": [str(c) for c in head.classes_],
        "thresholds": head.thresholds if everything.multi_label else {},
        "head": head.to_config(),
        "metrics": metrics,
        "n_examples": n,
        "n_train": n,
        "created": now_iso(),
        "tuned": True,
        "training": {**settings.to_dict(), "method": "tuned top layers over cached lower layers (playground.tuning) + head",
                     "source": everything.source, "descriptions": descriptions or {},
                     "tuning": tuned_report.to_dict(), "recipe": {k: v for k, v in plan.to_dict().items()
                                                                  if k in TuningSettings.__dataclass_fields__}},
    }
    report("done", 1, 1, 0.0, guard["message"])
    return TunedModel(body, head, config, base, base_head, blend, blend_head)


def _fold_in_worker(base_model: str, data: dict, train_idx: list[int], test_idx: list[int], settings: dict,
                    descriptions: dict[str, str] | None, k: int, *, report: Callable[..., None]) -> dict:
    """One fold in a worker process (``processes.run_in_processes``), on a base model loaded there; its
    arguments and result in JSON (``_data_json`` / ``_fold_result``)."""
    examples = [MultiLabelExample(text, tuple(label)) if data["multi_label"] else as_example((text, label))
                for text, label in data["examples"]]
    everything = TrainingData(examples, data["where"], data["multi_label"], data["source"], data["descriptions"])
    result = _fold_job(load_base(base_model), everything, np.asarray(train_idx, dtype=int),
                       np.asarray(test_idx, dtype=int), TrainingSettings.from_dict(settings), None, descriptions,
                       lambda s, t, left: report(k, s, t, left), None, 1, copy_base=False)
    return {"test_idx": result.test_idx.tolist(), "tuned": result.tuned.tolist(),
            "tuned_true_p": None if result.tuned_true_p is None else result.tuned_true_p.tolist()}


def _data_json(data: TrainingData) -> dict:
    return {"examples": [[e.text, list(e.labels) if data.multi_label else e.label] for e in data.examples],
            "where": list(data.where), "multi_label": data.multi_label, "source": data.source,
            "descriptions": dict(data.descriptions)}


def _fold_result(value: dict, multi_label: bool) -> _FoldResult:
    return _FoldResult(np.asarray(value["test_idx"], dtype=int),
                       np.asarray(value["tuned"], dtype=int if multi_label else object),
                       None if value["tuned_true_p"] is None else np.asarray(value["tuned_true_p"], dtype=float))


class _FoldsAside:
    """The cross-validation folds in worker processes (one each, ``processes.run_in_processes``), driven from a
    thread of their own from the moment this is made, while the caller tunes the final model."""

    def __init__(self, calls: Sequence[tuple], on_step: Callable[[int, int, int, float], None],
                 stop: threading.Event, stopped: Callable[[], bool]) -> None:
        self._out: list[dict] | None = None
        self._error: BaseException | None = None
        self._stop = stop
        self._thread = threading.Thread(target=self._run, args=(list(calls), on_step, stopped), name="tune-folds",
                                        daemon=True)
        self._thread.start()

    def _run(self, calls: list[tuple], on_step: Callable[..., None], stopped: Callable[[], bool]) -> None:
        try:
            self._out = run_in_processes(_fold_in_worker, calls, workers=len(calls), on_event=on_step,
                                         stopped=stopped)
        except WorkersUnavailable:
            self._out = None  # the caller runs the folds itself
        except BaseException as exc:  # raised in the caller's thread (results / ended)
            self._error = exc
            self._stop.set()  # the final tuning stops at its next step

    def results(self) -> list[dict] | None:
        """The folds' results in order (``_fold_in_worker``'s JSON); None when worker processes could not run them.
        A fold's error is raised."""
        self._thread.join()
        if self._error is not None:
            if isinstance(self._error, JobsStopped):
                raise TrainingCancelled("training cancelled: nothing was saved")
            raise self._error
        return self._out

    def ended(self) -> BaseException | None:
        """Wait for the workers to end (the stop is set); a fold's own error, if one failed."""
        self._thread.join()
        return None if isinstance(self._error, (JobsStopped, type(None))) else self._error


def save_tuned(tuned: TunedModel, name: str, *, directory: Path | None = None) -> ModelInfo:
    """Save a ``TunedModel`` by name (atomically, under the training lock): a custom model like any other.
    An existing name gets a new version; the earlier ones are kept (``store.list_versions``, ``name@n``)."""
    validate_model_name(name)
    directory = directory or models_dir()
    with TrainingLock(directory, name):
        remove_leftovers(directory)  # temp folders of a save that was killed (kill -9, power cut)
        return save_model(name, config=tuned.saved_config(), head_arrays=tuned.chosen()[1].to_arrays(),
                          write_body=tuned.write_body, directory=directory, replace=True)


def train(data: Any, name: str, *, base_model: str = "small", multi_label: bool | None = None,
          validation: Any = None, settings: TrainingSettings | None = None,
          descriptions: dict[str, str] | None = None, progress: ProgressCallback | None = None,
          cancel: CancelFlag | None = None, directory: Path | None = None) -> ModelInfo:
    """Tune a custom model (``tune``) and save it under ``name``; returns its ``ModelInfo`` (metrics included).

    ``name``: letters, digits, ``-`` and ``_``; an existing name gets a new version, the earlier ones are kept.
    One training at a time per models folder (``TrainingBusyError``); the rest is ``tune``'s parameters.

    >>> info = train("tickets.csv", "support-topics")
    >>> info.metrics["trained"]["accuracy"], info.metrics["baseline"]["accuracy"]
    """
    validate_model_name(name)
    directory = directory or models_dir()
    inputs = _checked_inputs(data, base_model, multi_label, validation, settings, descriptions)  # before the lock:
    # bad data is reported as such (not as "busy") and leaves no models folder behind
    with TrainingLock(directory, name):
        remove_leftovers(directory)  # temp folders of a save that was killed (kill -9, power cut)

        def until_saved(p: TrainingProgress) -> None:  # tune's "done" is not done yet: "saving" comes next
            if p.phase != "done":
                progress(p)

        tuned = _tune(inputs, progress=None if progress is None else until_saved, cancel=cancel)
        if progress is not None:
            progress(TrainingProgress("saving", 1, 1, tuned.metrics["training_seconds"], None,
                                      f"saving to {directory / name}"))
        info = save_model(name, config=tuned.saved_config(), head_arrays=tuned.chosen()[1].to_arrays(),
                          write_body=tuned.write_body, directory=directory, replace=True)
        if progress is not None:
            progress(TrainingProgress("done", 1, 1, tuned.metrics["training_seconds"], 0.0, f"saved model {name!r}"))
    return info


# ----------------------------------------------------------------------------------------------
# The Classify page's Tune step: a tuned model per grid, kept in the cache until saved by name

TUNED_CACHE = "tuned"
KEEP_TUNED_GRIDS = 3
"""Tuned grids kept in the cache (the newest): each is a whole encoder, about 90 MB small and 420 MB large."""
LEFTOVER_AGE_S = 3600
"""A temp folder in the tuned-grid cache older than this is a killed save's, not a live one's."""


def grid_key(examples: Iterable[Any], base_model: str, descriptions: dict[str, str] | None = None) -> str:
    """One key per (examples, base model, descriptions): a tuned model answers only for the grid it was tuned on."""
    items = [as_example(item, i) for i, item in enumerate(examples)]
    payload = json.dumps({"model": base_model, "examples": [[e.text, e.label] for e in items],
                          "descriptions": sorted((descriptions or {}).items())}, ensure_ascii=False)
    return "grid-" + hashlib.sha256(payload.encode("utf-8")).hexdigest()[:20]


BLEND_SUFFIX = "-blended"
"""A tuned grid's blend (made on a tie, ``guard_decision``) is cached beside it, in ``<key>-blended``."""


def tuned_grid_folder(key: str, choice: str = "tuned") -> Path:
    """The cached folder of a tuned grid's tuned model, or (``choice="blended"``) of its blend."""
    return cache_dir() / TUNED_CACHE / (key + BLEND_SUFFIX if choice == "blended" else key)


def tune_grid(examples: Iterable[Any], base_model: str = "small", *, settings: TrainingSettings | None = None,
              descriptions: dict[str, str] | None = None, progress: ProgressCallback | None = None,
              cancel: CancelFlag | None = None) -> tuple[TunedModel, Path]:
    """``tune`` the grid's examples and keep the result as a model folder in the cache, keyed by ``grid_key``.

    Returns the tuned model (``save_tuned`` makes it a named custom model) and its cached folder, which
    ``engine.load_folder`` classifies with. The folder always holds the tuned encoder and head, whatever the
    guard chose (``tuned.choice``); a blend, when the guard made one, is cached beside it
    (``tuned_grid_folder(key, "blended")``). The page answers with the untuned model when that is the choice,
    else with the chosen folder. A grid tuned before is tuned again (settings may differ): the old folders are
    replaced.
    """
    examples = list(examples)
    key = grid_key(examples, base_model, descriptions)
    tuned = tune(examples, base_model=base_model, settings=settings, descriptions=descriptions, multi_label=False,
                 progress=progress, cancel=cancel)
    directory = cache_dir() / TUNED_CACHE
    folder = directory / key
    for old in (key, key + BLEND_SUFFIX):
        if (directory / old).exists():
            delete_model(old, directory)
    pairs = [(key, tuned.body, tuned.head)] + ([(key + BLEND_SUFFIX, tuned.blend, tuned.blend_head)]
                                               if tuned.blend is not None else [])
    for name, body, head in reversed(pairs):  # the blend first: a grid folder on disk has its blend beside it
        save_model(name, config={**tuned.config, "head": head.to_config()}, head_arrays=head.to_arrays(),
                   write_body=lambda path, body=body: body.save(str(path), safe_serialization=True),
                   directory=directory)  # the guard's note kept in both
    prune_tuned_grids(directory=directory)
    return tuned, folder


def prune_tuned_grids(keep: int = KEEP_TUNED_GRIDS, *, directory: Path | None = None) -> list[str]:
    """Delete all but the ``keep`` newest tuned grids, and temp folders of saves killed over an hour ago.

    Returns what was deleted. Saved custom models are never here (``save_tuned`` copies a tuned grid
    into the models folder), so nothing the user named is touched; a page whose grid was pruned
    is asked to tune again.
    """
    directory = directory or cache_dir() / TUNED_CACHE
    if not directory.is_dir():
        return []
    removed = []
    grids = [p for p in directory.iterdir() if p.is_dir() and p.name.startswith("grid-")
             and not p.name.endswith(BLEND_SUFFIX)]
    kept = {p.name for p in sorted(grids, key=lambda p: p.stat().st_mtime, reverse=True)[:keep]}
    stale = [p.name for p in directory.iterdir() if p.is_dir() and p.name.startswith("grid-")
             and p.name.removesuffix(BLEND_SUFFIX) not in kept]  # a blend goes with its grid
    for name in sorted(stale):
        try:
            delete_model(name, directory)
        except (LookupError, OSError):  # another process pruned it first
            continue
        removed.append(name)
    return removed + remove_leftovers(directory, older_than_s=LEFTOVER_AGE_S)
