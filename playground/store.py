"""Saved custom models on disk: names, list, read, atomic save, rename, delete, the training lock. No pickle.

Only files: turning a folder into a model that classifies is ``engine.load_model``'s job.

One folder per model in the models directory (``$CLASSIFY_MODELS_DIR``, default ``./models``)::

    <name>/config.json          schema version, type, base model, labels, thresholds, metrics …
    <name>/head.safetensors     the classification head's arrays (safetensors.numpy)
    <name>/body/                the tuned sentence-transformer, SentenceTransformer.save()
    .versions/<name>/<n>/       earlier versions of <name>, each a whole model folder of the same shape

Why this shape: safetensors and JSON cannot run code when read, unlike pickle / joblib /
``torch.load``; a model is written to ``.tmp-<name>-<random>`` and renamed into place, so a
crash never leaves half a model under a real name (temp folders are never listed).

Versions: saving under an existing name with ``replace=True`` keeps the earlier model, scores and
all, as ``.versions/<name>/<n>`` (``n`` is its ``version`` in config.json; 1 for models saved before
versions existed). The current version stays at ``<name>/``, so every reader that knows a model by
its folder (``load_model``, Spark, older releases of this package) keeps working unchanged, and
``.versions`` starts with a dot, so nothing lists it as a model. A new version is built and checked
under a temp name first, as any save; publishing it is two renames (the current folder into
``.versions``, the new one into place). A crash between the two leaves ``<name>/`` missing and the
earlier version archived: the next ``list_models`` or lookup puts that version back (``recover``),
so a model is never lost and a half-written one is never listed. ``name@n`` names version ``n``
(``@`` is not allowed in a name, so it is never ambiguous); ``rollback_model`` makes one current.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load_file, save_file

from ._files import now_iso, write_text_atomic
from .embeddings import BASE_MODELS, forget_encoder
from .validation import CLASSIFICATION_TYPES, ValidationError, check_folder_name

MODELS_DIR_ENV = "CLASSIFY_MODELS_DIR"
SCHEMA_VERSION = 1
CONFIG_NAME = "config.json"
HEAD_NAME = "head.safetensors"
BODY_DIR = "body"
TEMP_PREFIX = ".tmp-"
LOCK_NAME = ".training.lock"
VERSIONS_DIR = ".versions"
VERSION_SEPARATOR = "@"


class UnknownModelError(LookupError):
    """No saved model has this name; the message lists the ones that exist."""


class BrokenModelError(LookupError):
    """A model folder exists but cannot be used; the message names the missing or bad file."""


class TrainingBusyError(RuntimeError):
    """Another training is running (one at a time per machine's models folder)."""


def models_dir() -> Path:
    """Where custom models live: ``$CLASSIFY_MODELS_DIR``, else ``./models`` (current directory)."""
    env = os.environ.get(MODELS_DIR_ENV)
    return Path(env) if env else Path.cwd() / "models"


def validate_model_name(name: Any) -> str:
    """Return ``name`` if it is a safe folder name, else raise ``ValidationError`` naming the rule.

    ``validation.check_folder_name``'s rules (ASCII letters, digits, ``-`` and ``_``, 1 to 64
    characters, not starting with ``-``), and not a base model name.
    """
    check_folder_name(name, "model name", example="support-topics")
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
    version: int = 1

    def to_dict(self) -> dict:
        return {"name": self.name, "type": self.type, "base_model": self.base_model, "labels": list(self.labels),
                "metrics": self.metrics, "n_examples": self.n_examples, "created": self.created,
                "status": self.status, "problem": self.problem, "version": self.version}

    @classmethod
    def from_config(cls, name: str, config: Mapping[str, Any]) -> ModelInfo:
        return cls(name=name, type=config["type"], base_model=config["base_model"], labels=list(config["labels"]),
                   metrics=dict(config.get("metrics") or {}), n_examples=int(config.get("n_examples", 0)),
                   created=str(config.get("created", "")), version=config_version(config))


def config_version(config: Mapping[str, Any]) -> int:
    """A saved model's version number: ``config["version"]``, 1 for models saved before versions existed."""
    version = config.get("version", 1)
    return version if isinstance(version, int) and not isinstance(version, bool) and version >= 1 else 1


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
    if config["type"] not in CLASSIFICATION_TYPES:
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
    """Every model (its current version), sorted by name; broken ones with ``status="broken"`` and the reason."""
    directory = directory or models_dir()
    recover(directory)
    infos = []
    for folder in _model_folders(directory):
        try:
            validate_model_name(folder.name)
            config = check_model_folder(folder)
            infos.append(ModelInfo.from_config(folder.name, config))
        except (BrokenModelError, ValidationError, KeyError, TypeError, ValueError) as exc:
            infos.append(_broken_info(folder, str(exc)))
    return infos


def _broken_info(folder: Path, problem: str, name: str | None = None) -> ModelInfo:
    """As much as a broken folder still tells (its config, if readable), plus the reason."""
    name = name or folder.name
    try:
        config = json.loads((folder / CONFIG_NAME).read_text(encoding="utf-8"))
        return ModelInfo(**{**ModelInfo.from_config(name, config).to_dict(), "status": "broken", "problem": problem})
    except Exception:  # noqa: BLE001 - the folder is already known broken; show what we can
        return ModelInfo(name, "unknown", "unknown", status="broken", problem=problem)


def model_names(directory: Path | None = None) -> list[str]:
    """Names of the usable models (status ok)."""
    return [info.name for info in list_models(directory) if info.status == "ok"]


def split_model_ref(ref: str) -> tuple[str, int | None]:
    """``"tickets@2"`` → ``("tickets", 2)``; ``"tickets"`` → ``("tickets", None)`` (the current version).

    A version that is not a whole number from 1 is a ``ValidationError`` naming it.
    """
    name, separator, version = ref.partition(VERSION_SEPARATOR)
    if not separator:
        return ref, None
    if not version.isascii() or not version.isdigit() or int(version) < 1:
        raise ValidationError(f"model {ref!r}: the version after {VERSION_SEPARATOR!r} must be a whole number "
                              f"from 1 (e.g. {name}{VERSION_SEPARATOR}2)")
    return name, int(version)


def model_folder(name: str, directory: Path | None = None) -> Path:
    """The folder of the saved model ``name`` (its current version) or ``name@n`` (version ``n``).

    ``UnknownModelError`` listing the models there (or the model's versions) if there is none.
    """
    directory = directory or models_dir()
    try:
        base, version = split_model_ref(name)
        validate_model_name(base)
    except ValidationError:
        raise UnknownModelError(_unknown_message(name, directory)) from None
    folder = directory / base
    if not folder.is_dir() and recover(directory, base) is None:
        raise UnknownModelError(_unknown_message(name, directory))
    if version is None or _folder_version(folder) == version:
        return folder
    archived = _versions_dir(directory, base) / str(version)
    if not archived.is_dir():
        have = ", ".join(str(info.version) + (" (current)" if i == 0 else "")
                         for i, info in enumerate(list_versions(base, directory)))
        raise UnknownModelError(f"model {base!r} has no version {version}: its versions are {have}")
    return archived


def _unknown_message(name: str, directory: Path) -> str:
    names = model_names(directory)
    have = ", ".join(names) if names else "none yet (train one with python -m playground train)"
    return (f"unknown model {name!r}: custom models in {directory} are: {have}; "
            f"base models ({', '.join(BASE_MODELS)}) need examples")


# ----------------------------------------------------------------------------------------------
# Versions


def _versions_dir(directory: Path, name: str) -> Path:
    return directory / VERSIONS_DIR / name


def _folder_version(folder: Path) -> int:
    """The version number a model folder's config gives (1 when unreadable: it is then listed as broken)."""
    try:
        return config_version(json.loads((folder / CONFIG_NAME).read_text(encoding="utf-8")))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError, AttributeError):
        return 1


