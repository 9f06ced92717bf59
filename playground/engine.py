"""Inference: few-shot models, saved custom models, the loaded-model cache, ``get_classifier`` and ``classify``.

The one path every front end takes (page, CLI, HTTP API, bulk, Spark): validate → embed → fit
or load the classifier → results in input order. "Examples or a custom model?" is decided once,
in ``get_classifier``.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, overload

import numpy as np

from .classifier import FewShotClassifier, Head, make_head
from .embeddings import (
    BASE_MODELS,
    DEFAULT_PRECISION,
    Encoder,
    TextTooLongError,
    forget_encoder,
    get_encoder,
    resolve_precision,
)
from .windows import Reading
from .store import BrokenModelError, ModelInfo, SavedModel, folder_stamp, model_folder, on_change, read_folder
from .validation import (
    MAX_INPUTS,
    UNKNOWN,
    ClassificationType,
    ExampleLike,
    ValidationError,
    as_examples,
    check_examples,
    check_inputs,
    check_truncate,
)

FITTED_CACHE_SIZE = 32


@dataclass(frozen=True)
class Classification:
    """The answer for one input.

    ``labels`` holds every label's confidence, highest first; for single-label models they sum
    to 1. ``predictions`` is every label over its threshold for multi-label models (possibly
    none) and ``(prediction,)`` for single-label ones. ``explanation`` is an ``explain.Explanation``
    when one was asked for (``classify(..., explain=True)``), else ``None`` and left out of ``to_dict``.
    """

    input: str
    prediction: str
    confidence: float
    labels: dict[str, float]
    predictions: tuple[str, ...] = ()
    classification_type: ClassificationType = "single-label"
    thresholds: dict[str, float] = field(default_factory=dict)
    explanation: Any = None  # explain.Explanation; typed loosely because explain.py imports this module

    def to_dict(self) -> dict:
        out = {
            "input": self.input, "prediction": self.prediction, "confidence": self.confidence,
            "labels": dict(self.labels), "predictions": list(self.predictions),
            "classification_type": self.classification_type,
        }
        if self.explanation is not None:
            out["explanation"] = self.explanation.to_dict()
        return out


def single_label_results(inputs: Sequence[str], classes: Sequence[str], proba: np.ndarray) -> list[Classification]:
    """One ``Classification`` per row of ``proba`` (columns in the order of ``classes``)."""
    results = []
    for text, row in zip(inputs, proba):
        order = np.argsort(-row, kind="stable")
        labels = {str(classes[j]): float(row[j]) for j in order}
        top = str(classes[order[0]])
        results.append(Classification(text, top, float(row[order[0]]), labels, (top,)))
    return results


def multi_label_results(inputs: Sequence[str], classes: Sequence[str], proba: np.ndarray,
                        thresholds: Mapping[str, float]) -> list[Classification]:
    """Multi-label answers: each label scored on its own; predicted where over its threshold."""
    results = []
    for text, row in zip(inputs, proba):
        order = np.argsort(-row, kind="stable")
        labels = {str(classes[j]): float(row[j]) for j in order}
        chosen = tuple(label for label, p in labels.items() if p >= thresholds[label])
        results.append(Classification(text, chosen[0] if chosen else "", float(row[order[0]]), labels,
                                      chosen, "multi-label", dict(thresholds)))
    return results


def check_fits(encoder: Encoder, texts: Sequence[str], *, truncate: str, what: str = "inputs") -> None:
    """Under ``truncate="NONE"``, a ``ValidationError`` naming the first text over the model's limit by its index."""
    if truncate != "NONE":
        return
    for i, text in enumerate(texts):
        try:
            encoder.fit_to_length(text, "NONE")
        except TextTooLongError as exc:
            raise ValidationError(
                f"{what}[{i}] is too long: {exc.tokens} tokens, the model takes at most {exc.limit}. "
                "Shorten it, or use truncate END (keep the start), START (keep the end) or WINDOWS (read it all, "
                "in windows)"
            ) from None


@dataclass(frozen=True)
class LengthNote:
    """An input longer than the model's window, and how it was read (``Reading.describe``): for the page and the CLI."""

    index: int
    characters: int
    reading: Reading

    def __str__(self) -> str:
        return f"input {self.index + 1}: {self.reading.describe(self.characters)}"


def length_notes(encoder: Encoder, texts: Sequence[str], *, truncate: str = "END") -> list[LengthNote]:
    """The inputs longer than the window under ``truncate`` (NONE refuses them before this), each with how it was read."""
    truncate = check_truncate(truncate)
    notes = []
    for i, text in enumerate(texts):
        reading = encoder.reading(text, truncate)
        if reading.longer:
            notes.append(LengthNote(i, len(text), reading))
    return notes


