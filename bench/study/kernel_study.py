"""Follow-up: a soft nearest-neighbour (kernel) head and its ensemble with LR + temperature.

python kernel_study.py  -> prints per-dataset acc / ECE for small (7 sets) and large (3 sets).
Uses the cached embeddings of the main study (common.embed_texts).
"""
import sys
import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import logsumexp, softmax
from common import *
from classifiers import LRTemp
from evaluate import metrics


class Kernel:
    """p(c|x) ∝ mean over examples of class c of exp(cos(x, e) / tau); tau fitted on leave-one-out NLL."""
    def fit(self, X, y):
        self.X, self.y, self.K = X, y, int(y.max()) + 1
        S = X @ X.T
        np.fill_diagonal(S, -np.inf)
        def nll(lt):
            L = self._class_logits(S, np.exp(lt))
            return -(L[np.arange(len(y)), y] - logsumexp(L, axis=1)).mean()
        self.tau = float(np.exp(minimize_scalar(nll, bounds=(np.log(0.005), np.log(1.0)), method="bounded").x))
        return self
    def _class_logits(self, S, tau):
        out = np.empty((S.shape[0], self.K))
        for c in range(self.K):
            cols = S[:, self.y == c] / tau
            finite = np.isfinite(cols)
            n = finite.sum(1).clip(1)
            out[:, c] = logsumexp(np.where(finite, cols, -np.inf), axis=1) - np.log(n)
        return out
    def predict_proba(self, X):
        return softmax(self._class_logits(X @ self.X.T, self.tau), axis=1)


class Ens:
    def __init__(self, w=0.5):
        self.w = w
    def fit(self, X, y):
        self.a = LRTemp(10.0, loo_max_n=0, prior_sd=1.0).fit(X, y); self.b = Kernel().fit(X, y); return self
    def predict_proba(self, X):
        return self.w * self.a.predict_proba(X) + (1 - self.w) * self.b.predict_proba(X)


CANDS = {"lr_ts_prior": lambda: LRTemp(10.0, loo_max_n=0, prior_sd=1.0), "kernel": Kernel, "ens": Ens}
for model, sets in (("small", DATASETS), ("large", LARGE_DATASETS)):
    for N in NS:
        rows = {c: [] for c in CANDS}
        for ds in sets:
            tr, te = load(ds); te = test_split(te)
            labels = sorted(tr["label"].unique()); lid = {l: i for i, l in enumerate(labels)}
            Xte, _ = embed_texts(model, ds, list(te["text"])); yte = te["label"].map(lid).values
            per = {c: [] for c in CANDS}
            for seed in SEEDS:
                s = sample_train(tr, N, seed)
                X, _ = embed_texts(model, ds, list(s["text"])); y = s["label"].map(lid).values
                for c, make in CANDS.items():
                    per[c].append(metrics(make().fit(X, y).predict_proba(Xte), yte))
            for c in CANDS:
                m = {k: np.mean([r[k] for r in per[c]]) for k in ("acc", "ece")}
                rows[c].append((ds, m))
        for c in CANDS:
            cells = " ".join(f"{ds}:{m['acc']*100:.1f}/{m['ece']:.3f}" for ds, m in rows[c])
            mean_acc = np.mean([m["acc"] for _, m in rows[c]]) * 100; mean_ece = np.mean([m["ece"] for _, m in rows[c]])
            print(f"{model} N={N} {c:12s} mean {mean_acc:.1f}/{mean_ece:.3f} | {cells}", flush=True)
