"""The Classify page's work on disk: one folder per workspace, atomic JSON, read back on reload. No Streamlit.

A workspace is everything the page holds that a user made: the examples grid (label descriptions
included, half-typed rows too), the inputs, the model and its settings, the ``unknown`` settings,
the results, the tuned grid in use and the Label next pool with its decisions. The page hands
one over after every change (``DebouncedSaver``), and reads it back when it opens (``open_workspace``);
the CLI can do the same. Layout of the workspaces folder (``$CLASSIFY_WORKSPACES_DIR``, default
``./workspaces``)::

    <name>/workspace.json          the workspace (``Workspace.to_dict``), stamped with a revision
    <name>/pool-<id>.json          the Label next pool's texts, written once per pool (decisions are in
                                   workspace.json, so a decision rewrites kilobytes, not the pool)
    <name>/workspace.damaged.json  a damaged workspace.json as it was, kept when it is first saved over
    .last                          the workspace opened last: the page opens it when the URL names none
    .deleted-<name>-<time>-<id>/   a deleted workspace, until it is undone (``undo_delete``) or a day old

Why this shape: a folder per workspace makes create, rename, duplicate and delete one rename each,
so no reader ever sees half of one; every file is written beside its target and renamed over it
(``_files.write_text_atomic``), so a crash or ``kill -9`` mid-save leaves the previous file whole.
Each save stamps the file with a ``revision`` (a count) and a ``revision_id`` (random): a tab that
last read or wrote one id and finds another on disk knows that another tab saved meanwhile (the
later save wins; the page offers the other tab a reload). A file damaged by hand opens as far as it
can be read (``open_workspace`` lists the fields it dropped) and is left as it is until the user
changes something.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np

from ._files import TEMP_FILE_MARK, now_iso, write_text_atomic
from .embeddings import PRECISIONS
from .engine import Classification
from .label_next import DEFAULT_TARGET_PRECISION, LabelPool, LearningPoint, PoolProgress
from .presets import DEFAULT_PRESET, Preset
from .validation import CLASSIFICATION_TYPES, TRUNCATE_OPTIONS, ValidationError, check_folder_name

WORKSPACES_DIR_ENV = "CLASSIFY_WORKSPACES_DIR"
FORMAT = "classify-playground-workspace"
SCHEMA_VERSION = 1
WORKSPACE_FILE = "workspace.json"
DAMAGED_FILE = "workspace.damaged.json"
POOL_PREFIX = "pool-"
LAST_FILE = ".last"
TRASH_PREFIX = ".deleted-"
DEFAULT_WORKSPACE = "default"
"""The workspace a first visit opens (from the default preset) when there is none yet."""
TRASH_KEEP_S = 24 * 3600
"""A deleted workspace can be brought back for this long."""
STALE_TEMP_S = 60
"""A temp file older than this in a workspace folder is a killed save's, not a live one's."""
GRID_COLUMNS = ("text", "label", "description")

GridRow = tuple[str, str, str]
"""A row of the examples grid as typed: text, label, label description (any of them may be empty)."""


class UnknownWorkspaceError(LookupError):
    """No workspace has this name (any more): the message lists the ones there are."""


def workspaces_dir() -> Path:
    """Where workspaces live: ``$CLASSIFY_WORKSPACES_DIR``, else ``./workspaces`` (current directory)."""
    env = os.environ.get(WORKSPACES_DIR_ENV)
    return Path(env) if env else Path.cwd() / "workspaces"


def validate_workspace_name(name: Any) -> str:
    """Return ``name`` if it is a safe workspace name (``validation.check_folder_name``), else ``ValidationError``."""
    return check_folder_name(name, "workspace name", example="review-triage")


# ----------------------------------------------------------------------------------------------
# What a workspace holds


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"not text (a {type(value).__name__})")
    return value


def _flag(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"not true or false ({value!r})")
    return value


def _number(low: float, high: float) -> Callable[[Any], float]:
    def check(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                or not low <= value <= high:
            raise ValueError(f"not a number from {low:g} to {high:g} ({value!r})")
        return float(value)
    return check


def _one_of(options: Sequence[str]) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        if value not in options:
            raise ValueError(f"{value!r} is not one of {', '.join(options)}")
        return value
    return check


def _optional_text(value: Any) -> str | None:
    return None if value is None else _text(value)


def _grid_row(value: Any) -> GridRow:
    if isinstance(value, Mapping):
        value = [value.get(column, "") for column in GRID_COLUMNS]
    if not isinstance(value, (list, tuple)) or not 2 <= len(value) <= 3:
        raise ValueError("not a row of text, label and description")
    cells = [("" if cell is None else cell) for cell in (*value, "")[:3]]
    if not all(isinstance(cell, str) for cell in cells):
        raise ValueError("a cell is not text")
    return cells[0], cells[1], cells[2]


def _grid(value: Any) -> tuple[GridRow, ...]:
    if not isinstance(value, (list, tuple)):
        raise ValueError(f"not a list of rows (a {type(value).__name__})")
    return tuple(_grid_row(row) for row in value)


def _result(value: Any) -> dict[str, Any]:
    """A result as ``Classification.to_dict`` gives it (plus ``thresholds``), checked field by field."""
    if not isinstance(value, Mapping):
        raise ValueError("a result is not an object")
    labels = value.get("labels")
    if not isinstance(labels, Mapping) or not labels or not all(
            isinstance(k, str) and _is_probability(v) for k, v in labels.items()):
        raise ValueError("a result's labels are not label: confidence pairs")
    thresholds = value.get("thresholds") or {}
    predictions = value.get("predictions", [])
    if not isinstance(value.get("input"), str) or not isinstance(value.get("prediction"), str) \
            or not _is_probability(value.get("confidence")) \
            or value.get("classification_type", "single-label") not in CLASSIFICATION_TYPES \
            or not isinstance(predictions, list) or not all(isinstance(p, str) for p in predictions) \
            or not isinstance(thresholds, Mapping) or not all(_is_probability(v) for v in thresholds.values()):
        raise ValueError("a result lacks its input, prediction, confidence or type")
    return {"input": value["input"], "prediction": value["prediction"], "confidence": float(value["confidence"]),
            "labels": {k: float(v) for k, v in labels.items()}, "predictions": list(predictions),
            "classification_type": value.get("classification_type", "single-label"),
            "thresholds": {str(k): float(v) for k, v in thresholds.items()}}


def _is_probability(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float)) and 0 <= value <= 1


def _results(value: Any) -> tuple[dict[str, Any], ...] | None:
    if value is None:
        return None
    if not isinstance(value, (list, tuple)):
        raise ValueError("not a list of results")
    return tuple(_result(item) for item in value)


@dataclass(frozen=True)
class PoolState:
    """A workspace's Label next pool: which file, which texts are decided, the batch on screen, the curve.

    The texts themselves are in ``pool-<pool_id>.json`` beside workspace.json.
    """

    source: str
    model: str
    pool_id: str
    n_texts: int
    taken: tuple[int, ...] = ()
    batch: tuple[dict[str, Any], ...] = ()
    curve: tuple[dict[str, Any], ...] = ()
    rounds: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.pool_id, str) or not re.fullmatch(r"[0-9a-f]{8,32}", self.pool_id):
            raise ValueError(f"pool_id must be 8 to 32 hex digits. But it was: {self.pool_id!r}")
        if not isinstance(self.source, str) or not isinstance(self.model, str):
            raise ValueError("source and model must be text")
        for name in ("n_texts", "rounds"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be a whole number from 0. But it was: {value!r}")
        bad = [i for i in self.taken if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < self.n_texts]
        if bad:
            raise ValueError(f"taken holds indices outside the pool of {self.n_texts}: {bad[:5]}")
        for row in self.batch:
            if not isinstance(row, Mapping) or not isinstance(row.get("index"), int) \
                    or not 0 <= row["index"] < self.n_texts or not isinstance(row.get("text"), str):
                raise ValueError("a batch row lacks its pool index or text")
        for point in self.curve:
            if not isinstance(point, Mapping) or not isinstance(point.get("n_examples"), int) \
                    or not _is_probability(point.get("accuracy")) or not isinstance(point.get("per_label"), Mapping):
                raise ValueError("a learning-curve point lacks its examples, accuracy or labels")

    @property
    def file_name(self) -> str:
        return f"{POOL_PREFIX}{self.pool_id}.json"

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "model": self.model, "pool_id": self.pool_id, "n_texts": self.n_texts,
                "taken": list(self.taken), "batch": [dict(r) for r in self.batch],
                "curve": [dict(p) for p in self.curve], "rounds": self.rounds}

    @classmethod
    def from_dict(cls, data: Any) -> PoolState:
        if not isinstance(data, Mapping):
            raise ValueError("not an object")
        try:
            return cls(source=data["source"], model=data["model"], pool_id=data["pool_id"], n_texts=data["n_texts"],
                       taken=tuple(data.get("taken", ())), batch=tuple(data.get("batch", ())),
                       curve=tuple(data.get("curve", ())), rounds=data.get("rounds", 0))
        except (KeyError, TypeError) as exc:
            raise ValueError(f"missing or malformed {exc}") from None


def pool_state(pool: LabelPool, *, source: str, pool_id: str, batch: Sequence[Mapping[str, Any]] = (),
               curve: Sequence[LearningPoint] = ()) -> PoolState:
    """What a workspace keeps of a live pool: every decided text's index, the batch on screen, the curve."""
    return PoolState(source=source, model=pool.model, pool_id=pool_id, n_texts=len(pool.texts),
                     taken=tuple(int(i) for i in np.flatnonzero(~pool.left)),
                     batch=tuple({k: _plain(v) for k, v in row.items()} for row in batch),
                     curve=tuple(p.to_dict() for p in curve), rounds=pool.rounds)


