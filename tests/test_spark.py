"""Spark: 2,000 rows through real Spark (local mode) equal ``classify`` on one machine; bad rows, retries, the CLI.

One SparkSession for the file (``local[2,2]``: 2 cores, a task may fail once and be retried).
Precision is fp32 in the equality tests: bf16 results move with the batch's padding even on
one machine (measured up to 2e-3 in a confidence), fp32 ones by about 1e-7.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from fixtures.trained_models import SINGLE_CSV
from playground import classify
from playground.data import read_examples_csv
from playground.engine import load_model
from playground.validation import ValidationError

from playground import spark as pspark  # needs pip install -r requirements-spark.txt (never skipped)

REPO = Path(__file__).resolve().parent.parent
N_ROWS = 2000
BAD_ROWS = [(9001, None), (9002, ""), (9003, "   \t")]
TOLERANCE = 1e-3


@pytest.fixture(scope="session")
def spark():
    session = pspark.session("local[2,2]", ui=False, conf={"spark.sql.shuffle.partitions": "4"})
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


@pytest.fixture(scope="session")
def examples():
    return read_examples_csv(SINGLE_CSV).examples


@pytest.fixture(scope="session")
def texts(examples) -> list[str]:
    """2,000 distinct support-ticket-like texts: every ordered pair of the fixture's sentences."""
    base = [ex.text for ex in examples]
    pairs = [f"{a}. {b}" for a in base for b in base if a != b]
    assert len(pairs) >= N_ROWS
    return pairs[:N_ROWS]


@pytest.fixture(scope="session")
def table(spark, texts):
    rows = [(i, t) for i, t in enumerate(texts)] + BAD_ROWS
    return spark.createDataFrame(rows, "id long, text string").repartition(8)  # 8 tasks on 2 workers


@pytest.fixture(scope="session")
def few_shot_rows(table, examples):
    out = pspark.classify_dataframe(table, "text", examples=examples, model="small", precision="fp32",
                                    diagnostics=True)
    return {r.id: r for r in out.collect()}


def assert_same(rows: dict, reference: list, ids) -> None:
    mismatched = [i for i, ref in zip(ids, reference) if rows[i].prediction != ref.prediction]
    assert mismatched == [], f"{len(mismatched)} predictions differ, e.g. row {mismatched[:3]}"
    worst = max(abs(rows[i].confidences[label] - p) for i, ref in zip(ids, reference) for label, p in ref.labels.items())
    assert worst <= TOLERANCE, worst
    assert all(abs(rows[i].confidence - ref.confidence) <= TOLERANCE for i, ref in zip(ids, reference))
    assert all(set(rows[i].confidences) == set(ref.labels) and rows[i].error is None for i, ref in zip(ids, reference))


def test_few_shot_equals_classify(few_shot_rows, texts, examples):
    reference = classify(texts, examples, "small", precision="fp32", max_inputs=None)
    assert len(few_shot_rows) == N_ROWS + len(BAD_ROWS)
    assert_same(few_shot_rows, reference, range(N_ROWS))
    assert {r.prediction for r in reference} == {"billing", "shipping", "technical"}  # not one label everywhere


def test_each_worker_loads_the_encoder_once(few_shot_rows):
    """8 tasks ran on at most 2 Python workers, each loading MiniLM once (not once per batch)."""
    loads = {}
    for r in few_shot_rows.values():
        loads.setdefault(r._worker_pid, set()).add(r._encoder_loads)
    assert 1 <= len(loads) <= 2, loads
    assert all(seen == {1} for seen in loads.values()), loads
    assert all(r._worker_rss_mb > 100 for r in few_shot_rows.values())  # a model is in there


def test_null_and_empty_texts_are_error_rows(few_shot_rows):
    got = {i: (few_shot_rows[i].prediction, few_shot_rows[i].confidence, few_shot_rows[i].confidences,
               few_shot_rows[i].error) for i, _ in BAD_ROWS}
    assert got == {9001: (None, None, None, "null text"), 9002: (None, None, None, "empty text"),
                   9003: (None, None, None, "empty text")}


