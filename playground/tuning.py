"""Tune a sentence encoder on a few labelled examples in seconds (issues #18, #24).

The method, in six steps:

1. **Cache the frozen lower layers.** The bottom ``L - k`` transformer layers stay frozen, so their
   output for the training texts never changes: one forward pass (a forward pre-hook on layer
   ``L - k`` records its inputs: hidden states, attention mask, and for MPNet the relative position
   bias) is all they ever cost. Texts are sorted by length and cut into buckets, so padding stays small.
2. **Label names, when they help.** Each label's name (and its description, when given) becomes
   a few extra training texts ("This sentence is {label}.", ...). With ``use_label_names="auto"``
   the choice is made on the user's own examples: a cross-validated logistic regression on the frozen
   embeddings, with and without the label texts in each training fold. The evidence is in the report.
3. **A plan fixed before the first step.** ``steps`` steps (40 by default), each on every text when
   they fit in ``batch_tokens`` padded tokens, else on a label-stratified sample drawn from ``seed``
   (two texts per label first, so each label in a batch has a positive pair). The plan depends only on
   the examples, the model and the settings, never on the machine's speed or load: the same examples
   give the same model (issue #24; the old time budget made the step count follow the load).
4. **Train only the top k layers**, with a loss over all pairs of the batch: a balanced cosine-similarity
   MSE (SetFit's target: same label -> 1, different -> 0; multi-label: the Jaccard overlap of the label
   sets) or a supervised contrastive loss (SupCon). AdamW, linear warm-up then linear decay, gradient
   clipping, bf16 autocast where the CPU has native bf16.
5. **Stay close to the pretrained encoder (WiSE-FT).** The tuned layers end at
   ``(1 - interpolation) * original + interpolation * tuned`` (Wortsman et al. 2022). The recipe's
   values (``RECIPES``) and the sets and seeds each was chosen on are in docs/TUNING_RECIPE.md (both mixes,
   small's rate, steps, layers, loss, batch, warm-up and tokens on eleven public sets, five seeds; large's
   rate, loss, tokens and warm-up on all eleven, its steps on nine, its layers and batch by the rule's first
   count on fewer draws): a modest
   rate and keeping part of the original weights removed most of the drops below the untuned model that
   the earlier high-rate recipe had on sets it was not shaped on; the guard in training.py is there for
   the large ones left.
6. **In place, safely.** The model is tuned in place. On cancel (``should_stop``) or on any error the
   original weights are put back before ``TuningCancelled`` (or the error) is raised, so the model is
   always usable; it is always left in eval mode with its ``requires_grad`` flags as they were.

This module imports numpy, torch and sentence-transformers, and from the package only the shared
types (``validation``) and the CPU's bf16 check (``embeddings``).

>>> report = tune_encoder(model, texts, labels)
>>> report.steps, report.seconds, report.used_label_names
"""

from __future__ import annotations

import copy
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal, get_args

import numpy as np
import torch
import torch.nn.functional as F
from sentence_transformers import SentenceTransformer

from .embeddings import bf16_supported
from .validation import LabelNamesMode, check_float, check_int

LossName = Literal["cosine", "supcon"]
PrecisionName = Literal["auto", "bf16", "fp32"]

LABEL_TEMPLATES: tuple[str, ...] = ("This sentence is {}.", "This text is about {}.", "{}")
"""Texts made from a label's name; ``{}`` is the name with ``_`` and ``-`` read as spaces."""
BUCKET_TOKENS = 4096
"""At most this many (padded) tokens per bucket of texts run together."""
CHECK_COSINE = 0.999
"""The layer-by-layer path must give the model's own embeddings to this cosine, else the encoder is unsupported."""
SMALL_MODEL_PARAMS = 50_000_000


@dataclass(frozen=True)
class Recipe:
    """The defaults ``TuningSettings`` leaves to the model's size (chosen in docs/TUNING_RECIPE.md)."""

    top_layers: int
    learning_rate: float
    steps: int
    batch_tokens: int
    interpolation: float
    dropout: bool
    tie_interpolation: float
    """Where the blend sits that ``training``'s guard keeps when the honest scores tie: the tuned layers at
    ``(1 - w) * original + w * tuned`` with this ``w``, nearer the original than ``interpolation``."""


RECIPES: dict[str, Recipe] = {
    "small": Recipe(top_layers=4, learning_rate=1e-4, steps=40, batch_tokens=1024, interpolation=0.75,
                    dropout=True, tie_interpolation=0.5),
    "large": Recipe(top_layers=6, learning_rate=2e-4, steps=40, batch_tokens=1024, interpolation=0.5,
                    dropout=True, tie_interpolation=0.3),
}
"""``small``: encoders under 50M parameters (MiniLM-L6: 23M); ``large``: the rest (MPNet-base: 110M)."""


def recipe_for(model: torch.nn.Module) -> Recipe:
    return RECIPES["small" if sum(p.numel() for p in model.parameters()) < SMALL_MODEL_PARAMS else "large"]


class TuningCancelled(RuntimeError):
    """``should_stop`` returned True. The model has its original weights back and is usable."""


class UnsupportedEncoderError(ValueError):
    """The model's layers cannot be run one by one to the same result as its own forward."""


# ----------------------------------------------------------------------------------------------
# Settings, progress, report


def _check_choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}. But it was: {value!r}")


