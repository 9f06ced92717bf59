"""What every section shares: the run configuration, data loading and sampling, metrics, memory.

Sampling follows the SetFit paper's few-shot protocol as the classifier study did
(docs/CLASSIFIER_STUDY.md): ``N`` examples per label drawn from ``train`` with
``numpy.random.default_rng(seed)``, nested across N (the N = 8 set is a prefix of the N = 64 set),
and one test split per data set (test shuffled with seed 0, first ``test_cap`` rows), identical
for every row of the report.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from playground.metrics import confidence_bins

ROOT = Path(__file__).resolve().parent.parent
SINGLE_LABEL_SETS = ("cr", "sst2", "trec", "emotion", "ag_news", "banking77", "sms_spam")
IMBALANCED_SETS = ("trec", "banking77", "sms_spam")
"""Macro-F1 is the headline for these (their label counts differ a lot); accuracy for the rest."""
MULTI_LABEL_SET = "goemotions"
ECE_BINS = 15
QUICK_MAX_STEPS = 10
"""--quick times one small training with a quarter of the default steps: the harness, not the figure."""
FULL_ONLY = ("trained", "guard", "setfit", "multilabel", "long_tuned")
"""Sections that train models (minutes each): left out of --quick, which times one training instead."""


@dataclass
class Config:
    """One run's plan; quick and full differ only in these numbers (all recorded in results.json)."""

    data: str
    mode: str = "full"
    quick: bool = False
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2, 3, 4])
    ns: list[int] = field(default_factory=lambda: [8, 64])
    test_cap: int = 1000
    """Test rows per set (the issue allows up to 2,000): 1,000 keeps the large model's pass inside the
    30-minute plan; every row of one run scores on the same 1,000."""
    datasets: list[str] = field(default_factory=lambda: list(SINGLE_LABEL_SETS))
    large: bool = True
    large_datasets: list[str] = field(default_factory=lambda: ["cr", "emotion", "ag_news"])
    precision_datasets: list[str] = field(default_factory=lambda: ["cr", "sst2", "ag_news"])
    """Sets scored in every precision (short, short, long texts); the rest only in the default one.
    docs/PRECISION.md has the wider per-precision table."""
    trained_datasets: list[str] = field(default_factory=lambda: list(SINGLE_LABEL_SETS))
    """Every single-label set found (issue #24: the recipe is judged on all of them)."""
    trained_models: list[str] = field(default_factory=lambda: ["small", "large"])
    trained_seeds: list[int] = field(default_factory=lambda: [0, 1, 2, 3, 4])
    trained_n: int = 8
    trained_alphas: list[float] = field(default_factory=lambda: [0.5, 0.75, 1.0])
    """WiSE-FT mixes scored beside the recipe's (one tuning gives them all)."""
    trained_test_cap: int = 500
    trained_long_test_cap: int = 200
    """Test rows of imdb, 20newsgroups, enron_spam: a long text costs the large model ~2 s here."""
    trained_threads: int | None = None
    trained_tuning: dict[str, Any] = field(default_factory=dict)
    """Tuning settings over the recipe's for a study arm (empty: the product's recipe)."""
    trained_steps: int | None = None
    """None: the recipe's steps; --quick times the harness with fewer."""
    setfit_datasets: list[str] = field(default_factory=lambda: list(SINGLE_LABEL_SETS))
    setfit_models: list[str] = field(default_factory=lambda: ["small", "large"])
    setfit_seeds: dict[str, list[int]] = field(default_factory=lambda: {"small": [0, 1, 2, 3, 4], "large": [0, 1, 2]})
    """The tuned rows' samples (same N, same seeds). Fewer seeds for large: a run is 5-40 min on this machine."""
    setfit_few_seeds: dict[str, list[int]] = field(default_factory=lambda: {"small": [0, 1], "large": []})
    """Seeds for the sets in ``setfit_costly_sets``; an empty list leaves the set out for that model."""
    setfit_costly_sets: list[str] = field(default_factory=lambda: ["banking77", "20newsgroups", "imdb", "enron_spam"])
    """Many labels (banking77: 375,000 pairs in setfit's one epoch) or long texts (every pair at 256-384 tokens
    through the whole encoder): hours per run on 2 cores."""
    setfit_max_steps: int = 150
    """The cap on setfit's steps for the sets in ``setfit_capped_sets`` only (``max_steps`` in setfit 1.2.0 is a
    step count, not a ceiling: given on every set it made a binary set's 9-step epoch 150 steps)."""
    setfit_capped_sets: list[str] = field(default_factory=lambda: ["banking77", "20newsgroups"])
    """Sets whose one epoch is far over ``setfit_max_steps`` (banking77: 375,000 pairs); the rest run setfit's
    own one epoch (``num_epochs=1``), as the issue's reference row does."""
    multilabel_train: int = 1000
    latency_calls: int = 50
    latency_models: list[str] = field(default_factory=lambda: ["small", "large"])
    throughput_texts: int = 2000
    throughput_texts_large: int = 200
    throughput_models: list[str] = field(default_factory=lambda: ["small", "large"])
    throughput_repeats: int = 3
    """Bulk and per-call runs, alternated; their medians are reported (one run of each moved 5-10 % here
    with the shared machine's drift), and each pair's ratio beside them."""
    training_sizes: list[list[Any]] = field(default_factory=lambda: [
        ["small", 40], ["small", 200], ["small", 1000]])
    """Large trainings take 4-5 min each here: the trained section times one (cr, N = 8) and
    --extended adds large 40 / 200 / 1,000 to this list."""
    training_dataset: str = "emotion"
    multilabel_dataset: str | None = MULTI_LABEL_SET
    throughput_datasets: list[str] = field(default_factory=lambda: ["sst2", "ag_news"])
    active_pool_cap: int = 3000
    """Label next: unlabelled pool rows per set (train sampled with seed 0), embedded once with small."""
    active_rounds: int = 10
    active_start: int = 2
    active_batch: int = 10
    """Texts per round; sets with more labels than this take one per label (banking77: 77)."""
    unknown_ns: list[int] = field(default_factory=lambda: [8, 32])
    unknown_target: float = 0.9
    explain_datasets: list[str] = field(default_factory=lambda: ["cr", "sst2", "trec", "emotion"])
    explain_texts: int = 100
    """Issue #26: test texts per set whose explanations are put to the deletion test (N = 8 per label, seed 0)."""
    explain_timing_calls: int = 30
    """Distinct ~20-word inputs timed per arm (explain, plain classify), alternating, on small."""
    long_datasets: list[str] = field(default_factory=lambda: ["imdb", "20newsgroups", "enron_spam"])
    """Issue #27: sets with texts over the window, scored with truncate END and WINDOWS."""
    long_test_cap: int = 300
    long_models: list[str] = field(default_factory=lambda: ["small"])
    """--long-models small,large adds large (about 5x the time; with --long-seeds 0,1 on this machine)."""
    long_seeds: list[int] = field(default_factory=lambda: [0, 1, 2, 3, 4])
    long_ns: list[int] = field(default_factory=lambda: [8, 64])
    long_tuned_every_window: bool = True
    """Issue #27, ``long_tuned``: also tune on every window of a long example (the earlier way; a second tuning)."""
    http_seconds: float = 20.0
    http_clients: int = 4
    skip: list[str] = field(default_factory=list)

    @classmethod
    def make(cls, data: str, *, quick: bool, skip: list[str], latency_calls: int | None = None, extended: bool = False) -> Config:
        available = [d for d in SINGLE_LABEL_SETS if (Path(data) / d / "train.csv").is_file()]
        extra = sorted(p.name for p in Path(data).iterdir() if (p / "train.csv").is_file() and p.name not in available)
        available += extra  # a folder of other CSV sets (the test fixture) works too
        cfg = cls(data=str(Path(data).resolve()), skip=skip)
        cfg.datasets = available
        cfg.large_datasets = [d for d in cfg.large_datasets if d in available] or available[:1]
        cfg.precision_datasets = [d for d in cfg.precision_datasets if d in available] or available[:1]
        cfg.trained_datasets = list(available)
        cfg.setfit_datasets = list(available)
        if extended:
            cfg.mode = "extended"
            cfg.training_sizes = cfg.training_sizes + [["large", 40], ["large", 200], ["large", 1000]]
        cfg.training_dataset = cfg.training_dataset if cfg.training_dataset in available else available[-1]
        cfg.throughput_datasets = [d for d in cfg.throughput_datasets if d in available] or available[:2]
        cfg.explain_datasets = [d for d in cfg.explain_datasets if d in available] or available[:2]
        cfg.long_datasets = [d for d in cfg.long_datasets if d in available] or available[:1]
        multi = sorted(p.name for p in Path(data).iterdir() if (p / "train.jsonl").is_file())
        cfg.multilabel_dataset = MULTI_LABEL_SET if MULTI_LABEL_SET in multi else (multi[0] if multi else None)
        if quick:
            cfg.mode = "quick"
            cfg.quick = True
            cfg.seeds = [0]
            cfg.test_cap = 500
            cfg.large = False
            cfg.large_datasets = []
            cfg.precision_datasets = [d for d in ("cr", "sst2") if d in available] or available[:1]
            cfg.trained_datasets = cfg.trained_datasets[:1]
            cfg.trained_models = ["small"]
            cfg.trained_seeds = [0]
            cfg.trained_test_cap = cfg.trained_long_test_cap = 200
            cfg.setfit_datasets = cfg.setfit_datasets[:1]
            cfg.setfit_seeds = {"small": [0]}
            cfg.setfit_max_steps = 40
            cfg.multilabel_train = 300
            cfg.latency_models = ["small"]
            cfg.latency_calls = 20
            cfg.throughput_texts = 300
            cfg.throughput_repeats = 1
            cfg.throughput_models = ["small"]
            cfg.training_sizes = [["small", 40]]
            cfg.trained_steps = QUICK_MAX_STEPS
            cfg.http_seconds = 5.0
            cfg.active_pool_cap = 300
            cfg.active_rounds = 3
            cfg.unknown_ns = [4]
            cfg.explain_texts = 20
            cfg.explain_timing_calls = 5
            cfg.long_test_cap = 100
            cfg.long_seeds = [0]
            cfg.skip = sorted(set(cfg.skip) | set(FULL_ONLY))
        if latency_calls:
            cfg.latency_calls = latency_calls
        return cfg

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ----------------------------------------------------------------------------------------------
# Data


