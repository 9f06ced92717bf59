"""Reading and writing labelled data: CSV examples and JSONL multi-label data.

Every error names the row (CSV, as a spreadsheet numbers it, header included) or the line
(JSONL) and says how to fix it; all problems are listed at once so one edit fixes the file.
CSV is read with the standard library's ``csv`` module rather than pandas because it reports
where each record starts, quoted newlines included, which row-numbered messages need.
"""

from __future__ import annotations

import csv
import io
import json
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .validation import Example, ValidationError, label_descriptions

MAX_FILE_BYTES = 20 * 1024 * 1024
FIELD_SIZE_LIMIT = 16 * 1024 * 1024
"""Longest CSV cell, for examples and bulk files alike (the csv module's default is 131,072
characters, shorter than some reviews). ``csv.field_size_limit`` is process-wide: set here, once."""
csv.field_size_limit(FIELD_SIZE_LIMIT)
"""Largest labelled file accepted (20 MB): far more than a few-shot or training set needs."""
MAX_PROBLEMS_SHOWN = 20
TEXT_COLUMNS = ("text", "texts", "example", "examples", "input", "sentence", "content", "message")
LABEL_COLUMNS = ("label", "labels", "class", "category", "target", "intent", "tag")
DESCRIPTION_COLUMNS = ("description", "label_description", "label description", "definition")
"""An optional header column saying what a label means (once per label); used with the label names."""
DELIMITERS = ",;\t"
JSONL_SUFFIXES = (".jsonl", ".json", ".ndjson")
"""File names ending so hold multi-label JSON Lines; anything else is read as CSV."""
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
"""Cell starts a spreadsheet would run as a formula (CSV injection); written with a leading ``'``."""


class DataFileError(ValidationError):
    """A labelled file that cannot be used as it is; ``problems`` lists each row's reason."""


@dataclass(frozen=True)
class ParsedExamples:
    """Examples read from a file, with what was noticed on the way (shown to the user)."""

    examples: list[Example]
    has_header: bool = False
    delimiter: str = ","
    encoding: str = "utf-8"
    warnings: list[str] = field(default_factory=list)
    rows: list[int] = field(default_factory=list)
    """The file row of each example (header counted), for later messages that name it."""
    descriptions: dict[str, str] = field(default_factory=dict)
    """{label: description} from an optional ``description`` column (empty without one)."""


@dataclass(frozen=True, slots=True)
class MultiLabelExample:
    """A text with any number of labels (none included): one line of a multi-label JSONL file."""

    text: str
    labels: tuple[str, ...]

    def to_dict(self) -> dict:
        return {"text": self.text, "label": list(self.labels)}


def _read_bytes(source: bytes | str | Path | io.IOBase) -> bytes:
    if isinstance(source, bytes):
        data = source
    elif isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise DataFileError(f"file not found: {path}")
        if path.stat().st_size > MAX_FILE_BYTES:
            raise DataFileError(_too_big(path.stat().st_size))
        data = path.read_bytes()
    else:
        data = source.read()
        if isinstance(data, str):
            data = data.encode("utf-8")
    if len(data) > MAX_FILE_BYTES:
        raise DataFileError(_too_big(len(data)))
    return data


def _too_big(size: int) -> str:
    return (f"the file is {size / 1e6:.1f} MB; labelled files may be at most {MAX_FILE_BYTES // (1024 * 1024)} MB. "
            "Split it, or use bulk classify for texts without labels")


def decode_text(data: bytes) -> tuple[str, str, list[str]]:
    """UTF-8 (with or without BOM); else Windows-1252, said out loud rather than guessed silently."""
    if b"\x00" in data:
        raise DataFileError(
            "the file contains NUL bytes, so it is binary or UTF-16: save it as CSV UTF-8 (comma delimited)"
        )
    try:
        return data.decode("utf-8-sig"), "utf-8", []
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        try:
            text = data.decode("cp1252")
        except UnicodeDecodeError:
            raise DataFileError(
                f"line {line} is not valid UTF-8 (byte 0x{data[exc.start]:02X}): save the file as CSV UTF-8"
            ) from None
        return text.lstrip("\ufeff"), "cp1252", [
            f"the file is not UTF-8 (first odd byte on line {line}); it was read as Windows-1252. "
            "Check accented letters, or save it as CSV UTF-8"
        ]


def is_jsonl(name: str | Path) -> bool:
    """Whether a file name says multi-label JSON Lines (``.jsonl``, ``.json``, ``.ndjson``) rather than CSV."""
    return str(name).lower().endswith(JSONL_SUFFIXES)