def _plain(value: Any) -> Any:
    """A grid cell as JSON: numpy numbers as Python ones, missing (NaN, pandas NA) as ``None``."""
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or (isinstance(value, float) and math.isnan(value)) or type(value).__name__ == "NAType":
        return None
    return value


def restore_pool(state: PoolState, texts: Sequence[str], *, precision: str = "auto", truncate: str = "END",
                 progress: Callable[[PoolProgress], None] | None = None) -> LabelPool:
    """The pool embedded again from its texts (long ones read as ``truncate`` says), with the decided texts
    taken out as they were."""
    pool = LabelPool(texts, state.model, precision=precision, truncate=truncate, progress=progress)
    pool.left[list(state.taken)] = False
    pool.rounds = state.rounds
    return pool


def learning_points(state: PoolState) -> list[LearningPoint]:
    return [LearningPoint(int(p["n_examples"]), float(p["accuracy"]), dict(p["per_label"])) for p in state.curve]


def _pool(value: Any) -> PoolState | None:
    return None if value is None else PoolState.from_dict(value)


FIELD_CHECKS: dict[str, Callable[[Any], Any]] = {
    "examples": _grid,
    "inputs": _text,
    "model": _text,
    "truncate": _one_of(TRUNCATE_OPTIONS),
    "precision": _one_of(PRECISIONS),
    "label_names": _flag,
    "unknown": _flag,
    "unknown_below": _number(0.0, 1.0),
    "unknown_target": _number(0.5, 1.0),
    "preset": _text,
    "tuned_grid": _optional_text,
    "results": _results,
    "pool": _pool,
}
"""Each field's check: turns its JSON value into the field's value or raises ``ValueError`` saying why."""


