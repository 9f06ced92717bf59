"""Few-shot classifier candidates on normalized sentence embeddings.

Every candidate: fit(X, y) -> self, predict_proba(X) -> (m, K) with K = number of
classes in y (y holds ints 0..K-1). `logits(X)` where meaningful.
"""
import warnings
import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax, softmax
from sklearn.linear_model import LogisticRegression, LogisticRegressionCV
from sklearn.calibration import CalibratedClassifierCV
from sklearn.model_selection import StratifiedKFold, LeaveOneOut

warnings.filterwarnings("ignore")


def as_2d_logits(z):
    z = np.asarray(z, dtype=np.float64)
    if z.ndim == 1:  # binary decision_function -> [0, z] (softmax == sigmoid(z))
        return np.stack([np.zeros_like(z), z], axis=1)
    return z


def nll(logits, y):
    return -log_softmax(logits, axis=1)[np.arange(len(y)), y].mean()


def fit_temperature(logits, y, lo=-8.0, hi=8.0, prior_sd=None):
    """Single scalar T minimizing NLL of softmax(logits / T); optimised over log T.
    prior_sd: optional Gaussian prior on log T centred at 0 (T=1), i.e. MAP:
    minimise sum_i nll_i + (log T)^2 / (2 prior_sd^2). Shrinks T toward 1 when n is tiny."""
    n = len(y)
    pen = (lambda lt: 0.0) if prior_sd is None else (lambda lt: lt * lt / (2 * prior_sd ** 2) / n)
    res = minimize_scalar(lambda lt: nll(logits / np.exp(lt), y) + pen(lt),
                          bounds=(lo, hi), method="bounded", options={"xatol": 1e-3})
    return float(np.exp(res.x))


def cv_splits(y, loo_max_n):
    """LOO when n <= loo_max_n (and every class has >= 2 examples), else stratified
    k-fold with k = min(5, smallest class count). None when no split is possible."""
    counts = np.bincount(y)
    mc = counts.min()
    if mc < 2:
        return None
    if len(y) <= loo_max_n:
        return LeaveOneOut().split(np.zeros(len(y)), y)
    k = min(5, mc)
    return StratifiedKFold(k, shuffle=True, random_state=0).split(np.zeros(len(y)), y)


def make_lr(C, max_iter=2000, fit_intercept=True):
    return LogisticRegression(C=C, max_iter=max_iter, fit_intercept=fit_intercept)


class LR:
    """Plain LogisticRegression (lbfgs, multinomial)."""
    def __init__(self, C=1.0):
        self.C = C
    def fit(self, X, y):
        self.K = int(y.max()) + 1
        self.m = make_lr(self.C).fit(X, y)
        return self
    def logits(self, X):
        return as_2d_logits(self.m.decision_function(X))
    def predict_proba(self, X):
        return softmax(self.logits(X), axis=1)


class LRTemp(LR):
    """LR + temperature scaling; T fitted on out-of-fold logits of the examples themselves."""
    def __init__(self, C=100.0, loo_max_n=150, fit_intercept=True, prior_sd=None):
        self.C, self.loo_max_n, self.fit_intercept, self.prior_sd = C, loo_max_n, fit_intercept, prior_sd
    def fit(self, X, y):
        self.K = int(y.max()) + 1
        self.m = make_lr(self.C, fit_intercept=self.fit_intercept).fit(X, y)
        self.T = 1.0
        splits = cv_splits(y, self.loo_max_n)
        if splits is None:
            return self
        oof = np.zeros((len(y), self.K))
        for tr, te in splits:
            m = make_lr(self.C, fit_intercept=self.fit_intercept).fit(X[tr], y[tr])
            z = as_2d_logits(m.decision_function(X[te]))
            oof[te] = z  # every class present in each train fold (guaranteed by cv_splits)
        self.T = fit_temperature(oof, y, prior_sd=self.prior_sd)
        return self
    def logits(self, X):
        return super().logits(X) / self.T


class CentroidTemp:
    """Cosine nearest-centroid; softmax temperature fitted on exact LOO similarities."""
    def fit(self, X, y):
        self.K = int(y.max()) + 1
        S = np.zeros((self.K, X.shape[1])); cnt = np.bincount(y, minlength=self.K).astype(float)
        np.add.at(S, y, X)
        self.C = S / np.linalg.norm(S, axis=1, keepdims=True)
        self.T = 0.05
        if cnt.min() >= 2:
            # LOO: own-class centroid without the example itself
            Sn = S / np.linalg.norm(S, axis=1, keepdims=True)
            sims = X @ Sn.T
            own = S[y] - X
            own /= np.linalg.norm(own, axis=1, keepdims=True) + 1e-12
            sims[np.arange(len(y)), y] = np.einsum("ij,ij->i", X, own)
            self.T = fit_temperature(sims, y)
        return self
    def logits(self, X):
        return (X @ self.C.T) / self.T
    def predict_proba(self, X):
        return softmax(self.logits(X), axis=1)


class LRCV:
    """LogisticRegressionCV choosing C by out-of-fold log-loss."""
    def __init__(self, Cs=(0.1, 1, 10, 100, 1000)):
        self.Cs = list(Cs)
    def fit(self, X, y):
        k = max(2, min(5, np.bincount(y).min()))
        self.m = LogisticRegressionCV(Cs=self.Cs, cv=StratifiedKFold(k, shuffle=True, random_state=0),
                                      scoring="neg_log_loss", max_iter=2000).fit(X, y)
        c = self.m.C_
        self.C = float(np.ravel(c)[0])
        return self
    def logits(self, X):
        return as_2d_logits(self.m.decision_function(X))
    def predict_proba(self, X):
        return self.m.predict_proba(X)


class Calibrated:
    """sklearn CalibratedClassifierCV around LR(C)."""
    def __init__(self, C=10.0, method="sigmoid", ensemble=True):
        self.C, self.method, self.ensemble = C, method, ensemble
    def fit(self, X, y):
        k = max(2, min(5, np.bincount(y).min()))
        self.m = CalibratedClassifierCV(make_lr(self.C), method=self.method, ensemble=self.ensemble,
                                        cv=StratifiedKFold(k, shuffle=True, random_state=0)).fit(X, y)
        return self
    def predict_proba(self, X):
        return self.m.predict_proba(X)


CANDIDATES = {
    "lr_c1":        lambda: LR(1.0),
    "lr_c10":       lambda: LR(10.0),
    "lr_c100":      lambda: LR(100.0),
    "lr_c1000":     lambda: LR(1000.0),
    "lr_c10_ts":    lambda: LRTemp(10.0),
    "lr_c100_ts":   lambda: LRTemp(100.0),
    "lr_c100_ts5":  lambda: LRTemp(100.0, loo_max_n=0),   # always stratified k-fold (k<=5)
    "lr_c100_ts_noint": lambda: LRTemp(100.0, fit_intercept=False),  # no intercept: avoids LOO prior-shift bias
    "lr_c1_ts5":    lambda: LRTemp(1.0, loo_max_n=0),
    "lr_c10_ts5":   lambda: LRTemp(10.0, loo_max_n=0),
    "lr_c10_ts5_prior":  lambda: LRTemp(10.0, loo_max_n=0, prior_sd=1.0),
    "lr_c100_ts5_prior": lambda: LRTemp(100.0, loo_max_n=0, prior_sd=1.0),
    "centroid_ts":  lambda: CentroidTemp(),
    "lrcv_nll":     lambda: LRCV(),
    "cal_sig_c10":  lambda: Calibrated(10.0, "sigmoid"),
    "cal_temp_c100": lambda: Calibrated(100.0, "temperature", ensemble=False),
}
