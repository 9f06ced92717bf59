"""The rules a request must follow, with messages that say what to fix.

One place for every rule, shared by the page, the library, the CLI and the HTTP API, so a
message reads the same wherever the user meets it. The wording follows Cohere's Classify
endpoint where it had one.
"""

from __future__ import annotations

import math
import os
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, get_args

MAX_INPUTS = 96
"""Inputs per call in the library and the API (Cohere's limit); the page batches more."""
MAX_EXAMPLES = 2500
"""Examples per call (Cohere's limit)."""
MIN_EXAMPLES_PER_LABEL = 2
MIN_LABELS = 2
MAX_NAME_LENGTH = 64
"""The longest name a saved thing (a custom model, a workspace) may have."""
_NAME_RE = re.compile(r"[A-Za-z0-9_-]+", re.ASCII)

UNKNOWN = "unknown"
"""The opt-in answer below a confidence threshold (``classify(unknown_below=...)``); no label may be called so."""

Truncate = Literal["NONE", "START", "END", "WINDOWS"]
"""Cohere's END (keep the start), START (keep the end), NONE (refuse a text over the window), and this
project's extension WINDOWS: a text over the window is read whole, in windows (``windows.py``)."""
TRUNCATE_OPTIONS: tuple[str, ...] = get_args(Truncate)
ClassificationType = Literal["single-label", "multi-label"]
"""What a model answers: one label per text, or any number of labels (each over its threshold)."""
CLASSIFICATION_TYPES: tuple[str, ...] = get_args(ClassificationType)
LabelNamesMode = Literal["auto", "always", "never"]
"""Whether tuning adds label-name texts: "auto" decides on the examples' out-of-fold accuracy."""
LABEL_NAME_MODES: tuple[str, ...] = get_args(LabelNamesMode)


class ValidationError(ValueError):
    """Bad input, with every problem found listed at once in ``problems``."""

    def __init__(self, problems: str | Sequence[str]) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("; ".join(self.problems))


@dataclass(frozen=True, slots=True)
class Example:
    """One labelled text: ``Example("The package was damaged", "negative")``."""

    text: str
    label: str

    def __post_init__(self) -> None:
        for field in ("text", "label"):
            value = getattr(self, field)
            if not isinstance(value, str):
                raise TypeError(f"Example {field} must be a string, got {type(value).__name__}: {value!r}")

    def to_dict(self) -> dict[str, str]:
        return {"text": self.text, "label": self.label}


ExampleLike = Example | tuple[str, str] | Mapping[str, Any]


def as_example(item: ExampleLike, index: int = 0) -> Example:
    """Accept an ``Example``, a ``(text, label)`` pair or a ``{"text", "label"}`` mapping."""
    if isinstance(item, Example):
        return item
    if isinstance(item, Mapping):
        missing = [key for key in ("text", "label") if key not in item]
        if missing:
            raise ValidationError(f"examples[{index}] is missing {' and '.join(missing)}: {dict(item)!r}")
        text, label = item["text"], item["label"]
    elif isinstance(item, (tuple, list)) and len(item) == 2:
        text, label = item
    else:
        raise TypeError(
            f"examples[{index}] must be an Example, a (text, label) pair or a dict with text and label; "
            f"got {item!r}"
        )
    for name, value in (("text", text), ("label", label)):
        if not isinstance(value, str):
            raise ValidationError(
                f"examples[{index}] {name} must be a string, got {type(value).__name__}: {value!r}"
            )
    return Example(text, label)


def as_examples(items: Iterable[ExampleLike]) -> list[Example]:
    return [as_example(item, i) for i, item in enumerate(items)]


