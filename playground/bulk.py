"""Bulk classify: a CSV of any size in, the same rows with predictions out.

Cohere capped a call at 96 inputs; a spreadsheet has thousands of rows. The file is streamed
with the ``csv`` module in chunks (never held whole), so memory stays flat with file size,
and every chunk goes through the same path as ``classify`` (``engine.get_classifier``: few-shot
examples fitted once, or a saved custom model).

Output columns, in order:

- every original column, unchanged (apart from formula escaping, below);
- ``prediction``: the top label (multi-label models: every predicted label, joined by ``"; "``);
- ``confidence``: the top label's confidence, 0 to 1;
- ``confidence_<label>``: one column per label, in the model's label order;
- ``error``: empty, or why the row has no prediction (an empty text, a row with too many fields).

A new column whose name is already taken by an original column gets ``_1`` (``_2`` …) added.
Cells that begin with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return get a leading
``'`` so a spreadsheet shows them as text instead of running them as formulas (CSV
injection); this includes original cells and the header.

The result is written to a hidden temporary file next to ``output`` and renamed into place at
the very end: a stopped, failed or killed run never leaves a partial file under the final name.

>>> result = classify_file("texts.csv", "results.csv", examples=[("late again", "negative"), ...])
>>> result.rows, result.errors, result.seconds
"""

from __future__ import annotations

import csv
import io
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Protocol

from .data import escape_cell, sniff_delimiter
from .engine import Classification, check_unknown_below, get_classifier, with_unknown
from .validation import ExampleLike, ValidationError, check_truncate
from .windows import MAX_WINDOWS_ENV

DEFAULT_CHUNK_SIZE = 256
"""Rows classified per batch: large enough for the encoder, small enough for a lively progress bar."""
CHUNK_SIZES = {"small": 1024}
"""The small model takes 4x bigger chunks: the encoder sorts each chunk by length, and on long
texts 256-row chunks cost it 31 % against one sorted pass (AG News, docs/BENCHMARKS.md); 1,024 rows
still report progress every few seconds. The large model keeps 256 so Stop answers within ~10 s."""
RESULT_COLUMNS = ("prediction", "confidence")
CONFIDENCE_PREFIX = "confidence_"
ERROR_COLUMN = "error"
SNIFF_BYTES = 64 * 1024
WINDOWS_PER_CHUNK = {"small": 1024}
"""Under ``truncate="WINDOWS"`` a chunk ends at this many windows (else ``DEFAULT_WINDOWS_PER_CHUNK``) as well as
at its rows: a file of long texts then costs each chunk what a file of short ones does (memory flat, progress
as lively), whatever the texts' lengths."""
DEFAULT_WINDOWS_PER_CHUNK = 256
MULTI_LABEL_JOIN = "; "


class Classifier(Protocol):
    def classify(self, inputs: Sequence[str], *, truncate: str = ...) -> list[Classification]: ...


Source = str | os.PathLike | IO[bytes]


@dataclass(frozen=True)
class BulkProgress:
    """Where a bulk job stands, given to the progress callback after every chunk."""

    rows_done: int
    total: int
    seconds_elapsed: float
    windows_done: int = 0
    """Windows read so far under ``truncate="WINDOWS"`` (a long row counts each of its windows; 0 otherwise)."""

    @property
    def rate(self) -> float:
        """Rows per second so far."""
        return self.rows_done / self.seconds_elapsed if self.seconds_elapsed > 0 else 0.0

    @property
    def seconds_left(self) -> float | None:
        """Estimated from the rate so far; ``None`` before the first chunk is done."""
        if self.rows_done == 0 or self.rate == 0:
            return None
        return max(self.total - self.rows_done, 0) / self.rate

    @property
    def fraction(self) -> float:
        return min(self.rows_done / self.total, 1.0) if self.total else 1.0


@dataclass(frozen=True)
class BulkResult:
    """What a bulk job did. ``output`` is ``None`` when it was stopped (nothing was written)."""

    output: Path | None
    rows: int
    total: int
    errors: int
    labels: tuple[str, ...]
    columns: tuple[str, ...]
    text_column: str
    seconds: float
    stopped: bool = False
    long_rows: int = 0
    """Under ``truncate="WINDOWS"``: rows longer than the model's window, read in windows."""
    capped_rows: int = 0
    """Of those, rows the window cap stopped before their end (``$CLASSIFY_MAX_WINDOWS``, default 16)."""

    def to_dict(self) -> dict[str, Any]:
        return {"output": str(self.output) if self.output else None, "rows": self.rows, "total": self.total,
                "errors": self.errors, "labels": list(self.labels), "columns": list(self.columns),
                "text_column": self.text_column, "seconds": self.seconds, "stopped": self.stopped,
                "long_rows": self.long_rows, "capped_rows": self.capped_rows}

    @property
    def long_note(self) -> str:
        """What WINDOWS did with long rows, in words ("" when no row was longer than the window)."""
        if not self.long_rows:
            return ""
        note = f"{self.long_rows:,} rows were longer than the model's window and were read in windows"
        if self.capped_rows:
            note += (f"; {self.capped_rows:,} of them were read only up to the cap of windows (the rest of the "
                     f"text unread: raise {MAX_WINDOWS_ENV} to read more)")
        return note


