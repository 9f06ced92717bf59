"""The benchmark's sections; each runs in its own process so its peak RSS is its own.

    python -m bench.sections <section> <config.json> <out.json>

Every section returns a JSON-safe dict; ``peak_rss_mb`` (VmHWM of the section's process) is
added by ``main``. Models load through the product's own code (``get_encoder``, ``classify``,
``classify_file``, ``playground.training``) so the numbers are the product's, not a twin's.
"""

from __future__ import annotations

import csv
import json
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .common import (
    ROOT,
    Timer,
    load_single_label,
    peak_rss_mb,
    percentiles,
    run_python,
    sample_per_label,
    scores,
    write_json,
)

SECTIONS: dict[str, Callable[[dict], dict]] = {}
_PARTIAL: Path | None = None


def _checkpoint(result: dict) -> None:
    """Save what a long section has so far; the runner keeps it if the section ends without its result
    (timed out, or killed: ``__main__.rows_so_far``, which also says why)."""
    if _PARTIAL is not None:
        write_json(_PARTIAL, {**result, "status": "partial: rows so far (the section had not ended)",
                              "peak_rss_mb": peak_rss_mb()})


def section(name: str):
    def wrap(fn: Callable[[dict], dict]) -> Callable[[dict], dict]:
        SECTIONS[name] = fn
        return fn
    return wrap


def _precisions() -> list[str]:
    """fp32 always; bf16 only where the CPU has it (the engine's ``auto`` picks it there).

    int8 (opt-in, ONNX Runtime) joins with ``BENCH_INT8=1`` when onnxruntime is installed: its
    first use builds a cached model (20 s small, 60 s large), and the throughput section's raw
    ``encode`` row has no int8 twin. docs/PRECISION.md has its own measurements.
    """
    import importlib.util

    from playground.embeddings import bf16_supported

    out = ["fp32", "bf16"] if bf16_supported() else ["fp32"]
    if os.environ.get("BENCH_INT8") == "1" and importlib.util.find_spec("onnxruntime") is not None:
        out.append("int8")
    return out


def _sets(cfg: dict, names: list[str]):
    for name in names:
        yield load_single_label(cfg["data"], name, cfg["test_cap"])


def _embed_all(encoder, texts: list[str]) -> tuple[dict[str, np.ndarray], float]:
    unique = sorted(set(texts))
    with Timer() as t:
        vectors = encoder.embed(unique, batch_size=64)
    encoder.clear_cache()  # the bench holds its own copy; keep the encoder's LRU from growing past its cap
    return dict(zip(unique, vectors)), t.seconds


QUICK_MAX_TRAIN = 1500
"""--quick leaves out samples larger than this (banking77 at N = 64: 4,900 texts to embed)."""


def _train_indices(ds, cfg: dict) -> dict[tuple[int, int], np.ndarray]:
    out = {(n, seed): sample_per_label(ds.train_labels, n, seed) for n in cfg["ns"] for seed in cfg["seeds"]}
    if cfg["quick"]:
        out = {k: v for k, v in out.items() if len(v) <= QUICK_MAX_TRAIN}
    return out


def _threads_for_busy_machine() -> int:
    """One torch thread when the machine is already busy, for sections whose speed is not measured.

    Measured here: with 2 threads on 2 cores shared with other jobs, embedding 12 short texts
    took 1.4 s against 0.1 s with one thread (spinning OpenMP workers). Timed sections keep
    torch's default so they measure what users get.
    """
    import torch

    if os.getloadavg()[0] > (os.cpu_count() or 1):
        torch.set_num_threads(1)
    return torch.get_num_threads()


def _row(method: str, model: str, precision: str, ds, n: int, seed: int, classes, proba, fit_s: float,
         **extra: Any) -> dict:
    return {"method": method, "model": model, "precision": precision, "dataset": ds.name, "n": n, "seed": seed,
            **scores(ds.test_labels, classes, proba), "fit_ms": round(fit_s * 1000, 1), **extra}


# ----------------------------------------------------------------------------------------------
# Accuracy: instant few-shot (per model and precision) and the TF-IDF floor