def _archived(directory: Path, name: str) -> list[tuple[int, Path]]:
    """``(version, folder)`` of the earlier versions of ``name``, newest first."""
    folder = _versions_dir(directory, name)
    if not folder.is_dir():
        return []
    found = [(int(p.name), p) for p in folder.iterdir() if p.is_dir() and p.name.isdigit()]
    return sorted(found, reverse=True)


def list_versions(name: str, directory: Path | None = None) -> list[ModelInfo]:
    """Every version of the model ``name``: the current one first, then the earlier ones, newest first.

    Each has its own scores (``metrics``) and ``created``; a damaged one is ``status="broken"``.
    """
    current = model_folder(name, directory)  # UnknownModelError when there is no such model
    infos = []
    for folder in [current, *(p for _, p in _archived(current.parent, name))]:
        try:
            infos.append(ModelInfo.from_config(name, check_model_folder(folder)))
        except (BrokenModelError, KeyError, TypeError, ValueError) as exc:
            infos.append(_broken_info(folder, str(exc), name))
    return infos


_SWAP_LOCK = threading.RLock()


def recover(directory: Path | None = None, name: str | None = None) -> Path | None:
    """Finish what a crash between the two renames of a new version left: the newest archived version back in place.

    For ``name`` (or every model with archived versions when ``None``) whose current folder is
    missing; returns the folder put back for ``name``. Idempotent: nothing to do, nothing done.
    """
    directory = directory or models_dir()
    names = [name] if name is not None else [p.name for p in _model_folders(directory / VERSIONS_DIR)]
    restored = None
    with _SWAP_LOCK:
        for each in names:
            target = directory / each
            archived = _archived(directory, each)
            if target.exists() or not archived:
                continue
            try:
                os.rename(archived[0][1], target)
            except OSError:  # another process put it back first
                continue
            _drop_empty_versions(directory, each)
            if each == name:
                restored = target
    return restored


