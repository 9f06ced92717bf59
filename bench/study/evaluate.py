"""Few-shot evaluation: python evaluate.py MODEL DS [DS...] [--cands a,b]
Appends one JSON row per (model, ds, N, seed, candidate) to /tmp/study_cache/results.jsonl
and saves test logits of plain LR / centroid for post-hoc (fixed-temperature) analysis."""
import sys, json, time, argparse
import numpy as np
from sklearn.metrics import f1_score
from common import *
from classifiers import CANDIDATES, as_2d_logits, LRTemp, CentroidTemp

OUT = f"{CACHE}/results.jsonl"


def ece(P, y, bins=15):
    conf = P.max(1); pred = P.argmax(1); acc = (pred == y).astype(float)
    edges = np.linspace(0, 1, bins + 1)
    b = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, bins - 1)
    e = 0.0
    for i in range(bins):
        m = b == i
        if m.any():
            e += m.mean() * abs(acc[m].mean() - conf[m].mean())
    return float(e)


def metrics(P, y):
    P = np.clip(P, 1e-15, 1); P = P / P.sum(1, keepdims=True)
    pred = P.argmax(1)
    return dict(acc=float((pred == y).mean()), f1=float(f1_score(y, pred, average="macro")),
                ece=ece(P, y), nll=float(-np.log(P[np.arange(len(y)), y]).mean()),
                conf=float(P.max(1).mean()))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model"); ap.add_argument("ds", nargs="+")
    ap.add_argument("--cands", default=",".join(CANDIDATES))
    ap.add_argument("--ns", default="8,64")
    a = ap.parse_args()
    cands = a.cands.split(",")
    for ds in a.ds:
        tr, te = load(ds); te = test_split(te)
        labels = sorted(tr["label"].unique()); lid = {l: i for i, l in enumerate(labels)}
        Xte, _ = embed_texts(a.model, ds, list(te["text"]))
        yte = te["label"].map(lid).values
        for N in map(int, a.ns.split(",")):
            for seed in SEEDS:
                s = sample_train(tr, N, seed)
                X, _ = embed_texts(a.model, ds, list(s["text"]))
                y = s["label"].map(lid).values
                saved = {}
                for c in cands:
                    clf = CANDIDATES[c]()
                    t0 = time.perf_counter(); clf.fit(X, y); ft = time.perf_counter() - t0
                    P = clf.predict_proba(Xte)
                    row = dict(model=a.model, ds=ds, N=N, seed=seed, cand=c, n=len(y), fit_s=ft,
                               **metrics(P, yte))
                    for attr in ("T", "C"):
                        if hasattr(clf, attr) and np.isscalar(getattr(clf, attr)):
                            row[attr] = float(getattr(clf, attr))
                    with open(OUT, "a") as f:
                        f.write(json.dumps(row) + "\n")
                    print(f"{a.model} {ds} N={N} s={seed} {c:14s} acc={row['acc']:.3f} f1={row['f1']:.3f} "
                          f"ece={row['ece']:.3f} nll={row['nll']:.3f} conf={row['conf']:.2f} "
                          f"T={row.get('T', float('nan')):.3g} fit={ft*1000:.0f}ms", flush=True)
                    if hasattr(clf, "logits") and c in ("lr_c1", "lr_c10", "lr_c100", "lr_c1000", "centroid_ts"):
                        z = clf.logits(Xte) * getattr(clf, "T", 1.0)  # raw (untempered) logits
                        saved[c] = z.astype(np.float32)
                    if "_ts" in c:
                        saved[c + "_T"] = np.array(clf.T)
                saved["y"] = yte
                fn = f"{CACHE}/logits_{a.model}_{ds}_N{N}_s{seed}.npz"
                if os.path.exists(fn):
                    old = dict(np.load(fn)); old.update(saved); saved = old
                np.savez(fn, **saved)


if __name__ == "__main__":
    main()