@dataclass(frozen=True)
class Workspace:
    """What the Classify page holds, as saved: frozen, checked, JSON-safe (``to_dict`` / ``from_dict``).

    ``examples`` are the grid's rows as typed (``(text, label, description)``, half-filled rows
    too); ``inputs`` is the text box as typed; ``results`` are ``Classification.to_dict()`` plus
    ``thresholds``; ``tuned_grid`` is the ``training.grid_key`` of the tuning Classify uses.

    >>> ws = Workspace.from_preset(load_preset("review-sentiment"))
    >>> Workspace.from_dict(ws.to_dict()) == ws
    True
    """

    examples: tuple[GridRow, ...] = ()
    inputs: str = ""
    model: str = "small"
    truncate: str = "WINDOWS"
    """The page reads long inputs whole by default (issue #27: +0.4 to +2.8 points on the long sets, short
    texts unchanged); the library, the CLI and the API keep Cohere's END."""
    precision: str = "auto"
    label_names: bool = False
    unknown: bool = False
    unknown_below: float = 0.5
    unknown_target: float = DEFAULT_TARGET_PRECISION
    preset: str = DEFAULT_PRESET
    tuned_grid: str | None = None
    results: tuple[dict[str, Any], ...] | None = None
    pool: PoolState | None = None

    def __post_init__(self) -> None:
        problems = []
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "pool" and (value is None or isinstance(value, PoolState)):
                continue
            try:
                object.__setattr__(self, f.name, FIELD_CHECKS[f.name](value))
            except (ValueError, TypeError) as exc:
                problems.append(f"{f.name}: {exc}")
        if problems:
            raise ValidationError(problems)

    @classmethod
    def from_preset(cls, preset: Preset) -> Workspace:
        """A new workspace: the preset's examples, inputs and model, every setting at its default."""
        return cls(examples=tuple((ex.text, ex.label, "") for ex in preset.examples), inputs="\n".join(preset.inputs),
                   model=preset.model, preset=preset.name)

    @property
    def n_examples(self) -> int:
        """Rows with both a text and a label (what the sidebar counts)."""
        return sum(1 for text, label, _ in self.examples if text.strip() and label.strip())

    def classifications(self) -> list[Classification] | None:
        """The saved results as the engine's answers, for the page to draw."""
        if self.results is None:
            return None
        return [Classification(input=r["input"], prediction=r["prediction"], confidence=r["confidence"],
                               labels=dict(r["labels"]), predictions=tuple(r["predictions"]),
                               classification_type=r["classification_type"], thresholds=dict(r["thresholds"]))
                for r in self.results]

    def to_dict(self) -> dict[str, Any]:
        return {
            "examples": [list(row) for row in self.examples], "inputs": self.inputs, "model": self.model,
            "truncate": self.truncate, "precision": self.precision, "label_names": self.label_names,
            "unknown": self.unknown, "unknown_below": self.unknown_below, "unknown_target": self.unknown_target,
            "preset": self.preset, "tuned_grid": self.tuned_grid,
            "results": None if self.results is None else [dict(r) for r in self.results],
            "pool": None if self.pool is None else self.pool.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Workspace:
        """Strict: every problem in one ``ValidationError`` (``read_fields`` is the lenient reader)."""
        workspace, dropped = read_fields(data)
        if dropped:
            raise ValidationError(list(dropped))
        return workspace


def results_to_dicts(results: Sequence[Classification] | None) -> tuple[dict[str, Any], ...] | None:
    """The page's results as a workspace stores them (``Classification.to_dict`` plus ``thresholds``)."""
    if results is None:
        return None
    return tuple({**r.to_dict(), "thresholds": dict(r.thresholds)} for r in results)


def read_fields(data: Any) -> tuple[Workspace, tuple[str, ...]]:
    """A ``Workspace`` from whatever of ``data`` is readable, and one line per field (or grid row) dropped.

    A field that is missing or fails its check gets its default and is named with the reason; a
    bad grid row is left out alone ("examples row 4: a cell is not text"), the others kept.
    """
    if not isinstance(data, Mapping):
        return Workspace(), (f"the file holds a {type(data).__name__}, not a workspace object: nothing was read",)
    values: dict[str, Any] = {}
    dropped: list[str] = []
    for name, check in FIELD_CHECKS.items():
        if name not in data:
            dropped.append(f"{name}: missing or unreadable, set to its default")
            continue
        if name == "examples" and isinstance(data[name], (list, tuple)):
            rows = []
            for number, row in enumerate(data[name], start=1):
                try:
                    rows.append(_grid_row(row))
                except ValueError as exc:
                    dropped.append(f"examples row {number}: {exc}; the row was left out")
            values[name] = tuple(rows)
            continue
        try:
            values[name] = check(data[name])
        except (ValueError, TypeError) as exc:
            dropped.append(f"{name}: {exc}; set to its default")
    return Workspace(**values), tuple(dropped)


# ----------------------------------------------------------------------------------------------
# The file: revision stamp, lenient reading


@dataclass(frozen=True)
class Revision:
    """Which save of a workspace a file holds: a count, a random id (two tabs never make the same), when."""

    number: int
    id: str
    saved_at: str

    @classmethod
    def next_after(cls, previous: Revision | None) -> Revision:
        return cls((previous.number if previous else 0) + 1, uuid.uuid4().hex[:16], now_iso())


_TOP_LEVEL_KEY = re.compile(r'^  "([A-Za-z_]+)": ', re.MULTILINE)
"""Where each top-level field starts in the layout ``save_workspace`` writes (``indent=2``: two spaces).
JSON strings cannot hold a raw newline, so no text inside a value can look like this."""


def _salvage(text: str) -> dict[str, Any]:
    """The top-level fields that still parse in a file that is not valid JSON as a whole.

    A value counts only when a ``,`` or the closing ``}`` follows it, so a value cut short or
    run into the next field's text is not taken for a whole one.
    """
    decoder = json.JSONDecoder()
    found: dict[str, Any] = {}
    for match in _TOP_LEVEL_KEY.finditer(text):
        try:
            value, end = decoder.raw_decode(text, match.end())
        except json.JSONDecodeError:
            continue
        if re.match(r"\s*[,}]", text[end:]):
            found[match.group(1)] = value
    return found


def _revision_of(data: Mapping[str, Any]) -> Revision | None:
    number, rid, saved_at = data.get("revision"), data.get("revision_id"), data.get("saved_at", "")
    if isinstance(number, int) and not isinstance(number, bool) and isinstance(rid, str) and isinstance(saved_at, str):
        return Revision(number, rid, saved_at)
    return None


@dataclass(frozen=True)
class OpenedWorkspace:
    """A workspace as read from disk: what could be read, its revision, and what was dropped on the way.

    ``dropped`` is empty for a sound file; otherwise one line per field or grid row left out, for
    the page to show. ``pool_texts`` are the Label next pool's texts when the pool could be read.
    """

    name: str
    workspace: Workspace
    revision: Revision | None
    dropped: tuple[str, ...] = ()
    pool_texts: tuple[str, ...] | None = field(default=None, repr=False)

    @property
    def damaged(self) -> bool:
        return bool(self.dropped)


def _folder(name: str, directory: Path | None) -> Path:
    return (directory or workspaces_dir()) / validate_workspace_name(name)


def open_workspace(name: str, directory: Path | None = None) -> OpenedWorkspace:
    """Read the workspace ``name`` as far as it can be read; never writes.

    ``UnknownWorkspaceError`` (listing the workspaces there are) when there is no such folder;
    ``ValidationError`` for a name with path characters. A damaged file gives the readable fields
    and ``dropped`` naming the others: invalid JSON is read field by field, a field that fails its
    check gets its default, a grid row that fails is left out.
    """
    folder = _folder(name, directory)
    if not folder.is_dir():
        raise UnknownWorkspaceError(_unknown_message(name, folder.parent))
    path = folder / WORKSPACE_FILE
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return OpenedWorkspace(name, Workspace(), None, (f"{WORKSPACE_FILE} is missing: opened empty",))
    dropped: list[str] = []
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        text = raw.decode("utf-8", errors="replace")
        dropped.append(f"{WORKSPACE_FILE} is not valid UTF-8 (byte {exc.start}): unreadable characters replaced")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        data = _salvage(text)
        dropped.append(f"{WORKSPACE_FILE} is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}): "
                       "every field that still parses was read")
    if isinstance(data, Mapping):
        if data.get("format", FORMAT) != FORMAT:
            dropped.append(f"format: {data.get('format')!r} is not {FORMAT!r}; read what matches anyway")
        if data.get("schema_version", SCHEMA_VERSION) != SCHEMA_VERSION:
            dropped.append(f"schema_version: {data.get('schema_version')!r}, this version reads {SCHEMA_VERSION}; "
                           "read what matches anyway")
    workspace, field_problems = read_fields(data)
    dropped += field_problems
    revision = _revision_of(data) if isinstance(data, Mapping) else None
    workspace, pool_texts, pool_problem = _with_pool(folder, workspace)
    if pool_problem:
        dropped.append(pool_problem)
    return OpenedWorkspace(name, workspace, revision, tuple(dropped), pool_texts)


def _with_pool(folder: Path, workspace: Workspace) -> tuple[Workspace, tuple[str, ...] | None, str | None]:
    """The pool's texts from its file; the workspace without its pool (and why) when they cannot be read."""
    pool = workspace.pool
    if pool is None:
        return workspace, None, None
    try:
        data = json.loads((folder / pool.file_name).read_text(encoding="utf-8"))
        texts = data["texts"]
        if not isinstance(texts, list) or len(texts) != pool.n_texts or not all(isinstance(t, str) for t in texts):
            raise ValueError(f"it does not hold the pool's {pool.n_texts} texts")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        reason = "it is missing" if isinstance(exc, FileNotFoundError) else str(exc)
        return replace(workspace, pool=None), None, (f"pool: the Label next pool {pool.source!r} was dropped: "
                                                     f"{pool.file_name} cannot be read ({reason}); load its file again")
    return workspace, tuple(texts), None


def read_revision(name: str, directory: Path | None = None) -> Revision | None:
    """The revision on disk now (``None``: no file, or none readable); cheap enough to ask every second or two."""
    path = _folder(name, directory) / WORKSPACE_FILE
    try:
        stat = path.stat()
    except OSError:  # no file, or no folder (a path under a file, no permission): nothing saved there
        return None
    key = (str(path), stat.st_mtime_ns, stat.st_size, stat.st_ino)
    with _CACHE_LOCK:
        if key in _REVISIONS:
            return _REVISIONS[key]
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    try:
        data = json.loads(text)
    except ValueError:
        data = _salvage(text)
    revision = _revision_of(data) if isinstance(data, Mapping) else None
    with _CACHE_LOCK:
        if len(_REVISIONS) > 256:
            _REVISIONS.clear()
        _REVISIONS[key] = revision
    return revision


_REVISIONS: dict[tuple, Revision | None] = {}
_CACHE_LOCK = threading.Lock()


def _unknown_message(name: str, directory: Path) -> str:
    names = [info.name for info in list_workspaces(directory)]
    return f"no workspace named {name!r} in {directory}" + (f": there are {', '.join(names)}" if names else "")


# ----------------------------------------------------------------------------------------------
# Writing


def _serialise(workspace: Workspace, revision: Revision) -> str:
    data = {"format": FORMAT, "schema_version": SCHEMA_VERSION, "revision": revision.number,
            "revision_id": revision.id, "saved_at": revision.saved_at, **workspace.to_dict()}
    return json.dumps(data, indent=2, ensure_ascii=False, allow_nan=False) + "\n"


def _write_pool(folder: Path, pool: PoolState, texts: Sequence[str]) -> None:
    if len(texts) != pool.n_texts:
        raise ValueError(f"the pool has {pool.n_texts} texts, {len(texts)} were given")
    path = folder / pool.file_name
    if not path.is_file():
        write_text_atomic(path, json.dumps({"source": pool.source, "texts": list(texts)}, ensure_ascii=False))


def _tidy(folder: Path, pool: PoolState | None) -> None:
    """Pool files of earlier pools, and temp files a killed save left (older than ``STALE_TEMP_S``)."""
    now = time.time()
    for path in folder.iterdir():
        try:
            if path.name.startswith(POOL_PREFIX) and (pool is None or path.name != pool.file_name):
                path.unlink()
            elif TEMP_FILE_MARK in path.name and now - path.stat().st_mtime > STALE_TEMP_S:
                path.unlink()
        except FileNotFoundError:
            continue


def save_workspace(name: str, workspace: Workspace, directory: Path | None = None, *,
                   pool_texts: Sequence[str] | None = None, keep_damaged: bool = False) -> Revision:
    """Write ``workspace`` over the saved one, atomically; return the new revision.

    The later save wins: whatever is on disk is replaced (``read_revision`` tells a page that
    another tab saved). ``pool_texts`` are written to the pool's own file the first time a pool
    is saved. ``keep_damaged=True`` first keeps the file on disk as workspace.damaged.json (the
    page passes it on the first save over a file it opened damaged). ``UnknownWorkspaceError``
    when the folder is gone (renamed or deleted elsewhere); ``OSError`` on a full disk or a
    read-only folder, with the saved file unchanged.
    """
    folder = _folder(name, directory)
    if not folder.parent.is_dir():
        raise FileNotFoundError(f"the workspaces folder {folder.parent} is missing or not a folder")
    if not folder.is_dir():
        raise UnknownWorkspaceError(f"workspace {name!r} is gone from {folder.parent}: it was renamed or deleted "
                                    "elsewhere")
    path = folder / WORKSPACE_FILE
    if workspace.pool is not None and pool_texts is not None:
        _write_pool(folder, workspace.pool, pool_texts)
    if keep_damaged and path.is_file():  # byte for byte (it may not even be UTF-8), via a temp file and a rename
        temp = folder / f".{DAMAGED_FILE}{TEMP_FILE_MARK}{uuid.uuid4().hex[:8]}"
        shutil.copyfile(path, temp)
        os.replace(temp, folder / DAMAGED_FILE)
    revision = Revision.next_after(read_revision(name, directory))
    write_text_atomic(path, _serialise(workspace, revision))
    _tidy(folder, workspace.pool)
    return revision


def create_workspace(name: str, workspace: Workspace, directory: Path | None = None, *,
                     pool_texts: Sequence[str] | None = None) -> Revision:
    """A new workspace folder, built under a temp name and renamed into place; an existing name is refused."""
    folder = _folder(name, directory)
    folder.parent.mkdir(parents=True, exist_ok=True)
    if folder.exists():
        raise ValidationError(f"a workspace named {name!r} already exists: pick another name")
    temp = folder.parent / f".tmp-{name}-{uuid.uuid4().hex[:8]}"
    temp.mkdir()
    try:
        if workspace.pool is not None and pool_texts is not None:
            _write_pool(temp, workspace.pool, pool_texts)
        elif workspace.pool is not None:
            workspace = replace(workspace, pool=None)
        revision = Revision.next_after(None)
        write_text_atomic(temp / WORKSPACE_FILE, _serialise(workspace, revision))
        os.rename(temp, folder)
    except OSError:
        shutil.rmtree(temp, ignore_errors=True)
        if folder.exists():
            raise ValidationError(f"a workspace named {name!r} was created meanwhile: pick another name") from None
        raise
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    return revision


# ----------------------------------------------------------------------------------------------
# Listing, renaming, duplicating, deleting


@dataclass(frozen=True)
class WorkspaceInfo:
    """What the sidebar lists: a workspace's name, its examples, when it was last saved, and a problem if any."""

    name: str
    n_examples: int
    modified: float
    problem: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "n_examples": self.n_examples, "modified": self.modified, "problem": self.problem}


