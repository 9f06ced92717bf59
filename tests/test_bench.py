"""Smoke run of the benchmark harness (`python -m bench --quick`) on a tiny fixture folder, so it never rots.

The slow sections (model training, cold start, HTTP) are skipped here; the suite's own run on
../shared/data covers them. What runs uses the real small model.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.common import ece, sample_per_label

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).parent / "fixtures" / "bench_data"


def test_ece_is_zero_when_confidence_matches_accuracy_and_large_when_not():
    conf = [0.8] * 10
    assert ece(conf, [1] * 8 + [0] * 2) == pytest.approx(0.0)
    assert ece([0.99] * 10, [1] * 5 + [0] * 5) == pytest.approx(0.49)


def test_samples_are_per_label_and_nested_across_n():
    labels = ["a"] * 20 + ["b"] * 5
    small, big = sample_per_label(labels, 3, 1), sample_per_label(labels, 10, 1)
    assert sorted(labels[i] for i in small) == ["a"] * 3 + ["b"] * 3
    assert sorted(labels[i] for i in big) == ["a"] * 10 + ["b"] * 5  # a label with fewer rows gives all it has
    assert set(small[:3]) <= set(big[:10])


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--data", str(DATA), "--out", str(out / "BENCHMARKS.md"),
         "--json", str(out / "results.json"), "--skip", "coldstart,training_time,http", "--latency-calls", "5"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return out, json.loads((out / "results.json").read_text())


def test_quick_run_writes_every_section(quick_run):
    out, results = quick_run
    sections = results["sections"]
    assert list(sections) == ["accuracy", "latency", "coldstart", "throughput", "http", "trained", "guard",
                              "training_time", "multilabel", "setfit", "active", "explain", "long", "long_tuned"]
    for name in ("accuracy", "latency", "throughput", "active", "explain", "long"):
        assert sections[name]["status"] == "ok", sections[name]
        assert 50 < sections[name]["peak_rss_mb"] < 4000
    for name in ("trained", "guard", "setfit", "multilabel", "coldstart", "http", "long_tuned"):
        assert sections[name]["status"].startswith("not run"), sections[name]
    assert results["machine"]["cores"] >= 1 and results["machine"]["versions"]["torch"]
    report = (out / "BENCHMARKS.md").read_text()
    for heading in ("## Accuracy", "## Calibration", "## Latency", "## Throughput", "## Label next", "## Explanations",
                    "## Long texts",
                    "## Memory", "## Targets", "reviews", "topics"):
        assert heading in report
    assert (out / "bench_reliability.png").stat().st_size > 1000
    assert (out / "bench_active.png").stat().st_size > 1000


def test_quick_run_numbers_are_sane(quick_run):
    _, results = quick_run
    rows = results["sections"]["accuracy"]["rows"]
    combos = {(r["method"], r["dataset"], r["n"]) for r in rows}
    for method in ("instant", "tfidf"):
        for ds in ("reviews", "topics"):
            for n in (8, 64):
                assert (method, ds, n) in combos
    for r in rows:
        assert 0.0 <= r["accuracy"] <= 1.0 and 0.0 <= r["ece"] <= 1.0
        assert sum(r["reliability"]["count"]) == 20  # every test row lands in one bin
    instant = [r["accuracy"] for r in rows if r["method"] == "instant" and r["dataset"] == "reviews"]
    assert min(instant) >= 0.7  # the fixture is easy: an encoder that classifies at all gets this
    latency = results["sections"]["latency"]["rows"]
    assert {r["precision"] for r in latency if "cached" in r} >= {"fp32"}
    for lat in latency:
        assert lat["uncached"]["p50_ms"] > 0 and lat["uncached"]["n"] == 5
        if "cached" in lat:  # the extra one-thread row has only the uncached figure
            assert lat["predictions"] == ["negative", "negative"]
            assert 0 < lat["cached"]["p50_ms"] <= lat["uncached"]["p50_ms"]
    for tp in results["sections"]["throughput"]["rows"]:
        assert tp["texts"] == 20 and tp["raw_fp32_per_s"] > 0 and tp["bulk_fp32_per_s"] > 0
        assert tp["bulk_fp32_rows"] == 20
        assert tp["per_call_fp32_per_s"] > 0 and tp["api_per_s"] > 0  # 96 a call, in process and over HTTP


def test_quick_run_simulates_label_next(quick_run):
    out, results = quick_run
    section, cfg = results["sections"]["active"], results["config"]
    runs = section["rows"]
    assert {(r["dataset"], r["strategy"]) for r in runs} == {
        (d, s) for d in ("reviews", "topics") for s in ("random", "uncertainty", "uncertainty+diversity")}
    for r in runs:
        assert len(r["accuracy"]) == len(r["n"]) == cfg["active_rounds"] + 1
        assert r["n"][0] == cfg["active_start"] * {"reviews": 2, "topics": 3}[r["dataset"]]
        pool = next(p["pool"] for p in section["pools"] if p["dataset"] == r["dataset"])
        assert all(b - a == min(r["batch"], pool - a) for a, b in zip(r["n"], r["n"][1:]))  # a batch of new texts
        assert all(0 <= a <= 1 for a in r["accuracy"])
    assert {r["accuracy"][0] for r in runs if r["dataset"] == "topics"} == {
        next(r["accuracy"][0] for r in runs if r["dataset"] == "topics")}  # every strategy starts from the same sample
    unknown = section["unknown"]  # topics has 3 labels, one withheld; reviews (2 labels) is left out
    assert {u["dataset"] for u in unknown} == {"topics"} and all(u["labels_out"] == 1 for u in unknown)
    for u in unknown:
        assert 0 <= u["threshold"] <= 1 and 0 <= u["coverage"] <= 1 and 0 <= u["precision"] <= 1
        assert u["coverage_in_scope"] >= u["coverage"] - 1e-9 or u["out_of_scope_refused"] > 0
    assert "Sets meeting the mark:" in (out / "BENCHMARKS.md").read_text()


def test_quick_run_puts_the_explanations_to_the_deletion_test(quick_run):
    out, results = quick_run
    rows = results["sections"]["explain"]["rows"]
    assert [r["dataset"] for r in rows] == ["reviews", "topics"]
    for r in rows:
        assert r["texts"] > 0 and r["mean_words"] > 3
        assert all(r[f"drop_top_{k}"] > r[f"drop_random_{k}"] for k in (1, 2, 3))  # the highlighted words matter
        assert all(r[f"drop_every_word_measured_{k}"] > r[f"drop_random_{k}"] for k in (1, 2, 3))
    assert "| drop top-1 (every word measured) / random-1 |" in (out / "BENCHMARKS.md").read_text()


def test_quick_run_scores_end_against_windows(quick_run):
    _, results = quick_run
    section = results["sections"]["long"]
    arms = {r["method"] for r in section["rows"]}
    assert arms == {"instant/END", "instant/WINDOWS", "instant/WINDOWS-proba", "instant/WINDOWS-train"}
    assert all(0.0 <= r["accuracy"] <= 1.0 for r in section["rows"])
    assert all(s["end_per_s"] > 0 and s["windows_per_s"] > 0 for s in section["speed"])


def test_long_tuned_rows_read_past_the_window_as_the_product_does():
    """The long_tuned section's harness on tickets decided only past the window: 2 steps, one seed."""
    from bench.common import LabelledSet
    from bench.report import long_tuned_report
    from bench.tuned_eval import _scores, long_tuned_rows
    from fixtures.long_documents import LONG_LABELLED, LONG_TICKETS
    from playground.training import TrainingSettings, embed_with, tune

    ds = LabelledSet("tickets", [t for t, _ in LONG_LABELLED], [label for _, label in LONG_LABELLED],
                     list(LONG_TICKETS), list(LONG_TICKETS.values()), "")
    rows = {r["method"]: r for r in long_tuned_rows("small", ds, [0], [4], steps=2)}
    assert set(rows) == {"untuned/END", "tuned/END", "untuned/WINDOWS", "tuned/WINDOWS", "tuned/every-window"}
    # END reads both tickets as the same opening: one label for both, one of two right, tuned or not
    assert rows["untuned/END"]["accuracy"] == rows["tuned/END"]["accuracy"] == 0.5
    assert rows["untuned/WINDOWS"]["accuracy"] == rows["tuned/WINDOWS"]["accuracy"] == 1.0
    assert rows["tuned/WINDOWS"]["training_texts"] == 8  # the product tunes on each example's start
    # every window a text: the shared opening's windows carry both labels and are left out, the 8 endings stay
    assert rows["tuned/every-window"]["training_texts"] == 8 and rows["tuned/every-window"]["accuracy"] == 1.0
    # the harness's tuned/WINDOWS is what the product's long_texts="WINDOWS" gives on the same sample
    idx = sample_per_label(ds.train_labels, 4, 0)
    product = tune([(ds.train_texts[i], ds.train_labels[i]) for i in idx],
                   settings=TrainingSettings(steps=2, cv_folds=0, keep="tuned", long_texts="WINDOWS"))
    proba = product.head.predict_proba(embed_with(product.body, ds.test_texts, windows=True))
    assert _scores(ds.test_labels, product.head.classes_, proba) == {
        k: rows["tuned/WINDOWS"][k] for k in ("accuracy", "macro_f1")}
    lines, summary = long_tuned_report({"rows": list(rows.values())})
    assert summary["small"]["tickets"]["4"]["tuned/END"]["worst_vs_untuned"] == 0.0
    assert any(line.startswith("| small | tickets | 4 | 1 | 2 | 50.0 / 50.0 | 100.0 / 100.0 | 50.0 / 50.0 | 100.0 / 100.0 |")
               for line in lines)


