"""Fit time per call at n = 10, 80, 640 (small-model embeddings; binary CR and 4-class AG News).
Median of repeats, single process, after one warm-up call."""
import json, time, sys
import numpy as np
from common import *
from classifiers import CANDIDATES

cands = sys.argv[1].split(",") if len(sys.argv) > 1 else list(CANDIDATES)
rows = []
for ds, sizes in [("cr", [10, 80, 640]), ("ag_news", [12, 80, 640])]:
    tr, _ = load(ds)
    labels = sorted(tr["label"].unique()); lid = {l: i for i, l in enumerate(labels)}
    for n in sizes:
        s = sample_train(tr, n // len(labels), 0)
        X, _ = embed_texts("small", ds, list(s["text"]))
        y = s["label"].map(lid).values
        for c in cands:
            reps = 15 if n <= 12 else (5 if n <= 80 else 2)
            CANDIDATES[c]().fit(X, y)  # warm-up
            ts = []
            for _ in range(reps):
                t0 = time.perf_counter(); CANDIDATES[c]().fit(X, y); ts.append(time.perf_counter() - t0)
            r = dict(ds=ds, K=len(labels), n=len(y), cand=c, fit_ms=1000 * float(np.median(ts)))
            rows.append(r); print(r, flush=True)
json.dump(rows, open("/work/main/bench/study/fit_timing.json", "w"), indent=1)