@dataclass
class LabelledSet:
    name: str
    train_texts: list[str]
    train_labels: list[str]
    test_texts: list[str]
    test_labels: list[str]
    source: str


def load_single_label(data: str | Path, name: str, test_cap: int) -> LabelledSet:
    """``<data>/<name>/train.csv, test.csv`` through the product's own CSV reader; test capped."""
    from playground.data import read_examples_csv

    folder = Path(data) / name
    train = read_examples_csv(folder / "train.csv").examples
    test = read_examples_csv(folder / "test.csv").examples
    idx = np.random.default_rng(0).permutation(len(test))[:test_cap]
    test = [test[i] for i in idx]
    source = (folder / "SOURCE.txt").read_text(encoding="utf-8").strip().splitlines()[0] if (folder / "SOURCE.txt").is_file() else ""
    return LabelledSet(name, [e.text for e in train], [e.label for e in train], [e.text for e in test],
                       [e.label for e in test], source)


def sample_per_label(labels: list[str], n: int, seed: int) -> np.ndarray:
    """Indices of ``n`` examples per label (all of a label when it has fewer); nested across n."""
    rng = np.random.default_rng(seed)
    labels_arr = np.asarray(labels)
    parts = []
    for label in sorted(set(labels)):
        idx = np.flatnonzero(labels_arr == label)
        parts.append(idx[rng.permutation(len(idx))][:n])
    return np.concatenate(parts)