def _drop_empty_versions(directory: Path, name: str) -> None:
    """Remove ``.versions/<name>`` and ``.versions`` once they hold nothing."""
    for folder in (_versions_dir(directory, name), directory / VERSIONS_DIR):
        try:
            folder.rmdir()
        except FileNotFoundError:
            continue
        except OSError:  # not empty
            return


def _publish_version(temp: Path, target: Path, archive: Path) -> None:
    """Move the current ``target`` to ``archive`` and ``temp`` into place (two renames; see the module doc)."""
    archive.parent.mkdir(parents=True, exist_ok=True)
    if archive.exists():
        raise ValidationError(f"version folder {archive} already exists: delete it by hand, then save again")
    os.rename(target, archive)
    try:
        os.rename(temp, target)
    except BaseException:
        os.rename(archive, target)  # put the current version back: the save failed, nothing changed
        raise


def rollback_model(name: str, version: int, directory: Path | None = None) -> ModelInfo:
    """Make version ``version`` of ``name`` the current one; the current one is kept as an earlier version.

    The API, the CLI and the pages then use it by name. ``UnknownModelError`` if there is no such
    version, ``BrokenModelError`` if its files are damaged.
    """
    directory = directory or models_dir()
    with _SWAP_LOCK:
        current = model_folder(name, directory)
        chosen = model_folder(f"{name}{VERSION_SEPARATOR}{version}", directory)
        if chosen == current:
            return ModelInfo.from_config(name, check_model_folder(current))
        config = check_model_folder(chosen)
        _changed(current)
        _publish_version(chosen, current, _versions_dir(directory, name) / str(_folder_version(current)))
        _drop_empty_versions(directory, name)
    _changed(current)
    return ModelInfo.from_config(name, config)


# ----------------------------------------------------------------------------------------------
# Reading


@dataclass(frozen=True)
class SavedModel:
    """A checked model folder as read from disk: its config and its head's arrays (the body stays a path)."""

    folder: Path
    config: dict
    head_arrays: dict[str, np.ndarray]

    @property
    def body(self) -> Path:
        return self.folder / BODY_DIR


def read_model(name: str, directory: Path | None = None) -> SavedModel:
    """Check every file of the model ``name`` and read its config and head.

    Raises ``UnknownModelError`` listing the available models, or ``BrokenModelError`` naming
    the missing or corrupt file.
    """
    return read_folder(model_folder(name, directory))


def read_folder(folder: Path) -> SavedModel:
    """``read_model`` for a folder given by its path."""
    config = check_model_folder(folder)
    try:
        arrays = load_file(str(folder / HEAD_NAME))
    except (SafetensorError, OSError, ValueError) as exc:
        raise BrokenModelError(f"{HEAD_NAME} in {folder} could not be read ({exc})") from None
    return SavedModel(folder, config, arrays)


def folder_stamp(folder: Path) -> tuple:
    """Changes whenever the folder is replaced or its config rewritten (a loaded model is then stale)."""
    try:
        return (folder.stat().st_mtime_ns, (folder / CONFIG_NAME).stat().st_mtime_ns)
    except FileNotFoundError:
        return ()


_LISTENERS: list[Callable[[Path], None]] = []


def on_change(listener: Callable[[Path], None]) -> None:
    """Call ``listener(folder)`` whenever a model folder is saved, renamed or deleted (a cache drops it)."""
    _LISTENERS.append(listener)


def _changed(folder: Path) -> None:
    forget_encoder(folder / BODY_DIR)
    for listener in _LISTENERS:
        listener(folder)


# ----------------------------------------------------------------------------------------------
# Saving, renaming, deleting


