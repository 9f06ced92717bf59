"""Encode every text the study needs, once per model; caches to /tmp/study_cache."""
import sys, time
from common import *

models = sys.argv[1:] or ["small", "large"]
for model in models:
    dss = DATASETS if model == "small" else LARGE_DATASETS
    for ds in dss:
        texts = dataset_texts(ds)
        t0 = time.time()
        _, nmiss = embed_texts(model, ds, texts)
        print(f"{model} {ds}: {len(texts)} texts, encoded {nmiss} in {time.time()-t0:.1f}s", flush=True)
