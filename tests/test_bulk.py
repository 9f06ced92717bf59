"""Bulk classify: streamed CSV in, predictions out, atomic output, formula cells escaped."""

from __future__ import annotations

import csv
import threading
from pathlib import Path

import pytest

from playground.bulk import (
    CHUNK_SIZES,
    BulkProgress,
    classify_file,
    escape_cell,
    format_eta,
    inspect_csv,
    output_columns,
)
from playground.cli import main
from playground.engine import fit_few_shot
from playground.presets import load_preset
from playground.validation import ValidationError

ROWS = 5_000
POSITIVE = ["I love this product", "Great value, would buy again", "Arrived early and works perfectly",
            "Excellent quality, very happy", "The best purchase I made this year"]
NEGATIVE = ["The package was damaged", "It broke after two days", "Terrible support, never again",
            "The order is late and incomplete", "Cheap material, I want a refund"]
TEMPLATES = POSITIVE + NEGATIVE


def row_text(i: int) -> str:
    if i % 1000 == 7:
        return ""  # an empty text cell: an error value, not a failed job
    if i % 1000 == 11:
        return "=HYPERLINK(\"http://x\") great value, would buy again"  # formula in the text itself
    return f"{TEMPLATES[i % len(TEMPLATES)]} (order {i % 40})"


def note(i: int) -> str:
    return ["plain", "=1+1", "+cmd", "-2", "@SUM(A1)", "\tx", "ok, with comma", "line\nbreak"][i % 8]


@pytest.fixture(scope="module")
def examples():
    return list(load_preset("review-sentiment").examples)


@pytest.fixture(scope="module")
def big_csv(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("bulk") / "texts.csv"
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "note", "text"])
        for i in range(ROWS):
            writer.writerow([i, note(i), row_text(i)])
    return path


@pytest.fixture(scope="module")
def bulk_run(big_csv, examples, small_encoder):
    out = big_csv.parent / "results.csv"
    seen: list[BulkProgress] = []
    result = classify_file(big_csv, out, examples=examples, model="small", progress=seen.append)
    with out.open(encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f))
    return result, rows, seen


def test_every_row_classified_once_in_order(bulk_run, examples):
    result, rows, _ = bulk_run
    header, body = rows[0], rows[1:]
    assert result.rows == result.total == ROWS and len(body) == ROWS
    assert [r[0] for r in body] == [str(i) for i in range(ROWS)]
    assert result.text_column == "text"
    model = fit_few_shot(examples, "small")
    sample = [i for i in range(0, ROWS, 97) if row_text(i)]
    expected = model.classify([row_text(i) for i in sample])
    col = {name: j for j, name in enumerate(header)}
    for i, want in zip(sample, expected):
        got = body[i]
        assert got[col["prediction"]] == want.prediction
        assert float(got[col["confidence"]]) == pytest.approx(want.confidence, abs=1e-5)
        for label, p in want.labels.items():
            assert float(got[col[f"confidence_{label}"]]) == pytest.approx(p, abs=1e-5)
        assert got[col["error"]] == ""


def test_output_columns_as_documented(bulk_run):
    result, rows, _ = bulk_run
    assert rows[0] == ["id", "note", "text", "prediction", "confidence", "confidence_negative",
                       "confidence_positive", "error"]
    assert result.columns == tuple(rows[0]) and result.labels == ("negative", "positive")
    for row in rows[1:200]:
        if row[-1]:
            continue
        assert float(row[5]) + float(row[6]) == pytest.approx(1.0, abs=1e-5)
        assert float(row[4]) == max(float(row[5]), float(row[6]))


def test_formula_cells_escaped(bulk_run):
    _, rows, _ = bulk_run
    body = rows[1:]
    assert [body[i][1] for i in range(8)] == ["plain", "'=1+1", "'+cmd", "'-2", "'@SUM(A1)", "'\tx",
                                              "ok, with comma", "line\nbreak"]
    assert body[11][2].startswith("'=HYPERLINK(")
    assert body[11][3] == "positive"  # classified on the original text, escaped only in the file
    for row in body:
        for cell in row:
            assert not cell.startswith(("=", "+", "-", "@", "\t", "\r"))


def test_empty_text_gives_an_error_value(bulk_run):
    result, rows, _ = bulk_run
    empties = [i for i in range(ROWS) if not row_text(i)]
    assert result.errors == len(empties) == 5
    for i in empties:
        row = rows[1 + i]
        assert row[3:7] == ["", "", "", ""] and row[7] == "empty text"


def test_progress_reports_rows_and_time_left(bulk_run):
    _, _, seen = bulk_run
    assert seen[0].rows_done == 0 and seen[0].seconds_left is None
    step = CHUNK_SIZES["small"]  # the small model's chunk
    assert [p.rows_done for p in seen[1:3]] == [step, 2 * step]
    assert seen[-1].rows_done == seen[-1].total == ROWS and seen[-1].seconds_left == 0
    assert all(p.seconds_left is not None and p.seconds_left >= 0 for p in seen[1:])
    assert format_eta(None) == "…" and format_eta(3725) == "1h02m" and format_eta(65) == "1m05s"