def test_custom_model_equals_classify(spark, table, texts, trained_dir):
    directory = trained_dir
    out = pspark.classify_dataframe(table, "text", model="tickets", directory=directory, precision="fp32")
    rows = {r.id: r for r in out.collect()}
    reference = load_model("tickets", precision="fp32", directory=directory).classify(texts)
    assert len(rows) == N_ROWS + len(BAD_ROWS)
    assert_same(rows, reference, range(N_ROWS))
    assert rows[9001].error == "null text" and rows[9001].prediction is None


def test_multi_label_model_by_path(spark, texts, trained_dir):
    folder = trained_dir / "topics"
    few = texts[:60]
    df = spark.createDataFrame(list(enumerate(few)), "id long, text string").repartition(2)
    rows = {r.id: r for r in pspark.classify_dataframe(df, model=folder, precision="fp32").collect()}
    reference = load_model("topics", precision="fp32", directory=folder.parent).classify(few)
    for i, ref in enumerate(reference):
        assert rows[i].prediction == "; ".join(ref.predictions)
        assert max(abs(rows[i].confidences[k] - v) for k, v in ref.labels.items()) <= TOLERANCE


def test_missing_column_fails_before_any_job(spark, table, examples):
    tracker = spark.sparkContext.statusTracker()
    spark.sparkContext.setJobGroup("missing-column", "should never run")
    try:
        with pytest.raises(ValidationError) as info:
            pspark.classify_dataframe(table, "body", examples=examples)
        assert tracker.getJobIdsForGroup("missing-column") == []
    finally:
        spark.sparkContext.setJobGroup("", "")
    assert "text column 'body' is not in the table; its columns are: 'id', 'text'" in str(info.value)
    with pytest.raises(ValidationError, match="'id' holds bigint, not strings"):
        pspark.classify_dataframe(table, "id", examples=examples)


def test_existing_columns_are_kept_and_not_overwritten(spark, examples):
    df = spark.createDataFrame([("a parcel that never came", "old")], "text string, prediction string")
    row = pspark.classify_dataframe(df, examples=examples, precision="fp32").collect()[0]
    assert row.prediction == "old" and row.prediction_1 == "shipping" and row.error is None


def _fail_first_attempt(marker: Path):
    """A mapInPandas step after classification that kills partition 1's first attempt (local function:
    cloudpickle ships it by value)."""

    def run(batches):
        from pyspark import TaskContext

        context = TaskContext.get()
        for pdf in batches:
            if context.partitionId() == 1 and context.attemptNumber() == 0:
                marker.write_text(f"attempt 0 of partition 1 killed after classifying {len(pdf)} rows\n")
                raise RuntimeError("simulated executor failure")
            yield pdf

    return run


def test_failed_task_is_retried_and_each_row_written_once(spark, texts, examples, tmp_path):
    marker = tmp_path / "failed-once"
    df = spark.createDataFrame(list(enumerate(texts[:120])), "id long, text string").repartition(4)
    out = pspark.classify_dataframe(df, examples=examples, precision="fp32")
    out = out.mapInPandas(_fail_first_attempt(marker), out.schema)
    out.write.parquet(str(tmp_path / "out.parquet"))
    assert marker.is_file()  # the failure did happen
    written = pd.read_parquet(tmp_path / "out.parquet")
    assert len(written) == 120 and sorted(written["id"]) == list(range(120))
    assert written["prediction"].notna().all() and written["error"].isna().all()
    assert (tmp_path / "out.parquet" / "_SUCCESS").is_file()


