"""Files the package writes for itself: the cache folder, atomic publishing of a built folder or a file, timestamps.

A leaf: it imports nothing from the package, so the encoders (the unzipped large model), the
int8 builds and the model store share one definition of each without importing one another.
"""

from __future__ import annotations

import os
import shutil
import uuid
from datetime import datetime, timezone
from pathlib import Path

CACHE_DIR_ENV = "CLASSIFY_CACHE_DIR"
READY_MARK = ".complete"
"""Written last into a built folder: readers trust only folders that have it."""


def cache_dir() -> Path:
    """Where one-time derived files live (the unzipped large model, int8 builds): ``$CLASSIFY_CACHE_DIR``."""
    env = os.environ.get(CACHE_DIR_ENV)
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "classify-playground"


def publish_folder(folder: Path, target: Path) -> None:
    """Mark a finished folder complete and move it into place in one rename.

    Readers trust only folders with the ``.complete`` mark, so a crash mid-build never leaves a
    half folder in use; a concurrent build that got there first wins.
    """
    (folder / READY_MARK).write_text("ok\n")
    try:
        folder.rename(target)
    except OSError:
        if not (target / READY_MARK).is_file():
            shutil.rmtree(target, ignore_errors=True)
            folder.rename(target)


def write_text_atomic(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` in one rename: a reader (or a crash) sees the old file or the new, never half.

    The text goes to a temp file beside it (``write_temp``), flushed to the disk, then renamed over
    ``path``. A full disk or a read-only folder raises ``OSError`` and leaves ``path`` as it was.
    """
    temp = write_temp(path, text)
    try:
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


TEMP_FILE_MARK = ".tmp-"
"""In the name of a temp file ``write_temp`` makes (``.workspace.json.tmp-1a2b3c4d``)."""


def write_temp(path: Path, text: str) -> Path:
    """Write ``text`` to a new hidden temp file beside ``path``, flushed to the disk; return its path."""
    temp = path.with_name(f".{path.name}{TEMP_FILE_MARK}{uuid.uuid4().hex[:8]}")
    try:
        with open(temp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return temp


def now_iso() -> str:
    """The current UTC time to the second, ISO 8601 (model configs, the training lock)."""
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()