def _no_partial_files(folder: Path, name: str) -> None:
    assert not (folder / name).exists()
    assert not [p.name for p in folder.iterdir() if p.name.startswith(f".{name}.")]


def test_stop_flag_leaves_no_partial_output(big_csv, examples, small_encoder):
    out = big_csv.parent / "stopped.csv"
    stop = threading.Event()

    def progress(p: BulkProgress) -> None:
        if p.rows_done >= 512:
            stop.set()

    result = classify_file(big_csv, out, examples=examples, progress=progress, stop=stop, chunk_size=256)
    assert result.stopped and result.output is None and result.rows == 512
    _no_partial_files(big_csv.parent, "stopped.csv")


def test_callback_exception_leaves_no_partial_output_and_keeps_the_old_file(big_csv, examples, small_encoder):
    out = big_csv.parent / "failed.csv"
    out.write_text("previous results\n")

    def progress(p: BulkProgress) -> None:
        if p.rows_done >= 256:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        classify_file(big_csv, out, examples=examples, progress=progress)
    assert out.read_text() == "previous results\n"
    out.unlink()
    _no_partial_files(big_csv.parent, "failed.csv")


def test_text_column_by_name_or_first(tmp_path, examples, small_encoder):
    src = tmp_path / "in.csv"
    src.write_text("review;stars;prediction\nThe package was damaged;1;x\nI love it;5;y\n", encoding="utf-8")
    out = tmp_path / "out.csv"
    result = classify_file(src, out, examples=examples)
    assert result.text_column == "review"
    rows = list(csv.reader(out.open(encoding="utf-8", newline="")))
    assert rows[0][:5] == ["review", "stars", "prediction", "prediction_1", "confidence"]
    assert [r[3] for r in rows[1:]] == ["negative", "positive"]
    with pytest.raises(ValidationError, match="'body' is not in the file; its columns are: 'review', 'stars'"):
        classify_file(src, out, examples=examples, text_column="body")
    with pytest.raises(ValidationError, match="needs examples"):
        classify_file(src, out, model="small")
    assert inspect_csv(src, "stars")[0].text_index == 1


def test_escape_and_columns_helpers():
    assert escape_cell("=A1") == "'=A1" and escape_cell("a=b") == "a=b" and escape_cell("\rx") == "'\rx"
    assert output_columns(["text", "error"], ["a"])[1] == ["prediction", "confidence", "confidence_a", "error_1"]


def test_cli_input_file_round_trip(tmp_path, capsys, small_encoder, examples):
    ex = tmp_path / "ex.csv"
    ex.write_text("text,label\n" + "".join(f"{e.text.replace(',', ' ')},{e.label}\n" for e in examples))
    src = tmp_path / "texts.csv"
    src.write_text("body,id\nThe item broke after 3 weeks,1\nI would buy this again,2\n,3\n")
    out = tmp_path / "results.csv"
    code = main(["classify", "--examples", str(ex), "--input-file", str(src), "--text-column", "body",
                 "--output", str(out)])
    err = capsys.readouterr().err
    assert code == 0
    assert "3/3 rows" in err and "rows/s" in err and "ETA" in err and "3 rows classified" in err
    rows = list(csv.DictReader(out.open(encoding="utf-8", newline="")))
    assert [r["id"] for r in rows] == ["1", "2", "3"]
    assert [r["prediction"] for r in rows] == ["negative", "positive", ""]
    assert rows[2]["error"] == "empty text"

    assert main(["classify", "--input-file", str(src)]) == 2
    assert "needs both --input-file" in capsys.readouterr().err
    # the positional-texts JSON mode still works
    assert main(["classify", "--examples", str(ex), "I would buy this again"]) == 0
    assert '"prediction": "positive"' in capsys.readouterr().out


def test_bulk_page_pasted_texts(small_encoder):
    from streamlit.testing.v1 import AppTest

    page = Path(__file__).resolve().parent.parent / "playground" / "ui" / "bulk_page.py"
    at = AppTest.from_file(str(page), default_timeout=180).run()
    assert not at.exception
    assert "Upload a CSV or paste" in at.info[0].value
    at.radio(key="bulk_source").set_value("Paste").run()
    pasted = "The package was damaged\n=cmd I love it, great value\n\nI want a refund"
    at.text_area(key="bulk_paste").set_value(pasted).run()
    assert not at.exception and not at.error
    assert at.selectbox(key="bulk_text_column").value == "text"
    assert "3 rows" in " ".join(c.value for c in at.caption)
    at.button(key="bulk_start").click().run()
    assert not at.exception and not at.error
    assert at.success[0].value.startswith("3 rows classified")
    frame = at.dataframe[0].value
    assert list(frame.columns) == ["text", "prediction", "confidence", "confidence_negative", "confidence_positive",
                                   "error"]
    assert list(frame["prediction"]) == ["negative", "positive", "negative"]
    assert frame["text"][1].startswith("'=cmd")
    result = at.session_state.bulk_result
    assert result.rows == 3 and Path(result.output).is_file()
    at.button(key="bulk_stop").click().run()
    assert "Stopped" in at.warning[0].value


