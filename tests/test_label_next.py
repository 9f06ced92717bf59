"""Label next (issue #19) end to end: the pool, the batches, the learning curve, unknown, the review queue, the CLI.

Real small model, small fixtures (tests/fixtures/label_*.csv|txt): three support-ticket labels.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from playground import cli
from playground.active import UNKNOWN, ThresholdChoice, uncertainty
from playground.bulk import classify_file
from playground.data import read_examples_csv
from playground.engine import classify
from playground.label_next import (
    MAX_POOL_ROWS,
    LabelPool,
    LearningPoint,
    PoolProgress,
    choose_threshold,
    corrections_csv,
    decisions_from_rows,
    read_pool,
    review_csv,
    review_queue,
    score_examples,
)
from playground.server import create_app
from playground.validation import Example, ValidationError

FIXTURES = Path(__file__).parent / "fixtures"
POOL_CSV = FIXTURES / "label_pool.csv"
POOL_TXT = FIXTURES / "label_pool.txt"
EXAMPLES_CSV = FIXTURES / "label_examples.csv"
LABELS = {"billing", "shipping", "technical"}


@pytest.fixture(scope="module")
def examples() -> list[Example]:
    return read_examples_csv(EXAMPLES_CSV).examples


@pytest.fixture(scope="module")
def pool_texts() -> list[str]:
    return read_pool(POOL_CSV).texts


# ---------------------------------------------------------------------------- reading the pool


def test_read_pool_csv_takes_the_text_column_and_drops_empty_and_repeated_rows(tmp_path):
    pool = read_pool(POOL_CSV)
    assert pool.text_column == "text" and pool.rows == 24 and pool.empty == 1 and pool.repeated == 0
    assert len(pool.texts) == 23 and pool.texts[0] == "My invoice shows a charge I do not recognise"
    assert "23 texts from 24 rows (column 'text'); left out 1 empty" == pool.summary
    other = read_pool(POOL_CSV, text_column="source")
    assert other.texts == ["email", "chat"] and other.repeated == 22


def test_read_pool_text_file_by_name_or_path():
    from_bytes = read_pool(POOL_TXT.read_bytes(), name="upload.TXT")
    from_path = read_pool(POOL_TXT)
    assert from_bytes.texts == from_path.texts == [
        "My invoice shows a charge I do not recognise", "The courier left my package at the wrong address",
        "The login page shows a blank screen on Firefox", "Can I pay by bank transfer instead of card"]
    assert (from_path.empty, from_path.repeated, from_path.text_column) == (1, 1, None)


def test_read_pool_streams_with_progress_and_refuses_more_than_the_limit(tmp_path):
    big = tmp_path / "big.csv"
    big.write_text("text\n" + "".join(f"ticket number {i}\n" for i in range(20_001)), encoding="utf-8")
    seen: list[PoolProgress] = []
    pool = read_pool(big, progress=seen.append)
    assert len(pool.texts) == 20_001 and [p.done for p in seen] == [10_000, 20_000]
    with pytest.raises(ValidationError, match=r"at most 20,000 texts, and this file has 20,001 rows: split it"):
        read_pool(big, max_rows=20_000)
    txt = tmp_path / "big.txt"
    txt.write_text("a\nb\nc\n", encoding="utf-8")
    with pytest.raises(ValidationError, match="at most 2 texts, and this file has 3 rows"):
        read_pool(txt, max_rows=2)
    crlf = tmp_path / "windows.txt"
    crlf.write_bytes("caf\xe9 ticket\r\nsecond line\r\n".encode("cp1252"))
    assert read_pool(crlf).texts == ["caf\xe9 ticket", "second line"]
    assert MAX_POOL_ROWS == 100_000


@pytest.mark.parametrize(("content", "name", "message"), [
    (b"", "pool.csv", "the file is empty"),
    (b"\n", "pool.txt", "the pool file is empty"),
    (b"text\n\n  \n", "pool.csv", "no texts"),
    (b"a\x00b", "pool.txt", "NUL bytes"),
    (b"body,id\nhello,1\n", "pool.csv", None),
], ids=["empty", "empty-text-file", "no-texts", "binary", "first-column"])
def test_read_pool_errors_say_what_to_fix(content, name, message):
    if message is None:  # no "text" column: the first one is used
        assert read_pool(content, name=name).texts == ["hello"]
        return
    with pytest.raises(ValidationError, match=message):
        read_pool(content, name=name)


def test_read_pool_names_a_missing_column_and_file():
    with pytest.raises(ValidationError, match=r"text column 'body' is not in the file; its columns are: 'id', 'text'"):
        read_pool(POOL_CSV, text_column="body")
    with pytest.raises(ValidationError, match="not found"):
        read_pool(FIXTURES / "no-such-pool.txt")


# ---------------------------------------------------------------------------- batches


def test_suggest_accept_loop_grows_the_examples_and_empties_the_pool(examples, pool_texts, small_encoder):
    progress: list[PoolProgress] = []
    pool = LabelPool(pool_texts, "small", progress=progress.append)
    assert pool.vectors.shape == (23, small_encoder.dimension) and pool.remaining == 23
    assert progress[0].done == 0 and progress[-1].done == progress[-1].total == 23

    batch = pool.suggest(examples, k=5)
    assert len(batch) == 5 and len({s.index for s in batch}) == 5
    known = {ex.text for ex in examples}
    assert not known & {s.text for s in batch}  # pool texts equal to an example are never suggested
    for s in batch:
        assert s.guess in LABELS and set(s.labels) == LABELS
        assert s.confidence == pytest.approx(max(s.labels.values())) and sum(s.labels.values()) == pytest.approx(1)
    margins = uncertainty(np.array([[s.labels[label] for label in sorted(LABELS)] for s in batch]))
    assert (np.diff(margins) <= 1e-12).all()  # least sure first

    decisions = [(batch[0].index, "billing"), (batch[1].index, None), *[(s.index, s.guess) for s in batch[2:]]]
    grown = pool.accept(examples, decisions)
    assert len(grown) == len(examples) + 4 and grown[:len(examples)] == examples
    assert Example(batch[0].text, "billing") in grown and batch[1].text not in {ex.text for ex in grown}
    assert pool.remaining == 23 - 2 - 5  # the two pool texts equal to examples count as labelled

    second = pool.suggest(grown, k=5)
    assert not {s.index for s in batch} & {s.index for s in second}
    with pytest.raises(ValidationError, match=r"decisions\[0\]: pool text \d+ was already labelled or skipped"):
        pool.accept(grown, [(batch[0].index, "billing")])
    with pytest.raises(ValidationError, match=r"decisions\[0\]: pool index must be in \[0, 23\)"):
        pool.accept(grown, [(99, "billing")])

    point = score_examples(grown)
    assert isinstance(point, LearningPoint) and point.n_examples == len(grown)
    assert 0 <= point.accuracy <= 1 and sum(point.per_label.values()) == len(grown)
    assert point.to_dict()["per_label"] == point.per_label

    while pool.remaining:  # the pool runs dry: the last batch is what is left, then nothing
        batch = pool.suggest(grown, k=10)
        assert batch, "rows are left, so a batch must come"
        grown = pool.accept(grown, [(s.index, s.guess) for s in batch])
    assert pool.suggest(grown, k=10) == []


def test_pool_refuses_what_it_cannot_use(examples):
    with pytest.raises(ValidationError, match="cannot label a pool: choose one of small, large"):
        LabelPool(["a text"], "my-custom-model")
    with pytest.raises(ValidationError, match="the pool is empty"):
        LabelPool([], "small")
    with pytest.raises(ValidationError, match=r"must not be empty: rows \[1\]"):
        LabelPool(["fine", "  "], "small")
    with pytest.raises(ValidationError, match="at most 100,000 texts. But it had 100,001"):
        LabelPool(["x"] * (MAX_POOL_ROWS + 1), "small")
    pool = LabelPool(["where is my parcel"], "small")
    with pytest.raises(ValidationError, match="needs at least 2 examples|at least 2"):
        pool.suggest(examples[:3])


def test_decisions_from_grid_rows():
    rows = [{"index": 3, "label": "billing"}, {"index": "4", "label": None}, {"index": 5, "label": float("nan")}]
    assert decisions_from_rows(rows) == [(3, "billing"), (4, None), (5, None)]
    with pytest.raises(ValidationError, match="batch row 1: it lost its pool index"):
        decisions_from_rows([{"label": "x"}])


# ---------------------------------------------------------------------------- unknown


def test_choose_threshold_and_classify_with_unknown(examples):
    more = examples + read_examples_csv(FIXTURES / "train_single.csv").examples[:18]
    choice = choose_threshold(more, target_precision=0.95)
    assert isinstance(choice, ThresholdChoice) and choice.n_examples == len(more)
    assert 0 <= choice.threshold <= 1 and 0 < choice.coverage <= 1 and "answers" in choice.summary
    assert f"{choice.target_precision:.0%} precision" in choice.summary
    texts = ["Can I pay by bank transfer instead of card", "Do you offer a discount for students", "hello"]
    plain = classify(texts, more)
    marked = classify(texts, more, unknown_below=choice.threshold)
    for p, m in zip(plain, marked):
        assert m.labels == p.labels and m.confidence == p.confidence
        assert m.prediction == (UNKNOWN if p.confidence < choice.threshold else p.prediction)
        assert m.predictions == (m.prediction,)
    assert all(r.prediction == UNKNOWN for r in classify(texts, more, unknown_below=1.0))
    assert [r.prediction for r in classify(texts, more, unknown_below=0.0)] == [r.prediction for r in plain]
    with pytest.raises(ValidationError, match="target precision must be a number in"):
        choose_threshold(more, target_precision=1.5)


@pytest.mark.parametrize("value", [1.5, -0.1, "0.5", True])
def test_unknown_below_must_be_a_confidence(examples, value):
    with pytest.raises(ValidationError, match="unknown_below must be a confidence from 0 to 1"):
        classify(["hello"], examples, unknown_below=value)


def test_a_label_called_unknown_is_refused_only_when_unknown_is_asked_for(examples):
    renamed = [Example(ex.text, "unknown" if ex.label == "billing" else ex.label) for ex in examples]
    assert classify("refund please", renamed).prediction in {"unknown", "shipping", "technical"}
    with pytest.raises(ValidationError, match="one of the labels is called 'unknown'"):
        classify("refund please", renamed, unknown_below=0.5)


def test_api_unknown_below_is_opt_in(examples):
    client = TestClient(create_app(api_key="", preload=False), raise_server_exceptions=False)
    body = {"inputs": ["Do you offer a discount for students"], "examples": [ex.to_dict() for ex in examples]}
    plain = client.post("/v1/classify", json=body).json()["classifications"][0]
    assert plain["prediction"] in LABELS
    marked = client.post("/v1/classify", json={**body, "unknown_below": 1.0}).json()["classifications"][0]
    assert marked["prediction"] == UNKNOWN and marked["predictions"] == [UNKNOWN]
    assert marked["confidence"] == pytest.approx(plain["confidence"]) and marked["confidences"] == [marked["confidence"]]
    assert marked["labels"] == plain["labels"] and set(marked) == set(plain)
    bad = client.post("/v1/classify", json={**body, "unknown_below": 2})
    assert bad.status_code == 400 and "unknown_below must be a confidence from 0 to 1" in bad.json()["message"]


# ---------------------------------------------------------------------------- review queue


@pytest.fixture(scope="module")
def bulk_output(tmp_path_factory, examples) -> Path:
    out = tmp_path_factory.mktemp("review") / "results.csv"
    classify_file(POOL_CSV, out, examples=examples)
    return out


def test_review_queue_puts_the_least_sure_rows_first(bulk_output):
    with bulk_output.open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    queue = review_queue(bulk_output, top=5)
    assert len(queue) == 5 and all(r.text for r in queue)
    scores = [r.uncertainty for r in queue]
    assert scores == sorted(scores, reverse=True)
    every = review_queue(bulk_output, top=100)
    assert len(every) == 23  # the row with an empty text has an error and no prediction
    assert {r.row for r in every} == {i + 1 for i, row in enumerate(rows) if not row["error"]}
    assert every[:5] == queue and min(scores) >= max(r.uncertainty for r in every[5:])
    for r in queue:
        assert rows[r.row - 1]["text"] == r.text and rows[r.row - 1]["prediction"] == r.prediction


def test_review_queue_refuses_a_file_that_is_not_a_bulk_output():
    with pytest.raises(ValidationError, match=r"not a bulk classify output: it has no prediction, confidence, "
                                              r"confidence_<label> column"):
        review_queue(POOL_CSV)
    with pytest.raises(ValidationError, match="top must be a positive whole number"):
        review_queue(POOL_CSV, top=0)


def test_corrected_rows_export_as_examples_the_uploader_reads(bulk_output):
    queue = review_queue(bulk_output, top=4)
    grid = [{"text": r.text, "label": r.prediction, "checked": True} for r in queue]
    grid[0]["label"] = "billing"
    grid[1]["checked"] = False
    grid[2]["label"] = UNKNOWN
    back = read_examples_csv(corrections_csv(grid).encode()).examples
    assert back == [Example(queue[0].text, "billing"), Example(queue[3].text, queue[3].prediction)]
    as_file = read_examples_csv(review_csv(queue).encode()).examples
    assert as_file == [Example(r.text, r.prediction) for r in queue]


def test_bulk_unknown_below_marks_rows(tmp_path, examples):
    out = tmp_path / "unknown.csv"
    classify_file(POOL_CSV, out, examples=examples, unknown_below=1.0)
    with out.open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    assert {r["prediction"] for r in rows if not r["error"]} == {UNKNOWN}
    assert all(float(r["confidence"]) > 0 for r in rows if not r["error"])


# ---------------------------------------------------------------------------- command line


def test_cli_suggest_review_and_unknown(tmp_path, capsys, bulk_output):
    assert cli.main(["suggest", "--examples", str(EXAMPLES_CSV), "--pool", str(POOL_TXT), "--k", "2"]) == 0
    out, err = capsys.readouterr()
    batch = json.loads(out)
    assert len(batch) == 2 and {b["guess"] for b in batch} <= LABELS and "4 texts from 6 rows" in err

    review = tmp_path / "review.csv"
    assert cli.main(["review", str(bulk_output), "--top", "3", "--output", str(review)]) == 0
    out, err = capsys.readouterr()
    assert "3 rows to review" in err and len(read_examples_csv(review).examples) == 3

    assert cli.main(["classify", "--examples", str(FIXTURES / "train_single.csv"), "--unknown-below", "auto",
                     "--target-precision", "0.9", "Do you offer a discount for students"]) == 0
    out, err = capsys.readouterr()
    assert "Below " in err and "confidence the answer is 'unknown'" in err
    assert json.loads(out)[0]["prediction"] in LABELS | {UNKNOWN}

    assert cli.main(["classify", "--unknown-below", "auto", "--model", "small", "hi"]) == 2
    assert "give --examples" in capsys.readouterr().err
    assert cli.main(["classify", "--examples", str(EXAMPLES_CSV), "--unknown-below", "lots", "hi"]) == 2
    assert "--unknown-below must be a confidence from 0 to 1 or auto" in capsys.readouterr().err
    assert cli.main(["review", str(POOL_CSV)]) == 2
    assert "not a bulk classify output" in capsys.readouterr().err


def test_review_csv_is_formula_safe():
    from playground.label_next import ReviewRow

    text = review_csv([ReviewRow(1, "=SUM(A1)", "billing", 0.5, 1.0)])
    row = next(csv.reader(io.StringIO(text.splitlines()[1])))
    assert row[1] == "'=SUM(A1)"
    assert read_examples_csv(text.encode()).examples == [Example("=SUM(A1)", "billing")]