def sniff_delimiter(text: str) -> str:
    """Comma, semicolon or tab: a text/label header settles it, else ``csv.Sniffer``, else the commonest."""
    for delimiter in DELIMITERS:  # a text/label header settles it (the sniffer can be misled by tabs in texts)
        try:
            first = next(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter), [])
        except csv.Error:
            continue
        if _header_columns(first) is not None:
            return delimiter
    sample = "\n".join(text.splitlines()[:50])
    try:
        return csv.Sniffer().sniff(sample, delimiters=DELIMITERS).delimiter
    except csv.Error:
        counts = {d: sample.count(d) for d in DELIMITERS}
        return max(counts, key=counts.get) if any(counts.values()) else ","


def _header_columns(row: Sequence[str]) -> tuple[int, int] | None:
    """Positions of the text and label columns if ``row`` is a header row."""
    names = [cell.strip().lower() for cell in row]
    text_col = next((i for i, n in enumerate(names) if n in TEXT_COLUMNS), None)
    label_col = next((i for i, n in enumerate(names) if n in LABEL_COLUMNS), None)
    if text_col is None or label_col is None or text_col == label_col:
        return None
    return text_col, label_col


def read_examples_csv(source: bytes | str | Path | io.IOBase) -> ParsedExamples:
    """Read ``text,label`` rows: header optional, comma / semicolon / tab sniffed, BOM allowed.

    With a header naming a text and a label column (``text``, ``label``, ``category`` …), those
    two columns are used, plus an optional ``description`` column (what a label means, on any
    one row of that label), and others ignored; without one, every row must have exactly two
    fields. Blank rows are skipped. Raises ``DataFileError`` listing every bad row.
    """
    text, encoding, warnings = decode_text(_read_bytes(source))
    if not text.strip():
        raise DataFileError("the file is empty: it needs rows of text,label")
    delimiter = sniff_delimiter(text)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    rows: list[list[str]] = []
    start = 1
    try:
        for row in reader:
            rows.append(row)
            start = reader.line_num + 1
    except csv.Error as exc:  # e.g. a field over the csv module's 131,072-character limit
        raise DataFileError(
            f"row {len(rows) + 1} (from line {start}) cannot be read ({exc}): a text that long is usually "
            "an unclosed double quote swallowing the rows after it; close the quote or shorten the text"
        ) from None
    columns = _header_columns(rows[0]) if rows else None
    has_header = columns is not None
    text_col, label_col = columns or (0, 1)
    header = [cell.strip() for cell in rows[0]] if has_header else ["text", "label"]
    description_col = next((i for i, name in enumerate(header) if has_header and name.lower() in DESCRIPTION_COLUMNS),
                           None)
    described: list[tuple[str, str]] = []
    problems: list[str] = []
    examples: list[Example] = []
    blank = 0
    numbers: list[int] = []
    for number, row in enumerate(rows, start=1):
        if has_header and number == 1:
            continue
        if not any(cell.strip() for cell in row):
            blank += 1
            continue
        if len(row) != len(header):
            if len(row) > len(header):
                hint = "put texts that contain the delimiter in double quotes"
            elif any(cell.count("\n") > 1 for cell in row):
                hint = ("a double quote opened in this row is never closed, so it swallowed the lines after it; "
                        "close the quote")
            else:
                hint = "add the missing field after a delimiter"
            problems.append(f"row {number}: {len(row)} field{'s' if len(row) != 1 else ''}, "
                            f"expected {len(header)} ({', '.join(header)}): {hint}")
            continue
        ex_text, ex_label = unescape_cell(row[text_col]).strip(), unescape_cell(row[label_col]).strip()
        missing = [name for name, value in (("text", ex_text), ("label", ex_label)) if not value]
        if missing:
            problems.append(f"row {number}: empty {' and '.join(missing)}")
            continue
        examples.append(Example(ex_text, ex_label))
        numbers.append(number)
        if description_col is not None:
            described.append((ex_label, unescape_cell(row[description_col])))
    descriptions: dict[str, str] = {}
    try:
        descriptions = label_descriptions(described, [f"row {n}" for n in numbers])
    except ValidationError as exc:
        problems.extend(exc.problems)
    if problems:
        raise DataFileError(_limit(problems))
    if not examples:
        raise DataFileError("the file has no examples: it needs rows of text,label" +
                            (" below its header" if has_header else ""))
    if blank:
        warnings.append(f"skipped {blank} blank row{'s' if blank != 1 else ''}")
    warnings.extend(near_duplicate_labels([ex.label for ex in examples], numbers))
    return ParsedExamples(examples, has_header, delimiter, encoding, warnings, numbers, descriptions)


