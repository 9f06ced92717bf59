"""Tuned against untuned on the same samples (issue #24), cheaply enough to run every set, seed and model.

The product's own ``tuning.tune_encoder`` tunes the encoder (the recipe's settings, ``seed`` 42 as
``TrainingSettings`` has it) with ``interpolation=1.0``; the recipe's WiSE-FT mix and the other mixes in
``alphas`` are then set on the tuned layers by the step ``tune_encoder`` ends with (``tuning.interpolate_weights``:
``original + alpha * (tuned - original)``), so one tuning gives the product's row and its neighbours.
Embeddings come from the frozen lower layers cached once per set (the test rows at the model's full window,
as ``classify`` reads them) and the top layers run on them (``tuning.run_top``: the same embeddings as the
model's own forward to a cosine of 0.9999, tested in tests/test_tuning.py). The head is the product's
``FewShotClassifier``; the untuned row is that head on the base encoder's embeddings of the same sample.
"""

from __future__ import annotations

import os
import time
from typing import Any, Callable

import numpy as np

from .common import sample_per_label

LONG_SETS = ("imdb", "20newsgroups", "enron_spam")


def _embed(model, buckets, start: int, n: int) -> np.ndarray:
    import torch

    from playground.tuning import run_top

    out = torch.zeros(n, model.get_embedding_dimension())
    model.eval()
    with torch.inference_mode():
        for bucket in buckets:
            out[torch.as_tensor(bucket.rows)] = run_top(model, bucket, start)
    return torch.nn.functional.normalize(out, dim=1).numpy()


def _scores(y_true: list[str], classes, proba: np.ndarray) -> dict[str, float]:
    from sklearn.metrics import f1_score

    pred = np.asarray(classes)[np.argmax(proba, axis=1)]
    y = np.asarray(y_true)
    return {"accuracy": float((pred == y).mean()), "macro_f1": float(f1_score(y, pred, average="macro", zero_division=0))}


def tuned_rows(model_name: str, ds, seeds: list[int], n: int, alphas: list[float], *,
               on_row: Callable[[dict], None] | None = None, settings_overrides: dict | None = None) -> list[dict]:
    """Rows for one model and one set: per seed, the untuned head and the tuned one at every ``alpha``."""
    import torch

    from playground.classifier import FewShotClassifier
    from playground.training import load_base
    from playground.tuning import (TuningSettings, capture, encoder_layers, interpolate_weights, recipe_for,
                                   tune_encoder)

    base = load_base(model_name)
    recipe = recipe_for(base)
    settings = TuningSettings(seed=42, interpolation=1.0, **(settings_overrides or {})).resolved(base)
    layers = encoder_layers(base)
    start = len(layers) - int(settings.top_layers)  # type: ignore[arg-type]
    full = int(base.max_seq_length)
    params = [p for layer in layers[start:] for p in layer.parameters()]
    original = [p.detach().clone() for p in params]
    t0 = time.perf_counter()
    test_buckets, test_frozen = capture(base, ds.test_texts, start, max_len=full)
    cache_s = time.perf_counter() - t0
    X_test0 = torch.nn.functional.normalize(test_frozen, dim=1).numpy()
    wanted = sorted(set(alphas) | {recipe.interpolation, recipe.tie_interpolation})  # the guard's blend too
    rows = []
    for seed in seeds:
        idx = sample_per_label(ds.train_labels, n, seed)
        texts = [ds.train_texts[i] for i in idx]
        y = [ds.train_labels[i] for i in idx]
        train_buckets, train_frozen = capture(base, texts, start, max_len=full)
        untuned = FewShotClassifier().fit(torch.nn.functional.normalize(train_frozen, dim=1).numpy(), y)
        base_scores = _scores(ds.test_labels, untuned.classes_, untuned.predict_proba(X_test0))
        load_before = round(os.getloadavg()[0], 2)
        report = tune_encoder(base, texts, y, settings=settings)
        load_after = round(os.getloadavg()[0], 2)
        tuned = [p.detach().clone() for p in params]
        for alpha in wanted:
            interpolate_weights(params, original, tuned, alpha)
            head = FewShotClassifier().fit(_embed(base, train_buckets, start, len(texts)), y)
            scores = _scores(ds.test_labels, head.classes_,
                             head.predict_proba(_embed(base, test_buckets, start, len(ds.test_texts))))
            row = {"method": "tuned", "model": model_name, "dataset": ds.name, "n": n, "seed": seed, "alpha": alpha,
                   "recipe": alpha == recipe.interpolation, **scores,
                   "untuned_accuracy": base_scores["accuracy"], "untuned_macro_f1": base_scores["macro_f1"],
                   "tune_seconds": round(report.seconds, 1), "steps": report.steps,
                   "sampled_batches": report.sampled_batches, "tokens_per_step": report.tokens_per_step,
                   "used_label_names": report.used_label_names, "threads": report.threads,
                   "learning_rate": report.learning_rate, "top_layers": report.top_layers,
                   "n_train": len(idx), "n_test": len(ds.test_texts), "test_cache_s": round(cache_s, 1),
                   "load_before": load_before, "load_after": load_after}
            rows.append(row)
            if on_row is not None:
                on_row(row)
        with torch.no_grad():
            for p, a in zip(params, original):
                p.copy_(a)
        del tuned
    del base
    return rows