def embed_checked(encoder: Encoder, texts: Sequence[str], *, truncate: str, what: str = "inputs",
                  batch_size: int = 64) -> np.ndarray:
    """Embed, turning a text over the limit under ``truncate="NONE"`` into a message with its index."""
    check_fits(encoder, texts, truncate=truncate, what=what)
    return encoder.embed(texts, truncate=truncate, batch_size=batch_size)


class FewShotModel:
    """Examples fitted on a base model's embeddings, ready to classify.

    >>> model = FewShotModel([("The order is 5 days late", "negative"), ...], model="small")
    >>> model.classify(["This item broke after 3 weeks"])[0].prediction
    'negative'
    """

    type: ClassificationType = "single-label"

    def __init__(self, examples: Iterable[ExampleLike], model: str = "small", *, truncate: str = "END",
                 precision: str = DEFAULT_PRECISION, label_names: bool = False,
                 descriptions: Mapping[str, str] | None = None) -> None:
        if model not in BASE_MODELS:
            raise ValidationError(
                f"model {model!r} does not take examples: choose one of {', '.join(BASE_MODELS)}, "
                "or call a custom model without examples"
            )
        self.examples = as_examples(examples)
        check_examples(self.examples)
        self.model = model
        self.encoder = get_encoder(model, precision=precision)
        texts = [ex.text for ex in self.examples]
        X = embed_checked(self.encoder, texts, truncate=check_truncate(truncate), what="examples")
        y = [ex.label for ex in self.examples]
        if label_names:  # the names (and descriptions) as a prior, weighted out of fold (label_prior.py)
            from .label_prior import LabelPriorClassifier, label_embedding_map, label_texts  # opt-in: needs SciPy

            labels = sorted(set(y))
            described = {k: v for k, v in (descriptions or {}).items() if k in labels and v.strip()}
            names = self.encoder.embed(label_texts(labels, described), truncate="END")
            self.classifier = LabelPriorClassifier(label_embeddings=label_embedding_map(labels, names, described)).fit(X, y)
        else:
            self.classifier = FewShotClassifier().fit(X, y)

    @property
    def labels(self) -> list[str]:
        return [str(c) for c in self.classifier.classes_]

    @property
    def head(self) -> Head:
        return self.classifier

    @property
    def config(self) -> dict[str, Any]:
        """The fitted head described as a saved model's config (what Spark ships to its workers)."""
        return {"type": self.type, "base_model": self.model, "labels": self.labels, "head": self.classifier.to_config()}

    def classify(self, inputs: Sequence[str], *, truncate: str = "END", batch_size: int = 64) -> list[Classification]:
        X = embed_checked(self.encoder, inputs, truncate=check_truncate(truncate), batch_size=batch_size)
        return single_label_results(inputs, self.classifier.classes_, self.classifier.predict_proba(X))


class CustomModel:
    """A saved model (or a head in that shape), ready to classify texts without examples.

    >>> model = load_model("support-topics")
    >>> model.classify(["Where is my parcel?"])[0].prediction
    """

    def __init__(self, config: Mapping[str, Any], head: Head, encoder: Encoder, *, folder: Path | None = None) -> None:
        self.folder = folder
        self.config = dict(config)
        # the config's name: an earlier version's folder is named by its number (store.py, "Versions")
        self.info = ModelInfo.from_config(str(config.get("name") or (folder.name if folder else "")), config)
        self.encoder = encoder
        self.labels: list[str] = list(config["labels"])
        self.thresholds: dict[str, float] = {k: float(v) for k, v in (config.get("thresholds") or {}).items()}
        self.head = head

    @classmethod
    def from_saved(cls, config: Mapping[str, Any], arrays: Mapping[str, np.ndarray], encoder: Encoder, *,
                   folder: Path | None = None) -> CustomModel:
        """From a config and head arrays as the store saves them; ``BrokenModelError`` if they disagree."""
        try:
            head = make_head(config, arrays)
        except (KeyError, ValueError, TypeError) as exc:
            raise BrokenModelError(f"the head of model {config.get('name')!r} does not match its config: {exc}") from None
        return cls(config, head, encoder, folder=folder)

    @property
    def type(self) -> ClassificationType:
        return self.info.type  # type: ignore[return-value]

    def embed(self, texts: Sequence[str], *, truncate: str = "END", batch_size: int = 64) -> np.ndarray:
        return embed_checked(self.encoder, texts, truncate=check_truncate(truncate), batch_size=batch_size)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Per-label probabilities on embeddings, columns in ``self.labels`` order."""
        return self.head.predict_proba(X)

    def classify(self, texts: Sequence[str], *, truncate: str = "END", batch_size: int = 64) -> list[Classification]:
        texts = list(texts)
        if not texts:
            return []
        proba = self.predict_proba(self.embed(texts, truncate=truncate, batch_size=batch_size))
        if self.type == "multi-label":
            return multi_label_results(texts, self.labels, proba, self.thresholds)
        return single_label_results(texts, self.labels, proba)


Classifier = FewShotModel | CustomModel


def check_unknown_below(value: Any) -> float | None:
    """``None`` (no ``unknown`` answer) or a confidence in [0, 1]; a ``ValidationError`` naming the value otherwise."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not 0 <= float(value) <= 1:
        raise ValidationError(f"unknown_below must be a confidence from 0 to 1 (e.g. 0.6), or left out. "
                              f"But it was: {value!r}")
    return float(value)


