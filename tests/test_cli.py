"""The command line: train a model, classify with it by name, list models; errors are one line, exit 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fixtures.trained_models import SINGLE_CSV

REPO = Path(__file__).resolve().parent.parent


def run_cli(models: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "CLASSIFY_MODELS_DIR": str(models), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "playground", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=600, check=False)


@pytest.fixture(scope="module")
def cli_models(tmp_path_factory) -> Path:
    models = tmp_path_factory.mktemp("cli-models")
    done = run_cli(models, "train", str(SINGLE_CSV), "--name", "cli-tickets", "--time-budget", "600",
                   "--steps", "2", "--label-names", "never", "--cv-folds", "2", "--keep", "tuned")
    assert done.returncode == 0, done.stderr[-3000:]
    info = json.loads(done.stdout)
    assert info["name"] == "cli-tickets" and info["status"] == "ok"
    assert info["metrics"]["validation"] == {"source": "cross-validation", "folds": 2, "n": 48}
    assert info["metrics"]["steps"] == 2 and info["metrics"]["used_label_names"] is False
    config = json.loads((models / "cli-tickets" / "config.json").read_text())
    assert {k: config["training"][k] for k in ("time_budget_s", "steps", "use_label_names", "cv_folds", "keep")} == \
        {"time_budget_s": 600, "steps": 2, "use_label_names": "never", "cv_folds": 2, "keep": "tuned"}
    guard = info["metrics"]["guard"]
    assert guard["choice"] == "tuned" and guard["message"] in done.stderr and config["tuned"] is True
    lines = done.stderr.splitlines()
    # progress (not a tty: each phase's first line, then one per 5 s), then the table
    phases = [line.split("]")[0] + "]" for line in lines if line.startswith("[")]
    assert [p for i, p in enumerate(phases) if p not in phases[:i]] == \
        ["[checking]", "[tuning]", "[cross-validating]", "[saving]", "[done]"]
    assert any(line.startswith("[tuning]") and "step 1/2" in line for line in lines)
    assert "scores cross-validated on your 48 examples (2 folds;" in done.stderr and "few-shot" in done.stderr
    return models


def test_train_then_classify_by_name(cli_models):
    done = run_cli(cli_models, "classify", "--model", "cli-tickets", "My parcel never arrived", "I was billed twice")
    assert done.returncode == 0, done.stderr[-2000:]
    results = json.loads(done.stdout)
    assert [r["input"] for r in results] == ["My parcel never arrived", "I was billed twice"]
    assert all(set(r["labels"]) == {"billing", "shipping", "technical"} for r in results)
    assert all(r["classification_type"] == "single-label" for r in results)


def test_models_lists_it(cli_models):
    done = run_cli(cli_models, "models")
    assert done.returncode == 0
    assert [m["name"] for m in json.loads(done.stdout)] == ["cli-tickets"]


def test_errors_are_one_line_with_exit_2(cli_models, tmp_path):
    done = run_cli(cli_models, "classify", "--model", "nope", "text")
    assert done.returncode == 2 and "unknown model 'nope'" in done.stderr and "cli-tickets" in done.stderr
    assert "Traceback" not in done.stderr
    done = run_cli(cli_models, "train", str(SINGLE_CSV), "--name", "../evil")
    assert done.returncode == 2 and "looks like a path" in done.stderr
    done = run_cli(cli_models, "train", str(SINGLE_CSV), "--name", "x", "--steps", "0")
    assert done.returncode == 2 and "steps must be an integer from 1 to 100000. But it was: 0" in done.stderr
    assert "Traceback" not in done.stderr
    done = run_cli(cli_models, "train", str(SINGLE_CSV), "--name", "x", "--cv-folds", "1")
    assert done.returncode == 2 and "cv_folds must be 0 (no scores) or an integer from 2 to 20. But it was: 1" in done.stderr
    done = run_cli(cli_models, "train", str(SINGLE_CSV), "--name", "x", "--time-budget", "-5")
    assert done.returncode == 2 and "time_budget_s must be a number in (0.0, 86400.0]. But it was: -5.0" in done.stderr
    done = run_cli(cli_models, "train", str(SINGLE_CSV), "--name", "x", "--label-names", "sometimes")
    assert done.returncode == 2 and "invalid choice: 'sometimes'" in done.stderr  # argparse's own check
    for gone in ("--epochs", "--max-pairs", "--batch-size"):
        done = run_cli(cli_models, "train", str(SINGLE_CSV), "--name", "x", gone, "1")
        assert done.returncode == 2 and f"unrecognized arguments: {gone} 1" in done.stderr
    assert sorted(p.name for p in cli_models.iterdir()) == ["cli-tickets"]


def test_train_without_cross_validation_says_so(tmp_path):
    four = tmp_path / "four.csv"
    four.write_text("text,label\nI was charged twice,billing\nThe refund never came,billing\n"
                    "My parcel is lost,shipping\nThe courier never came,shipping\n")
    done = run_cli(tmp_path / "models", "train", str(four), "--name", "four", "--steps", "2", "--cv-folds", "0",
                   "--label-names", "never")
    assert done.returncode == 0, done.stderr[-3000:]
    info = json.loads(done.stdout)
    assert info["metrics"]["validation"] == {"source": "none", "n": 0} and info["n_examples"] == 4
    assert info["metrics"]["trained"] == {} and info["metrics"]["baseline"] == {}
    assert "scores: not scored (cross-validation was switched off)" in done.stderr
    assert "[cross-validating]" not in done.stderr