@pytest.fixture(scope="module")
def tuned_fixture_rows():
    """The trained section's harness on the fixture set: the product's tuning, 2 steps, one seed."""
    from bench.common import load_single_label
    from bench.tuned_eval import tuned_rows

    ds = load_single_label(DATA, "reviews", 20)
    return tuned_rows("small", ds, [0], 4, [0.5, 1.0], settings_overrides={"steps": 2, "threads": 1})


def test_tuned_rows_give_the_recipe_and_its_neighbours_from_one_tuning(tuned_fixture_rows):
    from playground.tuning import RECIPES

    rows = tuned_fixture_rows
    alphas = sorted(r["alpha"] for r in rows)
    assert alphas == sorted({0.5, 1.0, RECIPES["small"].interpolation})
    assert [r["recipe"] for r in rows] == [r["alpha"] == RECIPES["small"].interpolation for r in rows]
    assert len({(r["tune_seconds"], r["steps"]) for r in rows}) == 1 and rows[0]["steps"] == 2
    for r in rows:
        assert 0.0 <= r["accuracy"] <= 1.0 and r["n_train"] == 8 and r["n_test"] == 20
        assert r["untuned_accuracy"] >= 0.7  # the fixture is easy for the untuned head too


def test_the_guard_section_scores_the_draws_honestly_and_the_report_keeps_what_the_guard_keeps(tuned_fixture_rows):
    """The guard section's harness (the product's own cross-validation) on the trained rows' draw, and the report's
    join: the model the guard picks from those scores, and that model's test accuracy from the trained rows."""
    from bench.common import load_single_label
    from bench.report import guard_summary, guard_tables, guard_targets
    from bench.tuned_eval import guard_rows

    from playground.training import guard_decision
    from playground.tuning import RECIPES

    rows = guard_rows("small", load_single_label(DATA, "reviews", 1), [0], 4)
    (row,) = rows
    assert (row["method"], row["dataset"], row["seed"], row["n_train"], row["folds"]) == ("guard", "reviews", 0, 8, 2)
    assert 0.0 <= row["cv_tuned"] <= 1.0 and 0.0 <= row["cv_untuned"] <= 1.0
    assert row["blend_alpha"] == RECIPES["small"].tie_interpolation
    assert row["fold_steps"] == RECIPES["small"].steps // 2  # the product's folds: half the final tuning's steps
    assert row["blend_alpha"] in {r["alpha"] for r in tuned_fixture_rows}  # the trained rows carry the blend's mix
    summary = guard_summary({"sections": {"trained": {"rows": tuned_fixture_rows}, "guard": {"rows": rows}}})
    entry = summary["small"]["reviews"]
    choice = guard_decision({"accuracy": row["cv_tuned"]}, {"accuracy": row["cv_untuned"]}, "best",
                            scored_on="")["choice"]
    alpha = {"tuned": RECIPES["small"].interpolation, "blended": row["blend_alpha"], "untuned": None}[choice]
    by_alpha = {r["alpha"]: r for r in tuned_fixture_rows}
    expected = 100 * (by_alpha[RECIPES["small"].interpolation]["untuned_accuracy"] if alpha is None
                      else by_alpha[alpha]["accuracy"])
    assert entry["seeds"] == [0] and entry["choices"][choice] == 1 and entry["kept"] == pytest.approx(expected, abs=0.01)
    assert any(line.startswith("| reviews | 0 |") for line in guard_tables(summary))
    assert "with the guard, small (1 sets)" in guard_targets(summary)[0]