def with_unknown(results: Sequence[Classification], threshold: float | None) -> list[Classification]:
    """Single-label answers whose confidence is below ``threshold`` become ``unknown`` (labels and confidence kept).

    The opt-in answer of issue #19: ``prediction`` and ``predictions`` say ``"unknown"``; ``labels``
    still holds every label's confidence, so a caller can see what the model leaned to.
    """
    threshold = check_unknown_below(threshold)
    if threshold is None:
        return list(results)
    out = []
    for r in results:
        if r.classification_type == "multi-label":
            raise ValidationError("unknown_below applies to single-label models; a multi-label model already "
                                  "answers no label when none is over its threshold")
        if UNKNOWN in r.labels:
            raise ValidationError(f"one of the labels is called {UNKNOWN!r}, so an {UNKNOWN!r} answer would be "
                                  "ambiguous: rename that label, or leave unknown_below out")
        out.append(replace(r, prediction=UNKNOWN, predictions=(UNKNOWN,)) if r.confidence < threshold else r)
    return out


_FITTED: OrderedDict[tuple, FewShotModel] = OrderedDict()
_FITTED_LOCK = threading.Lock()


def fit_few_shot(examples: Iterable[ExampleLike], model: str = "small", *, truncate: str = "END",
                 precision: str = DEFAULT_PRECISION, label_names: bool = False,
                 descriptions: Mapping[str, str] | None = None) -> FewShotModel:
    """A ``FewShotModel``, reused when the same examples were fitted on the same model recently."""
    examples = as_examples(examples)
    key = (model, resolve_precision(precision), check_truncate(truncate), tuple((ex.text, ex.label) for ex in examples),
           bool(label_names), tuple(sorted((descriptions or {}).items())) if label_names else ())
    with _FITTED_LOCK:
        fitted = _FITTED.get(key)
        if fitted is not None:
            _FITTED.move_to_end(key)
            return fitted
    fitted = FewShotModel(examples, model, truncate=truncate, precision=precision, label_names=label_names,
                          descriptions=descriptions)
    with _FITTED_LOCK:
        _FITTED[key] = fitted
        while len(_FITTED) > FITTED_CACHE_SIZE:
            _FITTED.popitem(last=False)
    return fitted


def clear_fitted() -> None:
    """Forget every fitted few-shot model, so the next ``classify`` fits again (for timing the fit)."""
    with _FITTED_LOCK:
        _FITTED.clear()


_MODELS: dict[tuple[str, str], tuple[tuple, CustomModel]] = {}
_MODELS_LOCK = threading.Lock()


def load_model(name: str, *, precision: str = DEFAULT_PRECISION, directory: Path | None = None) -> CustomModel:
    """A saved model by name, cached per process (reloaded when its folder changes).

    ``name`` is the current version; ``name@2`` is version 2 (``store.model_folder`` resolves both).
    Raises ``UnknownModelError`` listing the available models, or ``BrokenModelError`` naming
    the missing or corrupt file.
    """
    return load_folder(model_folder(name, directory), precision=precision)


def load_folder(folder: Path, *, precision: str = DEFAULT_PRECISION) -> CustomModel:
    """``load_model`` for a model folder given by its path (Spark takes either)."""
    key = (str(folder.resolve()), resolve_precision(precision))
    stamp = folder_stamp(folder)
    with _MODELS_LOCK:
        cached = _MODELS.get(key)
        if cached is not None and cached[0] == stamp:
            return cached[1]
    saved: SavedModel = read_folder(folder)
    if cached is not None:  # the folder changed (retrained or replaced): drop the old body's encoder
        forget_encoder(saved.body)
    try:
        encoder = get_encoder(saved.body, precision=precision)
    except Exception as exc:  # noqa: BLE001 - any failure to load the body makes the model unusable; say which
        raise BrokenModelError(f"the tuned body in {saved.body} could not be loaded: {exc}") from None
    model = CustomModel.from_saved(saved.config, saved.head_arrays, encoder, folder=folder)
    with _MODELS_LOCK:
        _MODELS[key] = (stamp, model)
    return model