# ----------------------------------------------------------------------------------------------
# Metrics


def ece(confidence: np.ndarray, correct: np.ndarray, bins: int = ECE_BINS) -> float:
    """Expected calibration error: |accuracy - confidence| per equal-width bin, weighted by its share."""
    confidence = np.asarray(confidence, dtype=float)
    correct = np.asarray(correct, dtype=float)
    which = confidence_bins(confidence, bins)
    total = 0.0
    for b in range(bins):
        mask = which == b
        if mask.any():
            total += mask.mean() * abs(correct[mask].mean() - confidence[mask].mean())
    return float(total)


def reliability(confidence: np.ndarray, correct: np.ndarray, bins: int = ECE_BINS) -> dict[str, list]:
    """Per-bin counts, summed confidence and summed correctness (so seeds can be pooled by adding)."""
    confidence = np.asarray(confidence, dtype=float)
    correct = np.asarray(correct, dtype=float)
    which = confidence_bins(confidence, bins)
    return {"count": np.bincount(which, minlength=bins).tolist(),
            "conf_sum": np.bincount(which, weights=confidence, minlength=bins).round(4).tolist(),
            "correct_sum": np.bincount(which, weights=correct, minlength=bins).round(4).tolist()}


def scores(y_true: list[str], classes: np.ndarray, proba: np.ndarray) -> dict[str, Any]:
    """Accuracy, macro-F1, ECE and the reliability bins of one fitted classifier on one test set."""
    from sklearn.metrics import f1_score

    pred = np.asarray(classes)[np.argmax(proba, axis=1)]
    y = np.asarray(y_true)
    correct = pred == y
    conf = proba.max(axis=1)
    return {"accuracy": float(correct.mean()), "macro_f1": float(f1_score(y, pred, average="macro", zero_division=0)),
            "ece": ece(conf, correct), "mean_confidence": float(conf.mean()), "reliability": reliability(conf, correct)}


