"""Spark throughput: 20,000 rows at local[1] and local[2] against the single-process bulk path, in one run.

    python -m bench.spark_bench --data ../shared/data        # writes bench/spark_results.json

The texts are AG News's 7,000 rows, then splices of two articles (first half of one, second half
of another) until there are ``--rows`` distinct ones: distinct, so no run is helped by the
encoder's per-text cache. The few-shot examples are 8 per label from the train split, none of
them among the texts. Each Spark run gets a fresh
SparkSession (fresh Python workers, so each pays its own model load, as a real job does) and
reads the same Parquet file in ``--partitions`` tasks. Every figure is measured in this one
run, with the load average beside it: the machine is shared.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "spark_results.json"
MINILM = {"layers": 6, "hidden": 384, "ffn": 1536}


def load_texts(data: Path, rows: int, per_label: int) -> tuple[list[str], list[tuple[str, str]]]:
    """AG News as is (7,000 rows less the examples), then splices to reach ``rows`` distinct texts:
    the first half of one article's words + the second half of another's (same length profile)."""
    folder = data / "ag_news"
    train = pd.read_csv(folder / "train.csv")
    test = pd.read_csv(folder / "test.csv")
    examples: list[tuple[str, str]] = []
    for label, group in train.groupby("label", sort=True):
        examples += [(t, str(label)) for t in group["text"].head(per_label)]
    taken = {t for t, _ in examples}
    originals = list(dict.fromkeys(t for t in pd.concat([test["text"], train["text"]])
                                   if isinstance(t, str) and t.strip() and t not in taken))
    texts, seen = originals[:rows], set(originals[:rows])
    n, step = len(originals), 1
    while len(texts) < rows:
        for i in range(n):
            a, b = originals[i].split(), originals[(i + step * 7919) % n].split()
            text = " ".join(a[: len(a) // 2] + b[len(b) // 2:])
            if text not in seen and text not in taken:
                seen.add(text)
                texts.append(text)
                if len(texts) == rows:
                    break
        step += 1
    return texts, examples


def flops_per_token() -> float:
    """Dense FLOPs per token of MiniLM-L6 (2 per multiply-add): Q, K, V, output and the two FFN layers."""
    h, f, n = MINILM["hidden"], MINILM["ffn"], MINILM["layers"]
    return 2.0 * n * (4 * h * h + 2 * h * f)


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def run_bulk(texts, examples, work: Path, precision: str) -> dict:
    from playground.bulk import classify_file
    from playground.embeddings import get_encoder
    from playground.engine import clear_fitted

    source = work / "texts.csv"
    with source.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "text"])
        writer.writerows(enumerate(texts))
    clear_fitted()
    get_encoder("small", precision=precision).clear_cache()
    load_before = load()
    started = time.perf_counter()
    result = classify_file(source, work / "bulk.csv", examples=examples, model="small", precision=precision)
    seconds = time.perf_counter() - started
    import torch

    out = pd.read_csv(work / "bulk.csv", keep_default_na=False)
    return {"seconds": round(seconds, 2), "rows_per_s": round(len(texts) / seconds, 1), "errors": result.errors,
            "torch_threads": torch.get_num_threads(), "load_before": load_before, "load_after": load(),
            "predictions": dict(zip(out["id"].astype(int), out["prediction"]))}


def run_spark(master: str, examples, parquet: Path, work: Path, precision: str, partitions: int) -> dict:
    from playground import spark as pspark

    load_before = load()
    started = time.perf_counter()
    session = pspark.session(master, ui=False)
    session.sparkContext.setLogLevel("ERROR")
    startup = time.perf_counter() - started
    try:
        job_started = time.perf_counter()
        df = session.read.parquet(str(parquet)).repartition(partitions)
        out = pspark.classify_dataframe(df, "text", examples=examples, model="small", precision=precision,
                                        diagnostics=True)
        target = work / f"spark-{master.replace('[', '').replace(']', '').replace(',', '-')}.parquet"
        out.write.parquet(str(target))
        seconds = time.perf_counter() - job_started
    finally:
        session.stop()
    written = pd.read_parquet(target)
    workers = written.groupby("_worker_pid").agg(loads=("_encoder_loads", "max"), rows=("id", "size"),
                                                 rss_mb=("_worker_rss_mb", "max"))
    return {"master": master, "partitions": partitions, "session_start_s": round(startup, 2),
            "seconds": round(seconds, 2), "rows_per_s": round(len(written) / seconds, 1), "rows": len(written),
            "distinct_ids": int(written["id"].nunique()), "errors": int(written["error"].notna().sum()),
            "python_workers": len(workers), "encoder_loads_per_worker": sorted(workers["loads"].astype(int).tolist()),
            "rows_per_worker": sorted(workers["rows"].astype(int).tolist()),
            "worker_peak_rss_mb": round(float(workers["rss_mb"].max()), 1),
            "load_before": load_before, "load_after": load(),
            "_out": written[["id", "prediction", "confidences"]]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.spark_bench", description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    from playground.embeddings import get_encoder, resolve_precision

    precision = resolve_precision(args.precision)
    texts, examples = load_texts(args.data, args.rows, per_label=8)
    tokenizer = get_encoder("small", precision=precision).model.tokenizer
    tokens = [min(len(ids) + 2, 256) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]
    mean_tokens = sum(tokens) / len(tokens)
    mean_bytes = sum(len(t.encode("utf-8")) for t in texts) / len(texts)

    work = Path(tempfile.mkdtemp(prefix="spark-bench-"))
    try:
        parquet = work / "texts.parquet"
        pd.DataFrame({"id": range(len(texts)), "text": texts}).to_parquet(parquet)
        print(f"{len(texts):,} texts, {mean_tokens:.1f} tokens on average, precision {precision}; load {load()}",
              file=sys.stderr)
        bulk = run_bulk(texts, examples, work, precision)
        print(f"bulk: {bulk['rows_per_s']} rows/s", file=sys.stderr)
        runs = {}
        for master in ("local[1]", "local[2]"):
            runs[master] = run_spark(master, examples, parquet, work, precision, args.partitions)
            print(f"{master}: {runs[master]['rows_per_s']} rows/s", file=sys.stderr)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    spark2 = runs["local[2]"].pop("_out")
    runs["local[1]"].pop("_out")
    bulk_pred = bulk.pop("predictions")
    agree = sum(bulk_pred[int(i)] == p for i, p in zip(spark2["id"], spark2["prediction"])) / len(spark2)
    fpt = flops_per_token()
    per_core = runs["local[1]"]["rows_per_s"]
    gflops_per_text = fpt * mean_tokens / 1e9
    cluster = {"executors": 10, "cores_per_executor": 16, "memory_per_executor_gb": 16}
    cores = cluster["executors"] * cluster["cores_per_executor"]
    rows_100m = 100_000_000
    estimate_s = rows_100m / (per_core * cores)
    results = {
        "rows": len(texts), "precision": precision, "partitions": args.partitions,
        "mean_tokens": round(mean_tokens, 1), "mean_text_bytes": round(mean_bytes, 1),
        "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
        "bulk": bulk, "spark": runs,
        "ratios": {
            "local2_over_local1": round(runs["local[2]"]["rows_per_s"] / runs["local[1]"]["rows_per_s"], 2),
            "local1_over_bulk": round(runs["local[1]"]["rows_per_s"] / bulk["rows_per_s"], 2),
            "local2_over_bulk": round(runs["local[2]"]["rows_per_s"] / bulk["rows_per_s"], 2),
        },
        "agreement_local2_vs_bulk": round(agree, 5),
        "encoder_flops": {"per_token": fpt, "per_text_gflops": round(gflops_per_text, 3),
                          "achieved_gflops_per_core": round(per_core * gflops_per_text, 1)},
        "estimate_100m": {
            "cluster": cluster, "cores": cores, "rows_per_s_per_core": per_core,
            "hours": round(estimate_s / 3600, 2),
            "input_gb": round(rows_100m * mean_bytes / 1e9, 1),
            "read_mb_per_s": round(rows_100m * mean_bytes / estimate_s / 1e6, 1),
        },
        "measured_at": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps({k: results[k] for k in ("ratios", "agreement_local2_vs_bulk", "estimate_100m")}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