def test_merge_joins_shards_and_the_report_reads_the_tuned_rows(tuned_fixture_rows, tmp_path):
    from bench.common import Config, machine

    setfit_row = {**tuned_fixture_rows[0], "method": "setfit", "precision": "fp32", "accuracy": 0.5}
    config = Config.make(str(DATA), quick=True, skip=[]).to_dict()
    parts = []
    for i, rows in enumerate((tuned_fixture_rows, [{**r, "dataset": "topics"} for r in tuned_fixture_rows])):
        part = tmp_path / f"part{i}.json"
        ran = {**machine(), "date": f"2026-01-0{i + 1}T00:00:00+00:00", "git_commit": f"commit{i}"}
        part.write_text(json.dumps({"mode": "quick", "machine": ran, "config": config, "sections": {"trained": {"status": "ok", "rows": rows},
                                                               **({"setfit": {"status": "ok", "rows": [setfit_row]}}
                                                                  if i == 0 else {})}}))
        parts.append(part)
    target, report = tmp_path / "results.json", tmp_path / "B.md"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    for _ in range(2):  # merging the same parts twice keeps each row once
        proc = subprocess.run([sys.executable, "-m", "bench", "--json", str(target), "--out", str(report), "--merge",
                               *map(str, parts), "--why", "test"], cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=120)
        assert proc.returncode == 0, proc.stderr[-2000:]
    results = json.loads(target.read_text())
    assert len(results["sections"]["trained"]["rows"]) == 2 * len(tuned_fixture_rows)
    tuning = results["summary"]["tuning"]["small"]
    assert set(tuning) == {"reviews", "topics"} and tuning["reviews"]["seeds"] == 1
    assert tuning["reviews"]["setfit"] == 50.0 and "setfit" not in tuning["topics"]
    text = report.read_text()
    assert "## Tuning on the user's examples (issue #24)" in text and "| reviews |" in text
    assert "tuned ≥ untuned + 1 on every set, small" in text
    assert results["reruns"][-1]["why"] == "test"
    trained_rerun = results["reruns"][-2]  # each part's run named, the newest heading the entry
    assert trained_rerun["sections"] == ["trained"] and trained_rerun["git_commit"] == "commit1"
    assert [r["git_commit"] for r in trained_rerun["runs"]] == ["commit0", "commit1"]
    assert "from runs 2026-01-01T00:00:00+00:00 at commit commit0" in text and "at commit commit1" in text
    proc = subprocess.run([sys.executable, "-m", "bench", "--json", str(target), "--out", str(tmp_path / "C.md"),
                           "--report"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and (tmp_path / "C.md").read_text() == text.replace("B.md", "C.md")
    killed = tmp_path / "killed.json"  # a run whose setfit section was killed: the record keeps its setfit rows
    killed.write_text(json.dumps({"mode": "quick", "machine": machine(), "config": config,
                                  "sections": {"setfit": {"status": "failed: exit -15: "}}}))
    proc = subprocess.run([sys.executable, "-m", "bench", "--json", str(target), "--out", str(report), "--merge",
                           str(killed), "--why", "killed"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(target.read_text())["sections"]["setfit"]["rows"] == [setfit_row]


def test_a_section_that_dies_keeps_the_rows_it_checkpointed(tmp_path):
    """A section killed mid-run (exit -9: out of memory) or timed out keeps its checkpointed rows, and says why."""
    from bench.__main__ import rows_so_far

    out = tmp_path / "setfit.json"
    assert rows_so_far(out, "exit -9: ") == {"status": "failed: exit -9: "}
    Path(str(out) + ".partial").write_text(json.dumps({"rows": [{"dataset": "cr", "seed": 0}], "version": "1.2.0",
                                                       "status": "partial: rows so far (the section had not ended)"}))
    kept = rows_so_far(out, "exit -9: ")
    assert kept["rows"] == [{"dataset": "cr", "seed": 0}] and kept["version"] == "1.2.0"
    assert kept["status"] == "partial: the section stopped (exit -9: ); rows so far"
