"""Saved custom models on disk: atomic save, list, load, rename, delete. No pickle anywhere.

One folder per model in the models directory (``$CLASSIFY_MODELS_DIR``, default ``./models``)::

    <name>/config.json          schema version, type, base model, labels, thresholds, metrics …
    <name>/head.safetensors     the classification head's arrays (safetensors.numpy)
    <name>/body/                the tuned sentence-transformer, SentenceTransformer.save()

Why this shape: safetensors and JSON cannot run code when read, unlike pickle / joblib /
``torch.load``; a model is written to ``.tmp-<name>-<random>`` and renamed into place, so a
crash never leaves half a model under a real name (temp folders are never listed).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import struct
import threading
import unicodedata
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

import numpy as np

from .embeddings import BASE_MODELS, DEFAULT_PRECISION, forget_encoder, get_encoder, resolve_precision
from .engine import Classification, embed_checked, multi_label_results, single_label_results
from .validation import ValidationError, check_truncate

MODELS_DIR_ENV = "CLASSIFY_MODELS_DIR"
SCHEMA_VERSION = 1
CONFIG_NAME = "config.json"
HEAD_NAME = "head.safetensors"
BODY_DIR = "body"
TEMP_PREFIX = ".tmp-"
MAX_NAME_LENGTH = 64
_NAME_RE = re.compile(r"[A-Za-z0-9_-]+", re.ASCII)

ModelType = Literal["single-label", "multi-label"]
MODEL_TYPES: tuple[str, ...] = ("single-label", "multi-label")


class UnknownModelError(LookupError):
    """No saved model has this name; the message lists the ones that exist."""


class BrokenModelError(LookupError):
    """A model folder exists but cannot be used; the message names the missing or bad file."""


def models_dir() -> Path:
    """Where custom models live: ``$CLASSIFY_MODELS_DIR``, else ``./models`` (current directory)."""
    env = os.environ.get(MODELS_DIR_ENV)
    return Path(env) if env else Path.cwd() / "models"


def validate_model_name(name: Any) -> str:
    """Return ``name`` if it is a safe folder name, else raise ``ValidationError`` naming the rule.

    Letters A-Z / a-z, digits, ``-`` and ``_`` only (ASCII, so no look-alike letters), 1 to 64
    characters, not starting with ``-`` (it would read as a CLI option), not a base model name.
    """
    if not isinstance(name, str):
        raise ValidationError(f"model name must be a string, got {type(name).__name__}: {name!r}")
    if not name:
        raise ValidationError("model name is empty: use letters, digits, - and _ (e.g. support-topics)")
    if len(name) > MAX_NAME_LENGTH:
        raise ValidationError(f"model name {name[:20]!r}… is {len(name)} characters; at most {MAX_NAME_LENGTH} allowed")
    if ".." in name or "/" in name or "\\" in name or os.path.isabs(name):
        raise ValidationError(
            f"model name {name!r} looks like a path: no '..', '/', '\\' or absolute paths; "
            "use letters, digits, - and _ only"
        )
    if not _NAME_RE.fullmatch(name):
        bad = sorted({c for c in name if not _NAME_RE.fullmatch(c)})
        shown = ", ".join(f"{c!r} ({unicodedata.name(c, f'U+{ord(c):04X}')})" for c in bad[:5])
        raise ValidationError(
            f"model name {name!r} has characters that are not allowed: {shown}. "
            "Use ASCII letters, digits, - and _ only"
        )
    if name.startswith("-"):
        raise ValidationError(f"model name {name!r} starts with '-': start with a letter or digit")
    if name in BASE_MODELS:
        raise ValidationError(f"model name {name!r} is a base model's name: choose another name")
    return name


@dataclass(frozen=True)
class ModelInfo:
    """What the Models page, ``python -m playground models`` and the API show about a model."""

    name: str
    type: str
    base_model: str
    labels: list[str] = field(default_factory=list)
    metrics: dict = field(default_factory=dict)
    n_examples: int = 0
    created: str = ""
    status: Literal["ok", "broken"] = "ok"
    problem: str | None = None

    def to_dict(self) -> dict:
        return {"name": self.name, "type": self.type, "base_model": self.base_model, "labels": list(self.labels),
                "metrics": self.metrics, "n_examples": self.n_examples, "created": self.created,
                "status": self.status, "problem": self.problem}

    @classmethod
    def from_config(cls, name: str, config: Mapping[str, Any]) -> ModelInfo:
        return cls(name=name, type=config["type"], base_model=config["base_model"], labels=list(config["labels"]),
                   metrics=dict(config.get("metrics") or {}), n_examples=int(config.get("n_examples", 0)),
                   created=str(config.get("created", "")))


# ----------------------------------------------------------------------------------------------
# Checking a folder


def _read_safetensors_header(path: Path) -> dict:
    """The JSON header of a safetensors file, checked against the file's size (cheap corruption check)."""
    size = path.stat().st_size
    with path.open("rb") as f:
        raw = f.read(8)
        if len(raw) < 8:
            raise ValueError("shorter than a safetensors header")
        (length,) = struct.unpack("<Q", raw)
        if length <= 0 or 8 + length > size:
            raise ValueError("header length does not fit the file")
        header = json.loads(f.read(length))
    end = max((int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"), default=0)
    if 8 + length + end != size:
        raise ValueError(f"file is {size} bytes, its header describes {8 + length + end}")
    return header


def _read_config(folder: Path) -> dict:
    path = folder / CONFIG_NAME
    if not path.is_file():
        raise BrokenModelError(f"{CONFIG_NAME} is missing in {folder}")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BrokenModelError(f"{CONFIG_NAME} in {folder} is not valid JSON ({exc})") from None
    if not isinstance(config, dict):
        raise BrokenModelError(f"{CONFIG_NAME} in {folder} is not a JSON object")
    missing = [k for k in ("schema_version", "type", "base_model", "labels", "head") if k not in config]
    if missing:
        raise BrokenModelError(f"{CONFIG_NAME} in {folder} is missing {', '.join(missing)}")
    if config["schema_version"] != SCHEMA_VERSION:
        raise BrokenModelError(
            f"{CONFIG_NAME} in {folder} has schema_version {config['schema_version']!r}; "
            f"this version reads {SCHEMA_VERSION}: retrain the model"
        )
    if config["type"] not in MODEL_TYPES:
        raise BrokenModelError(f"{CONFIG_NAME} in {folder} has an unknown type {config['type']!r}")
    if config["type"] == "multi-label":
        thresholds = config.get("thresholds") or {}
        missing_t = [label for label in config["labels"] if label not in thresholds]
        if missing_t:
            raise BrokenModelError(f"{CONFIG_NAME} in {folder} has no threshold for {', '.join(missing_t)}")
    return config


def check_model_folder(folder: Path) -> dict:
    """Check every file a model needs; return its config or raise ``BrokenModelError`` naming the file."""
    config = _read_config(folder)
    head = folder / HEAD_NAME
    if not head.is_file():
        raise BrokenModelError(f"{HEAD_NAME} is missing in {folder}")
    try:
        _read_safetensors_header(head)
    except (ValueError, OSError, KeyError, TypeError) as exc:
        raise BrokenModelError(f"{HEAD_NAME} in {folder} is corrupt ({exc})") from None
    body = folder / BODY_DIR
    if not body.is_dir():
        raise BrokenModelError(f"the tuned body folder {BODY_DIR}/ is missing in {folder}")
    for needed in ("modules.json", "config.json"):
        if not (body / needed).is_file():
            raise BrokenModelError(f"{BODY_DIR}/{needed} is missing in {folder}")
    weights = sorted(body.glob("*.safetensors"))
    if not weights:
        raise BrokenModelError(f"{BODY_DIR}/model.safetensors is missing in {folder}")
    for path in weights:
        try:
            _read_safetensors_header(path)
        except (ValueError, OSError, KeyError, TypeError) as exc:
            raise BrokenModelError(f"{BODY_DIR}/{path.name} in {folder} is corrupt ({exc})") from None
    return config


# ----------------------------------------------------------------------------------------------
# Listing


def _model_folders(directory: Path) -> list[Path]:
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if p.is_dir() and not p.name.startswith("."))


def list_models(directory: Path | None = None) -> list[ModelInfo]:
    """Every model folder, sorted by name; broken ones with ``status="broken"`` and the reason."""
    directory = directory or models_dir()
    infos = []
    for folder in _model_folders(directory):
        try:
            validate_model_name(folder.name)
            config = check_model_folder(folder)
            infos.append(ModelInfo.from_config(folder.name, config))
        except (BrokenModelError, ValidationError, KeyError, TypeError, ValueError) as exc:
            infos.append(_broken_info(folder, str(exc)))
    return infos


def _broken_info(folder: Path, problem: str) -> ModelInfo:
    """As much as a broken folder still tells (its config, if readable), plus the reason."""
    try:
        config = json.loads((folder / CONFIG_NAME).read_text(encoding="utf-8"))
        base = ModelInfo.from_config(folder.name, config)
        return ModelInfo(base.name, base.type, base.base_model, base.labels, base.metrics, base.n_examples,
                         base.created, "broken", problem)
    except Exception:  # noqa: BLE001 - the folder is already known broken; show what we can
        return ModelInfo(folder.name, "unknown", "unknown", status="broken", problem=problem)


def model_names(directory: Path | None = None) -> list[str]:
    """Names of the usable models (status ok)."""
    return [info.name for info in list_models(directory) if info.status == "ok"]


def _folder(name: str, directory: Path | None = None) -> Path:
    directory = directory or models_dir()
    try:
        validate_model_name(name)
    except ValidationError:
        raise UnknownModelError(_unknown_message(name, directory)) from None
    folder = directory / name
    if not folder.is_dir():
        raise UnknownModelError(_unknown_message(name, directory))
    return folder


def _unknown_message(name: str, directory: Path) -> str:
    names = model_names(directory)
    have = ", ".join(names) if names else "none yet (train one with python -m playground train)"
    return (f"unknown model {name!r}: custom models in {directory} are: {have}; "
            f"base models ({', '.join(BASE_MODELS)}) need examples")


# ----------------------------------------------------------------------------------------------
# Loading


class CustomModel:
    """A saved model, ready to classify texts without examples.

    >>> model = load_model("support-topics")
    >>> model.classify(["Where is my parcel?"])[0].prediction
    """

    def __init__(self, folder: Path, config: dict, head: dict[str, np.ndarray], encoder) -> None:
        self.folder = folder
        self.config = config
        self.info = ModelInfo.from_config(folder.name, config)
        self.encoder = encoder
        self.labels: list[str] = list(config["labels"])
        self.thresholds: dict[str, float] = {k: float(v) for k, v in (config.get("thresholds") or {}).items()}
        self.head = make_head(config, head)

    @property
    def type(self) -> str:
        return self.info.type

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


def make_head(config: Mapping[str, Any], arrays: dict[str, np.ndarray]):
    """The head object from its saved config and arrays (no code runs from the files)."""
    from .classifier import FewShotClassifier

    try:
        if config["type"] == "single-label":
            head = FewShotClassifier.from_saved(config["head"], arrays)
            if [str(c) for c in head.classes_] != list(config["labels"]):
                raise ValueError(f"head classes {list(head.classes_)} differ from labels {config['labels']}")
            return head
        from .training import MultiLabelHead

        return MultiLabelHead.from_saved(config["head"], arrays)
    except (KeyError, ValueError, TypeError) as exc:
        raise BrokenModelError(f"the head of model {config.get('name')!r} does not match its config: {exc}") from None


_MODELS: dict[tuple[str, str], tuple[tuple, CustomModel]] = {}
_MODELS_LOCK = threading.Lock()


def _stamp(folder: Path) -> tuple:
    return (folder.stat().st_mtime_ns, (folder / CONFIG_NAME).stat().st_mtime_ns)


def load_model(name: str, *, precision: str = DEFAULT_PRECISION, directory: Path | None = None) -> CustomModel:
    """A saved model by name, cached per process (reloaded when its folder changes).

    Raises ``UnknownModelError`` listing the available models, or ``BrokenModelError`` naming
    the missing or corrupt file.
    """
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    folder = _folder(name, directory)
    key = (str(folder.resolve()), resolve_precision(precision))
    try:
        stamp = _stamp(folder)
    except FileNotFoundError:
        stamp = ()
    with _MODELS_LOCK:
        cached = _MODELS.get(key)
        if cached is not None and cached[0] == stamp:
            return cached[1]
    config = check_model_folder(folder)
    if cached is not None:  # the folder changed (retrained or replaced): drop the old body's encoder
        forget_encoder(folder / BODY_DIR)
    try:
        arrays = load_file(str(folder / HEAD_NAME))
    except (SafetensorError, OSError, ValueError) as exc:
        raise BrokenModelError(f"{HEAD_NAME} in {folder} could not be read ({exc})") from None
    try:
        encoder = get_encoder(folder / BODY_DIR, precision=precision)
    except Exception as exc:  # noqa: BLE001 - any failure to load the body makes the model unusable; say which
        raise BrokenModelError(f"the tuned body in {folder / BODY_DIR} could not be loaded: {exc}") from None
    model = CustomModel(folder, config, arrays, encoder)
    with _MODELS_LOCK:
        _MODELS[key] = (stamp, model)
    return model


def _forget(folder: Path) -> None:
    resolved = str(folder.resolve())
    with _MODELS_LOCK:
        for key in [k for k in _MODELS if k[0] == resolved]:
            del _MODELS[key]
    forget_encoder(folder / BODY_DIR)


# ----------------------------------------------------------------------------------------------
# Saving, renaming, deleting


def now_iso() -> str:
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()


def save_model(name: str, *, config: dict, head_arrays: Mapping[str, np.ndarray],
               write_body: Callable[[Path], None], directory: Path | None = None) -> ModelInfo:
    """Write a model to a temp folder, check it, and rename it into place.

    ``write_body(path)`` saves the tuned sentence-transformer into ``path`` (``model.save``).
    Refuses to replace an existing model: delete or rename it first.
    """
    from safetensors.numpy import save_file

    validate_model_name(name)
    directory = directory or models_dir()
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / name
    if target.exists():
        raise ValidationError(f"a model named {name!r} already exists in {directory}: delete it or pick another name")
    temp = directory / f"{TEMP_PREFIX}{name}-{uuid.uuid4().hex[:8]}"
    temp.mkdir()
    try:
        config = {"schema_version": SCHEMA_VERSION, "name": name, **config}
        save_file({k: np.ascontiguousarray(v) for k, v in head_arrays.items()}, str(temp / HEAD_NAME))
        write_body(temp / BODY_DIR)
        (temp / CONFIG_NAME).write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        for leftover in temp.rglob("*"):  # SentenceTransformer.save may write a README; never a pickle
            if leftover.suffix in (".pkl", ".pickle", ".bin", ".pt", ".joblib"):
                raise ValueError(f"refusing to save {leftover.name}: only safetensors and JSON are allowed")
        check_model_folder(temp)
        if target.exists():
            raise ValidationError(f"a model named {name!r} was created meanwhile in {directory}: pick another name")
        os.rename(temp, target)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    _forget(target)
    return ModelInfo.from_config(name, config)


def remove_leftovers(directory: Path | None = None) -> list[str]:
    """Delete ``.tmp-*`` folders a killed save or delete left behind; return their names.

    They are never listed or loaded, only wasted disk. Called by ``train`` once it holds the
    training lock: saves run under that lock, so no live save is writing one at that moment.
    """
    directory = directory or models_dir()
    if not directory.is_dir():
        return []
    removed = []
    for path in sorted(directory.glob(f"{TEMP_PREFIX}*")):
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path.name)
    return removed


def delete_model(name: str, directory: Path | None = None) -> None:
    """Remove a model folder (broken ones too). Renamed aside first, so a crash never leaves half."""
    folder = _folder(name, directory)
    _forget(folder)
    trash = folder.parent / f"{TEMP_PREFIX}deleted-{name}-{uuid.uuid4().hex[:8]}"
    os.rename(folder, trash)
    shutil.rmtree(trash, ignore_errors=True)


def rename_model(old: str, new: str, directory: Path | None = None) -> ModelInfo:
    """Rename a model (folder and the name in its config)."""
    folder = _folder(old, directory)
    validate_model_name(new)
    target = folder.parent / new
    if target.exists():
        raise ValidationError(f"a model named {new!r} already exists: pick another name or delete that one")
    _forget(folder)
    os.rename(folder, target)
    config_path = target / CONFIG_NAME
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
        config["name"] = new
        tmp = target / f"{TEMP_PREFIX}{CONFIG_NAME}"
        tmp.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        os.replace(tmp, config_path)
    except (OSError, json.JSONDecodeError, UnicodeDecodeError, TypeError):
        pass  # a broken model keeps its (broken) config; list_models still reports why
    return next(info for info in list_models(folder.parent) if info.name == new)
