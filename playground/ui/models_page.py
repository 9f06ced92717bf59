"""The Models page: train a custom model from a CSV / JSONL file, compare it with few-shot, manage models.

Training runs in a background thread (one per process, see ``playground.training``); the
thread writes its progress into a small shared object and a ``st.fragment(run_every=1)``
redraws only the progress part every second, so the rest of the page stays responsive and the
Cancel button sets the thread's cancel event. Why a thread and not a subprocess: the tuned
model and the base encoder stay in this process's caches, and cancel is a plain ``Event``.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import streamlit as st

from playground import store
from playground.charts import per_label_f1_frame
from playground.data import DataFileError, is_jsonl
from playground.embeddings import BASE_MODELS
from playground.metrics import headline_keys, scored_on
from playground.store import is_training
from playground.training import TrainingSettings, train
from playground.ui.widgets import BackgroundJob, show_f1_bars, show_job_progress, show_notice, start_job
from playground.validation import ValidationError


@dataclass(kw_only=True)
class TrainingJob(BackgroundJob):
    """One background training (``BackgroundJob``), and the model it saved."""

    name: str
    info: store.ModelInfo | None = None
    announced: bool = False


def start_training(upload, name: str, base: str, validation, settings: TrainingSettings) -> None:
    """Check what can be checked at once, then hand the rest to a thread."""
    if is_training():
        st.session_state.models_notice = ("error", "A training is already running: wait for it or cancel it.")
        return
    job = TrainingJob(name=name)
    data, multi_label = upload.getvalue(), is_jsonl(upload.name)
    valid, directory = (validation.getvalue() if validation else None), store.models_dir()

    def work(progress, cancel) -> None:
        job.info = train(data, name, base_model=base, multi_label=multi_label, validation=valid, settings=settings,
                         progress=progress, cancel=cancel, directory=directory)

    st.session_state.models_job = job
    start_job(job, work, name=f"train-{name}", cancelled="Training cancelled; nothing was saved.",
              failed="Could not train:")


def metrics_table(metrics: dict) -> pd.DataFrame:
    trained, baseline = metrics.get("trained", {}), metrics.get("baseline", {})
    keys = list(headline_keys(trained))
    return pd.DataFrame({"trained": [trained.get(k) for k in keys], "few-shot (no training)": [baseline.get(k) for k in keys]},
                        index=keys)


def per_label_table(metrics: dict) -> pd.DataFrame:
    trained, baseline = metrics.get("trained", {}), metrics.get("baseline", {})
    rows = {}
    for label, row in trained.get("per_label", {}).items():
        b = baseline.get("per_label", {}).get(label, {})
        rows[label] = {"precision": row["precision"], "recall": row["recall"], "F1 trained": row["f1"],
                       "F1 few-shot": b.get("f1"), "support": row["support"]}
    return pd.DataFrame.from_dict(rows, orient="index")


def show_metrics(metrics: dict) -> None:
    st.caption(f"Scores {scored_on(metrics)}. Training took {metrics.get('training_seconds')} s "
               f"({metrics.get('steps')} tuning steps"
               + (", label names used" if metrics.get("used_label_names") else "") + ").")
    guard = metrics.get("guard") or {}
    encoder = {"tuned": "the tuned encoder", "untuned": "the untuned encoder",
               "blended": "a blend of the tuned and untuned encoders"}.get(guard.get("choice", "tuned"), "")
    if guard.get("chosen_by") == "user":  # the message is the scores' word; the pick was the user's
        st.caption(f"{guard.get('message', '')} Chosen by hand: this model answers with {encoder}.")
    elif guard.get("choice") in ("untuned", "blended"):
        st.warning(guard.get("message", "") + f" This model answers with {encoder}; train again with "
                   "Keep = the tuned model, always, to keep the tuned one.")
    elif guard.get("message"):
        st.caption(guard["message"])
    if not metrics.get("trained"):
        return
    for warning in metrics.get("warnings", []):
        st.warning(warning)
    st.dataframe(metrics_table(metrics).style.format("{:.3f}"), width="content")
    picture, numbers = st.columns(2)
    with picture:
        show_f1_bars(per_label_f1_frame(metrics))
    numbers.dataframe(per_label_table(metrics).style.format("{:.3f}", subset=["precision", "recall", "F1 trained",
                                                                              "F1 few-shot"]), width="stretch")
    for side, title in (("trained", "Trained"), ("baseline", "Few-shot")):
        cm = metrics.get(side, {}).get("confusion_matrix")
        if cm:
            st.markdown(f"**{title} confusion matrix** (rows: true label, columns: predicted)")
            st.dataframe(pd.DataFrame(cm["matrix"], index=cm["labels"], columns=cm["labels"]), width="content")


@st.fragment(run_every=1.0)
def training_status() -> None:
    """Redrawn every second while a job exists: progress bar, time left, Cancel."""
    job: TrainingJob | None = st.session_state.get("models_job")
    if job is None:
        return
    if not job.done:
        show_job_progress(job, cancel_label="Cancel training", cancel_key="models_cancel")
        return
    if not job.announced:  # once: rerun the whole page so the saved-models list shows the new model
        job.announced = True
        st.rerun()
    if job.error:
        st.error(job.error)
    elif job.info is not None:
        st.success(f"Model **{job.info.name}** is saved; pick it on the Classify page.")
        show_metrics(job.info.metrics)
    if st.button("Clear", key="models_clear"):
        st.session_state.models_job = None
        st.rerun()


def rename(old: str) -> None:
    new = st.session_state.get(f"models_rename_{old}", "").strip()
    try:
        store.rename_model(old, new)
        st.session_state.models_notice = ("success", f"Renamed **{old}** to **{new}**.")
    except (ValidationError, LookupError, OSError) as exc:
        st.session_state.models_notice = ("error", str(exc))


def delete(name: str) -> None:
    try:
        store.delete_model(name)
        st.session_state.models_notice = ("success", f"Deleted **{name}**.")
    except (LookupError, OSError) as exc:
        st.session_state.models_notice = ("error", str(exc))


def versions_frame(versions: list[store.ModelInfo]) -> pd.DataFrame:
    """One row per version of a model, the current first: when it was made, on how much, how well."""
    rows = []
    for i, v in enumerate(versions):
        trained = v.metrics.get("trained", {})
        rows.append({"version": v.version, "current": i == 0, "created": v.created, "examples": v.n_examples,
                     **{k: trained.get(k) for k in headline_keys(trained)}, "problem": v.problem or ""})
    return pd.DataFrame(rows)


def rollback(name: str, version: int) -> None:
    try:
        info = store.rollback_model(name, version)
        st.session_state.models_notice = ("success", f"**{name}** uses version {info.version} again: the API, the CLI "
                                          f"and the pages now answer with it. The other versions are kept.")
    except (ValidationError, LookupError, OSError) as exc:
        st.session_state.models_notice = ("error", str(exc))


def show_versions(info: store.ModelInfo) -> None:
    """Every version of a model with its scores; any earlier one can be made current again."""
    try:
        versions = store.list_versions(info.name)
    except LookupError:
        return
    if len(versions) < 2:
        return
    st.markdown(f"**Versions** (saving under the name **{info.name}** again adds one; call an earlier one as "
                f"`{info.name}@<version>` from the API and CLI)")
    st.dataframe(versions_frame(versions), hide_index=True, width="stretch")
    left, right = st.columns(2, vertical_alignment="bottom")
    older = [v.version for v in versions[1:] if v.status == "ok"]
    if older:
        chosen = left.selectbox("Earlier version", older, key=f"models_version_{info.name}")
        right.button(f"Make version {chosen} current", key=f"models_rollback_{info.name}", on_click=rollback,
                     args=(info.name, chosen))


def show_model(info: store.ModelInfo) -> None:
    title = f"{info.name} · {info.type} · {info.base_model}" + (f" · version {info.version}" if info.version > 1 else "")
    with st.expander(title + (" · broken" if info.status != "ok" else "")):
        if info.status != "ok":
            st.error(f"This model cannot be used: {info.problem}")
        else:
            st.caption(f"{len(info.labels)} labels: {', '.join(info.labels)} · {info.n_examples} examples · "
                       f"created {info.created}")
            if info.metrics:
                show_metrics(info.metrics)
            show_versions(info)
        left, right = st.columns(2, vertical_alignment="bottom")
        left.text_input("New name", key=f"models_rename_{info.name}", value=info.name)
        left.button("Rename", key=f"models_rename_btn_{info.name}", on_click=rename, args=(info.name,))
        confirm = right.checkbox("Yes, delete this model", key=f"models_confirm_{info.name}")
        right.button("Delete", key=f"models_delete_{info.name}", disabled=not confirm, on_click=delete,
                     args=(info.name,), type="primary")


if "models_job" not in st.session_state:
    st.session_state.models_job = None
    st.session_state.models_notice = None

st.title("Models")
st.caption(f"Tune a custom classifier on your examples (at least 2 labels, 2 examples each) and call it by name. "
           f"Models live in `{store.models_dir()}`.")

with st.form("models_train", border=True):
    st.subheader("Train a model")
    upload = st.file_uploader("Training data: CSV `text,label` (single-label) or JSONL "
                              "`{\"text\": ..., \"label\": [...]}` (multi-label)", type=["csv", "jsonl", "json", "txt"])
    validation = st.file_uploader("Validation file (optional; otherwise the scores are cross-validated: each fold is "
                                  "tuned without the examples it is scored on)",
                                  type=["csv", "jsonl", "json", "txt"])
    name = st.text_input("Model name", placeholder="support-topics", help="Letters, digits, - and _.")
    base = st.selectbox("Base model", list(BASE_MODELS), format_func=lambda m: BASE_MODELS[m].title)
    defaults = TrainingSettings()
    with st.expander("Advanced settings"):
        steps = st.number_input("Tuning steps (0 = the recipe's default for the model)", 0, 1000, 0,
                                help="Fixed before tuning starts: the same examples give the same model.")
        keep = st.selectbox("Keep", ["best", "tuned"], format_func=lambda k: {
            "best": "the better of tuned and untuned (by the honest scores; a blend on a tie)",
            "tuned": "the tuned model, always"}[k])
        label_names = st.selectbox("Use the label names", ["auto", "always", "never"],
                                   help="auto: only when cross-validation on your examples says they help")
        cv_folds = st.number_input("Cross-validation folds for the scores (0 = no scores, faster)", 0, 10,
                                   defaults.cv_folds)
    submitted = st.form_submit_button("Train", type="primary", disabled=is_training())

if submitted:
    st.session_state.models_notice = None
    try:
        if upload is None:
            raise ValidationError("choose a training file first")
        store.validate_model_name(name.strip())
        settings = TrainingSettings(steps=int(steps) or None, use_label_names=label_names, cv_folds=int(cv_folds),
                                    keep=keep)
        start_training(upload, name.strip(), base, validation, settings)
    except (ValidationError, DataFileError, ValueError) as exc:
        st.session_state.models_notice = ("error", str(exc))

show_notice(st.session_state.get("models_notice"))

training_status()

st.subheader("Saved models")
infos = store.list_models()
if not infos:
    st.info("No custom models yet.")
for info in infos:
    show_model(info)
