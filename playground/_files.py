"""Files the package writes for itself: the cache folder, atomic publishing of a built folder, timestamps.

A leaf: it imports nothing from the package, so the encoders (the unzipped large model), the
int8 builds and the model store share one definition of each without importing one another.
"""

from __future__ import annotations

import os
import shutil
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


def now_iso() -> str:
    """The current UTC time to the second, ISO 8601 (model configs, the training lock)."""
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()