_INFOS: dict[tuple, WorkspaceInfo] = {}


def list_workspaces(directory: Path | None = None) -> list[WorkspaceInfo]:
    """Every workspace, the most recently changed first (trash, temp folders and bad names are not listed)."""
    directory = directory or workspaces_dir()
    if not directory.is_dir():
        return []
    infos = []
    for folder in directory.iterdir():
        if folder.name.startswith(".") or not folder.is_dir():
            continue
        try:
            validate_workspace_name(folder.name)
        except ValidationError:
            continue
        path = folder / WORKSPACE_FILE
        try:
            stat = path.stat()
        except FileNotFoundError:
            infos.append(WorkspaceInfo(folder.name, 0, folder.stat().st_mtime, f"{WORKSPACE_FILE} is missing"))
            continue
        key = (str(path), stat.st_mtime_ns, stat.st_size, stat.st_ino)
        with _CACHE_LOCK:
            info = _INFOS.get(key)
        if info is None:
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
                rows = _grid(data["examples"])
                info = WorkspaceInfo(folder.name, sum(1 for t, lab, _ in rows if t.strip() and lab.strip()),
                                     stat.st_mtime)
            except (OSError, ValueError, KeyError, TypeError):
                info = WorkspaceInfo(folder.name, 0, stat.st_mtime, f"{WORKSPACE_FILE} is damaged: open it to see "
                                                                     "what can be read")
            with _CACHE_LOCK:
                if len(_INFOS) > 1024:
                    _INFOS.clear()
                _INFOS[key] = info
        infos.append(info)
    return sorted(infos, key=lambda i: (-i.modified, i.name))