def save_model(name: str, *, config: dict, head_arrays: Mapping[str, np.ndarray],
               write_body: Callable[[Path], None], directory: Path | None = None,
               replace: bool = False) -> ModelInfo:
    """Write a model to a temp folder, check it, and rename it into place.

    ``write_body(path)`` saves the tuned sentence-transformer into ``path`` (``model.save``).
    An existing model of that name is refused, unless ``replace=True``: then the new model
    becomes the next version and the earlier one is kept (``list_versions``, ``name@n``,
    ``rollback_model``).
    """
    validate_model_name(name)
    directory = directory or models_dir()
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / name
    if not target.exists():
        recover(directory, name)
    if target.exists() and not replace:
        raise ValidationError(f"a model named {name!r} already exists in {directory}: delete it or pick another name")
    temp = directory / f"{TEMP_PREFIX}{name}-{uuid.uuid4().hex[:8]}"
    temp.mkdir()
    try:
        config = {"schema_version": SCHEMA_VERSION, "name": name, **config, "version": 1}
        save_file({k: np.ascontiguousarray(v) for k, v in head_arrays.items()}, str(temp / HEAD_NAME))
        write_body(temp / BODY_DIR)
        _write_config(temp, config)
        for leftover in temp.rglob("*"):  # SentenceTransformer.save may write a README; never a pickle
            if leftover.suffix in (".pkl", ".pickle", ".bin", ".pt", ".joblib"):
                raise ValueError(f"refusing to save {leftover.name}: only safetensors and JSON are allowed")
        check_model_folder(temp)
        with _SWAP_LOCK:
            if target.exists() and not replace:
                raise ValidationError(f"a model named {name!r} was created meanwhile in {directory}: "
                                      "pick another name")
            if target.exists():
                current = _folder_version(target)
                config["version"] = max([current, *(v for v, _ in _archived(directory, name))]) + 1
                _write_config(temp, config)
                _changed(target)
                _publish_version(temp, target, _versions_dir(directory, name) / str(current))
            else:
                os.rename(temp, target)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    _changed(target)
    return ModelInfo.from_config(name, config)


def copy_model(source: Path, name: str, *, replace: bool = False, directory: Path | None = None,
               config_changes: Mapping[str, Any] | None = None) -> ModelInfo:
    """Save a copy of the model folder ``source`` (a tuned grid in the cache) as the custom model ``name``.

    Under the training lock, like every save into the models folder; ``replace=True`` makes it
    the next version of an existing model (``save_model``). ``config_changes`` replaces top-level config keys
    (the page records the user's pick of model in ``metrics``).
    """
    saved = read_folder(source)
    config = {k: v for k, v in {**saved.config, **(config_changes or {})}.items()
              if k not in ("schema_version", "name", "version")}
    directory = directory or models_dir()
    with TrainingLock(directory, name):
        return save_model(name, config=config, head_arrays=saved.head_arrays,
                          write_body=lambda path: shutil.copytree(saved.body, path), directory=directory,
                          replace=replace)


def _write_config(folder: Path, config: Mapping[str, Any]) -> None:
    """config.json via a temp file and a rename (a folder already in place is never seen half-written)."""
    write_text_atomic(folder / CONFIG_NAME, json.dumps(config, indent=2, ensure_ascii=False) + "\n")


def remove_leftovers(directory: Path | None = None, *, older_than_s: float | None = None) -> list[str]:
    """Delete ``.tmp-*`` folders a killed save or delete left behind; return their names.

    They are never listed or loaded, only wasted disk. Called by ``train`` once it holds the
    training lock: saves run under that lock, so no live save is writing one at that moment.
    Where saves run without a lock (the tuned-grid cache), ``older_than_s`` spares folders
    modified more recently than that: a live save's.
    """
    directory = directory or models_dir()
    if not directory.is_dir():
        return []
    removed = []
    now = time.time()
    for path in sorted(directory.glob(f"{TEMP_PREFIX}*")):
        if older_than_s is not None and now - path.stat().st_mtime <= older_than_s:
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path.name)
    return removed


def delete_model(name: str, directory: Path | None = None) -> None:
    """Remove a model folder (broken ones too) and its earlier versions. Renamed aside first, so a crash never leaves half."""
    folder = model_folder(name, directory)
    _changed(folder)
    for path in (_versions_dir(folder.parent, name), folder):  # the versions first: no recover() of a deleted model
        if path.exists():
            trash = folder.parent / f"{TEMP_PREFIX}deleted-{name}-{uuid.uuid4().hex[:8]}"
            os.rename(path, trash)
            shutil.rmtree(trash, ignore_errors=True)
    _drop_empty_versions(folder.parent, name)


def rename_model(old: str, new: str, directory: Path | None = None) -> ModelInfo:
    """Rename a model (folder, its earlier versions and the name in their configs)."""
    folder = model_folder(old, directory)
    validate_model_name(new)
    target = folder.parent / new
    if target.exists() or _versions_dir(folder.parent, new).exists():
        raise ValidationError(f"a model named {new!r} already exists: pick another name or delete that one")
    _changed(folder)
    versions = _versions_dir(folder.parent, old)
    if versions.exists():
        os.rename(versions, _versions_dir(folder.parent, new))
    os.rename(folder, target)
    for each in [target, *(p for _, p in _archived(folder.parent, new))]:
        try:
            config = json.loads((each / CONFIG_NAME).read_text(encoding="utf-8"))
            config["name"] = new
            _write_config(each, config)
        except (OSError, json.JSONDecodeError, UnicodeDecodeError, TypeError):
            pass  # a broken model keeps its (broken) config; list_models still reports why
    return next(info for info in list_models(folder.parent) if info.name == new)

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