def guard_rows(model_name: str, ds, seeds: list[int], n: int, *, threads: int = 1,
               on_row: Callable[[dict], None] | None = None) -> list[dict]:
    """The guard's honest scores on the trained rows' draws: per seed, the product's own cross-validation
    (``training.cross_validate`` with ``TrainingSettings()``'s folds: each fold tunes a copy without the examples
    it scores, for ``training.fold_steps`` of the final tuning's steps) beside the untuned head on the same
    folds. Which model the guard keeps, and its test accuracy, the report reads from these scores and the
    trained rows of the same draw (``report.guard_summary``)."""
    from playground.training import TrainingSettings, cross_validate, fold_steps, load_base, load_training_data
    from playground.tuning import recipe_for

    base = load_base(model_name)
    settings = TrainingSettings(num_threads=threads)
    steps = fold_steps(settings.tuning().resolved(base).steps)
    rows = []
    for seed in seeds:
        idx = sample_per_label(ds.train_labels, n, seed)
        data = load_training_data([(ds.train_texts[i], ds.train_labels[i]) for i in idx])
        t0 = time.perf_counter()
        trained, baseline, folds = cross_validate(base, data, settings)
        row = {"method": "guard", "model": model_name, "dataset": ds.name, "n": n, "seed": seed, "n_train": len(idx),
               "folds": folds, "cv_tuned": trained["accuracy"], "cv_untuned": baseline["accuracy"],
               "tuned_log_loss": trained.get("log_loss"), "untuned_log_loss": baseline.get("log_loss"),
               "blend_alpha": recipe_for(base).tie_interpolation, "fold_steps": steps,
               "fold_seconds": round(time.perf_counter() - t0, 1)}
        rows.append(row)
        if on_row is not None:
            on_row(row)
    return rows


def summarise(rows: list[dict]) -> dict[str, Any]:
    """Per (model, set, alpha): mean tuned and untuned accuracy over seeds, the worst seed's tuned minus its own
    untuned, and the seeds counted."""
    out: dict[str, Any] = {}
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["model"], r["dataset"], r["alpha"]), []).append(r)
    for (model, dataset, alpha), rs in sorted(groups.items()):
        out.setdefault(model, {}).setdefault(dataset, {})[str(alpha)] = {
            "tuned": round(100 * float(np.mean([r["accuracy"] for r in rs])), 2),
            "untuned": round(100 * float(np.mean([r["untuned_accuracy"] for r in rs])), 2),
            "worst_vs_untuned": round(100 * min(r["accuracy"] - r["untuned_accuracy"] for r in rs), 2),
            "worst_seed": min(rs, key=lambda r: r["accuracy"] - r["untuned_accuracy"])["seed"],
            "seeds": len(rs), "recipe": bool(rs[0]["recipe"]),
            "tune_seconds_mean": round(float(np.mean([r["tune_seconds"] for r in rs])), 1),
        }
    return out