def _existing(name: str, directory: Path | None) -> Path:
    folder = _folder(name, directory)
    if not folder.is_dir():
        raise UnknownWorkspaceError(_unknown_message(name, folder.parent))
    return folder


def _free(name: str, directory: Path | None) -> Path:
    folder = _folder(name, directory)
    if folder.exists():
        raise ValidationError(f"a workspace named {name!r} already exists: pick another name")
    return folder


def rename_workspace(old: str, new: str, directory: Path | None = None) -> None:
    """Rename a workspace (one folder rename). Tabs still on the old name are told it is gone when they save."""
    source = _existing(old, directory)
    target = _free(new, directory)
    os.rename(source, target)
    try:
        if (source.parent / LAST_FILE).read_text(encoding="utf-8").strip() == old:
            remember_last(new, source.parent)
    except OSError:
        pass  # no .last yet


def duplicate_workspace(source: str, new: str, directory: Path | None = None) -> None:
    """Copy a workspace under a new name (copied to a temp folder, then renamed into place)."""
    folder = _existing(source, directory)
    target = _free(new, directory)
    temp = target.parent / f".tmp-{new}-{uuid.uuid4().hex[:8]}"
    try:
        shutil.copytree(folder, temp, ignore=shutil.ignore_patterns(f"*{TEMP_FILE_MARK}*", DAMAGED_FILE))
        os.rename(temp, target)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise


def delete_workspace(name: str, directory: Path | None = None) -> str:
    """Move a workspace to the trash; return the token ``undo_delete`` takes. Older trash (a day) is emptied."""
    folder = _existing(name, directory)
    purge_deleted(folder.parent)
    token = f"{TRASH_PREFIX}{name}-{int(time.time())}-{uuid.uuid4().hex[:6]}"
    os.rename(folder, folder.parent / token)
    return token


_TRASH_NAME = re.compile(re.escape(TRASH_PREFIX) + r"(.+)-(\d+)-[0-9a-f]{6}")


def undo_delete(token: str, directory: Path | None = None) -> str:
    """Bring a deleted workspace back under its name; return the name.

    ``UnknownWorkspaceError`` when the trash was emptied meanwhile, ``ValidationError`` when a
    workspace of that name was made since (rename that one first).
    """
    directory = directory or workspaces_dir()
    match = _TRASH_NAME.fullmatch(token)
    trash = directory / token
    if match is None or not trash.is_dir():
        raise UnknownWorkspaceError("the deleted workspace is no longer in the trash: it cannot be brought back")
    name = match.group(1)
    os.rename(trash, _free(name, directory))
    return name


def purge_deleted(directory: Path | None = None, *, older_than_s: float = TRASH_KEEP_S) -> list[str]:
    """Empty the trash of workspaces deleted more than ``older_than_s`` ago, and temp folders of killed
    creates; return what was removed."""
    directory = directory or workspaces_dir()
    removed = []
    now = time.time()
    for trash in [*directory.glob(f"{TRASH_PREFIX}*"), *directory.glob(".tmp-*")]:
        deleted = _TRASH_NAME.fullmatch(trash.name)
        age = now - (int(deleted.group(2)) if deleted else trash.stat().st_mtime)  # a rename keeps the mtime
        if trash.is_dir() and age > (older_than_s if deleted else STALE_TEMP_S):
            shutil.rmtree(trash, ignore_errors=True)
            removed.append(trash.name)
    return removed