def format_eta(seconds: float | None) -> str:
    """``1h02m``, ``3m05s``, ``42s`` or ``…`` when not known yet."""
    if seconds is None:
        return "…"
    seconds = int(round(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds}s"


@dataclass(frozen=True)
class CsvLayout:
    """How to read an input file: encoding, delimiter, header and the text column."""

    encoding: str
    delimiter: str
    header: tuple[str, ...]
    text_index: int

    @property
    def text_column(self) -> str:
        return self.header[self.text_index]


def open_binary(source: Source, what: str = "input file") -> tuple[IO[bytes], bool]:
    """An open binary stream at its start, and whether it is ours to close (a path we opened)."""
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            raise ValidationError(f"{what} not found: {path}")
        return path.open("rb"), True
    if hasattr(source, "seek"):
        source.seek(0)
    return source, False


def read_head(source: Source, what: str = "input file") -> bytes:
    """The first ``SNIFF_BYTES`` of a file, for sniffing its encoding, delimiter or emptiness."""
    binary, owned = open_binary(source, what)
    try:
        return binary.read(SNIFF_BYTES)
    finally:
        if owned:
            binary.close()


def _text_stream(binary: IO[bytes], encoding: str) -> io.TextIOWrapper:
    return io.TextIOWrapper(binary, encoding=encoding, newline="")


def _rows(source: Source, encoding: str, delimiter: str) -> Iterator[list[str]]:
    binary, owned = open_binary(source)
    stream = _text_stream(binary, encoding)
    try:
        yield from csv.reader(stream, delimiter=delimiter)
    finally:
        stream.detach()
        if owned:
            binary.close()


def read_rows(source: Source, layout: CsvLayout) -> Iterator[list[str]]:
    """Every row of a CSV read as ``inspect_csv`` found it (header first), streamed; close it when done early."""
    return _rows(source, layout.encoding, layout.delimiter)


def inspect_csv(source: Source, text_column: str | None = None, *,
                delimiter: str | None = None) -> tuple[CsvLayout, int]:
    """Read the file once, streaming: its layout and its number of data rows (for progress).

    UTF-8 (BOM allowed) else Windows-1252; comma, semicolon or tab, sniffed from the start.
    The first row is the header; a line with nothing on it is skipped (a row of empty cells
    is kept, and gets an error). ``text_column`` defaults to ``text`` if present, else the
    first column.
    """
    head = read_head(source)
    if not head.strip():
        raise ValidationError("the file is empty: it needs a header row and one row per text")
    if b"\x00" in head:
        raise ValidationError("the file contains NUL bytes, so it is binary or UTF-16: save it as CSV UTF-8")
    sample = head.decode("utf-8", errors="ignore")
    if delimiter is None:
        delimiter = sniff_delimiter(sample.lstrip("\ufeff"))
    elif len(delimiter) != 1:
        raise ValidationError(f"delimiter must be one character - received {delimiter!r}")
    for encoding in ("utf-8-sig", "cp1252"):
        try:
            rows = _rows(source, encoding, delimiter)
            header = next(rows, None)
            count = sum(1 for row in rows if row)  # only a line with nothing on it is skipped
            break
        except UnicodeDecodeError:
            continue
    else:  # pragma: no cover - cp1252 decodes nearly everything
        raise ValidationError("the file is neither UTF-8 nor Windows-1252: save it as CSV UTF-8")
    if not header or not any(cell.strip() for cell in header):
        raise ValidationError("the first row is empty: it must be a header naming the columns, e.g. text")
    header = tuple(cell.strip() for cell in header)
    if text_column is None:
        lowered = [name.lower() for name in header]
        index = lowered.index("text") if "text" in lowered else 0
    elif text_column in header:
        index = header.index(text_column)
    else:
        raise ValidationError(f"text column {text_column!r} is not in the file; its columns are: "
                              f"{', '.join(repr(h) for h in header)}")
    return CsvLayout(encoding, delimiter, header, index), count


def unique_column(name: str, taken: set[str]) -> str:
    """``name``, or ``name_1`` (``_2`` …) when an input column already has it; the result is added to ``taken``."""
    candidate, n = name, 0
    while candidate in taken:
        n += 1
        candidate = f"{name}_{n}"
    taken.add(candidate)
    return candidate


def output_columns(header: Sequence[str], labels: Sequence[str]) -> tuple[list[str], list[str]]:
    """The output header, and just the added columns (renamed where the input already had the name)."""
    taken = set(header)
    added = [unique_column(name, taken) for name in
             [*RESULT_COLUMNS, *(CONFIDENCE_PREFIX + label for label in labels), ERROR_COLUMN]]
    return [*header, *added], added


def _labels_of(classifier: Classifier) -> list[str] | None:
    labels = getattr(classifier, "labels", None)
    return [str(label) for label in labels] if labels else None


def classify_chunk(classifier: Classifier, texts: list[str], truncate: str) -> list[Classification | str]:
    """A result per text, or the reason there is none; one bad text never fails the chunk."""
    out: list[Classification | str] = ["" for _ in texts]
    todo = [i for i, text in enumerate(texts) if text.strip()]
    for i, text in enumerate(texts):
        if not text.strip():
            out[i] = "empty text"
    if not todo:
        return out
    try:
        results = classifier.classify([texts[i] for i in todo], truncate=truncate)
        for i, result in zip(todo, results):
            out[i] = result
    except ValidationError:  # e.g. truncate NONE and a text over the limit: find which, keep the rest
        for i in todo:
            try:
                out[i] = classifier.classify([texts[i]], truncate=truncate)[0]
            except ValidationError as exc:
                out[i] = str(exc).replace("inputs[0] ", "text ")
    return out


def _result_cells(result: Classification | str, labels: list[str]) -> list[str]:
    if isinstance(result, str):
        return ["", "", *("" for _ in labels), result]
    if result.classification_type == "multi-label":
        prediction = MULTI_LABEL_JOIN.join(result.predictions)
    else:
        prediction = result.prediction
    return [prediction, _number(result.confidence), *(_number(result.labels.get(label, 0.0)) for label in labels), ""]


def _number(value: float) -> str:
    return f"{value:.6f}"


def classify_file(source: Source, output: str | os.PathLike, *, examples: Iterable[ExampleLike] | None = None,
                  model: str = "small", classifier: Classifier | None = None, text_column: str | None = None,
                  delimiter: str | None = None, truncate: str = "END", precision: str | None = None,
                  chunk_size: int | None = None, unknown_below: float | None = None,
                  progress: Callable[[BulkProgress], None] | None = None,
                  stop: threading.Event | Callable[[], bool] | None = None) -> BulkResult:
    """Classify every row of a CSV and write the rows back with predictions (see the module doc).

    Parameters
    ----------
    source : path or binary file
        CSV with a header row; read twice, streaming (once to count rows, once to classify).
    output : path
        Where the result goes; it appears only when the job finishes.
    examples : iterable of Example, (text, label) or {"text", "label"}, optional
        Few-shot examples on ``model`` (``small`` / ``large``). Leave out to use the custom
        model named ``model``. ``classifier`` (anything with ``classify(texts, truncate=)``)
        overrides both.
    text_column : str, optional
        Column to classify; default ``text`` if present, else the first column.
    delimiter : str, optional
        Field delimiter; sniffed (comma, semicolon or tab) when not given.
    progress : callable(BulkProgress), optional
        Called after every chunk (and once at the start) with rows done, total, time left.
        An exception it raises stops the job, nothing written. Under ``truncate="WINDOWS"`` it also
        counts the windows read (``BulkProgress.windows_done``).
    stop : threading.Event or callable returning bool, optional
        Checked before every chunk; when set, the job stops and ``BulkResult.stopped`` is True.
    unknown_below : float, optional
        Opt-in: single-label rows whose confidence is below this get ``prediction`` ``unknown``
        (their ``confidence_<label>`` columns are kept).
    """
    started = time.perf_counter()
    truncate = check_truncate(truncate)
    unknown_below = check_unknown_below(unknown_below)
    if chunk_size is None:
        chunk_size = CHUNK_SIZES.get(model, DEFAULT_CHUNK_SIZE) if classifier is None else DEFAULT_CHUNK_SIZE
    chunk_windows = WINDOWS_PER_CHUNK.get(model, DEFAULT_WINDOWS_PER_CHUNK) if classifier is None else DEFAULT_WINDOWS_PER_CHUNK
    if not (isinstance(chunk_size, int) and chunk_size >= 1):
        raise ValueError(f"chunk_size must be a positive integer. But it was: {chunk_size!r}")
    output = Path(output)
    if not output.parent.is_dir():
        raise ValidationError(f"output folder does not exist: {output.parent}")
    layout, total = inspect_csv(source, text_column, delimiter=delimiter)
    if classifier is None:
        kwargs = {} if precision is None else {"precision": precision}  # None: the engine's default, as classify
        classifier = get_classifier(examples, model, truncate=truncate, **kwargs)
    is_stopped = stop.is_set if isinstance(stop, threading.Event) else (stop or (lambda: False))
    encoder = getattr(classifier, "encoder", None)
    windows_of = None
    long_rows = capped_rows = 0
    if truncate == "WINDOWS" and encoder is not None:
        def windows_of(row: list[str]) -> int:
            nonlocal long_rows, capped_rows
            text = row[layout.text_index] if layout.text_index < len(row) else ""
            if not text.strip():
                return 0
            reading = encoder.reading(text, "WINDOWS")
            long_rows += reading.longer
            capped_rows += reading.capped
            return len(reading.windows)
    report = progress or (lambda _: None)
    report(BulkProgress(0, total, 0.0))

    labels = _labels_of(classifier)
    width = len(layout.header)
    done = errors = windows_done = 0
    header: list[str] | None = None
    rows: Iterator[list[str]] | None = None
    fd, tmp_name = tempfile.mkstemp(prefix=f".{output.name}.", suffix=".part", dir=output.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as out:
            writer = csv.writer(out)
            pending: list[tuple[list[str], Classification | str]] = []  # rows waiting for the labels

            def flush() -> None:
                nonlocal header
                if header is None:
                    header, _ = output_columns(layout.header, labels or [])
                    writer.writerow([escape_cell(name) for name in header])
                for cells, result in pending:
                    cells = cells + _result_cells(result, labels or [])
                    writer.writerow([escape_cell(c) for c in cells])
                pending.clear()

            rows = _rows(source, layout.encoding, layout.delimiter)
            next(rows, None)  # the header
            for chunk, windows in _chunks((row for row in rows if row), chunk_size, windows_of, chunk_windows):
                if is_stopped():
                    return BulkResult(None, done, total, errors, tuple(labels or ()), tuple(header or ()),
                                      layout.text_column, time.perf_counter() - started, stopped=True)
                texts, problems = [], []
                for row in chunk:
                    problems.append(
                        f"{len(row)} fields, the header has {width}: put texts containing the delimiter in quotes"
                        if len(row) > width else "")
                    texts.append(row[layout.text_index] if layout.text_index < len(row) else "")
                results = classify_chunk(classifier, [t if not p else "" for t, p in zip(texts, problems)], truncate)
                if unknown_below is not None:
                    results = [with_unknown([r], unknown_below)[0] if isinstance(r, Classification) else r
                               for r in results]
                for row, problem, result in zip(chunk, problems, results):
                    result = problem or result
                    if labels is None and isinstance(result, Classification):
                        labels = sorted(result.labels)
                    errors += isinstance(result, str)
                    pending.append(((row + [""] * width)[:width], result))
                if labels is not None:
                    flush()
                done += len(chunk)
                windows_done += windows
                report(BulkProgress(done, total, time.perf_counter() - started, windows_done))
            flush()
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, output)
    finally:
        if rows is not None:
            rows.close()
        tmp.unlink(missing_ok=True)
    return BulkResult(output, done, total, errors, tuple(labels or ()), tuple(header or ()), layout.text_column,
                      time.perf_counter() - started, long_rows=long_rows, capped_rows=capped_rows)


def _chunks(rows: Iterable[list[str]], size: int, windows_of: Callable[[list[str]], int] | None = None,
            chunk_windows: int = DEFAULT_WINDOWS_PER_CHUNK) -> Iterator[tuple[list[list[str]], int]]:
    """Rows in chunks of ``size``, each with its windows; with ``windows_of``, a chunk also ends at ``chunk_windows``."""
    chunk: list[list[str]] = []
    windows = 0
    for row in rows:
        chunk.append(row)
        windows += windows_of(row) if windows_of is not None else 0
        if len(chunk) == size or (windows_of is not None and windows >= chunk_windows):
            yield chunk, windows
            chunk, windows = [], 0
    if chunk:
        yield chunk, windows
