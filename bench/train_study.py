"""Custom-model study: training time, trained vs plain few-shot accuracy, multi-label micro-F1.

Run: python bench/train_study.py [--quick] > bench/train_study.json
Reads /work/shared/data (read-only); models go to a temp folder. One seed; tests capped at 1000
rows (goemotions: first 1000 train lines, 500 test lines). cr at 8 per class has 16 examples,
under the product's 40-example rule, so the study calls the training steps directly
(tune_body + head) rather than train(), with the test file as the validation data.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from playground.data import MultiLabelExample, read_multilabel_jsonl  # noqa: E402
from playground.embeddings import get_encoder  # noqa: E402
from playground.training import (  # noqa: E402
    TrainingData,
    TrainingSettings,
    embed_with,
    evaluate_head,
    fit_head,
    train,
    tune_body,
)
from playground.validation import Example  # noqa: E402

DATA = Path("/work/shared/data")


def read_csv(path: Path) -> list[Example]:
    with path.open(newline="", encoding="utf-8") as f:
        return [Example(r["text"].strip(), str(r["label"]).strip()) for r in csv.DictReader(f) if r["text"].strip()]


def per_class(examples: list[Example], k: int, seed: int = 0) -> list[Example]:
    groups: dict[str, list[Example]] = defaultdict(list)
    seen: set[str] = set()
    for ex in examples:
        if ex.text not in seen:
            seen.add(ex.text)
            groups[ex.label].append(ex)
    rng = random.Random(seed)
    return [ex for label in sorted(groups) for ex in rng.sample(groups[label], min(k, len(groups[label])))]


def dedupe(examples):
    seen, out = set(), []
    for ex in examples:
        if ex.text not in seen:
            seen.add(ex.text)
            out.append(ex)
    return out


def compare(train_ex, test_ex, base: str, settings: TrainingSettings, multi: bool = False) -> dict:
    data = TrainingData(train_ex, [f"examples[{i}]" for i in range(len(train_ex))], multi)
    test = TrainingData(test_ex, [f"test[{i}]" for i in range(len(test_ex))], multi)
    labels = data.labels
    started = time.monotonic()
    body = tune_body(data, base, settings)
    head = fit_head(data, embed_with(body, [e.text for e in train_ex]))
    seconds = time.monotonic() - started
    trained = evaluate_head(head, embed_with(body, [e.text for e in test_ex]), test, labels)
    enc = get_encoder(base)
    base_head = fit_head(data, enc.embed([e.text for e in train_ex]))
    baseline = evaluate_head(base_head, enc.embed([e.text for e in test_ex]), test, labels)
    keys = ["micro_f1", "macro_f1"] if multi else ["accuracy", "macro_f1"]
    return {"n_train": len(train_ex), "n_test": len(test_ex), "seconds": round(seconds, 1),
            "trained": {k: round(trained[k], 4) for k in keys}, "baseline": {k: round(baseline[k], 4) for k in keys}}


def timing(n: int, base: str, settings: TrainingSettings) -> dict:
    groups = defaultdict(list)  # round-robin over labels so every label has >= 5 examples
    for ex in dedupe(read_csv(DATA / "emotion" / "train.csv")):
        groups[ex.label].append(ex)
    pools = [list(reversed(g)) for g in groups.values()]
    examples = []
    while len(examples) < n:
        for pool in pools:
            if pool and len(examples) < n:
                examples.append(pool.pop())
    with tempfile.TemporaryDirectory() as tmp:
        started = time.monotonic()
        info = train(examples, f"t{n}", base_model=base, settings=settings, directory=Path(tmp))
        return {"n": n, "base": base, "seconds": round(time.monotonic() - started, 1),
                "tuning_seconds": info.metrics["tuning_seconds"], "steps": info.metrics["steps"]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--parts", default="timing,accuracy,goemotions")
    parser.add_argument("--large", action="store_true", help="also time the large model at 40 and 200")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads while tuning (1 is much faster on a machine shared with other jobs)")
    args = parser.parse_args()
    settings = TrainingSettings(num_threads=args.threads)  # otherwise the defaults a user gets
    out: dict = {"settings": settings.to_dict()}

    def emit(key, value):
        out.setdefault(key, []).append(value)
        print(json.dumps({key: value}), file=sys.stderr, flush=True)

    if "timing" in args.parts:
        for n in (40, 200, 1000):
            emit("timing", timing(n, "small", settings))
        if args.large:
            for n in (40, 200):
                emit("timing", timing(n, "large", settings))
    if "accuracy" in args.parts:
        for name in ("cr", "emotion"):
            full = read_csv(DATA / name / "train.csv")
            test = dedupe(read_csv(DATA / name / "test.csv"))
            random.Random(0).shuffle(test)
            test = test[:1000]
            for k in (8, 64):
                emit("accuracy", {"dataset": name, "per_class": k,
                                  **compare(per_class(full, k), test, "small", settings)})
    if "goemotions" in args.parts:
        train_ex = dedupe(read_multilabel_jsonl(DATA / "goemotions" / "train.jsonl")[:1000])
        test_ex = read_multilabel_jsonl(DATA / "goemotions" / "test.jsonl")[:500]
        counts = defaultdict(int)
        for e in train_ex:
            for label in e.labels:
                counts[label] += 1
        keep = {label for label, c in counts.items() if c >= 5}  # the product's 5-per-label rule
        train_ex = [MultiLabelExample(e.text, tuple(l for l in e.labels if l in keep)) for e in train_ex]
        test_ex = [MultiLabelExample(e.text, tuple(l for l in e.labels if l in keep)) for e in test_ex]
        emit("goemotions", {"labels": len(keep), **compare(train_ex, test_ex, "small", settings, multi=True)})
    json.dump(out, sys.stdout, indent=2)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
