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
    done = run_cli(models, "train", str(SINGLE_CSV), "--name", "cli-tickets", "--epochs", "1",
                   "--max-pairs", "16", "--batch-size", "16")
    assert done.returncode == 0, done.stderr[-3000:]
    info = json.loads(done.stdout)
    assert info["name"] == "cli-tickets" and info["status"] == "ok"
    assert "[tuning] 1/1 steps" in done.stderr and "few-shot" in done.stderr  # progress, then the table
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
    done = run_cli(cli_models, "train", str(SINGLE_CSV), "--name", "cli-tickets")
    assert done.returncode == 2 and "already exists" in done.stderr
    done = run_cli(cli_models, "train", str(SINGLE_CSV), "--name", "x", "--epochs", "0")
    assert done.returncode == 2 and "epochs must be an integer from 1 to 50. But it was: 0" in done.stderr
    assert sorted(p.name for p in cli_models.iterdir()) == ["cli-tickets"]
