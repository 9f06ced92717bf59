"""Encoder precision study (issue 12): speed, accuracy and cold start for fp32 / bf16 / int8.

One process, one run, every row on the same texts, splits and seeds::

    python -m bench.precision_study --data ../shared/data            # writes bench/precision_results.json

Parts (``--parts``, comma-separated, default all):

- ``throughput``: texts/s of ``Encoder.embed`` (cache cleared) per model and precision on short
  (SST-2) and long (AG News) test texts, plus raw ``SentenceTransformer.encode`` fp32 / bf16.
- ``overhead``: the engine's ``classify`` of 2,000 texts against raw ``encode`` at the same
  precision (what our code adds: cache, sorting, truncation, the head).
- ``accuracy``: logistic regression on frozen embeddings (bench.common's sampling and scores,
  ``FewShotClassifier``) at N = 8 and 64 per label, same seeds and test split for every row.
  Calibration is off: temperature scaling never changes the argmax, so accuracy is the same
  and banking77's out-of-fold fits are skipped.
- ``coldstart``: a fresh process per model and precision: imports, model load, first seed
  result; int8 once with an empty cache (its one-time build) and once built.

The load average is recorded with every part: the machine is shared, so compare rows within
this file, not with other runs.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import ROOT, Timer, load_single_label, machine, sample_per_label, scores, write_json

PRECISIONS = ("fp32", "bf16", "int8")
ACCURACY_SETS = ("cr", "sst2", "banking77", "ag_news", "emotion")
RESULTS = ROOT / "bench" / "precision_results.json"


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _texts(data: str, name: str, n: int) -> list[str]:
    return load_single_label(data, name, n).test_texts[:n]


def throughput(args: argparse.Namespace) -> dict[str, Any]:
    import torch
    from sentence_transformers import SentenceTransformer

    from playground.embeddings import get_encoder, model_path

    rows = []
    for model in args.models:
        n = args.texts if model == "small" else args.texts_large
        sets = {"short (sst2)": _texts(args.data, "sst2", n), "long (ag_news)": _texts(args.data, "ag_news", n)}
        for raw_precision in args.raw:
            kwargs = {"dtype": torch.bfloat16} if raw_precision == "bf16" else {}
            raw = SentenceTransformer(str(model_path(model)), device="cpu", model_kwargs=kwargs, local_files_only=True)
            for label, texts in sets.items():
                raw.encode(texts[:32], batch_size=64, show_progress_bar=False)
                with Timer() as t, torch.inference_mode():
                    raw.encode(texts, batch_size=64, show_progress_bar=False)
                rows.append({"model": model, "texts": label, "n": len(texts), "path": f"raw encode {raw_precision}",
                             "texts_per_s": round(len(texts) / t.seconds, 1), "load": _load()})
                print(rows[-1], file=sys.stderr, flush=True)
            del raw
        for precision in PRECISIONS:
            encoder = get_encoder(model, precision=precision)
            for label, texts in sets.items():
                encoder.embed(texts[:32])
                encoder.clear_cache()
                with Timer() as t:
                    encoder.embed(texts, batch_size=64)
                encoder.clear_cache()
                rows.append({"model": model, "texts": label, "n": len(texts), "path": f"Encoder.embed {precision}",
                             "precision": precision, "texts_per_s": round(len(texts) / t.seconds, 1), "load": _load()})
                print(rows[-1], file=sys.stderr, flush=True)
    return {"rows": rows, "torch_threads": torch.get_num_threads()}


def overhead(args: argparse.Namespace) -> dict[str, Any]:
    """Engine classify (few-shot fit on 16 examples + embed + head) vs raw encode, 2,000 SST-2 texts."""
    import torch
    from sentence_transformers import SentenceTransformer

    from playground import engine
    from playground.embeddings import get_encoder, model_path

    ds = load_single_label(args.data, "sst2", 10**9)
    texts = ds.test_texts[: args.overhead_texts]
    idx = sample_per_label(ds.train_labels, 8, 0)
    examples = [(ds.train_texts[i], ds.train_labels[i]) for i in idx]
    rows = []
    for precision in args.overhead_precisions:
        kwargs = {"dtype": torch.bfloat16} if precision == "bf16" else {}
        raw = SentenceTransformer(str(model_path("small")), device="cpu", model_kwargs=kwargs, local_files_only=True)
        encoder = get_encoder("small", precision=precision)
        raw.encode(texts[:64], batch_size=64, show_progress_bar=False)
        encoder.embed(texts[:64])
        times: dict[str, list[float]] = {"raw": [], "engine": []}
        for _ in range(args.repeats):  # interleaved, so a burst of load on the box hits both
            with Timer() as t, torch.inference_mode():
                raw.encode(texts, batch_size=64, show_progress_bar=False)
            times["raw"].append(t.seconds)
            encoder.clear_cache()
            engine.clear_fitted()
            with Timer() as t:
                engine.classify(texts, examples, "small", precision=precision, max_inputs=None)
            times["engine"].append(t.seconds)
        encoder.clear_cache()
        raw_s, engine_s = min(times["raw"]), min(times["engine"])
        rows.append({"precision": precision, "texts": len(texts), "raw_s": round(raw_s, 2), "engine_s": round(engine_s, 2),
                     "raw_per_s": round(len(texts) / raw_s, 1), "engine_per_s": round(len(texts) / engine_s, 1),
                     "overhead_pct": round(100 * (engine_s / raw_s - 1), 1), "all_s": times, "load": _load()})
        print(rows[-1], file=sys.stderr, flush=True)
        del raw
    return {"rows": rows}


def accuracy(args: argparse.Namespace, checkpoint) -> dict[str, Any]:
    from playground.classifier import FewShotClassifier
    from playground.embeddings import get_encoder

    rows: list[dict] = []
    plans = [("small", s, args.test_cap) for s in ACCURACY_SETS]
    plans += [("large", s, args.test_cap_large) for s in args.large_sets]
    for model, name, cap in plans:
        ds = load_single_label(args.data, name, cap)
        ns = [n for n in args.ns if n <= 8 or name not in args.small_n_only]
        samples = {(n, seed): sample_per_label(ds.train_labels, n, seed) for n in ns for seed in args.seeds}
        train_idx = sorted({int(i) for idx in samples.values() for i in idx})
        unique = sorted(set(ds.test_texts) | {ds.train_texts[i] for i in train_idx})
        for precision in PRECISIONS:
            encoder = get_encoder(model, precision=precision)
            encoder.clear_cache()
            with Timer() as t:
                table = dict(zip(unique, encoder.embed(unique)))
            encoder.clear_cache()
            X_test = np.stack([table[x] for x in ds.test_texts])
            for (n, seed), idx in samples.items():
                X = np.stack([table[ds.train_texts[i]] for i in idx])
                y = [ds.train_labels[i] for i in idx]
                clf = FewShotClassifier(calibration="none").fit(X, y)
                s = scores(ds.test_labels, clf.classes_, clf.predict_proba(X_test))
                rows.append({"model": model, "dataset": name, "precision": precision, "n": n, "seed": seed,
                             "accuracy": round(s["accuracy"], 4), "macro_f1": round(s["macro_f1"], 4),
                             "test": len(ds.test_texts), "embed_s": round(t.seconds, 1)})
            print(f"{model} {name} {precision}: {len(unique)} texts in {t.seconds:.0f}s, load {_load()}",
                  file=sys.stderr, flush=True)
            checkpoint(rows)
    return {"rows": rows, "summary": _summarise(rows), "seeds": args.seeds, "ns": args.ns}


def _summarise(rows: list[dict]) -> dict[str, Any]:
    """Mean accuracy (points) per model / set / N / precision, and each precision's gap to fp32."""
    out: dict[str, Any] = {}
    keys = sorted({(r["model"], r["dataset"], r["n"]) for r in rows})
    for model, name, n in keys:
        means = {}
        for p in PRECISIONS:
            vals = [r["accuracy"] for r in rows if (r["model"], r["dataset"], r["n"], r["precision"]) == (model, name, n, p)]
            if vals:
                means[p] = round(100 * float(np.mean(vals)), 2)
        gaps = {p: round(means[p] - means["fp32"], 2) for p in means if p != "fp32" and "fp32" in means}
        out.setdefault(model, {}).setdefault(name, {})[str(n)] = {"accuracy": means, "minus_fp32": gaps}
    return out


