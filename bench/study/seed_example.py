"""Cohere-guide seed example: predictions + confidences of every candidate, both models."""
import json
import numpy as np
from common import get_model
from classifiers import CANDIDATES

examples = [("The order came 5 days early", "positive"), ("The item exceeded my expectations", "positive"),
            ("I ordered more for my friends", "positive"), ("I would buy this again", "positive"),
            ("I would recommend this to others", "positive"), ("The package was damaged", "negative"),
            ("The order is 5 days late", "negative"), ("The order was incorrect", "negative"),
            ("I want to return my item", "negative"), ("The item's material feels low quality", "negative")]
inputs = ["This item was broken when it arrived", "This item broke after 3 weeks"]
labels = sorted({l for _, l in examples}); lid = {l: i for i, l in enumerate(labels)}
rows = []
for model in ["small", "large"]:
    m = get_model(model)
    X = m.encode([t for t, _ in examples], batch_size=64, normalize_embeddings=True)
    Xi = m.encode(inputs, batch_size=64, normalize_embeddings=True)
    y = np.array([lid[l] for _, l in examples])
    for c, mk in CANDIDATES.items():
        clf = mk().fit(X, y)
        P = clf.predict_proba(Xi)
        for t, p in zip(inputs, P):
            r = dict(model=model, cand=c, input=t, pred=labels[int(p.argmax())],
                     p_negative=float(p[lid["negative"]]), T=float(getattr(clf, "T", np.nan)),
                     C=float(getattr(clf, "C", np.nan)) if np.isscalar(getattr(clf, "C", np.nan)) else None)
            rows.append(r)
            print(f"{model:5s} {c:14s} {t[:28]:28s} -> {r['pred']:8s} P(neg)={r['p_negative']:.3f} T={r['T']:.3g}")
json.dump(rows, open("/work/main/bench/study/seed_example.json", "w"), indent=1)