@dataclass(frozen=True)
class TuningSettings:
    """How ``tune_encoder`` tunes; every field is checked when the settings are made.

    Parameters
    ----------
    top_layers : int or None, default=None
        Transformer layers tuned, counted from the top. None: the recipe's (4 of 6 for MiniLM-L6,
        6 of 12 for MPNet-base; at most the model's layers).
    learning_rate : float or None, default=None
        Peak AdamW rate. None: the recipe's (``RECIPES``).
    steps : int or None, default=None
        Optimiser steps. None: the recipe's (40). Fixed before the first step: the result does not
        depend on the machine's speed.
    batch_tokens : int or None, default=None
        Padded tokens per step. When the examples (and label texts) fit, every step sees all of them;
        else each step takes a label-stratified sample that fits. None: the recipe's (1,024).
    interpolation : float or None, default=None
        WiSE-FT weight of the tuned layers in ``(0, 1]``: they end at ``(1 - w) * original + w * tuned``.
        1 keeps the tuned weights as trained. None: the recipe's.
    dropout : bool or None, default=None
        The model's dropout while tuning (its random numbers come from ``seed``, one generator per process;
        ``training`` runs its cross-validation folds in processes of their own for that). None: the recipe's.
    time_budget_s : float or None, default=None
        Optional cap on wall seconds: tuning stops early (with a linear decay to that point) when the
        measured pace says the planned steps would not fit. The step count then follows the machine's
        load, so the same examples may give different models; None (the default) never stops early.
    loss : {"cosine", "supcon"}, default="cosine"
        Balanced all-pairs cosine MSE (targets 1 / 0, multi-label: Jaccard) or supervised contrastive.
    temperature : float, default=0.07
        SupCon's temperature.
    use_label_names : {"auto", "always", "never"}, default="auto"
        Label-name texts as extra examples; "auto" decides on the examples' out-of-fold accuracy.
    warmup_fraction : float, default=0.1
    weight_decay : float, default=0.01
    max_seq_length : int or None, default=128
        Tokens per text while tuning (None: the model's limit). Encoding later keeps the model's limit.
    seed : int, default=0
        Dropout and the batch samples.
    threads : int or None, default=None
        Torch threads while tuning. None: 1 for small batches, else up to the idle CPUs. Speed only.
    precision : {"auto", "bf16", "fp32"}, default="auto"
        bf16 autocast for the tuned layers; "auto" uses it where the CPU has native bf16.
    """

    top_layers: int | None = None
    learning_rate: float | None = None
    steps: int | None = None
    batch_tokens: int | None = None
    interpolation: float | None = None
    dropout: bool | None = None
    time_budget_s: float | None = None
    loss: LossName = "cosine"
    temperature: float = 0.07
    use_label_names: LabelNamesMode = "auto"
    warmup_fraction: float = 0.1
    weight_decay: float = 0.01
    max_seq_length: int | None = 128
    seed: int = 0
    threads: int | None = None
    precision: PrecisionName = "auto"

    def __post_init__(self) -> None:
        if self.top_layers is not None:
            check_int("top_layers", self.top_layers, 1, 1000)
        if self.learning_rate is not None:
            check_float("learning_rate", self.learning_rate, 0.0, 0.1)
        if self.steps is not None:
            check_int("steps", self.steps, 1, 100_000)
        if self.batch_tokens is not None:
            check_int("batch_tokens", self.batch_tokens, 16, 1_000_000)
        if self.interpolation is not None:
            check_float("interpolation", self.interpolation, 0.0, 1.0)
        if self.dropout is not None and not isinstance(self.dropout, bool):
            raise ValueError(f"dropout must be True, False or None. But it was: {self.dropout!r}")
        if self.time_budget_s is not None:
            check_float("time_budget_s", self.time_budget_s, 0.0, 86_400.0)
        _check_choice("loss", self.loss, get_args(LossName))
        check_float("temperature", self.temperature, 0.0, 10.0)
        _check_choice("use_label_names", self.use_label_names, get_args(LabelNamesMode))
        if not (isinstance(self.warmup_fraction, (int, float)) and not isinstance(self.warmup_fraction, bool)
                and 0.0 <= self.warmup_fraction <= 0.5):
            raise ValueError(f"warmup_fraction must be a number in [0, 0.5]. But it was: {self.warmup_fraction!r}")
        if not (isinstance(self.weight_decay, (int, float)) and not isinstance(self.weight_decay, bool)
                and 0.0 <= self.weight_decay <= 1.0):
            raise ValueError(f"weight_decay must be a number in [0, 1]. But it was: {self.weight_decay!r}")
        if self.max_seq_length is not None:
            check_int("max_seq_length", self.max_seq_length, 8, 8192)
        check_int("seed", self.seed, 0, 2**32 - 1)
        if self.threads is not None:
            check_int("threads", self.threads, 1, 256)
        _check_choice("precision", self.precision, get_args(PrecisionName))

    def resolved(self, model: torch.nn.Module) -> TuningSettings:
        """These settings with every None the recipe fills in for ``model`` (``RECIPES``) filled in."""
        recipe = recipe_for(model)
        layers = len(encoder_layers(model))  # type: ignore[arg-type]
        return TuningSettings(**{
            **self.to_dict(),
            "top_layers": self.top_layers if self.top_layers is not None else min(recipe.top_layers, layers),
            "learning_rate": self.learning_rate if self.learning_rate is not None else recipe.learning_rate,
            "steps": self.steps if self.steps is not None else recipe.steps,
            "batch_tokens": self.batch_tokens if self.batch_tokens is not None else recipe.batch_tokens,
            "interpolation": self.interpolation if self.interpolation is not None else recipe.interpolation,
            "dropout": self.dropout if self.dropout is not None else recipe.dropout,
        })

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TuningSettings:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown tuning settings: {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        return cls(**dict(data))


@dataclass(frozen=True)
class TuningProgress:
    """One report per step. ``seconds_left`` is the measured seconds per step times the steps left."""

    step: int
    total_steps: int
    seconds_elapsed: float
    seconds_left: float
    loss: float

    @property
    def fraction(self) -> float:
        return 0.0 if self.total_steps <= 0 else min(1.0, self.step / self.total_steps)


@dataclass(frozen=True)
class LabelNameEvidence:
    """Why label names were (not) used: out-of-fold scores on the user's examples, frozen encoder.

    ``oof_accuracy_*`` / ``oof_log_loss_*``: a logistic regression (C=10) cross-validated on the
    examples, each training fold without / with the label-name texts (multi-label: per-label
    accuracy and binary log-loss). ``zero_shot_accuracy``: examples put under the label whose name
    texts are nearest, no examples used (single-label only, else None).
    """

    mode: str
    used: bool
    folds: int
    oof_accuracy_without: float | None = None
    oof_accuracy_with: float | None = None
    oof_log_loss_without: float | None = None
    oof_log_loss_with: float | None = None
    zero_shot_accuracy: float | None = None
    chance_accuracy: float | None = None
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class TuningReport:
    """What ``tune_encoder`` did. ``losses`` has one value per step (before that step's update)."""

    steps: int
    planned_steps: int
    stopped_by: str  # "steps" (the plan ran to its end) | "time_budget" (the optional cap stopped it early)
    seconds: float
    seconds_preparing: float
    seconds_per_step: float
    top_layers: int
    total_layers: int
    learning_rate: float
    batch_tokens: int
    tokens_per_step: float
    sampled_batches: bool
    interpolation: float
    dropout: bool
    threads: int
    precision: str
    loss_name: str
    n_texts: int
    n_label_texts: int
    n_buckets: int
    multi_label: bool
    used_label_names: bool
    label_names: LabelNameEvidence
    losses: tuple[float, ...] = field(default_factory=tuple)

    @property
    def loss_start(self) -> float:
        return self.losses[0] if self.losses else float("nan")

    @property
    def loss_end(self) -> float:
        return self.losses[-1] if self.losses else float("nan")

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["losses"] = list(self.losses)
        out["loss_start"], out["loss_end"] = self.loss_start, self.loss_end
        return out


ProgressCallback = Callable[[TuningProgress], None]


# ----------------------------------------------------------------------------------------------
# The encoder's layers, cached inputs, the top-layer path


def encoder_layers(model: SentenceTransformer) -> torch.nn.ModuleList:
    """The transformer's stack of layers (BERT / MiniLM / MPNet: ``auto_model.encoder.layer``)."""
    auto = getattr(model[0], "auto_model", None)
    if auto is None:
        raise UnsupportedEncoderError("the model's first module has no auto_model (not a transformers encoder)")
    for path in ("encoder.layer", "encoder.layers", "layers", "transformer.layer", "layer"):
        obj: Any = auto
        for part in path.split("."):
            obj = getattr(obj, part, None)
            if obj is None:
                break
        if isinstance(obj, torch.nn.ModuleList) and len(obj) > 0:
            return obj
    raise UnsupportedEncoderError(f"cannot find the layer stack of {type(auto).__name__}")


def _detach(x: Any) -> Any:
    if torch.is_tensor(x):
        return x.detach().clone()
    if isinstance(x, tuple):
        return tuple(_detach(v) for v in x)
    return x


@dataclass
class _Bucket:
    rows: np.ndarray  # positions of its texts in the training list
    args: tuple
    kwargs: dict
    mask: torch.Tensor  # (B, T) attention mask, for pooling

    @property
    def width(self) -> int:
        """Padded tokens per text in this bucket."""
        return int(self.mask.shape[1])

    def take(self, positions: np.ndarray) -> _Bucket:
        """The bucket cut to the texts at ``positions`` (indices into ``rows``): every cached tensor whose
        first dimension is the bucket's batch is cut along it; the rest (shared biases) is kept."""
        size = len(self.rows)
        index = torch.as_tensor(positions)

        def cut(x: Any) -> Any:
            if torch.is_tensor(x) and x.dim() > 0 and x.shape[0] == size:
                return x[index]
            if isinstance(x, tuple):
                return tuple(cut(v) for v in x)
            return x

        return _Bucket(self.rows[positions], tuple(cut(a) for a in self.args),
                       {k: cut(v) for k, v in self.kwargs.items()}, self.mask[index])


def _as_float(x: Any) -> Any:
    return x.float() if torch.is_tensor(x) and x.is_floating_point() else x


def _layer_out(out: Any) -> torch.Tensor:
    return out[0] if isinstance(out, (tuple, list)) else out


def run_top(model: SentenceTransformer, bucket: _Bucket, start: int) -> torch.Tensor:
    """Sentence embeddings of a bucket: the cached layer-``start`` inputs through the layers above it,
    then the model's own modules after the transformer (pooling, normalisation, ...)."""
    layers = encoder_layers(model)
    args, kwargs = bucket.args, dict(bucket.kwargs)
    if args:
        hidden, rest = args[0], args[1:]
    else:
        hidden, rest = kwargs.pop("hidden_states"), ()
    for layer in layers[start:]:
        hidden = _layer_out(layer(hidden, *rest, **kwargs))
    features: dict[str, Any] = {"token_embeddings": hidden.float(), "attention_mask": bucket.mask}
    for module in list(model)[1:]:
        features = module(features)
    return features["sentence_embedding"].float()


def _tokenize(model: SentenceTransformer, texts: Sequence[str], max_len: int) -> list[int]:
    tok = model.tokenizer(list(texts), truncation=True, max_length=max_len, add_special_tokens=True)
    return [len(ids) for ids in tok["input_ids"]]


def _make_buckets(lengths: Sequence[int]) -> list[np.ndarray]:
    """Length-sorted runs of texts; a new run starts when the padding would grow by a quarter or the
    run holds ``BUCKET_TOKENS`` padded tokens."""
    order = np.argsort(np.asarray(lengths), kind="stable")
    runs: list[list[int]] = []
    first = 0
    for i in order:
        n = lengths[i]
        if runs:
            run = runs[-1]
            if n <= 1.25 * first + 4 and n * (len(run) + 1) <= BUCKET_TOKENS:
                run.append(int(i))
                continue
        runs.append([int(i)])
        first = n
    return [np.asarray(r) for r in runs]


def capture(model: SentenceTransformer, texts: Sequence[str], start: int, *, max_len: int,
            groups: Sequence[np.ndarray] | None = None) -> tuple[list[_Bucket], torch.Tensor]:
    """Run the frozen model once over ``texts``: the inputs of layer ``start`` per bucket, and every
    text's embedding from the model's own forward (float32, as ``model.encode`` gives them).

    ``groups`` (arrays of positions) are bucketed separately, so a group's buckets can be dropped.
    """
    layers = encoder_layers(model)
    grab: dict[str, Any] = {}

    def hook(module: Any, args: tuple, kwargs: dict) -> None:
        grab["args"], grab["kwargs"] = _detach(args), {k: _detach(v) for k, v in kwargs.items()}

    lengths = _tokenize(model, texts, max_len)
    groups = list(groups) if groups is not None else [np.arange(len(texts))]
    runs = [g[r] for g in groups if len(g) for r in _make_buckets([lengths[i] for i in g])]
    buckets: list[_Bucket] = []
    embeddings = torch.zeros(len(texts), model.get_embedding_dimension())
    old_len = model.max_seq_length
    handle = layers[start].register_forward_pre_hook(hook, with_kwargs=True)
    try:
        model.max_seq_length = min(old_len, max_len)
        with torch.no_grad():  # not inference_mode: the cached tensors feed autograd later
            for rows in runs:
                features = model.preprocess([texts[i] for i in rows])
                grab.clear()
                out = model(features)
                embeddings[torch.as_tensor(rows)] = out["sentence_embedding"].float()
                buckets.append(_Bucket(rows, grab["args"], grab["kwargs"], features["attention_mask"].clone()))
    finally:
        handle.remove()
        model.max_seq_length = old_len
    return buckets, embeddings


def check_layer_path(model: SentenceTransformer, bucket: _Bucket, start: int, reference: torch.Tensor) -> float:
    """The smallest cosine between the layer-by-layer path and the model's own embeddings (eval mode)."""
    with torch.inference_mode():
        mine = run_top(model, bucket, start)
    return float(F.cosine_similarity(mine, reference[torch.as_tensor(bucket.rows)], dim=1).min())


# ----------------------------------------------------------------------------------------------
# Labels, targets, losses


def _label_sets(labels: Sequence[Any], n: int) -> tuple[list[frozenset[str]], bool]:
    if len(labels) != n:
        raise ValueError(f"texts and labels must have the same length - received {n} texts and {len(labels)} labels")
    multi = any(not isinstance(y, str) for y in labels)
    sets: list[frozenset[str]] = []
    for i, y in enumerate(labels):
        if isinstance(y, str):
            items = [y]
        elif isinstance(y, Sequence) or isinstance(y, (set, frozenset)):
            items = list(y)
        else:
            raise ValueError(f"labels[{i}] must be a label (str) or a list of labels - received {y!r}")
        if not all(isinstance(v, str) and v.strip() for v in items):
            raise ValueError(f"labels[{i}] has an empty or non-text label: {y!r}")
        sets.append(frozenset(items))
    return sets, multi


def target_matrix(sets: Sequence[frozenset[str]]) -> torch.Tensor:
    """Pair targets: 1 for the same label, 0 for different ones; multi-label: |A ∩ B| / |A ∪ B|."""
    n = len(sets)
    T = torch.zeros(n, n)
    for i in range(n):
        for j in range(n):
            union = len(sets[i] | sets[j])
            T[i, j] = len(sets[i] & sets[j]) / union if union else 0.0
    return T


def pair_loss(E: torch.Tensor, T: torch.Tensor, kind: str, temperature: float = 0.07) -> torch.Tensor:
    """A loss over every pair of the (L2-normalised) embeddings ``E`` with targets ``T``.

    cosine: MSE between cosine and target, positive pairs (target > 0) and negative pairs weighted
    half and half (SetFit's CosineSimilarityLoss over all pairs, balanced). supcon: supervised
    contrastive loss, positives weighted by their target.
    """
    n = E.shape[0]
    E = F.normalize(E, dim=1)
    S = E @ E.T
    off = 1.0 - torch.eye(n)
    pos = (T > 0).float() * off
    neg = (T <= 0).float() * off
    if kind == "cosine":
        lp = (((S - T) ** 2) * pos).sum() / pos.sum().clamp(min=1)
        ln = ((S ** 2) * neg).sum() / neg.sum().clamp(min=1)
        return 0.5 * (lp + ln)
    if kind == "supcon":
        logits = S / temperature - torch.eye(n) * 1e9
        logp = logits - torch.logsumexp(logits, dim=1, keepdim=True)
        w = T * off
        has = w.sum(1) > 0
        per = -(logp * w).sum(1) / w.sum(1).clamp(min=1e-9)
        return per[has].mean()
    raise ValueError(f"loss must be 'cosine' or 'supcon'. But it was: {kind!r}")


def label_texts(names: Sequence[str], descriptions: Mapping[str, str] | None) -> list[tuple[str, str]]:
    """(text, label) pairs made from label names (templates) and descriptions (verbatim)."""
    out = []
    for name in names:
        readable = " ".join(name.replace("_", " ").replace("-", " ").split())
        seen = set()
        for template in LABEL_TEMPLATES:
            text = template.format(readable)
            if text not in seen:
                seen.add(text)
                out.append((text, name))
        desc = (descriptions or {}).get(name)
        if desc and desc.strip() and desc.strip() not in seen:
            out.append((desc.strip(), name))
    return out


# ----------------------------------------------------------------------------------------------
# The label-name decision: a small cross-validated logistic regression on frozen embeddings


def _fit_linear(X: torch.Tensor, Y: torch.Tensor, multi: bool, C: float = 10.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Logistic regression, sklearn's objective ``C * sum(loss) + ||W||^2 / 2`` (softmax, or one sigmoid per label)."""
    d, k = X.shape[1], Y.shape[1]
    W = torch.zeros(d, k, dtype=torch.float64, requires_grad=True)
    b = torch.zeros(k, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([W, b], lr=1.0, max_iter=200, tolerance_grad=1e-6, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        Z = X @ W + b
        if multi:
            data = F.binary_cross_entropy_with_logits(Z, Y, reduction="sum")
        else:
            data = -(Y * F.log_softmax(Z, dim=1)).sum()
        loss = C * data + 0.5 * (W * W).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return W.detach(), b.detach()


def _folds(sets: Sequence[frozenset[str]], multi: bool, n_folds: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = len(sets)
    fold = np.zeros(n, dtype=int)
    if multi:
        fold[rng.permutation(n)] = np.arange(n) % n_folds
        return fold
    offset = 0
    for name in sorted({next(iter(s)) for s in sets}):
        idx = np.flatnonzero([next(iter(s)) == name for s in sets])
        fold[idx[rng.permutation(len(idx))]] = (np.arange(len(idx)) + offset) % n_folds
        offset += len(idx)
    return fold


def label_name_evidence(X: torch.Tensor, sets: Sequence[frozenset[str]], multi: bool, L: torch.Tensor,
                        label_sets: Sequence[frozenset[str]], mode: str, seed: int = 0) -> LabelNameEvidence:
    """Cross-validate a logistic regression with and without the label-name texts in each training fold."""
    names = sorted(set().union(*sets))
    index = {name: j for j, name in enumerate(names)}

    def onehot(ss: Sequence[frozenset[str]]) -> torch.Tensor:
        Y = torch.zeros(len(ss), len(names), dtype=torch.float64)
        for i, s in enumerate(ss):
            for name in s:
                Y[i, index[name]] = 1.0 if multi else 1.0 / len(s)
        return Y

    Xd, Ld = X.double(), L.double()
    Y, YL = onehot(sets), onehot(label_sets)
    n = len(sets)
    counts = Y.sum(0)
    n_folds = int(min(5, n, max(2, int(counts.min().item())))) if not multi else int(min(5, n))
    zero_shot = None
    if not multi and len(label_sets):
        P = torch.stack([F.normalize(Ld[[i for i, s in enumerate(label_sets) if name in s]].mean(0), dim=0)
                         for name in names])
        zero_shot = float((torch.argmax(Xd @ P.T, 1) == torch.argmax(Y, 1)).double().mean())
    chance = float(counts.max() / n) if not multi else None
    if n_folds < 2 or n < 4:
        return LabelNameEvidence(mode, False, 0, zero_shot_accuracy=zero_shot, chance_accuracy=chance,
                                 reason="too few examples to cross-validate: label names not used")
    scores = {False: [0.0, 0.0], True: [0.0, 0.0]}  # accuracy sum, log-loss sum
    repeats = 2
    for r in range(repeats):
        fold = _folds(sets, multi, n_folds, seed + r)
        for f in range(n_folds):
            tr, te = np.flatnonzero(fold != f), np.flatnonzero(fold == f)
            if len(te) == 0 or len(tr) == 0:
                continue
            for with_names in (False, True):
                Xtr, Ytr = Xd[tr], Y[tr]
                if with_names:
                    Xtr, Ytr = torch.cat([Xtr, Ld]), torch.cat([Ytr, YL])
                W, b = _fit_linear(Xtr, Ytr, multi)
                Z = Xd[te] @ W + b
                if multi:
                    P1 = torch.sigmoid(Z).clamp(1e-6, 1 - 1e-6)
                    acc = ((P1 > 0.5).double() == Y[te]).double().mean(1).sum()
                    ll = -(Y[te] * P1.log() + (1 - Y[te]) * (1 - P1).log()).mean(1).sum()
                else:
                    logp = F.log_softmax(Z, dim=1)
                    acc = (torch.argmax(Z, 1) == torch.argmax(Y[te], 1)).double().sum()
                    ll = -(Y[te] * logp).sum(1).sum()
                scores[with_names][0] += float(acc)
                scores[with_names][1] += float(ll)
    total = repeats * n
    a0, l0 = scores[False][0] / total, scores[False][1] / total
    a1, l1 = scores[True][0] / total, scores[True][1] / total
    better = a1 > a0 + 1e-9 or (abs(a1 - a0) <= 1e-9 and l1 < l0)
    if mode == "auto":
        used = better
        reason = (f"out-of-fold accuracy {a0:.3f} without label names, {a1:.3f} with "
                  f"(log-loss {l0:.3f} / {l1:.3f}): label names {'used' if used else 'not used'}")
    else:
        used = mode == "always"
        reason = f"use_label_names={mode!r}"
    return LabelNameEvidence(mode, used, n_folds, a0, a1, l0, l1, zero_shot, chance, reason)


# ----------------------------------------------------------------------------------------------
# Threads, precision, schedule


def resolve_precision(precision: str) -> str:
    """``auto`` tunes in bf16 where the CPU has native bf16 (``embeddings.bf16_supported``), else fp32."""
    if precision == "auto":
        return "bf16" if bf16_supported() else "fp32"
    return precision


def choose_threads(padded_tokens: int, hidden: int) -> int:
    """1 thread unless the batch is large and more than one CPU is idle right now (``idle_cpus``).

    On a busy machine a second thread waits for a core at every synchronisation: measured on a shared
    2-core machine (load 5-6), 2 threads made a step 7x slower than 1.
    """
    if padded_tokens * hidden < 2_000 * 768:
        return 1
    return max(1, min(usable_cpus(), int(idle_cpus() + 0.3), 4))


def usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def idle_cpus(window_s: float = 0.2) -> float:
    """CPUs idle over the next ``window_s`` seconds while this process waits, from ``/proc/stat``.

    Not the load average: it lags a minute and counts this process's own work (embedding the
    examples just before), which made a quiet 2-core machine look busy and tuning run on 1 thread.
    Falls back to CPUs minus the load average where ``/proc/stat`` is missing.
    """
    cpus = usable_cpus()
    try:
        before = _cpu_times()
        time.sleep(window_s)
        after = _cpu_times()
    except (OSError, ValueError, IndexError):
        try:
            return max(0.0, cpus - os.getloadavg()[0])
        except (AttributeError, OSError):  # pragma: no cover - not Unix
            return 0.0
    total = after[0] - before[0]
    if total <= 0:
        return 0.0
    return min(float(cpus), (after[1] - before[1]) / total * (os.cpu_count() or cpus))


def _cpu_times() -> tuple[int, int]:
    """(all, idle) jiffies of every CPU from the first line of ``/proc/stat`` (idle includes iowait)."""
    with open("/proc/stat", encoding="ascii") as f:
        fields = [int(v) for v in f.readline().split()[1:9]]
    return sum(fields), fields[3] + fields[4]


def lr_factor(step: int, total: int, warmup: int) -> float:
    """Linear warm-up over ``warmup`` steps, then linear decay to 0 at ``total`` (step is 0-based)."""
    if step < warmup:
        return (step + 1) / (warmup + 1)
    return max(0.0, (total - step) / max(1, total - warmup))


def plan_batches(widths: Sequence[int], sets: Sequence[frozenset[str]], steps: int, batch_tokens: int,
                 seed: int) -> list[np.ndarray] | None:
    """The texts of every step, fixed before the first one: ``None`` when all texts fit in ``batch_tokens``
    padded tokens (every step takes them all), else one label-stratified sample per step.

    A sample takes two texts of each label in a shuffled label order, then one more of each in turn,
    while they fit; a label's texts are drawn without replacement until all were seen. Only
    ``widths`` (padded tokens per text), the labels, ``steps`` and ``seed`` decide it.
    """
    widths = np.asarray(widths, dtype=int)
    if int(widths.sum()) <= batch_tokens:
        return None
    rng = np.random.default_rng(seed)
    by_key: dict[str, list[int]] = {}
    for i, labels in enumerate(sets):
        by_key.setdefault(min(labels) if labels else "", []).append(i)
    keys = sorted(by_key)
    queues: dict[str, list[int]] = {k: [] for k in keys}
    out = []
    for _ in range(steps):
        order = [keys[i] for i in rng.permutation(len(keys))]
        pending = {k: (queues[k] if queues[k] else list(rng.permutation(by_key[k]))) for k in order}
        chosen: list[int] = []
        used = 0
        for round_ in range(1 + max(len(v) for v in by_key.values())):
            added = False
            for k in order:
                for _ in range(2 if round_ == 0 else 1):
                    if pending[k] and used + widths[pending[k][-1]] <= batch_tokens:
                        i = int(pending[k].pop())
                        chosen.append(i)
                        used += int(widths[i])
                        added = True
            if not added:
                break
        if not chosen:  # one text alone is wider than the budget: take the narrowest of a label
            k = order[0]
            i = int(min(by_key[k], key=lambda j: widths[j]))
            chosen, pending[k] = [i], [j for j in pending[k] if j != i]
        queues.update(pending)
        out.append(np.sort(np.asarray(chosen)))
    return out


# ----------------------------------------------------------------------------------------------
# tune_encoder


def tune_encoder(
    model: SentenceTransformer,
    texts: Sequence[str],
    labels: Sequence[str] | Sequence[Sequence[str]],
    *,
    settings: TuningSettings | None = None,
    label_descriptions: Mapping[str, str] | None = None,
    progress: ProgressCallback | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> TuningReport:
    """Tune the top layers of ``model`` in place on labelled texts; returns what was done.

    Parameters
    ----------
    model : SentenceTransformer
        A transformers encoder (BERT / MiniLM / MPNet and the like) on the CPU, fp32 or bf16 weights.
    texts : the examples' texts.
    labels : one label per text, or (multi-label) a list of labels per text. At least 2 labels.
    settings : TuningSettings, optional
    label_descriptions : {label: description}, optional
        Extra label texts, used with the label names when those are used.
    progress : called after every step with a ``TuningProgress``.
    should_stop : checked before every step; when it returns True the original weights are put
        back and ``TuningCancelled`` is raised.
    """
    started = time.monotonic()
    settings = settings or TuningSettings()
    if not isinstance(settings, TuningSettings):
        raise TypeError(f"settings must be a TuningSettings, got {type(settings).__name__}")
    if not isinstance(model, SentenceTransformer):
        raise TypeError(f"model must be a SentenceTransformer, got {type(model).__name__}")
    texts = list(texts)
    for i, t in enumerate(texts):
        if not isinstance(t, str) or not t.strip():
            raise ValueError(f"texts[{i}] must be a non-empty string - received {t!r}")
    sets, multi = _label_sets(list(labels), len(texts))
    names = sorted(set().union(*sets)) if sets else []
    if len(names) < 2:
        raise ValueError(f"tuning needs at least 2 different labels - found {len(names)}: {names}")
    if label_descriptions is not None:
        unknown = sorted(set(label_descriptions) - set(names))
        if unknown:
            raise ValueError(f"label_descriptions names labels not in the examples: {', '.join(map(repr, unknown))}")

    layers = encoder_layers(model)
    total_layers = len(layers)
    settings = settings.resolved(model)
    k = int(settings.top_layers)  # type: ignore[arg-type]
    if k > total_layers:
        raise ValueError(f"top_layers must be at most the model's {total_layers} layers. But it was: {k!r}")
    start = total_layers - k
    max_len = min(int(model.max_seq_length), settings.max_seq_length or int(model.max_seq_length))
    precision = resolve_precision(settings.precision)
    params = [p for layer in layers[start:] for p in layer.parameters()]
    saved_state = [p.detach().clone() for p in params]
    saved_grad = {id(p): p.requires_grad for p in model.parameters()}
    saved_dtypes = [p.dtype for p in params]
    old_threads = torch.get_num_threads()

    extra = label_texts(names, label_descriptions) if settings.use_label_names != "never" else []
    all_texts = texts + [t for t, _ in extra]
    all_sets = sets + [frozenset([name]) for _, name in extra]
    n, n_extra = len(texts), len(extra)
    groups = [np.arange(n)] + ([np.arange(n, n + n_extra)] if n_extra else [])
    total, lr, batch_tokens = int(settings.steps), float(settings.learning_rate), int(settings.batch_tokens)
    alpha = float(settings.interpolation)  # type: ignore[arg-type]

    try:
        model.eval()
        # threads: fixed before any work (speed only: the plan below does not depend on them)
        lengths = _tokenize(model, all_texts, max_len)
        padded = sum(len(r) * max(lengths[i] for i in r) for r in _make_buckets(lengths))
        threads = settings.threads or choose_threads(min(padded, batch_tokens), model.get_embedding_dimension())
        torch.set_num_threads(threads)
        buckets, frozen = capture(model, all_texts, start, max_len=max_len, groups=groups)
        cos = check_layer_path(model, buckets[0], start, frozen)
        if cos < CHECK_COSINE:
            raise UnsupportedEncoderError(
                f"{type(model[0].auto_model).__name__}: running layers {start}..{total_layers - 1} one by one gives "
                f"embeddings at cosine {cos:.4f} to the model's own (need {CHECK_COSINE}); this encoder cannot be tuned here")

        # label names: decide, then keep or drop their buckets
        if n_extra:
            evidence = label_name_evidence(frozen[:n], sets, multi, frozen[n:], all_sets[n:], settings.use_label_names,
                                           seed=settings.seed)
        else:
            evidence = LabelNameEvidence(settings.use_label_names, False, 0, reason="use_label_names='never'")
        if n_extra and not evidence.used:
            buckets = [b for b in buckets if b.rows.max() < n]
            all_sets = all_sets[:n]
        n_used = len(all_sets)
        widths = np.zeros(n_used, dtype=int)
        where: dict[int, tuple[int, int]] = {}  # text -> (bucket, position in it)
        for j, bucket in enumerate(buckets):
            widths[bucket.rows] = bucket.width
            for pos, row in enumerate(bucket.rows):
                where[int(row)] = (j, pos)
        batches = plan_batches(widths, all_sets, total, batch_tokens, settings.seed)
        T_full = target_matrix([all_sets[i] for i in np.concatenate([b.rows for b in buckets])])
        if should_stop is not None and should_stop():
            raise TuningCancelled("tuning cancelled before the first step: the model is unchanged")
        prepared = time.monotonic() - started

        def step_buckets(step: int) -> tuple[list[_Bucket], torch.Tensor]:
            """The buckets of one step (cut to its sample) and the pair targets in their row order."""
            if batches is None:
                return buckets, T_full
            chosen: dict[int, list[int]] = {}
            for row in batches[step]:
                j, pos = where[int(row)]
                chosen.setdefault(j, []).append(pos)
            parts = [buckets[j].take(np.asarray(sorted(pos))) for j, pos in sorted(chosen.items())]
            order = np.concatenate([b.rows for b in parts])
            return parts, target_matrix([all_sets[i] for i in order])

        # train
        for p in model.parameters():
            p.requires_grad_(False)
        if any(dtype != torch.float32 for dtype in saved_dtypes):  # bf16 weights: train fp32 copies of the top
            for p in params:
                p.data = p.data.float()
            for bucket in buckets:
                bucket.args = tuple(_as_float(a) for a in bucket.args)
                bucket.kwargs = {key: _as_float(v) for key, v in bucket.kwargs.items()}
        for p in params:
            p.requires_grad_(True)
        for layer in layers[start:]:
            layer.train(bool(settings.dropout))
        use_bf16 = precision == "bf16"
        warmup = max(1, round(settings.warmup_fraction * total)) if settings.warmup_fraction > 0 else 0
        optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=settings.weight_decay)
        tokens = [int(widths.sum())] * total if batches is None else [int(widths[b].sum()) for b in batches]
        losses: list[float] = []
        durations: list[float] = []
        stopped_by = "steps"
        budget = settings.time_budget_s
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(settings.seed)
            step = 0
            while step < total:
                if should_stop is not None and should_stop():
                    raise TuningCancelled(f"tuning cancelled at step {step} of {total}: the original weights are back")
                t0 = time.monotonic()
                for group in optimizer.param_groups:
                    group["lr"] = lr * lr_factor(step, total, warmup)
                parts, T = step_buckets(step)
                outs = []
                for bucket in parts:
                    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=use_bf16):
                        outs.append(run_top(model, bucket, start))
                loss = pair_loss(torch.cat(outs), T, settings.loss, settings.temperature)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, 1.0)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                losses.append(float(loss.detach()))
                durations.append(time.monotonic() - t0)
                step += 1
                per_token = _per_token(durations, tokens)
                left = per_token * sum(tokens[step:total])
                if budget is not None and step < total and time.monotonic() - started + left > budget:
                    # the optional cap: end here (the decay is cut short; the result follows the machine's pace)
                    total, stopped_by = step, "time_budget"
                    left = 0.0
                if progress is not None:
                    progress(TuningProgress(step, total, time.monotonic() - started, left, losses[-1]))
        if alpha < 1.0:  # WiSE-FT: part of the way back to the original weights
            interpolate_weights(params, saved_state, params, alpha)
    except BaseException:
        with torch.no_grad():
            for p, saved in zip(params, saved_state):
                p.data = saved
        raise
    finally:
        for p, dtype in zip(params, saved_dtypes):
            if p.dtype != dtype:
                p.data = p.data.to(dtype)
        for p in model.parameters():
            p.requires_grad_(saved_grad.get(id(p), p.requires_grad))
        model.eval()
        torch.set_num_threads(old_threads)

    seconds = time.monotonic() - started
    return TuningReport(
        steps=len(losses), planned_steps=int(settings.steps), stopped_by=stopped_by, seconds=round(seconds, 3),
        seconds_preparing=round(prepared, 3), seconds_per_step=round(float(np.median(durations[1:] or durations)), 4),
        top_layers=k, total_layers=total_layers, learning_rate=lr, batch_tokens=batch_tokens,
        tokens_per_step=round(float(np.mean(tokens[:len(losses)])), 1), sampled_batches=batches is not None,
        interpolation=alpha, dropout=bool(settings.dropout), threads=threads, precision=precision,
        loss_name=settings.loss, n_texts=n, n_label_texts=n_used - n, n_buckets=len(buckets), multi_label=multi,
        used_label_names=bool(evidence.used), label_names=evidence, losses=tuple(round(v, 6) for v in losses),
    )


def blend_encoders(original: SentenceTransformer, tuned: SentenceTransformer, fraction: float) -> SentenceTransformer:
    """A new encoder ``fraction`` of the way from ``original`` to ``tuned``, weight by weight (WiSE-FT again:
    ``original + fraction * (tuned - original)``); both are left as they were.

    ``tuned`` must be ``original`` tuned by ``tune_encoder`` (the same architecture); a tuning that ended at
    interpolation ``a`` blended by ``fraction`` is the tuning that would have ended at ``fraction * a``.
    """
    check_float("fraction", fraction, 0.0, 1.0, low_open=False)
    blended = copy.deepcopy(tuned)
    originals = dict(original.named_parameters())
    names, params = zip(*blended.named_parameters())
    interpolate_weights(params, [originals[name] for name in names], params, fraction)
    blended.eval()
    return blended


def interpolate_weights(targets: Sequence[torch.Tensor], starts: Sequence[torch.Tensor],
                        ends: Sequence[torch.Tensor], fraction: float) -> None:
    """Set each target, in place, ``fraction`` of the way from its start to its end: ``start + fraction * (end -
    start)``, in the target's dtype (WiSE-FT, Wortsman et al. 2022). The one place this step is written:
    ``tune_encoder`` ends with it (ends are the tuned weights themselves), ``blend_encoders`` makes the guard's
    blend with it, and the benchmark scores its mixes with it. An end may be its own target."""
    if not len(targets) == len(starts) == len(ends):
        raise ValueError(f"interpolate_weights needs as many starts and ends as targets: got {len(targets)} targets, "
                         f"{len(starts)} starts and {len(ends)} ends")
    with torch.no_grad():
        for target, start, end in zip(targets, starts, ends):
            start = start.to(target.dtype)
            target.copy_(start + fraction * (end.to(target.dtype) - start))


def _per_token(durations: Sequence[float], tokens: Sequence[int]) -> float:
    """Seconds per padded token: the last 5 steps, leaving out the first (it sets up kernels)."""
    if not durations:
        return 0.0
    recent = list(range(len(durations)))[1:][-5:] or [0]
    return float(sum(durations[i] for i in recent) / max(1, sum(tokens[i] for i in recent)))
