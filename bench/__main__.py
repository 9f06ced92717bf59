"""Run the benchmark suite and write docs/BENCHMARKS.md and bench/results.json.

    python -m bench                           # full (about 30 min on 2 cores), data from ../shared/data
    python -m bench --quick                   # about 3 min: 1 seed, small model, test capped at 500
    python -m bench --skip accuracy,latency,coldstart,throughput,http,training_time,multilabel,active \
        --models large --datasets cr,sst2 --json /tmp/large.json --out /tmp/large.md   # tuned + setfit rows, a shard
    python -m bench --merge /tmp/large.json /tmp/small.json --why "..."  # shards into bench/results.json + the report
    python -m bench --data DIR --out FILE.md --json FILE.json --skip http,setfit
    python -m bench --skip accuracy,latency,coldstart,throughput,http,trained,training_time,multilabel,setfit,explain,long,long_tuned \
        --out /tmp/B.md --json bench/results-active.json   # only the label-next simulation (docs/LABEL_NEXT.md)
    python -m bench --skip accuracy,latency,coldstart,throughput,http,trained,training_time,multilabel,setfit,active,long,long_tuned \
        --json /tmp/explain.json --out /tmp/explain.md     # only the explanations' deletion test and cost
    python -m bench --skip accuracy,latency,coldstart,throughput,http,trained,training_time,multilabel,setfit,active,explain,long_tuned \
        --json /tmp/long.json --out /tmp/long.md           # only long texts: END vs WINDOWS (issue #27)
    python -m bench --skip accuracy,latency,coldstart,throughput,http,trained,training_time,multilabel,setfit,active,explain,long \
        --long-models small --json /tmp/lt.json --out /tmp/lt.md  # only tuning on long texts: END vs WINDOWS (about an hour)

Each section runs in its own Python process (its peak RSS is then its own) and is saved to the
JSON as soon as it ends, so a failed or slow section costs only itself.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from .common import ROOT, Config, machine, run_python, write_json
from .report import write_report

SECTION_ORDER = ("accuracy", "latency", "coldstart", "throughput", "http", "trained", "guard", "training_time",
                 "multilabel", "setfit", "active", "explain", "long", "long_tuned")
"""Cheap sections first, model training next: a run cut short still has the serving numbers. The label-next
simulation (10-20 min on 2 shared cores) and the explanations' deletion test (issue #26, 3-5 min) come last,
so they never push an older section out of the budget."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    p.add_argument("--data", default=str(ROOT.parent / "shared" / "data"),
                   help="folder of <set>/train.csv,test.csv (and goemotions/*.jsonl); default ../shared/data")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="about 3 minutes: 1 seed, small model only, smaller caps")
    mode.add_argument("--extended", action="store_true",
                      help="the full plan plus every large training and setfit on three sets (about an hour; no budget)")
    p.add_argument("--out", default=str(ROOT / "docs" / "BENCHMARKS.md"), help="the Markdown report")
    p.add_argument("--json", default=str(ROOT / "bench" / "results.json"), help="machine-readable results")
    p.add_argument("--skip", default="", help=f"comma-separated sections to leave out: {', '.join(SECTION_ORDER)}")
    p.add_argument("--report", action="store_true",
                   help="run nothing: write --out again from --json (the summary the docs and checks read included)")
    p.add_argument("--merge", nargs="+", metavar="PART",
                   help="run nothing: put the sections of these results files (runs of some sections, e.g. shards "
                        "over --datasets) into --json, rows of one section from several parts joined, then --report")
    p.add_argument("--why", default="", help="with --merge: a few words on why the sections were run again")
    p.add_argument("--datasets", default="", help="comma-separated single-label sets to use (default: every set found)")
    p.add_argument("--seeds", type=int, default=None, help="number of seeds (default 5, quick 1)")
    p.add_argument("--tuning", default="", help="JSON of tuning settings for the trained rows, over the recipe's "
                                                "(a study arm, e.g. '{\"learning_rate\": 2e-4}'); recorded in the results")
    p.add_argument("--alphas", default="", help="comma-separated WiSE-FT mixes scored beside the recipe's (default 0.5,0.75,1)")
    p.add_argument("--trained-seeds", default="", help="comma-separated seeds of the trained rows (default 0-4)")
    p.add_argument("--setfit-seeds", default="", help="comma-separated seeds of the setfit rows on every set and model "
                                                      "(default: small 0-4, large 0-2; costly sets small 0-1, large none)")
    p.add_argument("--models", default="", help="comma-separated base models for the trained and setfit sections "
                                                "(default: small,large)")
    p.add_argument("--long-models", default="", help="comma-separated base models of the long-texts section "
                                                     "(default: small)")
    p.add_argument("--long-seeds", default="", help="comma-separated seeds of the long-texts section (default 0-4)")
    p.add_argument("--long-ns", default="", help="comma-separated N per label of the long-texts section (default 8,64)")
    p.add_argument("--long-tuned-product-only", action="store_true",
                   help="long_tuned: only the product's END and WINDOWS (one tuning a sample), not every-window too")
    p.add_argument("--long-test-cap", type=int, default=None, help="test rows per long set (default 300)")
    p.add_argument("--latency-calls", type=int, default=None, help="calls per latency figure (default 50)")
    p.add_argument("--budget-minutes", type=float, default=None,
                   help="stop starting sections after this long (default 30 for full, none for --quick)")
    p.add_argument("--section-timeout", type=float, default=None, help="seconds per section (default 1800, quick 400)")
    return p.parse_args(argv)