def forget_model(folder: Path) -> None:
    """Drop a folder's loaded models (the store calls this when it saves, renames or deletes one)."""
    resolved = str(folder.resolve())
    with _MODELS_LOCK:
        for key in [k for k in _MODELS if k[0] == resolved]:
            del _MODELS[key]


on_change(forget_model)


def model_encoder(model: str, *, precision: str = DEFAULT_PRECISION, directory: Path | None = None) -> Encoder:
    """The encoder a model reads texts with: a base model's, or a custom model's tuned body (for ``length_notes``)."""
    if model in BASE_MODELS:
        return get_encoder(model, precision=precision)
    return load_model(model, precision=precision, directory=directory).encoder


def get_classifier(examples: Iterable[ExampleLike] | None, model: str = "small", *, truncate: str = "END",
                   precision: str = DEFAULT_PRECISION, directory: Path | None = None, label_names: bool = False,
                   descriptions: Mapping[str, str] | None = None) -> Classifier:
    """Few-shot examples fitted on a base model, or a saved custom model by name: the one place that decides.

    ``classify``, bulk jobs and Spark all call it, so the rules and their messages are the same:
    a base model needs examples, a custom model takes none.
    """
    if examples is None:
        if model in BASE_MODELS:
            raise ValidationError(
                f"model {model!r} needs examples: give at least 2 examples for each of at least 2 labels, "
                "or name a custom model"
            )
        return load_model(model, precision=precision, directory=directory)
    return fit_few_shot(examples, model, truncate=truncate, precision=precision, label_names=label_names,
                        descriptions=descriptions)


@overload
def classify(inputs: str, examples: Iterable[ExampleLike] | None = ..., model: str = ..., *,
             truncate: str = ..., precision: str = ..., max_inputs: int | None = ..., label_names: bool = ...,
             descriptions: Mapping[str, str] | None = ..., unknown_below: float | None = ...) -> Classification: ...
@overload
def classify(inputs: Sequence[str], examples: Iterable[ExampleLike] | None = ..., model: str = ..., *,
             truncate: str = ..., precision: str = ..., max_inputs: int | None = ..., label_names: bool = ...,
             descriptions: Mapping[str, str] | None = ..., unknown_below: float | None = ...) -> list[Classification]: ...


def classify(inputs, examples=None, model="small", *, truncate="END", precision=DEFAULT_PRECISION, max_inputs=MAX_INPUTS,
             label_names=False, descriptions=None, unknown_below=None):
    """Classify ``inputs`` from labelled ``examples`` (few-shot) or with a custom model by name.

    Parameters
    ----------
    inputs : list of str, or one str
        Texts to classify; one string gives one ``Classification`` back, a list a list.
    examples : iterable of Example, (text, label) or {"text", "label"}, optional
        At least 2 labels with at least 2 examples each. Leave out for a custom model.
    model : str, default="small"
        ``"small"``, ``"large"`` or the name of a saved custom model.
    truncate : {"END", "START", "NONE", "WINDOWS"}, default="END"
        Texts over the model's limit lose their end (END), their start (START), or raise (NONE), as
        Cohere's; WINDOWS (this project's extension) reads them whole in windows, averaged
        (``windows.py``; at most ``$CLASSIFY_MAX_WINDOWS``, default 16, windows a text).
    max_inputs : int or None, default=96
        Cohere's per-call limit; ``None`` lifts it (bulk jobs batch on their own).
    label_names : bool, default=False
        Use the label names (and ``descriptions``, {label: words}) as a prior, weighted by how well
        they predict your examples out of fold (``label_prior.py``): names that do not help get weight
        0. Off by default: on 7 public sets it adds 3 points at 8 examples per label, but it can move
        near-ties the other way (the guide's example on small flips to positive).
    unknown_below : float or None, default=None
        Opt-in: answers whose confidence is below this become ``"unknown"`` (single-label only).
        ``label_next.choose_threshold(examples, target_precision=0.9)`` picks one from your
        examples' out-of-fold predictions and says what it costs in coverage.

    Examples
    --------
    >>> r = classify(["This item broke after 3 weeks"],
    ...              [("The order is 5 days late", "negative"), ...])[0]
    >>> r.prediction, r.confidence, r.labels
    """
    is_singular = isinstance(inputs, str)
    texts = [inputs] if is_singular else list(inputs)
    check_inputs(texts, max_inputs=max_inputs)
    truncate = check_truncate(truncate)
    threshold = check_unknown_below(unknown_below)
    results = get_classifier(examples, model, truncate=truncate, precision=precision, label_names=label_names,
                             descriptions=descriptions).classify(texts, truncate=truncate)
    results = with_unknown(results, threshold)
    return results[0] if is_singular else results
