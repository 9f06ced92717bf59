"""Evaluate and bulk: the numbers for issue 8's closing note.

    python bench/bulk_study.py [--data /work/shared/data/emotion/train.csv] [--sizes 10000 100000]

- time to ``evaluate`` 50 and 200 examples (stratified samples of the emotion training set), small
  and large model, model already loaded (the load is reported apart);
- bulk throughput on 10,000 rows with the small model;
- peak RSS (VmHWM) of a fresh process per file size (10,000 vs 100,000 rows), so the sizes do not
  share a high-water mark.

Rows for the bulk files are the emotion texts cycled with a row number appended, so every row is
a distinct text (no embedding-cache hits) and the file grows as a real one would; ``--distinct N``
cycles N texts instead (cache hits after the first N rows), for a quick memory comparison. Each part runs
in its own subprocess; the parent prints one JSON document.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DATA = Path("/work/shared/data/emotion/train.csv")
N_EXAMPLES_BULK = 8  # few-shot examples per label for the bulk jobs


def vm_hwm_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def read_rows(path: Path) -> list[tuple[str, str]]:
    with path.open(encoding="utf-8", newline="") as f:
        return [(r["text"], r["label"]) for r in csv.DictReader(f)]


def sample(rows: list[tuple[str, str]], n: int, seed: int) -> list[tuple[str, str]]:
    """About ``n`` examples, the same share of every label (at least 2 each)."""
    import random

    by_label: dict[str, list[tuple[str, str]]] = {}
    for row in rows:
        by_label.setdefault(row[1], []).append(row)
    rng = random.Random(seed)
    per = max(2, n // len(by_label))
    out = [ex for label in sorted(by_label) for ex in rng.sample(by_label[label], per)]
    rest = [r for r in rows if r not in out]
    out += rng.sample(rest, n - len(out)) if n > len(out) else []
    return out[:n]


def part_evaluate(data: Path, model: str) -> dict:
    from playground.embeddings import get_encoder
    from playground.evaluate import evaluate

    rows = read_rows(data)
    t0 = time.perf_counter()
    get_encoder(model).embed(["warm up"])
    load = time.perf_counter() - t0
    out = {"model": model, "load_seconds": round(load, 2), "runs": []}
    for n, seed in ((50, 1), (200, 2)):
        examples = sample(rows, n, seed)
        t0 = time.perf_counter()
        report = evaluate(examples, model)
        out["runs"].append({"examples": n, "seconds": round(time.perf_counter() - t0, 2), "method": report.method,
                            "accuracy": round(report.accuracy, 3), "macro_f1": round(report.macro_f1, 3),
                            "n_wrong": report.n_wrong, "near_duplicates": len(report.near_duplicates),
                            "learning_curve": [(p.per_label, round(p.accuracy, 3)) for p in report.learning_curve]})
    return out


def part_bulk(data: Path, n_rows: int, distinct: int) -> dict:
    from playground.bulk import classify_file
    from playground.embeddings import get_encoder

    rows = read_rows(data)
    examples = sample(rows, N_EXAMPLES_BULK * 6, 3)
    get_encoder("small").embed(["warm up"])
    rss_loaded = vm_hwm_mb()
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "texts.csv"
        with src.open("w", encoding="utf-8", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["id", "text", "gold"])
            for i in range(n_rows):
                text, label = rows[i % len(rows)]
                writer.writerow([i, f"{text} #{i % distinct}", label])
        size_mb = src.stat().st_size / 1e6
        t0 = time.perf_counter()
        result = classify_file(src, Path(tmp) / "out.csv", examples=examples, model="small")
        seconds = time.perf_counter() - t0
        out_mb = (Path(tmp) / "out.csv").stat().st_size / 1e6
    return {"rows": n_rows, "distinct_texts": min(distinct, n_rows), "input_mb": round(size_mb, 1),
            "output_mb": round(out_mb, 1),
            "seconds": round(seconds, 1), "rows_per_second": round(n_rows / seconds, 1), "errors": result.errors,
            "peak_rss_mb_after_model_load": round(rss_loaded, 1), "peak_rss_mb": round(vm_hwm_mb(), 1)}


def run_child(*args: str) -> dict:
    done = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--sizes", type=int, nargs="*", default=[10_000, 100_000])
    parser.add_argument("--models", nargs="*", default=["small", "large"])
    parser.add_argument("--distinct", type=int, default=10**9,
                        help="distinct texts in a bulk file (fewer = embedding-cache hits, a faster memory run)")
    parser.add_argument("--part", choices=["evaluate", "bulk"])
    parser.add_argument("--arg")
    args = parser.parse_args()
    if args.part == "evaluate":
        print(json.dumps(part_evaluate(args.data, args.arg)))
        return
    if args.part == "bulk":
        print(json.dumps(part_bulk(args.data, int(args.arg), args.distinct)))
        return
    results = {"cpu_count": os.cpu_count(), "evaluate": [], "bulk": []}
    for model in args.models:
        results["evaluate"].append(run_child("--data", str(args.data), "--part", "evaluate", "--arg", model))
        print(json.dumps(results["evaluate"][-1]), file=sys.stderr)
    for n in args.sizes:
        results["bulk"].append(run_child("--data", str(args.data), "--part", "bulk", "--arg", str(n),
                                         "--distinct", str(args.distinct)))
        print(json.dumps(results["bulk"][-1]), file=sys.stderr)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