def bulk_page_classifying(pasted: str):
    """The Bulk page (AppTest) after pasting ``pasted`` and pressing Classify all."""
    from streamlit.testing.v1 import AppTest

    page = Path(__file__).resolve().parent.parent / "playground" / "ui" / "bulk_page.py"
    at = AppTest.from_file(str(page), default_timeout=180).run()
    at.radio(key="bulk_source").set_value("Paste").run()
    at.text_area(key="bulk_paste").set_value(pasted).run()
    at.button(key="bulk_start").click().run()
    return at


def test_bulk_page_review_queue_lists_the_least_sure_rows(small_encoder):
    from playground.label_next import review_queue

    at = bulk_page_classifying("The package was damaged\nIt is fine I guess\nI love it")
    assert not at.exception and not at.error
    at.number_input(key="bulk_review_top").set_value(2).run()
    assert not at.exception and not at.error
    queue = review_queue(at.session_state.bulk_result.output, top=2)
    assert len(queue) == 2 and queue[0].uncertainty >= queue[1].uncertainty
    grid = at.dataframe[1].value  # the review grid, under the preview
    assert list(grid["text"]) == [r.text for r in queue] and list(grid["label"]) == list(grid["prediction"])
    assert not grid["checked"].any()


def test_bulk_page_unknown_answer_is_opt_in(small_encoder):
    """With the threshold above every confidence, each row answers unknown; its confidences are kept."""
    at = bulk_page_classifying("The package was damaged\nIt is fine I guess")
    plain = at.dataframe[0].value
    assert "unknown" not in set(plain["prediction"])
    at.checkbox(key="bulk_unknown").check().run()
    at.slider(key="bulk_unknown_below").set_value(1.0).run()
    at.button(key="bulk_start").click().run()
    assert not at.exception and not at.error
    frame = at.dataframe[0].value
    assert list(frame["prediction"]) == ["unknown", "unknown"]
    assert list(frame["confidence_negative"]) == list(plain["confidence_negative"])


def test_windows_read_long_rows_in_chunks_of_windows_with_progress(tmp_path, small_encoder, monkeypatch):
    from fixtures.long_documents import LONG_EXAMPLES, LONG_TICKETS

    from playground import bulk

    monkeypatch.setitem(bulk.WINDOWS_PER_CHUNK, "small", 4)
    texts = [*LONG_TICKETS, "where is my parcel?", "!!! ... --- " * 300, "   "] * 3
    source = tmp_path / "long.csv"
    with source.open("w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([["text"], *([t] for t in texts)])
    seen: list[BulkProgress] = []
    result = classify_file(source, tmp_path / "out.csv", examples=LONG_EXAMPLES, truncate="WINDOWS",
                           chunk_size=1000, progress=seen.append)
    with (tmp_path / "out.csv").open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert [r["prediction"] for r in rows[:2]] == list(LONG_TICKETS.values())  # decided past the window
    assert rows[2]["prediction"] == "shipping"
    assert rows[3]["prediction"] and not rows[3]["error"]  # punctuation only, over the window: read, no crash
    assert rows[4]["error"] == "empty text" and result.errors == 3
    windows = [len(small_encoder.reading(t, "WINDOWS").windows) for t in texts if t.strip()]
    assert seen[-1].windows_done == sum(windows) and seen[-1].rows_done == len(texts)
    assert len(seen) > 3  # 1,000 rows a chunk, but every 4 windows ended one
    assert result.long_rows == 9 and result.capped_rows == 0  # 2 tickets and the punctuation row, 3 times
    assert result.long_note.startswith("9 rows were longer than the model's window and were read in windows")


def test_a_5_mb_cell_is_read_up_to_the_window_cap_and_the_result_says_so(tmp_path, small_encoder, monkeypatch):
    from fixtures.long_documents import LONG_EXAMPLES

    from playground.windows import MAX_WINDOWS_ENV

    monkeypatch.setenv(MAX_WINDOWS_ENV, "4")
    huge = "The parcel is late again and nobody answers. " * 115_000  # over 5 MB in one cell
    source = tmp_path / "huge.csv"
    with source.open("w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([["text"], [huge], ["my card was charged twice"]])
    assert source.stat().st_size > 5_000_000
    result = classify_file(source, tmp_path / "out.csv", examples=LONG_EXAMPLES, truncate="WINDOWS")
    with (tmp_path / "out.csv").open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert [r["prediction"] for r in rows] == ["shipping", "billing"] and result.errors == 0
    assert (result.long_rows, result.capped_rows) == (1, 1)
    assert "read only up to the cap of windows" in result.long_note and MAX_WINDOWS_ENV in result.long_note
