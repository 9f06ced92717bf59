"""Ready-made example sets: one JSON file each in ``presets/`` (examples plus sample inputs)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from .validation import Example, as_examples

PRESETS_DIR = next((folder for folder in (Path(__file__).resolve().parent.parent / "presets",  # a checkout
                                          Path(__file__).resolve().parent / "preset_files")  # an installed wheel
                     if folder.is_dir()), Path(__file__).resolve().parent.parent / "presets")
"""``presets/`` in a checkout; ``playground/preset_files/`` once installed (pyproject.toml maps one to the other)."""
DEFAULT_PRESET = "review-sentiment"


@dataclass(frozen=True)
class Preset:
    name: str
    title: str
    description: str
    examples: tuple[Example, ...]
    inputs: tuple[str, ...]
    model: str = "small"

    @classmethod
    def from_file(cls, path: Path) -> Preset:
        data = json.loads(path.read_text(encoding="utf-8"))
        return cls(
            name=data.get("name", path.stem), title=data["title"], description=data.get("description", ""),
            examples=tuple(as_examples(data["examples"])), inputs=tuple(data["inputs"]),
            model=data.get("model", "small"),
        )


def list_presets(folder: Path = PRESETS_DIR) -> dict[str, Preset]:
    """Every preset by name, the default first and the rest by title."""
    presets = {p.name: p for p in map(Preset.from_file, sorted(folder.glob("*.json")))}
    order = sorted(presets, key=lambda name: (name != DEFAULT_PRESET, presets[name].title))
    return {name: presets[name] for name in order}


def load_preset(name: str, folder: Path = PRESETS_DIR) -> Preset:
    path = folder / f"{name}.json"
    if not path.is_file() or "/" in name or "\\" in name:
        raise KeyError(f"no preset named {name!r}; choose one of {', '.join(list_presets(folder))}")
    return Preset.from_file(path)