# ----------------------------------------------------------------------------------------------
# Process and machine


def peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM), in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return float("nan")


def percentiles(seconds: list[float]) -> dict[str, float]:
    ms = np.asarray(seconds) * 1000
    return {"p50_ms": round(float(np.percentile(ms, 50)), 2), "p95_ms": round(float(np.percentile(ms, 95)), 2),
            "mean_ms": round(float(ms.mean()), 2), "n": len(ms)}


class Timer:
    def __enter__(self) -> Timer:
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.start


def machine() -> dict[str, Any]:
    """Cores, CPU model and flags that matter, library versions, date and git commit."""
    from importlib import metadata

    cpu_model, flags = "", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and not cpu_model:
                cpu_model = line.split(":", 1)[1].strip()
            if line.startswith("flags") and not flags:
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    versions = {}
    for dist in ("torch", "sentence-transformers", "transformers", "scikit-learn", "numpy", "setfit"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = None
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                                timeout=10).stdout.strip()
        dirty = bool(subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True,
                                    timeout=10).stdout.strip())
    except (OSError, subprocess.SubprocessError):
        commit, dirty = "", False
    try:
        load = os.getloadavg()
    except OSError:
        load = (float("nan"),) * 3
    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "cores": os.cpu_count(),
        "cpu_model": cpu_model,
        "cpu_flags": sorted(flags & {"avx2", "avx512f", "avx512_bf16", "amx_bf16", "avx512_vnni"}),
        "python": platform.python_version(),
        "versions": versions,
        "git_commit": commit + (" (with uncommitted changes)" if dirty else ""),
        "load_average_at_start": [round(x, 2) for x in load],
    }


def write_json(path: str | Path, data: Any) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(str(path) + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, default=_jsonable) + "\n", encoding="utf-8")
    tmp.replace(path)


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON-serialisable: {type(value).__name__}")


def python_env() -> dict[str, str]:
    """Environment for child processes: offline (set here too, for peers such as setfit that load
    Hugging Face libraries before playground is imported), the repo importable."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def run_python(args: list[str], *, timeout: float, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=ROOT, env={**python_env(), **(env or {})}, capture_output=True,
                          text=True, timeout=timeout)