ROW_KEYS = ("method", "model", "precision", "dataset", "n", "seed", "alpha")


def merge_results(target: Path, parts: list[Path], why: str) -> None:
    """Put the sections of ``parts`` into ``target``: a section run in several parts (shards of the data sets)
    gets all their rows (a row of the same method, model, set, N, seed and mix once); each merge is noted in
    ``reruns`` with each contributing part's date, commit and load (``runs``), so the report says which rows came
    from when. A part's section that was not run or failed is left out: the record keeps the section it had."""
    results = json.loads(target.read_text(encoding="utf-8")) if target.is_file() else None
    merged: dict[str, dict] = {}
    runs: dict[str, list[dict]] = {}
    for part in parts:
        data = json.loads(part.read_text(encoding="utf-8"))
        ran = data.get("machine", {})
        run = {"part": str(part), "date": ran.get("date"), "git_commit": ran.get("git_commit"),
               "load_average_at_start": ran.get("load_average_at_start")}
        if results is None:  # a new record: the first part's machine and plan head it
            results = {"mode": data.get("mode", "merged"), "machine": data.get("machine", {}),
                       "config": data.get("config", {}), "sections": {}}
        for name, section in data.get("sections", {}).items():
            if str(section.get("status", "ok")).startswith(("not run", "failed")):
                continue  # a section that did not run (or was killed) keeps the record's own
            runs.setdefault(name, []).append(run)
            if name not in merged:
                merged[name] = {**section, "rows": list(section.get("rows", []))}
                merged[name]["config"] = data.get("config", {})
                merged[name]["machine"] = data.get("machine", {})
                continue
            seen = {tuple(r.get(k) for k in ROW_KEYS) for r in merged[name]["rows"]}
            merged[name]["rows"] += [r for r in section.get("rows", []) if tuple(r.get(k) for k in ROW_KEYS) not in seen]
    assert results is not None
    for name, section in merged.items():
        results["sections"][name] = section
        newest = max(runs[name], key=lambda run: str(run["date"] or ""))
        results.setdefault("reruns", []).append({
            "date": newest["date"], "sections": [name], "why": why,
            "git_commit": newest["git_commit"], "parts": [str(p) for p in parts],
            "load_average_at_start": newest["load_average_at_start"],
            "cpu_flags": section["machine"].get("cpu_flags"), "runs": runs[name]})
    write_json(target, results)