def last_workspace(directory: Path | None = None) -> str | None:
    """The workspace opened last (``remember_last``), if it still exists."""
    directory = directory or workspaces_dir()
    try:
        name = (directory / LAST_FILE).read_text(encoding="utf-8").strip()
        return name if (_folder(name, directory) / WORKSPACE_FILE).is_file() else None
    except (OSError, ValidationError):
        return None


def remember_last(name: str, directory: Path | None = None) -> None:
    """Note ``name`` as the workspace to open next time (best effort: a read-only folder just does not remember)."""
    directory = directory or workspaces_dir()
    path = directory / LAST_FILE
    try:
        if path.is_file() and path.read_text(encoding="utf-8").strip() == name:
            return
        write_text_atomic(path, name + "\n")
    except OSError:
        pass  # the page already warns that this folder cannot be written


# ----------------------------------------------------------------------------------------------
# Saving after every change, without writing on every keystroke


@dataclass
class SaveStatus:
    """What a page shows about its saves: the revision it knows, when it saved, why it could not."""

    known: Revision | None = None
    saved_at: float | None = None
    error: str | None = None
    gone: bool = False


@dataclass
class _Pending:
    name: str
    directory: Path
    workspace: Workspace
    pool_texts: Sequence[str] | None
    keep_damaged: bool