def near_duplicate_labels(labels: Iterable[str], rows: Sequence[int] | None = None) -> list[str]:
    """Warn about labels that differ only by case or spacing ("Positive" vs "positive").

    They are kept apart (never merged silently); with ``rows`` (the file row of each label) the
    warning names the first rows of each spelling, so the user can find them.
    """
    groups: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
    for i, label in enumerate(labels):
        groups[" ".join(label.casefold().split())][label].append(rows[i] if rows is not None else i)
    warnings = []
    for variants in groups.values():
        if len(variants) < 2:
            continue
        if rows is None:
            shown = ", ".join(repr(v) for v in sorted(variants))
        else:
            shown = ", ".join(f"{v!r} (row{'s' if len(n) > 1 else ''} {', '.join(map(str, n[:3]))}"
                              f"{' …' if len(n) > 3 else ''})" for v, n in sorted(variants.items()))
        warnings.append(f"labels {shown} differ only by case or spacing: they count as different labels; "
                        "make them the same if they mean the same")
    return warnings


def read_multilabel_jsonl(source: bytes | str | Path | io.IOBase) -> list[MultiLabelExample]:
    """Read ``{"text": "...", "label": ["a", "b"]}`` lines; ``label`` may be a string or ``[]``.

    Blank lines are skipped. Raises ``DataFileError`` naming each bad line.
    """
    text, _, _ = decode_text(_read_bytes(source))
    problems: list[str] = []
    out: list[MultiLabelExample] = []
    # JSON Lines ends records at "\n" only: str.splitlines() would also split inside strings
    # holding U+2028, U+0085 or a form feed, which JSON allows unescaped.
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            problems.append(f"line {number}: not valid JSON ({exc.msg} at column {exc.colno})")
            continue
        except RecursionError:
            problems.append(f"line {number}: nested too deeply to read; use {{\"text\": \"...\", \"label\": [\"...\"]}}")
            continue
        if not isinstance(record, dict):
            problems.append(f"line {number}: expected an object like {{\"text\": \"...\", \"label\": [\"...\"]}}")
            continue
        item = record.get("text")
        labels = record.get("label", record.get("labels"))
        if "text" not in record:
            problems.append(f"line {number}: missing \"text\"")
            continue
        if not isinstance(item, str):
            problems.append(f"line {number}: \"text\" must be a string, got {type(item).__name__}")
            continue
        if not item.strip():
            problems.append(f"line {number}: empty \"text\"")
            continue
        if labels is None and "label" not in record and "labels" not in record:
            problems.append(f"line {number}: missing \"label\" (use [] for a text with none of the labels)")
            continue
        if isinstance(labels, str):
            labels = [labels]
        if not isinstance(labels, list) or not all(isinstance(v, str) and v.strip() for v in labels):
            problems.append(
                f"line {number}: \"label\" must be a string or a list of non-empty strings, got {json.dumps(labels)[:60]}"
            )
            continue
        out.append(MultiLabelExample(item.strip(), tuple(dict.fromkeys(v.strip() for v in labels))))
    if problems:
        raise DataFileError(_limit(problems))
    if not out:
        raise DataFileError("the file has no lines: it needs one {\"text\": ..., \"label\": [...]} object per line")
    return out


def examples_to_csv(examples: Iterable[Example], descriptions: dict[str, str] | None = None) -> str:
    """``text,label`` CSV with a header, quoted where needed and formula-safe; reads back to the same examples.

    With ``descriptions`` ({label: words}), a third ``description`` column carries each label's
    description on the label's first row.
    """
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    # csv quotes fields holding the line terminator ("\n") but not a bare "\r", which readers take
    # as a line break: rows with one are written fully quoted.
    quoted = csv.writer(buffer, lineterminator="\n", quoting=csv.QUOTE_ALL)
    writer.writerow(["text", "label", "description"] if descriptions else ["text", "label"])
    pending = dict(descriptions or {})
    for ex in examples:
        row = [escape_cell(ex.text), escape_cell(ex.label)]
        if descriptions:
            row.append(escape_cell(pending.pop(ex.label, "")))
        (quoted if any("\r" in cell for cell in row) else writer).writerow(row)
    return buffer.getvalue()


def escape_cell(value: str) -> str:
    """Prefix a cell a spreadsheet would run as a formula (``=``, ``+``, ``-``, ``@`` …) with ``'``.

    A cell that already starts with ``'`` followed by one of those (or another ``'``) gets one
    too, so ``unescape_cell`` can undo exactly what was added: the export reads back unchanged.
    """
    if value.startswith(FORMULA_PREFIXES) or (value.startswith("'") and value[1:2].startswith(FORMULA_PREFIXES + ("'",))):
        return "'" + value
    return value


def unescape_cell(value: str) -> str:
    """Undo ``escape_cell``: drop the ``'`` a formula-safe export put in front of a cell."""
    if value.startswith("'") and value[1:2] and value[1:2].startswith(FORMULA_PREFIXES + ("'",)):
        return value[1:]
    return value


def _limit(problems: list[str]) -> list[str]:
    if len(problems) <= MAX_PROBLEMS_SHOWN:
        return problems
    return problems[:MAX_PROBLEMS_SHOWN] + [f"… and {len(problems) - MAX_PROBLEMS_SHOWN} more rows like these"]