def check_examples(examples: Sequence[Example]) -> None:
    """Check the few-shot examples against Cohere's rules; raise listing every problem.

    Rules: no empty text or label, at least 2 distinct labels, at least 2 examples for every
    label, no text given two different labels, at most ``MAX_EXAMPLES`` examples.
    """
    problems: list[str] = []
    if not examples:
        raise ValidationError(
            "invalid request: no examples given. Add at least 2 examples for each of at least 2 labels"
        )
    if len(examples) > MAX_EXAMPLES:
        problems.append(f"too many examples: at most {MAX_EXAMPLES} - received {len(examples)}")
    empty_text = [i for i, ex in enumerate(examples) if not ex.text.strip()]
    empty_label = [i for i, ex in enumerate(examples) if not ex.label.strip()]
    if empty_text:
        problems.append(f"examples contains an empty text at index {_join_numbers(empty_text)}")
    if empty_label:
        problems.append(f"examples contains an empty label at index {_join_numbers(empty_label)}")

    counts = Counter(ex.label for ex in examples if ex.label.strip())
    if len(counts) < MIN_LABELS:
        found = ", ".join(repr(label) for label in counts) or "none"
        problems.append(
            f"invalid request: examples must have at least {MIN_LABELS} unique labels - found {found}"
        )
    short = [label for label, n in counts.items() if n < MIN_EXAMPLES_PER_LABEL]
    if short:
        problems.append(
            f"invalid request: each unique label must have at least {MIN_EXAMPLES_PER_LABEL} examples. "
            f"Not enough examples for: {', '.join(short)}"
        )

    labels_by_text: dict[str, set[str]] = {}
    for ex in examples:
        if ex.text.strip() and ex.label.strip():
            labels_by_text.setdefault(ex.text.strip(), set()).add(ex.label)
    conflicts = {text: labels for text, labels in labels_by_text.items() if len(labels) > 1}
    for text, labels in conflicts.items():
        problems.append(
            f"the text {_shorten(text)!r} is given different labels ({', '.join(sorted(labels))}): "
            "keep one of them"
        )
    if problems:
        raise ValidationError(problems)


def check_inputs(inputs: Sequence[str], *, max_inputs: int | None = MAX_INPUTS) -> None:
    """Check the texts to classify: strings, none empty, at most ``max_inputs`` of them."""
    if isinstance(inputs, str):
        raise TypeError("inputs must be a list of strings; wrap a single text in a list")
    if len(inputs) == 0:
        raise ValidationError("invalid request: inputs cannot be empty. Give at least one text to classify")
    if max_inputs is not None and len(inputs) > max_inputs:
        raise ValidationError(
            f"total number of texts must be at most {max_inputs} - received {len(inputs)}"
        )
    for i, text in enumerate(inputs):
        if not isinstance(text, str):
            raise ValidationError(
                f"inputs contains an element that is not a string at index {i}: {type(text).__name__}"
            )
        if not text.strip():
            raise ValidationError(f"inputs contains an element that is the empty string at index {i}")


def check_truncate(truncate: str) -> Truncate:
    value = truncate.upper() if isinstance(truncate, str) else truncate
    if value not in TRUNCATE_OPTIONS:
        raise ValidationError(f"truncate must be one of {', '.join(TRUNCATE_OPTIONS)} - received {truncate!r}")
    return value  # type: ignore[return-value]


def label_counts(examples: Iterable[Example]) -> dict[str, int]:
    """Examples per label, in order of first appearance (for the page's counts)."""
    return dict(Counter(ex.label for ex in examples if ex.label.strip()))


def _join_numbers(numbers: Sequence[int], limit: int = 10) -> str:
    shown = ", ".join(str(n) for n in numbers[:limit])
    return shown + (f" and {len(numbers) - limit} more" if len(numbers) > limit else "")


def _shorten(text: str, width: int = 60) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def examples_from_rows(rows: Iterable[Sequence[Any]]) -> list[Example]:
    """Examples from grid rows ``(text, label)``; blank rows are skipped, half-filled ones reported.

    Row numbers in messages start at 1, as the page's grid shows them.
    """
    examples: list[Example] = []
    problems: list[str] = []
    for number, row in enumerate(rows, start=1):
        text, label = (_cell(value) for value in (list(row) + [None, None])[:2])
        if not text and not label:
            continue
        missing = [name for name, value in (("text", text), ("label", label)) if not value]
        if missing:
            problems.append(f"row {number}: the {' and the '.join(missing)} is empty; fill it in or delete the row")
            continue
        examples.append(Example(text, label))
    if problems:
        raise ValidationError(problems)
    return examples