def rows_so_far(out_path: Path, why: str) -> dict:
    """A section that ended without its result (timed out, or killed: exit -9 is the kernel's out-of-memory
    killer): the rows it checkpointed so far (``sections._checkpoint``), with why it stopped; else just why."""
    partial = Path(str(out_path) + ".partial")
    if not partial.is_file():
        return {"status": f"failed: {why}"}
    return {**json.loads(partial.read_text()), "status": f"partial: the section stopped ({why}); rows so far"}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    data = Path(args.data)
    if not data.is_dir():
        print(f"data folder not found: {data}; pass --data DIR (folders of train.csv / test.csv)", file=sys.stderr)
        return 2
    skip = [s.strip() for s in args.skip.split(",") if s.strip()]
    unknown = sorted(set(skip) - set(SECTION_ORDER))
    if unknown:
        print(f"--skip names unknown sections {unknown}; choose from {', '.join(SECTION_ORDER)}", file=sys.stderr)
        return 2
    if args.merge:
        merge_results(Path(args.json), [Path(p) for p in args.merge], args.why)
    if args.merge or args.report:
        results = json.loads(Path(args.json).read_text(encoding="utf-8"))
        write_report(results, Path(args.out))
        write_json(args.json, results)
        print(f"[bench] wrote {args.out} and {args.json} from {args.json}", file=sys.stderr)
        return 0
    cfg = Config.make(str(data), quick=args.quick, skip=skip, latency_calls=args.latency_calls, extended=args.extended)
    if args.datasets:
        wanted = [d.strip() for d in args.datasets.split(",") if d.strip()]
        missing = sorted(set(wanted) - set(cfg.datasets))
        if missing:
            print(f"--datasets names sets not in {data}: {missing}; found {cfg.datasets}", file=sys.stderr)
            return 2
        for name in ("datasets", "large_datasets", "precision_datasets", "trained_datasets",
                     "setfit_datasets", "throughput_datasets", "long_datasets"):
            kept = [d for d in getattr(cfg, name) if d in wanted]
            setattr(cfg, name, kept or ([wanted[0]] if name != "throughput_datasets" else wanted[:2]))
        if cfg.training_dataset not in wanted:
            cfg.training_dataset = wanted[-1]
    if args.seeds:
        cfg.seeds = list(range(args.seeds))
    if args.long_models:
        cfg.long_models = [m.strip() for m in args.long_models.split(",") if m.strip()]
    if args.long_seeds:
        cfg.long_seeds = [int(x) for x in args.long_seeds.split(",")]
    if args.long_ns:
        cfg.long_ns = [int(x) for x in args.long_ns.split(",")]
    if args.long_tuned_product_only:
        cfg.long_tuned_every_window = False
    if args.long_test_cap:
        cfg.long_test_cap = args.long_test_cap
    if args.alphas:
        cfg.trained_alphas = [float(x) for x in args.alphas.split(",")]
    if args.trained_seeds:
        cfg.trained_seeds = [int(x) for x in args.trained_seeds.split(",")]
    if args.setfit_seeds:
        seeds = [int(x) for x in args.setfit_seeds.split(",")]
        cfg.setfit_seeds = {m: seeds for m in ("small", "large")}
        cfg.setfit_few_seeds = {m: seeds for m in ("small", "large")}
    if args.tuning:
        cfg.trained_tuning = json.loads(args.tuning)
    if args.models:
        models = [m.strip() for m in args.models.split(",") if m.strip()]
        cfg.trained_models = [m for m in cfg.trained_models if m in models]
        cfg.setfit_models = [m for m in cfg.setfit_models if m in models]
    if not cfg.datasets:
        print(f"no <set>/train.csv + test.csv folders in {data}", file=sys.stderr)
        return 2
    timeout = args.section_timeout or (400.0 if args.quick else 1800.0)
    budget = (args.budget_minutes if args.budget_minutes is not None
              else (None if args.quick or args.extended else 30.0))
    budget = budget * 60 if budget else None
    results = {"mode": cfg.mode, "machine": machine(), "config": cfg.to_dict(),
               "sections": {}}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        config_path = Path(tmp) / "config.json"
        config_path.write_text(json.dumps(cfg.to_dict()))
        for name in SECTION_ORDER:
            if name in cfg.skip:
                why = "skipped (--skip)" if name in skip else "full mode only (--quick trains one model, in training_time)"
                results["sections"][name] = {"status": f"not run: {why}"}
                continue
            left = budget - (time.perf_counter() - started) if budget else None
            if left is not None and left < 30:
                results["sections"][name] = {"status": f"not run: over the {budget / 60:.0f}-minute budget"}
                continue
            section_timeout = min(timeout, left) if left is not None else timeout
            print(f"[bench] {name} ...", file=sys.stderr, flush=True)
            out_path = Path(tmp) / f"{name}.json"
            t0 = time.perf_counter()
            try:
                proc = run_python(["-m", "bench.sections", name, str(config_path), str(out_path)],
                                  timeout=section_timeout)
                if out_path.is_file():
                    result = json.loads(out_path.read_text())
                else:
                    result = rows_so_far(out_path, f"exit {proc.returncode}: {proc.stderr[-800:]}")
            except Exception as exc:  # noqa: BLE001 - TimeoutExpired and friends: record, go on
                result = rows_so_far(out_path, f"{type(exc).__name__}: {str(exc)[:300]}")
            result.setdefault("seconds", round(time.perf_counter() - t0, 1))
            results["sections"][name] = result
            print(f"[bench] {name}: {result.get('status')} in {result['seconds']} s", file=sys.stderr, flush=True)
            results["wall_seconds"] = round(time.perf_counter() - started, 1)
            write_json(args.json, results)
            write_report(results, Path(args.out))  # after every section: a stopped run still leaves a report
    results["wall_seconds"] = round(time.perf_counter() - started, 1)
    write_report(results, Path(args.out))
    write_json(args.json, results)
    print(f"[bench] wrote {args.out} and {args.json} in {results['wall_seconds']} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