@section("accuracy")
def accuracy(cfg: dict) -> dict:
    """Instant few-shot (FewShotClassifier on the engine's embeddings) and TF-IDF + LR, every seed and N."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    from playground.classifier import FewShotClassifier
    from playground.embeddings import get_encoder, resolve_precision
    from playground.label_prior import LabelPriorClassifier, label_embedding_map, label_texts

    threads = _threads_for_busy_machine()
    default = resolve_precision("auto")
    plans = [("small", p) for p in _precisions()]
    if cfg["large"]:
        plans.append(("large", default))
    rows, embed_stats = [], []
    for ds in _sets(cfg, cfg["datasets"]):
        samples = _train_indices(ds, cfg)
        needed = set(ds.test_texts)
        for idx in samples.values():
            needed.update(ds.train_texts[i] for i in idx)
        for model, precision in plans:
            if precision != default and ds.name not in cfg["precision_datasets"]:
                continue
            if model == "large" and ds.name not in cfg["large_datasets"]:
                continue
            encoder = get_encoder(model, precision=precision)
            vectors, seconds = _embed_all(encoder, sorted(needed))
            embed_stats.append({"dataset": ds.name, "model": model, "precision": precision, "texts": len(vectors),
                                "seconds": round(seconds, 2), "texts_per_s": round(len(vectors) / seconds, 1)})
            X_test = np.stack([vectors[t] for t in ds.test_texts])
            label_set = sorted(set(ds.train_labels))
            names = label_embedding_map(label_set, encoder.embed(label_texts(label_set)))
            for (n, seed), idx in samples.items():
                X = np.stack([vectors[ds.train_texts[i]] for i in idx])
                y = [ds.train_labels[i] for i in idx]
                with Timer() as t:
                    clf = FewShotClassifier().fit(X, y)
                rows.append(_row("instant", model, precision, ds, n, seed, clf.classes_, clf.predict_proba(X_test),
                                 t.seconds, temperature=round(clf.temperature_, 3), n_train=len(idx)))
                if precision == default:  # the opt-in label-name prior on the same sample (label_prior.py)
                    with Timer() as t:
                        named = LabelPriorClassifier(label_embeddings=names).fit(X, y)
                    rows.append(_row("instant+names", model, precision, ds, n, seed, named.classes_,
                                     named.predict_proba(X_test), t.seconds, n_train=len(idx),
                                     prior_weight=round(named.prior_weight_, 3)))
        for (n, seed), idx in samples.items():
            texts = [ds.train_texts[i] for i in idx]
            y = [ds.train_labels[i] for i in idx]
            with Timer() as t:
                vec = TfidfVectorizer(sublinear_tf=True, ngram_range=(1, 2), min_df=1)
                lr = LogisticRegression(C=10.0, max_iter=2000).fit(vec.fit_transform(texts), y)
            rows.append(_row("tfidf", "-", "-", ds, n, seed, lr.classes_, lr.predict_proba(vec.transform(ds.test_texts)),
                             t.seconds, n_train=len(idx)))
        _checkpoint({"rows": rows, "embedding": embed_stats, "default_precision": default, "torch_threads": threads})
    return {"rows": rows, "embedding": embed_stats, "default_precision": default, "torch_threads": threads}


# ----------------------------------------------------------------------------------------------
# Trained custom models (playground.training's SetFit-style tuning + the product's head)


def _settings(cfg: dict):
    from playground.training import TrainingSettings

    return TrainingSettings(steps=cfg.get("trained_steps"))


def _load() -> float:
    return round(os.getloadavg()[0], 2)


@section("trained")
def trained(cfg: dict) -> dict:
    """The product's tuning against the untuned head on the same samples, every set, seed and model (issue #24):
    ``bench.tuned_eval`` (the recipe's row and its WiSE-FT neighbours from one tuning each)."""
    import torch

    from playground.tuning import RECIPES

    from .tuned_eval import LONG_SETS, summarise, tuned_rows

    torch.set_num_threads(cfg["trained_threads"] or torch.get_num_threads())
    rows: list[dict] = []
    models = [m for m in cfg["trained_models"] if m == "small" or cfg["large"]]
    for model in models:
        for name in cfg["trained_datasets"]:
            cap = cfg["trained_long_test_cap"] if name in LONG_SETS else cfg["trained_test_cap"]
            ds = load_single_label(cfg["data"], name, cap)
            overrides = {**({"steps": cfg["trained_steps"]} if cfg.get("trained_steps") else {}),
                         **cfg.get("trained_tuning", {})} or None
            tuned_rows(model, ds, cfg["trained_seeds"], cfg["trained_n"], cfg["trained_alphas"],
                       on_row=lambda r: (rows.append(r), _checkpoint({"rows": rows})), settings_overrides=overrides)
    recipes = {k: vars(v) for k, v in RECIPES.items()}
    return {"rows": rows, "summary": summarise(rows), "recipes": recipes,
            "torch_threads": torch.get_num_threads()}


@section("guard")
def guard_scores(cfg: dict) -> dict:
    """Issue #24: the guard's honest scores on the trained section's draws (``bench.tuned_eval.guard_rows``: the
    product's own cross-validation, one thread, folds in turn); the report joins them with the trained rows to
    say which model Tune and ``train`` would keep and what it scores."""
    from .tuned_eval import guard_rows

    rows: list[dict] = []
    for model in [m for m in cfg["trained_models"] if m == "small" or cfg["large"]]:
        for name in cfg["trained_datasets"]:
            ds = load_single_label(cfg["data"], name, 1)  # the folds use the training split only
            guard_rows(model, ds, cfg["trained_seeds"], cfg["trained_n"],
                       on_row=lambda r: (rows.append(r), _checkpoint({"rows": rows})))
    return {"rows": rows}


# ----------------------------------------------------------------------------------------------
# The setfit library, its defaults, on the same small base model


@section("setfit")
def setfit_peer(cfg: dict) -> dict:
    """The ``setfit`` library on the tuned rows' samples and base models: ``TrainingArguments(num_epochs=1)``
    (its pair sampling, batch 16, a logistic-regression head); ``max_steps`` only on ``setfit_capped_sets``."""
    try:
        import setfit
        from datasets import Dataset
        from setfit import SetFitModel, Trainer, TrainingArguments
    except Exception as exc:  # noqa: BLE001 - any import failure means the row is not run; say why
        return {"status": f"not run: setfit does not import with our pins ({type(exc).__name__}: {exc})", "rows": []}
    from playground.embeddings import model_path

    from .tuned_eval import LONG_SETS

    threads = _threads_for_busy_machine()
    rows = []
    n = cfg["trained_n"]
    for base in cfg["setfit_models"]:
        for name in cfg["setfit_datasets"]:
            costly = name in cfg["setfit_costly_sets"]
            seeds = (cfg["setfit_few_seeds"] if costly else cfg["setfit_seeds"]).get(base, [])
            if not seeds:
                continue
            cap = cfg["trained_long_test_cap"] if name in LONG_SETS else cfg["trained_test_cap"]
            ds = load_single_label(cfg["data"], name, cap)
            for seed in seeds:
                idx = sample_per_label(ds.train_labels, n, seed)
                train = Dataset.from_dict({"text": [ds.train_texts[i] for i in idx],
                                           "label": [ds.train_labels[i] for i in idx]})
                with tempfile.TemporaryDirectory(prefix="bench-setfit-") as out:
                    model = SetFitModel.from_pretrained(str(model_path(base)), local_files_only=True)
                    capped = name in cfg["setfit_capped_sets"]
                    args = TrainingArguments(output_dir=out, save_strategy="no", report_to="none", seed=seed,
                                             num_epochs=1, max_steps=cfg["setfit_max_steps"] if capped else -1,
                                             show_progress_bar=False)
                    trainer = Trainer(model=model, args=args, train_dataset=train)
                    load = _load()
                    with Timer() as t:
                        trainer.train()  # predicting is not timed
                    state = getattr(getattr(trainer, "st_trainer", trainer), "state", None)  # setfit 1.x: its ST trainer's
                    steps = int(getattr(state, "global_step", 0) or 0) if state is not None else None
                    proba = np.asarray(model.predict_proba(ds.test_texts, show_progress_bar=False), dtype=float)
                classes = np.asarray(model.model_head.classes_)
                rows.append(_row("setfit", base, "fp32", ds, n, seed, classes, proba, 0.0,
                                 tune_seconds=round(t.seconds, 1), n_train=len(idx), n_test=len(ds.test_texts),
                                 steps=steps, load_before=load, load_after=_load()))
                _checkpoint({"rows": rows, "version": setfit.__version__})
    return {"rows": rows, "version": setfit.__version__, "torch_threads": threads,
            "settings": {"arguments": "setfit 1.2.0 TrainingArguments(num_epochs=1) defaults otherwise",
                         "max_steps": cfg["setfit_max_steps"], "capped_sets": cfg["setfit_capped_sets"],
                         "seeds": cfg["setfit_seeds"],
                         "few_seeds": cfg["setfit_few_seeds"], "costly_sets": cfg["setfit_costly_sets"]}}


# ----------------------------------------------------------------------------------------------
# Multi-label: goemotions, trained vs instant, micro / macro F1


@section("multilabel")
def multilabel(cfg: dict) -> dict:
    from playground.data import read_multilabel_jsonl
    from playground.embeddings import get_encoder

    if not cfg["multilabel_dataset"]:
        return {"status": f"not run: no <set>/train.jsonl in {cfg['data']}"}
    folder = Path(cfg["data"]) / cfg["multilabel_dataset"]
    try:
        from playground.classifier import MultiLabelHead, indicator
        from playground.metrics import multi_label_metrics
        from playground.training import TrainingData, embed_with, load_base, tune_body
    except ImportError as exc:
        return {"status": f"not run: playground.training is not importable ({exc})"}
    _threads_for_busy_machine()
    train_all = read_multilabel_jsonl(folder / "train.jsonl")
    test = read_multilabel_jsonl(folder / "test.jsonl")
    train = [train_all[i] for i in np.random.default_rng(0).permutation(len(train_all))[:cfg["multilabel_train"]]]
    test = [test[i] for i in np.random.default_rng(0).permutation(len(test))[:cfg["test_cap"]]]
    counts: dict[str, int] = {}
    for ex in train:
        for label in ex.labels:
            counts[label] = counts.get(label, 0) + 1
    labels = sorted(k for k, v in counts.items() if 2 <= v < len(train))
    dropped = sorted(set(counts) - set(labels))
    data = TrainingData(train, [f"line {i}" for i in range(len(train))], True)
    Y_train, Y_test = indicator(train, labels), indicator(test, labels)
    out: dict[str, Any] = {"dataset": folder.name, "n_train": len(train), "n_test": len(test), "labels": len(labels), "dropped_labels": dropped}
    base = get_encoder("small")
    head = MultiLabelHead(labels=labels).fit(base.embed([e.text for e in train]), Y_train)
    m = multi_label_metrics(Y_test, head.predict(base.embed([e.text for e in test])), labels)
    out["instant_small"] = {k: m[k] for k in ("micro_f1", "macro_f1", "exact_match", "hamming_loss")}
    body = load_base("small")
    with Timer() as t:
        tune_body(body, data, _settings(cfg).tuning())
    head = MultiLabelHead(labels=labels).fit(embed_with(body, [e.text for e in train]), Y_train)
    m = multi_label_metrics(Y_test, head.predict(embed_with(body, [e.text for e in test])), labels)
    out["trained_small"] = {**{k: m[k] for k in ("micro_f1", "macro_f1", "exact_match", "hamming_loss")},
                            "tune_seconds": round(t.seconds, 1)}
    return out


# ----------------------------------------------------------------------------------------------
# Latency of the seed example through classify()


@section("latency")
def latency(cfg: dict) -> dict:
    """Warm p50/p95 of the guide's example: fitted-model cache hit, and cleared (fit + embed each call)."""
    import torch

    from playground import classify, engine
    from playground.embeddings import get_encoder
    from playground.presets import load_preset

    seed = load_preset("review-sentiment")
    examples, inputs = list(seed.examples), list(seed.inputs)

    def time_uncached(model: str, precision: str) -> list[float]:
        """Each call with both caches emptied: embed 12 texts and fit, what an edit of the examples costs."""
        encoder = get_encoder(model, precision=precision)
        seconds = []
        for _ in range(cfg["latency_calls"]):
            engine.clear_fitted()
            encoder.clear_cache()
            with Timer() as t:
                classify(inputs, examples, model, precision=precision)
            seconds.append(t.seconds)
        return seconds

    def time_edits(model: str, precision: str) -> dict:
        """Edit one example and classify again (the everyday path), interleaved with its floor: the raw
        ``SentenceTransformer`` encoding that one new text, same precision, same process."""
        from sentence_transformers import SentenceTransformer

        from playground.embeddings import model_path

        kwargs = {"dtype": torch.bfloat16} if precision == "bf16" else {}
        raw = SentenceTransformer(str(model_path(model)), device="cpu", model_kwargs=kwargs, local_files_only=True)
        raw.encode(["warm up"], show_progress_bar=False)
        classify(inputs, examples, model, precision=precision)  # loads the encoder and caches the seed texts
        path_s, floor_s, loads = [], [], [_load()]
        for i in range(cfg["latency_calls"]):
            edited = list(examples)
            edited[i % len(edited)] = type(edited[0])(f"{edited[i % len(edited)].text} (edit {i})",
                                                      edited[i % len(edited)].label)
            with Timer() as t:
                classify(inputs, edited, model, precision=precision)
            path_s.append(t.seconds)
            with Timer() as t, torch.inference_mode():
                raw.encode([f"{edited[i % len(edited)].text} [floor]"], show_progress_bar=False)
            floor_s.append(t.seconds)
        loads.append(_load())
        del raw
        path_p, floor_p = percentiles(path_s), percentiles(floor_s)
        return {"model": model, "precision": precision, "torch_threads": torch.get_num_threads(), "path": path_p,
                "floor": floor_p, "ratio_p50": round(path_p["p50_ms"] / floor_p["p50_ms"], 2), "load": loads}

    out = []
    edits = []
    for model in cfg["latency_models"]:
        for precision in _precisions():
            edits.append(time_edits(model, precision))
            first = classify(inputs, examples, model, precision=precision)
            cached = []
            for _ in range(cfg["latency_calls"]):
                with Timer() as t:
                    classify(inputs, examples, model, precision=precision)
                cached.append(t.seconds)
            out.append({"model": model, "precision": precision, "cached": percentiles(cached),
                        "uncached": percentiles(time_uncached(model, precision)), "torch_threads": torch.get_num_threads(),
                        "predictions": [r.prediction for r in first],
                        "p_negative": [round(r.labels["negative"], 3) for r in first]})
    # The same uncached call with one torch thread: on a shared machine, torch's spinning worker
    # threads can cost more than they give (the report shows both).
    threads = torch.get_num_threads()
    if threads > 1:
        torch.set_num_threads(1)
        try:
            model, precision = cfg["latency_models"][0], _precisions()[-1]
            out.append({"model": model, "precision": precision, "torch_threads": 1,
                        "uncached": percentiles(time_uncached(model, precision))})
        finally:
            torch.set_num_threads(threads)
    return {"rows": out, "edits": edits}


COLD_START = """
import json, time
t0 = time.perf_counter()
from playground import classify
from playground.presets import load_preset
t1 = time.perf_counter()
seed = load_preset("review-sentiment")
from playground.embeddings import get_encoder
get_encoder({model!r}, precision={precision!r})
t2 = time.perf_counter()
r = classify(list(seed.inputs), list(seed.examples), {model!r}, precision={precision!r})
t3 = time.perf_counter()
print(json.dumps({{"import_s": t1 - t0, "load_s": t2 - t1, "first_result_s": t3 - t2,
                  "predictions": [x.prediction for x in r]}}))
"""


@section("coldstart")
def coldstart(cfg: dict) -> dict:
    """Fresh interpreter each time: import + model load + first result (wall time seen from outside)."""
    precisions = _precisions()[-1:] if cfg["quick"] else _precisions()  # quick: the default one only
    plans = [(m, p) for m in cfg["latency_models"] for p in precisions]
    out = []
    for model, precision in plans:
        t0 = time.perf_counter()
        proc = run_python(["-c", COLD_START.format(model=model, precision=precision)], timeout=600)
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            out.append({"model": model, "precision": precision, "status": f"failed: {proc.stderr[-500:]}"})
            continue
        inner = json.loads(proc.stdout.strip().splitlines()[-1])
        out.append({"model": model, "precision": precision, "wall_s": round(wall, 2),
                    **{k: (round(v, 2) if isinstance(v, float) else v) for k, v in inner.items()}})
    return {"rows": out, "note": "the large model's one-time unzip is not included (already cached)"}


# ----------------------------------------------------------------------------------------------
# Throughput: raw encode fp32 / bf16 against bulk classify_file, same texts, same run


def _api_texts_per_s(texts_csv: Path, examples: list, model: str, tmp: Path) -> float | str:
    """``/v1/classify`` in a loop of 96-input requests over ``texts_csv`` (``bench/http_load.py --texts-file``):
    the server in its own process at the default precision, this process idle meanwhile."""
    examples_csv = tmp / "examples.csv"
    with examples_csv.open("w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([("text", "label"), *examples])
    proc = run_python(["-m", "bench.http_load", "--texts-file", str(texts_csv), "--examples-file", str(examples_csv),
                       "--model", model], timeout=1800)
    if proc.returncode != 0:
        return f"failed: {(proc.stderr or proc.stdout)[-300:]}"
    return json.loads(proc.stdout[proc.stdout.index("{"):])["texts_per_s"]


PER_CALL_INPUTS = 96
"""Inputs per ``classify`` call in the per-call row: Cohere's limit, what the API and SDK users send."""


@section("throughput")
def throughput(cfg: dict) -> dict:
    import torch
    from sentence_transformers import SentenceTransformer

    from playground import engine
    from playground.bulk import classify_file
    from playground.embeddings import get_encoder, model_path

    out = []
    for name in cfg["throughput_datasets"]:
        ds = load_single_label(cfg["data"], name, 10**9)
        idx = sample_per_label(ds.train_labels, 8, 0)
        examples = [(ds.train_texts[i], ds.train_labels[i]) for i in idx]
        for model in cfg["throughput_models"]:
            n = cfg["throughput_texts"] if model == "small" else cfg["throughput_texts_large"]
            texts = ds.test_texts[:n]
            row: dict[str, Any] = {"dataset": name, "model": model, "texts": len(texts),
                                   "mean_chars": round(float(np.mean([len(t) for t in texts])), 1)}
            with tempfile.TemporaryDirectory(prefix="bench-bulk-") as tmp:
                src = Path(tmp) / "texts.csv"
                with src.open("w", newline="", encoding="utf-8") as f:
                    w = csv.writer(f)
                    w.writerow(["text"])
                    w.writerows([t] for t in texts)
                for precision in _precisions():
                    kwargs = {"dtype": torch.bfloat16} if precision == "bf16" else {}
                    raw = SentenceTransformer(str(model_path(model)), device="cpu", model_kwargs=kwargs,
                                              local_files_only=True)
                    raw.encode(texts[:64], batch_size=64, show_progress_bar=False)  # warm-up
                    with Timer() as t, torch.inference_mode():
                        raw.encode(texts, batch_size=64, show_progress_bar=False)
                    row[f"raw_{precision}_per_s"] = round(len(texts) / t.seconds, 1)
                    del raw
                    encoder = get_encoder(model, precision=precision)
                    encoder.embed(["warm up"])
                    bulk_rates, per_call_rates = [], []
                    for _ in range(cfg["throughput_repeats"]):  # alternated: the machine's drift hits both alike
                        encoder.clear_cache()
                        engine.clear_fitted()
                        with Timer() as t:
                            result = classify_file(src, Path(tmp) / f"out-{precision}.csv", examples=examples,
                                                   model=model, precision=precision)
                        bulk_rates.append(len(texts) / t.seconds)
                        encoder.clear_cache()
                        engine.clear_fitted()
                        with Timer() as t:  # what /v1/classify and the Cohere SDK do: 96 inputs a call (Cohere's cap)
                            for start in range(0, len(texts), PER_CALL_INPUTS):
                                engine.classify(texts[start:start + PER_CALL_INPUTS], examples, model, precision=precision)
                        per_call_rates.append(len(texts) / t.seconds)
                    encoder.clear_cache()
                    row[f"bulk_{precision}_per_s"] = round(float(np.median(bulk_rates)), 1)
                    row[f"bulk_{precision}_rows"] = getattr(result, "rows", None) or getattr(result, "n_rows", None)
                    row[f"per_call_{precision}_per_s"] = round(float(np.median(per_call_rates)), 1)
                    row[f"per_call_{precision}_ratios"] = [round(p / b, 3) for p, b in zip(per_call_rates, bulk_rates)]
                api_runs = [_api_texts_per_s(src, examples, model, Path(tmp)) for _ in range(cfg["throughput_repeats"])]
                failed = [run for run in api_runs if isinstance(run, str)]
                row["api_per_s"] = failed[0] if failed else round(float(np.median(api_runs)), 1)
                row["api_runs_per_s"] = api_runs  # a fresh server each: its cache would answer a second pass
            row["load"] = _load()
            out.append(row)
    return {"rows": out}


# ----------------------------------------------------------------------------------------------
# Training time through the user's path: playground.training.train into a temporary folder


@section("training_time")
def training_time(cfg: dict) -> dict:
    try:
        from playground.training import train
    except ImportError as exc:
        return {"status": f"not run: playground.training is not importable ({exc})", "rows": []}
    ds = load_single_label(cfg["data"], cfg["training_dataset"], cfg["test_cap"])
    labels = sorted(set(ds.train_labels))
    rows = []
    for model, size in cfg["training_sizes"]:
        if model == "large" and not cfg["large"]:
            continue
        if size > len(ds.train_texts):
            rows.append({"model": model, "examples": size, "dataset": ds.name,
                         "status": f"not run: {ds.name} has only {len(ds.train_texts)} training rows"})
            continue
        per = -(-size // len(labels))
        idx = np.random.default_rng(7).permutation(sample_per_label(ds.train_labels, per, 7))[:size]
        examples = [(ds.train_texts[i], ds.train_labels[i]) for i in idx]
        with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
            with Timer() as t:
                info = train(examples, f"bench-{model}-{size}", base_model=model, settings=_settings(cfg),
                             directory=Path(tmp))
        metrics = info.metrics
        rows.append({"model": model, "examples": len(examples), "dataset": ds.name, "wall_s": round(t.seconds, 1),
                     "tuning_s": metrics.get("tuning_seconds"), "steps": metrics.get("steps"),
                     "folds": metrics["validation"].get("folds"),
                     "validation_accuracy": round(metrics["trained"]["accuracy"], 3),
                     "baseline_accuracy": round(metrics["baseline"]["accuracy"], 3),
                     "validation_n": metrics["validation"]["n"]})
        _checkpoint({"rows": rows, "settings": _settings(cfg).to_dict()})
    return {"rows": rows, "settings": _settings(cfg).to_dict()}


# ----------------------------------------------------------------------------------------------
# Label next (issue #19): which texts to label, simulated; and the opt-in "unknown" answer


def _active_curve(Xp: np.ndarray, yp: np.ndarray, Xt: np.ndarray, yt: np.ndarray, strategy: str, seed: int,
                  cfg: dict) -> dict:
    """One simulated user: 2 examples per label, then ``rounds`` batches picked by ``strategy``, the oracle labels them."""
    from sklearn.metrics import f1_score

    from playground import active
    from playground.classifier import FewShotClassifier

    classes = np.unique(yp)
    batch = max(cfg["active_batch"], len(classes))  # one per label where there are more labels than the batch
    rng = np.random.default_rng(seed)
    labelled = [int(i) for c in classes
                for i in rng.choice(np.flatnonzero(yp == c), cfg["active_start"], replace=False)]
    acc, f1, n, ms = [], [], [], []
    for r in range(cfg["active_rounds"] + 1):
        head = FewShotClassifier().fit(Xp[labelled], yp[labelled])
        pred = head.classes_[head.predict_proba(Xt).argmax(axis=1)]
        acc.append(round(float((pred == yt).mean()), 4))
        f1.append(round(float(f1_score(yt, pred, average="macro", zero_division=0)), 4))
        n.append(len(labelled))
        if r == cfg["active_rounds"]:
            break
        with Timer() as t:
            picks = active.suggest(Xp, head.predict_proba(Xp), k=batch, labelled_vectors=Xp[labelled],
                                   exclude=np.array(labelled), strategy=strategy, seed=seed * 1000 + r)
        ms.append(t.seconds * 1000)
        labelled += [int(i) for i in picks]
    return {"strategy": strategy, "seed": seed, "batch": batch, "n": n, "accuracy": acc, "macro_f1": f1,
            "suggest_ms": round(float(np.mean(ms)), 1)}


def _unknown_run(Xp: np.ndarray, yp: np.ndarray, Xt: np.ndarray, yt: np.ndarray, n: int, seed: int,
                 target: float) -> dict:
    """A third of the labels withheld as out of scope; the threshold from the examples' out-of-fold predictions."""
    from playground import active
    from playground.classifier import FewShotClassifier
    from playground.label_next import out_of_fold_proba

    classes = np.unique(yp)
    rng = np.random.default_rng(100 + seed)
    out = rng.choice(classes, size=max(1, round(len(classes) / 3)), replace=False)
    inscope = np.setdiff1d(classes, out)
    idx = np.concatenate([rng.choice(np.flatnonzero(yp == c), min(n, int((yp == c).sum())), replace=False)
                          for c in inscope])
    X, y = Xp[idx], yp[idx]
    head_classes, oof = out_of_fold_proba(X, list(y))
    choice = active.choose_unknown_threshold(oof, list(y), list(head_classes), target_precision=target)
    head = FewShotClassifier().fit(X, y)
    proba = head.predict_proba(Xt)
    pred = active.apply_unknown(proba, head.classes_, choice)
    plain = head.classes_[proba.argmax(axis=1)]
    is_in = np.isin(yt, inscope)
    answered = pred != active.UNKNOWN
    right = answered & (pred == yt)
    return {"n": n, "seed": seed, "labels_out": len(out), "threshold": round(choice.threshold, 4),
            "met_on_examples": choice.met, "oof_precision": round(choice.precision, 4),
            "oof_coverage": round(choice.coverage, 4),
            "precision": round(float(right.sum() / max(1, answered.sum())), 4),
            "coverage": round(float(answered.mean()), 4),
            "precision_in_scope": round(float(right[is_in].sum() / max(1, answered[is_in].sum())), 4),
            "coverage_in_scope": round(float(answered[is_in].mean()), 4),
            "out_of_scope_share": round(float((~is_in).mean()), 4),
            "out_of_scope_refused": round(float((~answered[~is_in]).mean()), 4) if (~is_in).any() else None,
            "precision_without": round(float((plain == yt).mean()), 4),
            "accuracy_in_scope_without": round(float((plain[is_in] == yt[is_in]).mean()), 4)}


@section("active")
def active_learning(cfg: dict) -> dict:
    """Issue #19: accuracy against labels spent per strategy (simulated, the test labels as the oracle), and unknown."""
    from playground.active import STRATEGIES
    from playground.embeddings import get_encoder, resolve_precision

    threads = _threads_for_busy_machine()
    encoder = get_encoder("small")
    runs, unknown, pools = [], [], []
    for ds in _sets(cfg, cfg["datasets"]):
        rng = np.random.default_rng(0)
        idx = np.arange(len(ds.train_texts))
        if len(idx) > cfg["active_pool_cap"]:
            idx = np.sort(rng.choice(idx, cfg["active_pool_cap"], replace=False))
        pool_texts = [ds.train_texts[i] for i in idx]
        vectors, seconds = _embed_all(encoder, pool_texts + ds.test_texts)
        Xp = np.stack([vectors[t] for t in pool_texts])
        yp = np.asarray([ds.train_labels[i] for i in idx], dtype=object)
        Xt = np.stack([vectors[t] for t in ds.test_texts])
        yt = np.asarray(ds.test_labels, dtype=object)
        pools.append({"dataset": ds.name, "pool": len(pool_texts), "test": len(yt), "labels": len(np.unique(yp)),
                      "embed_seconds": round(seconds, 1)})
        for seed in cfg["seeds"]:
            for strategy in STRATEGIES[::-1]:  # random, uncertainty, uncertainty+diversity
                runs.append({"dataset": ds.name, **_active_curve(Xp, yp, Xt, yt, strategy, seed, cfg)})
        if len(np.unique(yp)) >= 3:  # withholding a third of two labels leaves one: nothing to classify
            for n in cfg["unknown_ns"]:
                for seed in cfg["seeds"]:
                    unknown.append({"dataset": ds.name, **_unknown_run(Xp, yp, Xt, yt, n, seed,
                                                                        cfg["unknown_target"])})
        _checkpoint({"rows": runs, "unknown": unknown, "pools": pools})
    return {"rows": runs, "unknown": unknown, "pools": pools, "torch_threads": threads,
            "precision": resolve_precision("auto"), "unknown_target": cfg["unknown_target"], "load_average_end": [round(x, 2) for x in os.getloadavg()]}


# ----------------------------------------------------------------------------------------------
# Explanations (issue #26): do the highlighted words matter, and what does asking why cost?

EXPLAIN_KS = (1, 2, 3)
EXPLAIN_RANDOM_DRAWS = 5
"""Random deletions per text and k: their mean is the baseline the highlighted words must beat."""


def _without(text: str, spans: list[tuple[int, int]]) -> str:
    for start, end in sorted(spans, reverse=True):
        text = text[:start] + text[end:]
    return text


def _deletion_rows(model, ds, n_texts: int) -> dict:
    """Mean fall in the explained label's probability when its k most highlighted words, or k random ones, go."""
    from playground.explain import explain_texts

    texts = [t for t in ds.test_texts if len(t.split()) > max(EXPLAIN_KS)][:n_texts]
    explanations = explain_texts(model, texts)
    every_word = explain_texts(model, texts, exact_words=None)  # full occlusion: what the default's estimate saves
    before = np.array([r.labels[e.label] for r, e in zip(model.classify(texts), explanations)])
    rng = np.random.default_rng(0)
    row: dict[str, Any] = {"dataset": ds.name, "texts": len(texts), "labels": len(model.labels),
                           "mean_words": round(float(np.mean([len(e.words) for e in explanations])), 1)}
    drawn = [e for _ in range(EXPLAIN_RANDOM_DRAWS) for e in explanations]  # draw-major, as np.tile(before)
    for k in EXPLAIN_KS:
        top = [_without(t, [(w.start, w.end) for w in e.strongest(k)]) for t, e in zip(texts, explanations)]
        randoms = [_without(e_text, [(e.words[i].start, e.words[i].end)
                                     for i in rng.choice(len(e.words), min(k, len(e.words)), replace=False)])
                   for e_text, e in zip(texts * EXPLAIN_RANDOM_DRAWS, drawn)]
        after_top = np.array([r.labels[e.label] for r, e in zip(model.classify(top), explanations)])
        after_random = np.array([r.labels[e.label] for r, e in zip(model.classify(randoms), drawn)])
        row[f"drop_top_{k}"] = round(float((before - after_top).mean()), 4)
        every = [_without(t, [(w.start, w.end) for w in e.strongest(k)]) for t, e in zip(texts, every_word)]
        after_every = np.array([r.labels[e.label] for r, e in zip(model.classify(every), explanations)])
        row[f"drop_every_word_measured_{k}"] = round(float((before - after_every).mean()), 4)
        row[f"drop_random_{k}"] = round(float((np.tile(before, EXPLAIN_RANDOM_DRAWS) - after_random).mean()), 4)
    return row


def _cost(examples: list, texts: list[str], calls: int) -> dict:
    """Explain vs plain classify on distinct ~20-word inputs (none cached), alternating so load hits both alike."""
    from playground.explain import classify

    classify(texts[-1], examples, explain=True)  # warm: the fit, torch's first batch shapes
    classify(texts[-2], examples)
    plain, explained = [], []
    for i in range(calls):
        with Timer() as t:
            classify(texts[2 * i], examples)
        plain.append(t.seconds)
        with Timer() as t:
            classify(texts[2 * i + 1], examples, explain=True)
        explained.append(t.seconds)
    p, e = percentiles(plain), percentiles(explained)
    return {"classify": p, "explain": e, "ratio_p50": round(e["p50_ms"] / p["p50_ms"], 2),
            "words": round(float(np.mean([len(t.split()) for t in texts[:2 * calls]])), 1), "calls": calls}


@section("explain")
def explain_faithfulness(cfg: dict) -> dict:
    """Issue #26: the deletion test (the k most highlighted words vs k random ones) and explain's cost on small."""
    import torch

    from playground.embeddings import resolve_precision
    from playground.engine import get_classifier

    load_start = [round(x, 2) for x in os.getloadavg()]
    default_threads = torch.get_num_threads()
    _threads_for_busy_machine()  # the deletion test's speed is not measured
    rows, cost = [], {}
    for ds in _sets(cfg, cfg["explain_datasets"]):
        idx = sample_per_label(ds.train_labels, 8, 0)
        examples = [(ds.train_texts[i], ds.train_labels[i]) for i in idx]
        rows.append(_deletion_rows(get_classifier(examples, "small"), ds, cfg["explain_texts"]))
        _checkpoint({"rows": rows})
        if not cost:  # the first set's test texts, read on as one stream cut every 20 words: distinct inputs
            words = " ".join(ds.test_texts).split()
            inputs = [" ".join(words[i:i + 20]) for i in range(0, len(words) - 19, 20)]
            calls = min(cfg["explain_timing_calls"], (len(inputs) // 2 - 2) // 2)  # 2 per call + 2 to warm up
            cost["dataset"], cost["inputs"] = ds.name, len(inputs)
            for threads, half in ((default_threads, inputs[:len(inputs) // 2]), (1, inputs[len(inputs) // 2:])):
                if calls < 1:
                    break
                torch.set_num_threads(threads)  # both: spinning workers slow small batches on a busy machine
                cost[f"threads_{threads}"] = {**_cost(examples, half, calls), "load": _load()}
    return {"rows": rows, "cost": cost, "n": 8, "model": "small", "precision": resolve_precision("auto"),
            "random_draws": EXPLAIN_RANDOM_DRAWS, "load_average_start": load_start,
            "load_average_end": [round(x, 2) for x in os.getloadavg()]}


# ----------------------------------------------------------------------------------------------
# Long texts (issue #27): truncate END against WINDOWS, and two other ways to use the windows


def _window_vectors(encoder, texts: list[str]) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Each text's windows under WINDOWS (``Encoder.reading``) embedded as pieces, one batched pass.

    Returns {text: (windows x dim)} and each text's ``Reading``; the product's mean is ``combine_windows`` of these.
    """
    readings = {t: encoder.reading(t, "WINDOWS") for t in texts}
    pieces = [t[a:b] for t in texts for a, b in readings[t].windows]
    vectors = encoder.embed(pieces, truncate="END") if pieces else np.zeros((0, encoder.dimension), np.float32)
    encoder.clear_cache()
    out, at = {}, 0
    for t in texts:
        k = len(readings[t].windows)
        out[t] = vectors[at:at + k]
        at += k
    return out, readings


@section("long")
def long_texts(cfg: dict) -> dict:
    """END vs WINDOWS on the long sets, instant few-shot, every N and seed, with texts/s of each (issue #27).

    Arms on the same samples and test rows: ``END`` (Cohere's default), ``WINDOWS`` (the product: windows
    averaged into one embedding, token-weighted), ``WINDOWS-proba`` (the same fitted head, the windows'
    probabilities averaged instead) and ``WINDOWS-train`` (every window of a long example a training text,
    as tuning uses them; test read as WINDOWS). Embeddings under WINDOWS equal END's for texts within the
    window (tested bit for bit), so END embeds every text once and the windows pass covers the long ones.
    texts/s: the product's ``embed`` on the test rows alone, cache cleared, END then WINDOWS.
    """
    from playground.classifier import FewShotClassifier
    from playground.embeddings import get_encoder, resolve_precision
    from playground.windows import combine_windows

    load_start = [round(x, 2) for x in os.getloadavg()]
    precision = resolve_precision("auto")
    rows, speed, shape = [], [], []
    seeds = cfg.get("long_seeds", cfg["seeds"])
    for model in cfg.get("long_models", ["small"]):
        encoder = get_encoder(model, precision=precision)
        for name in cfg["long_datasets"]:
            ds = load_single_label(cfg["data"], name, cfg.get("long_test_cap", cfg["test_cap"]))
            samples = {(n, seed): sample_per_label(ds.train_labels, n, seed) for n in cfg.get("long_ns", cfg["ns"])
                       for seed in seeds}
            timing = {"model": model, "dataset": name, "texts": len(ds.test_texts), "load": [_load()]}
            for mode in ("END", "WINDOWS"):
                encoder.clear_cache()
                with Timer() as t:
                    encoder.embed(ds.test_texts, truncate=mode)
                timing[f"{mode.lower()}_per_s"] = round(len(ds.test_texts) / t.seconds, 2)
            encoder.clear_cache()
            timing["load"].append(_load())
            timing["windows_ratio"] = round(timing["windows_per_s"] / timing["end_per_s"], 3)
            needed = sorted(set(ds.test_texts) | {ds.train_texts[i] for idx in samples.values() for i in idx})
            end, _ = _embed_all(encoder, needed)
            long_texts_ = [t for t in needed if encoder.reading(t, "END").longer]
            windows, readings = _window_vectors(encoder, long_texts_)
            tokens = {t: readings[t].window_tokens for t in long_texts_}
            mean = {t: combine_windows(windows[t], tokens[t]) for t in long_texts_}

            def X(texts: list[str], how: str) -> np.ndarray:
                return np.stack([mean[t] if how == "WINDOWS" and t in mean else end[t] for t in texts])

            test_read = [readings.get(t) for t in ds.test_texts]
            shape.append({"model": model, "dataset": name, "test_rows": len(ds.test_texts),
                          "longer": round(float(np.mean([r is not None for r in test_read])), 3),
                          "windows_per_long_text": round(float(np.mean([len(r.windows) for r in test_read if r])), 2)
                          if any(test_read) else 0.0,
                          "capped": round(float(np.mean([bool(r and r.capped) for r in test_read])), 4)})
            timing.update(shape[-1])
            speed.append(timing)
            Xe, Xw = X(ds.test_texts, "END"), X(ds.test_texts, "WINDOWS")
            for (n, seed), idx in samples.items():
                texts = [ds.train_texts[i] for i in idx]
                y = [ds.train_labels[i] for i in idx]
                common = {"n_train": len(idx), "test_rows": len(ds.test_texts)}
                for how, Xt in (("END", Xe), ("WINDOWS", Xw)):
                    with Timer() as t:
                        clf = FewShotClassifier().fit(X(texts, how), y)
                    rows.append(_row(f"instant/{how}", model, precision, ds, n, seed, clf.classes_, clf.predict_proba(Xt),
                                     t.seconds, **common))
                    if how == "WINDOWS":  # the same head, the windows' probabilities averaged (token-weighted)
                        proba = np.stack([
                            np.average(clf.predict_proba(windows[q]), axis=0, weights=tokens[q]) if q in windows
                            else clf.predict_proba(end[q][None])[0] for q in ds.test_texts])
                        rows.append(_row("instant/WINDOWS-proba", model, precision, ds, n, seed, clf.classes_, proba,
                                         t.seconds, **common))
                Xtr = np.concatenate([windows[q] if q in windows else end[q][None] for q in texts])
                ytr = [label for q, label in zip(texts, y) for _ in range(len(windows[q]) if q in windows else 1)]
                with Timer() as t:
                    clf = FewShotClassifier().fit(Xtr, ytr)
                rows.append(_row("instant/WINDOWS-train", model, precision, ds, n, seed, clf.classes_,
                                 clf.predict_proba(Xw), t.seconds, **common, n_train_windows=len(ytr)))
            _checkpoint({"rows": rows, "speed": speed})
    return {"rows": rows, "speed": speed, "precision": precision, "load_average_start": load_start,
            "load_average_end": [round(x, 2) for x in os.getloadavg()], "seeds": seeds,
            "test_cap": cfg.get("long_test_cap", cfg["test_cap"])}


# ----------------------------------------------------------------------------------------------
# HTTP: bench/http_load.py (4 clients, 20 s on 127.0.0.1)


@section("long_tuned")
def long_tuned(cfg: dict) -> dict:
    """The product's tuning on the long sets with examples and inputs read cut (END) or whole (WINDOWS), the
    untuned rows read the same two ways, and (``long_tuned_every_window``) tuning on every window; every model,
    set, N and seed of the long-texts section (``bench.tuned_eval.long_tuned_rows``)."""
    import torch

    from .tuned_eval import long_tuned_rows

    load_start = [round(x, 2) for x in os.getloadavg()]
    test_cap = min(cfg["trained_long_test_cap"], cfg.get("long_test_cap", cfg["test_cap"]))  # each tuned model reads them
    rows: list[dict] = []
    for model in cfg.get("long_models", ["small"]):
        for name in cfg["long_datasets"]:
            ds = load_single_label(cfg["data"], name, test_cap)
            long_tuned_rows(model, ds, cfg.get("long_seeds", cfg["seeds"]), cfg.get("long_ns", cfg["ns"]),
                            steps=cfg.get("trained_steps"), every_window=cfg.get("long_tuned_every_window", True),
                            on_row=lambda r: (rows.append(r), _checkpoint({"rows": rows})))
    return {"rows": rows, "torch_threads": torch.get_num_threads(), "load_average_start": load_start,
            "load_average_end": [round(x, 2) for x in os.getloadavg()], "test_cap": test_cap}


@section("http")
def http(cfg: dict) -> dict:
    script = ROOT / "bench" / "http_load.py"
    if not script.is_file():
        return {"status": "not run: bench/http_load.py is missing"}
    def run(env: dict[str, str] | None = None, clients: int = cfg["http_clients"], extra: tuple = ()) -> dict:
        args = ["-m", "bench.http_load", "--clients", str(clients), "--seconds", str(cfg["http_seconds"]), *extra]
        loads = [_load()]
        proc = run_python(args, timeout=cfg["http_seconds"] + 300, env=env)
        if proc.returncode != 0:
            return {"status": f"failed: {(proc.stderr or proc.stdout)[-600:]}"}
        result = json.loads(proc.stdout[proc.stdout.index("{"):])
        result["load_seconds"] = result.pop("seconds")  # "seconds" is the whole section's time
        result["load"] = loads + [_load()]
        return result

    result = run()
    if "status" not in result:  # the same load with glibc's default arenas (8 per core), for the allocator's share
        uncapped = run({"MALLOC_ARENA_MAX": str(8 * (os.cpu_count() or 1))})
        result["default_arenas"] = {k: uncapped.get(k) for k in ("server_rss_mb", "requests_per_s", "latency_ms",
                                                                  "load", "status") if k in uncapped}
        # issue #28: a lone client against eight, each request with 2 new texts (nothing cached): requests that
        # arrive together are encoded in one pass (Encoder.embed), which must not slow the lone one
        result["concurrency"] = [{k: r.get(k) for k in ("clients", "requests_per_s", "latency_ms", "errors", "load",
                                                        "status") if k in r}
                                 for r in (run(clients=c, extra=("--vary-inputs",)) for c in (1, 8))]
    return result


def main(argv: list[str]) -> int:
    global _PARTIAL
    name, config_path, out_path = argv
    cfg = json.loads(Path(config_path).read_text())
    _PARTIAL = Path(out_path + ".partial")
    started = time.perf_counter()
    try:
        result = SECTIONS[name](cfg)
        result.setdefault("status", "ok")
    except Exception as exc:  # noqa: BLE001 - one failing section is reported, the others still run
        result = {"status": f"failed: {type(exc).__name__}: {exc}", "traceback": traceback.format_exc()[-3000:]}
    result["seconds"] = round(time.perf_counter() - started, 1)
    result["peak_rss_mb"] = peak_rss_mb()
    write_json(out_path, result)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