COLD = r"""
import json, sys, time
t0 = time.perf_counter()
from playground.engine import classify
from playground.presets import load_preset
from playground.embeddings import get_encoder
t1 = time.perf_counter()
get_encoder({model!r}, precision={precision!r})
t2 = time.perf_counter()
seed = load_preset("review-sentiment")
r = classify(list(seed.inputs), list(seed.examples), {model!r}, precision={precision!r})
t3 = time.perf_counter()
print(json.dumps({{"import_s": round(t1 - t0, 2), "load_s": round(t2 - t1, 2), "first_result_s": round(t3 - t2, 2),
                  "predictions": [x.prediction for x in r], "torch_imported": "torch" in sys.modules}}))
"""


def coldstart(args: argparse.Namespace) -> dict[str, Any]:
    from playground.embeddings import MPNET_FOLDER, cache_dir, large_model_path

    rows = []
    with tempfile.TemporaryDirectory(prefix="precision-cold-") as tmp:
        large_model_path()  # unzip (if ever) outside the timings; linked into the empty cache below
        os.symlink(cache_dir() / MPNET_FOLDER, Path(tmp) / MPNET_FOLDER)
        plans = [(m, p, "") for m in args.models for p in ("fp32", "bf16")]
        plans += [(m, "int8", note) for m in args.models for note in ("first use: builds the int8 model", "built")]
        for model, precision, note in plans:
            env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
            if precision == "int8":
                env["CLASSIFY_CACHE_DIR"] = tmp
            started = time.perf_counter()
            proc = subprocess.run([sys.executable, "-W", "ignore", "-c", COLD.format(model=model, precision=precision)],
                                  env=env, capture_output=True, text=True, timeout=900)
            wall = time.perf_counter() - started
            row = {"model": model, "precision": precision, "note": note, "wall_s": round(wall, 2), "load": _load()}
            if proc.returncode == 0:
                row.update(json.loads(proc.stdout.strip().splitlines()[-1]))
            else:
                row["status"] = f"failed: {proc.stderr[-400:]}"
            rows.append(row)
            print(row, file=sys.stderr, flush=True)
    return {"rows": rows}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.precision_study", description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--out", default=str(RESULTS))
    parser.add_argument("--parts", default="throughput,overhead,accuracy,coldstart")
    parser.add_argument("--models", default="small,large")
    parser.add_argument("--texts", type=int, default=1000)
    parser.add_argument("--texts-large", type=int, default=1000)
    parser.add_argument("--raw", default="fp32,bf16", help="raw SentenceTransformer.encode rows to time")
    parser.add_argument("--overhead-texts", type=int, default=2000)
    parser.add_argument("--overhead-precisions", default="fp32")
    parser.add_argument("--small-n-only", default="", help="sets measured at N = 8 only (banking77: 4,900 texts at 64)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--test-cap", type=int, default=1000)
    parser.add_argument("--test-cap-large", type=int, default=500)
    parser.add_argument("--large-sets", default="cr,sst2,emotion")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--ns", default="8,64")
    args = parser.parse_args(argv)
    args.models = args.models.split(",")
    args.raw = [p for p in args.raw.split(",") if p]
    args.overhead_precisions = args.overhead_precisions.split(",")
    args.small_n_only = [s for s in args.small_n_only.split(",") if s]
    args.large_sets = [s for s in args.large_sets.split(",") if s] if "large" in args.models else []
    args.seeds = [int(s) for s in args.seeds.split(",")]
    args.ns = [int(n) for n in args.ns.split(",")]
    out = Path(args.out)
    results: dict[str, Any] = json.loads(out.read_text()) if out.is_file() else {}
    results.update({"machine": machine(), "config": {k: v for k, v in vars(args).items() if k != "out"},
                    "started": time.strftime("%Y-%m-%d %H:%M:%S"), "load_at_start": _load()})

    def save(part: str, value: Any) -> None:
        results[part] = value
        write_json(out, results)

    for part in args.parts.split(","):
        started, load_before = time.perf_counter(), _load()
        if part == "accuracy":
            value = accuracy(args, lambda rows: save(part, {"rows": rows, "status": "partial"}))
        else:
            value = {"throughput": throughput, "overhead": overhead, "coldstart": coldstart}[part](args)
        value.update({"seconds": round(time.perf_counter() - started, 1), "load_before": load_before, "load_after": _load(),
                      "config": results["config"], "started": results["started"]})
        save(part, value)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