class DebouncedSaver:
    """Saves the latest workspace handed to it, once changes pause: one per browser tab.

    ``submit`` after every change; the write happens ``quiet_s`` after the last one, and at
    most ``max_wait_s`` after the first of a burst, on a timer thread (so typing, a dragged
    slider or a fast run of cell edits is one write, and a slow disk never holds up the page).
    Every write is ``save_workspace``: atomic, revision-stamped. ``status`` says what happened,
    errors included; ``flush`` writes now (before switching workspace). ``lock`` is held during a
    write, so a page comparing ``status.known`` with ``read_revision`` never sees half a save.
    """

    def __init__(self, *, quiet_s: float = 0.4, max_wait_s: float = 2.0) -> None:
        self.quiet_s = quiet_s
        self.max_wait_s = max_wait_s
        self.lock = threading.RLock()
        self.status = SaveStatus()
        self._pending: _Pending | None = None
        self._first: float | None = None
        self._timer: threading.Timer | None = None

    def opened(self, revision: Revision | None) -> None:
        """The tab (re)loaded a workspace at ``revision``: forget what was pending for the one before."""
        with self.lock:
            self._cancel()
            self._pending = None
            self.status = SaveStatus(known=revision)

    @property
    def pending(self) -> bool:
        with self.lock:
            return self._pending is not None

    def submit(self, name: str, workspace: Workspace, *, directory: Path | None = None,
               pool_texts: Sequence[str] | None = None, keep_damaged: bool = False) -> None:
        directory = directory or workspaces_dir()  # now: the folder may be configured differently later
        with self.lock:
            if self._pending is not None and self._pending.name == name:
                keep_damaged = keep_damaged or self._pending.keep_damaged
            self._pending = _Pending(name, directory, workspace, pool_texts, keep_damaged)
            now = time.monotonic()
            self._first = self._first if self._first is not None else now
            delay = max(0.0, min(self.quiet_s, self._first + self.max_wait_s - now))
            self._cancel()
            self._timer = threading.Timer(delay, self.flush)
            self._timer.daemon = True
            self._timer.start()

    def flush(self) -> Revision | None:
        """Write what is pending now; return the new revision (``None``: nothing pending, or it failed)."""
        with self.lock:
            self._cancel()
            pending, self._pending, self._first = self._pending, None, None
            if pending is None:
                return None
            try:
                revision = save_workspace(pending.name, pending.workspace, pending.directory,
                                          pool_texts=pending.pool_texts, keep_damaged=pending.keep_damaged)
            except UnknownWorkspaceError as exc:
                self.status = replace(self.status, error=str(exc), gone=True)
                return None
            except (OSError, ValueError) as exc:
                self.status = replace(self.status, error=f"could not save workspace {pending.name!r} to "
                                                         f"{pending.directory}: {exc}")
                return None
            self.status = SaveStatus(known=revision, saved_at=time.time())
            return revision

    def _cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