def label_descriptions(rows: Iterable[Sequence[Any]], where: Sequence[str] | None = None) -> dict[str, str]:
    """Each label's description from ``(label, description)`` rows (the grid's or a CSV's optional column).

    A label is described once: on any one of its rows, or the same words on several. Blank
    descriptions are skipped; two different ones for a label are reported with the rows that
    hold them (``where`` names each row, e.g. "row 3"; by default rows count from 1).
    """
    found: dict[str, tuple[str, str]] = {}
    problems: list[str] = []
    for number, row in enumerate(rows, start=1):
        label, description = (_cell(value) for value in (list(row) + [None, None])[:2])
        if not label or not description:
            continue
        place = where[number - 1] if where is not None else f"row {number}"
        if label in found and found[label][0] != description:
            problems.append(f"{place}: label {label!r} is described twice ({found[label][1]} says "
                            f"{_clip(found[label][0])!r}, this row {_clip(description)!r}); keep one description "
                            "per label and leave the other rows' description blank")
            continue
        found.setdefault(label, (description, place))
    if problems:
        raise ValidationError(problems)
    return {label: description for label, (description, _) in found.items()}


def grid_contents(rows: Iterable[Sequence[Any]]) -> tuple[list[Example], dict[str, str]]:
    """The examples and label descriptions of grid rows ``(text, label, description)``.

    Every problem of both (half-filled rows, a label described twice) in one ``ValidationError``.
    """
    rows = [(list(row) + [None, None, None])[:3] for row in rows]
    problems: list[str] = []
    examples: list[Example] = []
    descriptions: dict[str, str] = {}
    try:
        examples = examples_from_rows(row[:2] for row in rows)
    except ValidationError as exc:
        problems += exc.problems
    try:
        descriptions = label_descriptions(row[1:] for row in rows)
    except ValidationError as exc:
        problems += exc.problems
    if problems:
        raise ValidationError(problems)
    return examples, descriptions


def _clip(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def inputs_from_text(text: str) -> list[str]:
    """One input per non-blank line of a text area."""
    return [line.strip() for line in (text or "").splitlines() if line.strip()]


def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and value != value):  # None / NaN from a new grid row
        return ""
    return str(value).strip()


def check_int(name: str, value: Any, low: int, high: int) -> None:
    """A settings field that must be an integer in [low, high] (never a bool); the message names the value."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{name} must be an integer from {low} to {high}. But it was: {value!r}")


def check_float(name: str, value: Any, low: float, high: float, *, low_open: bool = True) -> None:
    """A settings field that must be a finite number in (low, high] (or [low, high]); the message names the value."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and (
        (low < value if low_open else low <= value) and value <= high)
    if not ok:
        bracket = "(" if low_open else "["
        raise ValueError(f"{name} must be a number in {bracket}{low}, {high}]. But it was: {value!r}")


def check_folder_name(name: Any, what: str, *, example: str) -> str:
    """Return ``name`` if it is safe as a folder name, else raise ``ValidationError`` saying why, as ``what``.

    Letters A-Z / a-z, digits, ``-`` and ``_`` only (ASCII, so no look-alike letters), 1 to 64
    characters, not starting with ``-`` (it would read as a CLI option). Custom models and
    workspaces are folders named so: a name can never reach outside their folder.

    >>> check_folder_name("../x", "workspace name", example="reviews")  # ValidationError: looks like a path
    """
    if not isinstance(name, str):
        raise ValidationError(f"{what} must be a string, got {type(name).__name__}: {name!r}")
    if not name:
        raise ValidationError(f"{what} is empty: use letters, digits, - and _ (e.g. {example})")
    if len(name) > MAX_NAME_LENGTH:
        raise ValidationError(f"{what} {name[:20]!r}… is {len(name)} characters; at most {MAX_NAME_LENGTH} allowed")
    if ".." in name or "/" in name or "\\" in name or os.path.isabs(name):
        raise ValidationError(
            f"{what} {name!r} looks like a path: no '..', '/', '\\' or absolute paths; "
            "use letters, digits, - and _ only"
        )
    if not _NAME_RE.fullmatch(name):
        bad = sorted({c for c in name if not _NAME_RE.fullmatch(c)})
        shown = ", ".join(f"{c!r} ({unicodedata.name(c, f'U+{ord(c):04X}')})" for c in bad[:5])
        raise ValidationError(
            f"{what} {name!r} has characters that are not allowed: {shown}. "
            "Use ASCII letters, digits, - and _ only"
        )
    if name.startswith("-"):
        raise ValidationError(f"{what} {name!r} starts with '-': start with a letter or digit")
    return name