def test_failed_job_leaves_no_output_under_the_final_path(spark, texts, examples, tmp_path):
    def always_fail(batches):
        from pyspark import TaskContext

        for pdf in batches:
            if TaskContext.get().partitionId() == 1:
                raise RuntimeError("simulated permanent failure")
            yield pdf

    df = spark.createDataFrame(list(enumerate(texts[:40])), "id long, text string").repartition(2)
    out = pspark.classify_dataframe(df, examples=examples, precision="fp32")
    target = tmp_path / "out.parquet"
    with pytest.raises(Exception, match="simulated permanent failure"):
        out.mapInPandas(always_fail, out.schema).write.parquet(str(target))
    leftovers = [p for p in target.rglob("*") if p.is_file() and "_temporary" not in p.parts] if target.exists() else []
    assert leftovers == []  # partition 0 succeeded, yet none of its part files reached the final path


def test_cli_round_trip(spark, tmp_path, texts, examples, monkeypatch, capsys):
    from playground.cli import main

    monkeypatch.setenv("CLASSIFY_PRECISION", "fp32")
    source = tmp_path / "texts.parquet"
    pd.DataFrame({"ticket": range(30), "text": texts[:29] + [None]}).to_parquet(source)
    status = main(["spark-classify", "--input", str(source), "--text-column", "text", "--examples", str(SINGLE_CSV),
                   "--output", str(tmp_path / "out.parquet"), "--master", "local[2]", "--precision", "fp32"])
    captured = capsys.readouterr()
    assert status == 0, captured.err
    summary = json.loads(captured.out)
    assert summary["rows"] == 30 and summary["errors"] == 1
    assert summary["labels"] == ["billing", "shipping", "technical"]
    assert "progress in" in captured.err
    written = pd.read_parquet(tmp_path / "out.parquet").sort_values("ticket")
    reference = classify(texts[:29], examples, "small", precision="fp32", max_inputs=None)
    assert list(written["prediction"][:29]) == [r.prediction for r in reference]
    assert written["error"].iloc[29] == "null text"
    # a missing column: one line naming the columns, exit 2, nothing written
    csv = tmp_path / "texts.csv"
    csv.write_text('ticket,body\n1,"a parcel, late"\n')
    status = main(["spark-classify", "--input", str(csv), "--examples", str(SINGLE_CSV),
                   "--output", str(tmp_path / "bad.parquet")])
    err = capsys.readouterr().err
    assert status == 2 and "text column 'text' is not in the table; its columns are: 'ticket', 'body'" in err
    assert not (tmp_path / "bad.parquet").exists()


def test_without_pyspark_core_imports_and_cli_says_what_to_install(tmp_path):
    code = ("import sys; sys.modules['pyspark'] = None\n"
            "import playground\n"
            "assert 'playground.spark' not in sys.modules\n"
            "from playground.cli import main\n"
            "sys.exit(main(['spark-classify', '--input', 'x.parquet', '--output', 'y.parquet']))\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}, check=False)
    assert done.returncode == 2, done.stderr[-2000:]
    assert "pip install -r requirements-spark.txt" in done.stderr and "Traceback" not in done.stderr


def test_truncate_windows_reads_long_rows_past_the_window(spark):
    from fixtures.long_documents import LONG_EXAMPLES, LONG_TICKETS

    rows = [(i, t) for i, t in enumerate([*LONG_TICKETS, "where is my parcel?"])]
    df = spark.createDataFrame(rows, "id long, text string")
    out = {r.id: r for r in pspark.classify_dataframe(df, "text", examples=LONG_EXAMPLES, model="small",
                                                      truncate="WINDOWS", precision="fp32").collect()}
    reference = classify([t for _, t in rows], LONG_EXAMPLES, truncate="WINDOWS", precision="fp32")
    assert [out[i].prediction for i, _ in rows] == [r.prediction for r in reference]
    assert [out[i].prediction for i in range(2)] == list(LONG_TICKETS.values())
    assert all(abs(out[i].confidence - r.confidence) <= TOLERANCE for (i, _), r in zip(rows, reference))