def long_tuned_rows(model_name: str, ds, seeds: list[int], ns: list[int], *, steps: int | None = None,
                    every_window: bool = True, on_row: Callable[[dict], None] | None = None) -> list[dict]:
    """Tuning on long examples (issue #27): the product's ``long_texts`` END and WINDOWS, and tuning on every window.

    Per N and seed, the product's ``training.tune`` once (``cv_folds=0``, ``keep="tuned"``: the tuned model is
    scored whatever a guard would keep). Its encoder tunes on each example's start under either
    ``long_texts``, so one tuning gives both product arms: ``tuned/END`` (its head, the test rows cut) and
    ``tuned/WINDOWS`` (the head fitted on the examples read in windows, the test rows read so: what
    ``long_texts="WINDOWS"`` and ``truncate="WINDOWS"`` do; tested equal in tests/test_bench.py). The untuned
    rows are the same head on the base encoder, read the same two ways. ``every_window``: also the way the
    product tuned before (every window of a long example a training text with its label, ``windows.py`` at
    the tuning length, a repeated window once; head and test rows in windows), ``tuned/every-window``, a
    second tuning.
    """
    from playground.classifier import FewShotClassifier
    from playground.training import TrainingSettings, embed_with, load_base, tune
    from playground.windows import max_windows_setting, window_texts

    base = load_base(model_name)
    t0 = time.perf_counter()
    X_base = {mode: embed_with(base, ds.test_texts, windows=mode == "WINDOWS") for mode in ("END", "WINDOWS")}
    cache_s = round(time.perf_counter() - t0, 1)
    settings = TrainingSettings(cv_folds=0, keep="tuned", steps=steps)
    limit = min(int(base.max_seq_length), settings.max_seq_length) - 2
    rows = []
    for n in ns:
        for seed in seeds:
            idx = sample_per_label(ds.train_labels, n, seed)
            texts, y = [ds.train_texts[i] for i in idx], [ds.train_labels[i] for i in idx]
            runs = [("END", list(zip(texts, y)))]
            if every_window:
                cut = [window_texts(base.tokenizer, t, limit=limit, max_windows=max_windows_setting())[0] for t in texts]
                pairs = [(part, label) for parts, label in zip(cut, y) for part in parts]
                labels_of: dict[str, set] = {}
                for part, label in pairs:
                    labels_of.setdefault(part, set()).add(label)
                # a window repeated (a shared opening, a signature) is one example; with two labels, none
                runs.append(("every-window", [(part, labels_of[part].pop()) for part in labels_of
                                              if len(labels_of[part]) == 1]))
            for run, data in runs:
                load_before = round(os.getloadavg()[0], 2)
                t0 = time.perf_counter()
                tuned = tune(data, base_model=model_name, settings=settings)
                tune_s = time.perf_counter() - t0
                common = {"model": model_name, "dataset": ds.name, "n": n, "seed": seed, "n_train": len(idx),
                          "n_test": len(ds.test_texts), "test_cache_s": cache_s, "load_before": load_before,
                          "load_after": round(os.getloadavg()[0], 2)}
                windowed = FewShotClassifier().fit(embed_with(tuned.body, texts, windows=True), y)
                arms = [("tuned/" + ("WINDOWS" if run == "END" else run), windowed,
                         embed_with(tuned.body, ds.test_texts, windows=True))]
                if run == "END":
                    arms += [("untuned/END", tuned.base_head, X_base["END"]),
                             ("tuned/END", tuned.head, embed_with(tuned.body, ds.test_texts)),
                             ("untuned/WINDOWS", FewShotClassifier().fit(embed_with(base, texts, windows=True), y),
                              X_base["WINDOWS"])]
                for method, head, X in arms:
                    row = {"method": method, **common, **_scores(ds.test_labels, head.classes_, head.predict_proba(X))}
                    if method.startswith("tuned/"):
                        row.update(tune_seconds=round(tune_s, 1), steps=tuned.metrics["steps"],
                                   training_texts=tuned.config["training"]["tuning"]["n_texts"])
                    rows.append(row)
                    if on_row is not None:
                        on_row(row)
                del tuned
    return rows
