"""The Classify page: model, examples grid, CSV upload, presets, inputs, results, export code.

Widgets in, one call into the core, results out. Everything the user typed lives in
``st.session_state`` under ``classify_*`` keys, so reruns never lose it, and in a workspace on
disk (``workspace_panel``: read when the page opens, saved after every change), so a reload, a
restart or a shared link does not either.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import streamlit as st

from playground import export
from playground.data import DataFileError, read_examples_csv
from playground.embeddings import (
    BASE_MODELS,
    PRECISIONS,
    ModelNotFoundError,
    is_loaded,
    resolve_precision,
)
from playground.engine import length_notes, load_folder, model_encoder, with_unknown
from playground.explain import Explanation, classify, tinted_html, with_explanations
from playground.label_next import DEFAULT_TARGET_PRECISION, choose_threshold
from playground.presets import DEFAULT_PRESET, list_presets, load_preset
from playground.store import copy_model, list_models
from playground.training import (
    KEEP_TUNED_GRIDS,
    TrainingSettings,
    TunedModel,
    grid_key,
    save_tuned,
    tune_grid,
    tuned_grid_folder,
)
from playground.ui.evaluate_panel import render_evaluate
from playground.ui.label_next_panel import render_label_next
from playground.ui.workspace_panel import autosave, open_workspace_for_page, render_sidebar
from playground.ui.widgets import (
    BackgroundJob,
    problem_list,
    problems_of,
    show_job_progress,
    show_notice,
    show_problems,
    start_job,
)
from playground.validation import (
    MIN_EXAMPLES_PER_LABEL,
    TRUNCATE_OPTIONS,
    UNKNOWN,
    Example,
    ValidationError,
    check_examples,
    check_inputs,
    grid_contents,
    inputs_from_text,
    label_counts,
)

# The page batches inputs past the API's 96; beyond this, bulk classify is the better tool.
# (A comment, not a string: Streamlit's "magic" would print a bare string on the page.)
PAGE_MAX_INPUTS = 1000
GRID_COLUMNS = ["text", "label", "description"]


def examples_frame(examples: list[Example], descriptions: dict[str, str] | None = None,
                   kept: list[tuple[str, str, str]] = ()) -> pd.DataFrame:
    """Grid rows: ``kept`` rows as they were, then the examples, each label's description on its first row
    (unless a kept row already says the same)."""
    said = {(label, description) for _, label, description in kept if description}
    pending = {k: v for k, v in (descriptions or {}).items() if (k, v) not in said}
    rows = list(kept) + [[ex.text, ex.label, pending.pop(ex.label, "")] for ex in examples]
    return pd.DataFrame(rows, columns=GRID_COLUMNS, dtype="string")


def set_examples(examples: list[Example], descriptions: dict[str, str] | None = None,
                 kept: list[tuple[str, str, str]] = ()) -> None:
    """Replace the grid's content; a new editor key drops the old widget's pending edits."""
    st.session_state.classify_examples = examples_frame(examples, descriptions, kept)
    st.session_state.classify_current = st.session_state.classify_examples  # so restore_state keeps this
    st.session_state.classify_editor_version += 1


def apply_preset(name: str | None = None) -> None:
    preset = load_preset(name or st.session_state.classify_preset)
    set_examples(list(preset.examples))
    st.session_state.classify_inputs = "\n".join(preset.inputs)
    st.session_state.classify_model = preset.model
    st.session_state.classify_results = None
    st.session_state.classify_notice = ("success", f"Loaded preset **{preset.title}**.")


def on_upload() -> None:
    """Parse the uploaded CSV once, when it changes; a rejected file leaves the grid as it was."""
    uploaded = st.session_state.get("classify_upload")
    if uploaded is None:
        return
    try:
        parsed = read_examples_csv(uploaded.getvalue())
    except DataFileError as exc:
        st.session_state.classify_notice = ("error", problem_list(
            f"**{uploaded.name}** was not loaded; the grid is unchanged.\n", exc.problems))
        return
    mode = st.session_state.get("classify_upload_mode", "Replace")
    current = st.session_state.get("classify_current")
    kept = [] if mode == "Replace" or current is None else _grid_rows(current)
    set_examples(parsed.examples, parsed.descriptions, kept)
    verb = "Added" if kept else "Loaded"
    notes = "".join(f"\n- {w}" for w in parsed.warnings)
    st.session_state.classify_notice = ("success", f"{verb} {len(parsed.examples)} examples from **{uploaded.name}**."
                                        + notes)


def _grid_rows(frame: pd.DataFrame) -> list[tuple[str, str, str]]:
    """Complete rows only, description kept (used when appending; the grid validation reports the others)."""
    rows = []
    for cells in frame.reindex(columns=GRID_COLUMNS).itertuples(index=False):
        text, label, description = ("" if pd.isna(cell) else str(cell).strip() for cell in cells)
        if text and label:
            rows.append((text, label, description))
    return rows


@dataclass(kw_only=True)
class TuneJob(BackgroundJob):
    """One background tuning of the grid (``BackgroundJob``), and what it made."""

    key: str
    model: str
    tuned: TunedModel | None = None
    folder: Path | None = None
    choice: str | None = None
    """The user's pick, "tuned", "untuned" or "blended"; None follows the guard (the honest scores)."""
    restored: dict | None = None
    """The cached folder's config when the job was read back from a workspace (no ``tuned`` in memory then)."""

    @property
    def metrics(self) -> dict:
        return self.tuned.metrics if self.tuned is not None else self.restored["metrics"]

    @property
    def choices(self) -> list[str]:
        """What this tuning can answer with (a blend only when the guard made one)."""
        if self.tuned is not None:
            return self.tuned.choices
        return ["tuned", "untuned"] + (["blended"] if self.folder_for("blended").is_dir() else [])

    @property
    def in_use(self) -> str:
        """Which model Classify answers with for this grid: the user's pick, else the guard's."""
        if self.choice:
            return self.choice
        if self.tuned is not None:
            return self.tuned.choice
        guard = (self.restored or {}).get("metrics", {}).get("guard") or {}
        return guard["choice"] if guard.get("choice") in self.choices else "tuned"

    def folder_for(self, choice: str) -> Path:
        """The cached folder Classify loads for ``choice`` ("tuned" or "blended")."""
        return tuned_grid_folder(self.key, choice)


def start_tuning(examples: list[Example], model: str, descriptions: dict[str, str]) -> None:
    job = TuneJob(key=grid_key(examples, model, descriptions), model=model)

    # Truncate WINDOWS on the page: the head and the scores read a long example whole (TrainingSettings.long_texts)
    settings = TrainingSettings(long_texts="WINDOWS") if st.session_state.get("classify_truncate") == "WINDOWS" else None

    def work(progress, cancel) -> None:
        job.tuned, job.folder = tune_grid(examples, model, settings=settings, descriptions=descriptions,
                                          progress=progress, cancel=cancel)

    st.session_state.classify_tune = job
    start_job(job, work, name="tune-grid", cancelled="Tuning cancelled; Classify uses the untuned model.",
              failed="Could not tune:")


def tuned_for(examples: list[Example], model: str, descriptions: dict[str, str]) -> TuneJob | None:
    """The finished tuning of exactly this grid (examples and descriptions) on this model, if there is one."""
    job: TuneJob | None = st.session_state.get("classify_tune")
    if job is None or not job.done or (job.tuned is None and job.restored is None) or model not in BASE_MODELS:
        return None
    if job.key != grid_key(examples, model, descriptions) or not job.folder.is_dir():  # pruned by a newer tuning
        return None
    return job if job.in_use != "untuned" and job.folder_for(job.in_use).is_dir() else None


def save_tuned_model() -> None:
    job: TuneJob | None = st.session_state.get("classify_tune")
    name = st.session_state.get("classify_tune_name", "").strip()
    try:
        if job is None or (job.tuned is None and job.restored is None):
            raise ValidationError("tune the grid first")
        if job.tuned is None and job.in_use == "untuned":
            raise ValidationError("this tuning was reopened from a saved workspace, which keeps only the tuned model: "
                                  "tune again to save the untuned one, or choose the tuned model to save it")
        if job.tuned is not None:
            info = save_tuned(job.tuned.with_choice(job.in_use) if job.choice else job.tuned, name)
        else:  # a tuning read back from a workspace is only on disk: its cached folder is copied, the pick noted
            guard = {**(job.metrics.get("guard") or {}), "choice": job.in_use,
                     **({"chosen_by": "user"} if job.choice else {})}
            info = copy_model(job.folder_for(job.in_use), name, replace=True,
                              config_changes={"metrics": {**job.metrics, "guard": guard}})
        version = f" (version {info.version}; the earlier versions are on the Models page)" if info.version > 1 else ""
        st.session_state.classify_notice = ("success", f"Saved {CHOICE_NAMES[job.in_use]} as **{info.name}**"
                                            f"{version}: pick it in Model, or call it by name from the API and CLI.")
    except (ValidationError, LookupError, ValueError, OSError) as exc:
        st.session_state.classify_notice = ("error", problem_list("Could not save:", problems_of(exc)))


CHOICE_NAMES = {"tuned": "the tuned model", "untuned": "the untuned model",
                "blended": "the blend of tuned and untuned"}


@st.fragment(run_every=1.0)
def tune_status(examples: list[Example], model: str, descriptions: dict[str, str]) -> None:
    """Progress with time left and Cancel while tuning; the before/after once done."""
    job: TuneJob | None = st.session_state.get("classify_tune")
    if job is None:
        return
    if not job.done:
        show_job_progress(job, cancel_label="Cancel tuning", cancel_key="classify_tune_cancel")
        return
    if job.error:
        st.error(job.error)
        return
    metrics = job.metrics
    if job.key != grid_key(examples, model, descriptions):
        st.info("The examples or the model changed since tuning: Classify uses the untuned model. Tune again to "
                "use a tuned one.")
        return
    if not job.folder.is_dir():
        st.info(f"This tuning was cleared from the cache (it keeps the {KEEP_TUNED_GRIDS} newest): Classify uses "
                "the untuned model. Tune again, or save a tuning by name to keep it.")
        return
    guard = metrics.get("guard") or {"choice": "tuned"}
    folds = metrics["validation"].get("folds")
    how = f" ({folds} folds, each tuned without the examples it is scored on)" if folds else ""
    took = f"Tuned in {metrics['training_seconds']:.0f} s. {guard.get('message', '')}{how}"
    if guard.get("choice") == "blended" and "blended" not in job.choices:  # a reopened workspace, its blend pruned
        took += " The blend was cleared from the cache, so the tuned model stands in for it; tune again to get it back."
    in_use = CHOICE_NAMES[job.in_use]
    (st.warning if job.in_use == "untuned" else st.success)(f"{took} **Classify uses {in_use}.**")
    others = [c for c in job.choices if c != job.in_use]
    for column, other in zip(st.columns(len(others)) if others else [], others):
        column.button(f"Use {CHOICE_NAMES[other]}" + (" anyway" if other != guard.get("choice", "tuned") else ""),
                      key=f"classify_tune_use_{other}", on_click=lambda other=other: setattr(job, "choice", other))
    left, right = st.columns([3, 1], vertical_alignment="bottom")
    left.text_input(f"Save {in_use} as", key="classify_tune_name", placeholder="review-sentiment")
    right.button("Save as custom model", on_click=save_tuned_model, width="stretch")


def init_state() -> None:
    if "classify_examples" not in st.session_state:
        st.session_state.classify_editor_version = 0
        st.session_state.classify_results = None
        st.session_state.classify_notice = None
        apply_preset(DEFAULT_PRESET)
        st.session_state.classify_notice = None


# The page reads long inputs whole: on imdb, 20newsgroups and enron_spam (small, instant, 5 seeds) WINDOWS gained
# 0.4-2.8 points over END at N = 8 and 64, for 2-3x the time on those sets' texts (docs/BENCHMARKS.md, "Long
# texts"); a page classifies a few inputs, and texts within the window get END's answer exactly. The library, the
# CLI and the API keep Cohere's END default. (A comment, not a docstring: Streamlit prints a bare string.)
DEFAULT_PAGE_TRUNCATE = "WINDOWS"
TRUNCATE_TITLES = {"END": "END: keep the start", "START": "START: keep the end", "NONE": "NONE: refuse them",
                   "WINDOWS": "WINDOWS: read it all, in windows"}
TRUNCATE_HELP = ("The model reads 254 word pieces (small; 382 on large), about 190-290 words. END, START and NONE are "
                 "Cohere's. WINDOWS reads a longer text whole in overlapping windows cut at sentence ends and averages "
                 "them (at most 16 windows, about 3,000 words); it costs one extra embedding per window, and texts "
                 "within the window get exactly END's answer. After Classify, the results say which inputs were "
                 "longer and how they were read.")
KEPT_WIDGETS = ("classify_inputs", "classify_model", "classify_precision", "classify_truncate", "classify_label_names", "classify_preset",
                "classify_upload_mode", "classify_server_url", "classify_unknown", "classify_unknown_below",
                "classify_unknown_target", "classify_explain")


def choose_unknown(examples: list[Example], model: str, precision: str) -> None:
    """Set the threshold from the examples' out-of-fold predictions; say what it costs in coverage."""
    target = st.session_state.get("classify_unknown_target", DEFAULT_TARGET_PRECISION)
    try:
        choice = choose_threshold(examples, model, target_precision=target, precision=precision,
                                  truncate=st.session_state.get("classify_truncate", "END"))
    except (ValidationError, LookupError) as exc:
        st.session_state.classify_unknown_choice = ("error", problem_list("Could not choose a threshold:",
                                                                          problems_of(exc)))
        return
    st.session_state.classify_unknown_below = round(choice.threshold, 2)
    st.session_state.classify_unknown_choice = ("success" if choice.met else "warning", choice.summary)


def restore_state() -> None:
    """Bring back what Streamlit dropped while the page (or part of it) was not drawn.

    Streamlit deletes a widget's value at the end of every run that did not draw the widget: a
    visit to the Models or Bulk page, or a custom model here (which hides the grid). Plain keys
    survive, so the page keeps copies: ``classify_saved`` for widget values, ``classify_current``
    for the grid as edited.
    """
    for key, value in st.session_state.get("classify_saved", {}).items():
        if key not in st.session_state:
            st.session_state[key] = value
    editor = f"classify_editor_{st.session_state.classify_editor_version}"
    current = st.session_state.get("classify_current")
    if editor not in st.session_state and current is not None and not current.equals(st.session_state.classify_examples):
        st.session_state.classify_examples = current[GRID_COLUMNS].reset_index(drop=True).astype("string")
        st.session_state.classify_editor_version += 1


def save_state() -> None:
    saved = st.session_state.setdefault("classify_saved", {})
    saved.update({key: st.session_state[key] for key in KEPT_WIDGETS if key in st.session_state})


def show_results(results) -> None:
    for result in results:
        with st.container(border=True):
            st.markdown(f"**{result.input}**")
            if result.prediction == UNKNOWN and result.classification_type != "multi-label":
                st.markdown(f"Prediction: :orange-background[**{UNKNOWN}**] · top confidence {result.confidence:.1%}, "
                            "below your threshold")
            elif result.classification_type != "multi-label":
                st.markdown(f"Prediction: :green-background[**{result.prediction}**] · "
                            f"confidence {result.confidence:.1%}")
            if result.classification_type == "multi-label":
                show_multi_label(result)
            else:
                for label, confidence in result.labels.items():
                    name = f"**{label}**" if label == result.prediction else label
                    st.progress(min(max(confidence, 0.0), 1.0), text=f"{name}: {confidence:.1%}")
            if result.explanation is not None:
                show_explanation(result.input, result.explanation)


def show_explanation(text: str, explanation: Explanation) -> None:
    """The input tinted word by word for each explained label, a legend, and the nearest examples."""
    st.markdown("**Why?**")
    for label, words in {explanation.label: explanation.words, **explanation.other_labels}.items():
        if explanation.other_labels:
            st.caption(f"Toward **{label}**")
        st.markdown(tinted_html(text, words), unsafe_allow_html=True)
    st.caption(f"Green words push toward **{explanation.label}**, red ones away; the stronger the colour, the "
               "stronger the push (hover a word for its weight: how much the label's log-odds fall without it; "
               "\"estimated\" when it was not measured alone).")
    if explanation.note:
        st.caption(explanation.note[0].upper() + explanation.note[1:] + ".")
    if explanation.nearest:
        st.dataframe(pd.DataFrame([{"nearest example": n.text, "label": n.label, "similarity": round(n.similarity, 3)}
                                   for n in explanation.nearest]), hide_index=True, width="stretch")


def show_multi_label(result) -> None:
    """A bar per label; every label over its own threshold is marked (several, or none)."""
    chosen = set(result.predictions)
    st.markdown("Labels: " + (" ".join(f":green-background[**{label}**]" for label in result.predictions)
                              if chosen else "_none over its threshold_"))
    for label, confidence in result.labels.items():
        mark = "✓ " if label in chosen else ""
        name = f"**{label}**" if label in chosen else label
        threshold = result.thresholds.get(label)
        cut = f" (threshold {threshold:.0%})" if threshold is not None else ""
        st.progress(min(max(confidence, 0.0), 1.0), text=f"{mark}{name}: {confidence:.1%}{cut}")


def show_export(inputs: list[str], examples: list[Example] | None, model: str, label_names: bool = False,
                descriptions: dict[str, str] | None = None, unknown_below: float | None = None) -> None:
    with st.expander("Export code", expanded=False):
        url = st.text_input("Server URL for the API snippets", key="classify_server_url",
                            help="Where `python -m playground serve` listens.")
        snippets = export.all_snippets(inputs, examples, model, server_url=url, label_names=label_names,
                                       descriptions=descriptions, unknown_below=unknown_below)
        tabs = st.tabs(["Python", "JSON + curl", "Cohere SDK", "CSV"])
        with tabs[0]:
            st.code(snippets["python"], language="python")
            st.download_button("Download classify.py", snippets["python"], "classify.py", "text/x-python")
        with tabs[1]:
            st.code(snippets["json"], language="json")
            st.code(snippets["curl"], language="bash")
            st.download_button("Download request.json", snippets["json"], "request.json", "application/json")
        with tabs[2]:
            st.code(snippets["cohere"], language="python")
            st.download_button("Download cohere_classify.py", snippets["cohere"], "cohere_classify.py", "text/x-python")
        with tabs[3]:
            st.code(snippets["csv"], language="csv")
            st.download_button("Download examples.csv", snippets["csv"], "examples.csv", "text/csv")


init_state()
open_workspace_for_page()
restore_state()
if (restored := st.session_state.pop("classify_tune_restore", None)) is not None:  # the workspace's tuning
    st.session_state.classify_tune = TuneJob(key=restored["key"], model=restored["model"], folder=restored["folder"],
                                             restored=restored["config"], done=True)
render_sidebar()
st.title("Classify")
st.caption("Label a few examples, type some inputs, press **Classify**. Everything runs on this machine.")

custom_models = {info.name: info for info in list_models() if info.status == "ok"}
models = list(BASE_MODELS) + list(custom_models)
if st.session_state.get("classify_model") not in models:  # a custom model deleted or renamed meanwhile
    st.session_state.classify_model = "small"
model = st.selectbox("Model", models, key="classify_model",
                     format_func=lambda m: BASE_MODELS[m].title if m in BASE_MODELS else f"{m} (custom)")
custom = custom_models.get(model)
if custom is None:
    st.caption(BASE_MODELS[model].hint)
else:
    st.caption(f"Custom {custom.type} model on {custom.base_model}, trained on {custom.n_examples} examples; "
               f"labels: {', '.join(custom.labels)}. It needs no examples.")
with st.expander("Advanced settings", expanded=False):
    precision = st.selectbox("Encoder precision", PRECISIONS, key="classify_precision",
                             help="bf16 is about 1.8x faster than fp32 on CPUs with AVX512-BF16, at the same accuracy. "
                                  "int8 (opt-in) is faster still at a small accuracy cost, and is built "
                                  "once per model on first use (docs/PRECISION.md).")
    st.caption(f"In use: **{resolve_precision(precision)}**" + (" (auto)" if precision == "auto" else ""))
    st.session_state.setdefault("classify_truncate", DEFAULT_PAGE_TRUNCATE)
    truncate = st.selectbox("Texts longer than the model takes", sorted(TRUNCATE_OPTIONS), key="classify_truncate",
                            format_func=TRUNCATE_TITLES.get, help=TRUNCATE_HELP)
    label_names = st.checkbox("Use the label names as a hint (untuned model)", key="classify_label_names",
                              help="The names are weighed by how well they predict your examples out of fold, so "
                                   "meaningless names cost nothing; on public sets they add about 3 points at 8 "
                                   "examples per label, but they can tip near-ties.")

grid_error = None
examples: list[Example] = []
descriptions: dict[str, str] = {}
if custom is None:  # a custom model needs no examples: no grid, upload or presets
    with st.expander("Presets and CSV upload", expanded=False):
        presets = list_presets()
        left, right = st.columns([3, 1], vertical_alignment="bottom")
        preset = left.selectbox("Preset", list(presets), key="classify_preset", format_func=lambda n: presets[n].title)
        right.button("Load preset", on_click=apply_preset, width="stretch")
        st.caption(presets[preset].description + " Loading it replaces the examples and inputs.")
        st.radio("When a file is uploaded", ["Replace", "Append"], key="classify_upload_mode", horizontal=True)
        st.file_uploader("Labelled CSV (text, label; header optional; comma, semicolon or tab)", type=["csv", "tsv", "txt"],
                         key="classify_upload", on_change=on_upload)

    show_notice(st.session_state.get("classify_notice"))

    st.subheader("Examples")
    edited = st.data_editor(
        st.session_state.classify_examples,
        key=f"classify_editor_{st.session_state.classify_editor_version}",
        num_rows="dynamic", hide_index=True, width="stretch",
        column_config={
            "text": st.column_config.TextColumn("Text", width="large", required=True),
            "label": st.column_config.TextColumn("Label", width="small", required=True),
            "description": st.column_config.TextColumn(
                "Label description (optional)", width="medium",
                help="What the label means, in a few words, on any one row of that label. Used with the label "
                     "names as a hint, and by Tune."),
        },
    )
    st.session_state.classify_current = edited

    grid_error = None
    try:
        examples, descriptions = grid_contents(edited.reindex(columns=GRID_COLUMNS).itertuples(index=False))
    except ValidationError as exc:
        examples, grid_error = [], exc
    counts = label_counts(examples)
    if counts:
        st.caption(" · ".join(f"**{label}**: {n}" for label, n in counts.items()) + f" · {len(examples)} examples")
    for label, n in counts.items():
        if n < MIN_EXAMPLES_PER_LABEL:
            st.warning(f"Label **{label}** has {n} example; add at least {MIN_EXAMPLES_PER_LABEL - n} more.")

with st.expander("Unknown answer (opt-in)", expanded=bool(st.session_state.get("classify_unknown"))):
    st.caption("Below a confidence threshold the answer is `unknown` instead of a guess: fewer answers, more of them "
               "right. The threshold can be chosen from your examples, each predicted by a model fitted without it; "
               "the precision it promises is for texts that belong to one of your labels (texts about something "
               "else are refused less reliably).")
    unknown_on = st.checkbox("Answer unknown below a confidence", key="classify_unknown")
    for key, default in (("classify_unknown_below", 0.5), ("classify_unknown_target", DEFAULT_TARGET_PRECISION)):
        if key not in st.session_state:
            st.session_state[key] = default
    st.slider("Threshold", 0.0, 1.0, step=0.01, key="classify_unknown_below", disabled=not unknown_on)
    if custom is None:
        left, right = st.columns([1, 2], vertical_alignment="bottom")
        left.number_input("Target precision", 0.5, 1.0, step=0.01, key="classify_unknown_target")
        right.button("Choose the threshold from my examples", on_click=choose_unknown,
                     args=(examples, model, precision), disabled=grid_error is not None or not unknown_on)
        show_notice(st.session_state.get("classify_unknown_choice") if unknown_on else None)
unknown_below = st.session_state.classify_unknown_below if unknown_on else None

st.subheader("Inputs")
st.text_area("One input per line", key="classify_inputs", height=120)
inputs = inputs_from_text(st.session_state.classify_inputs)
explain = st.checkbox("Why? Show the words behind each answer and the nearest examples", key="classify_explain",
                      help="Weighs each word by leaving it out: the strongest few measured, the others estimated from the same pass (about 2.5x the time of a plain answer).")

if st.button("Classify", type="primary"):
    st.session_state.classify_notice = None
    try:
        if grid_error is not None:
            raise grid_error
        if len(inputs) > PAGE_MAX_INPUTS:
            raise ValidationError(f"{len(inputs)} inputs: the page takes at most {PAGE_MAX_INPUTS}; "
                                  "use bulk classify for more")
        spinner = None if is_loaded(model, precision) else f"Loading the {model} model (first use only)…"
        tuned = tuned_for(examples, model, descriptions) if custom is None else None
        with st.spinner(spinner or "Classifying…"):
            if tuned is not None:  # this grid was tuned: the tuned encoder and its head answer
                check_inputs(inputs, max_inputs=None)
                tuned_model = load_folder(tuned.folder_for(tuned.in_use), precision=precision)
                encoder = tuned_model.encoder
                results = with_unknown(tuned_model.classify(inputs, truncate=truncate), unknown_below)
                st.session_state.classify_results = (with_explanations(tuned_model, results, truncate=truncate)
                                                     if explain else results)
            else:
                st.session_state.classify_results = classify(inputs, examples if custom is None else None, model,
                                                             precision=precision, max_inputs=None, truncate=truncate,
                                                             label_names=label_names and custom is None,
                                                             descriptions=descriptions or None,
                                                             unknown_below=unknown_below, explain=explain)
                encoder = model_encoder(model, precision=precision)
            st.session_state.classify_length_notes = [str(n) for n in length_notes(encoder, inputs, truncate=truncate)]
    except (ValidationError, ModelNotFoundError, LookupError) as exc:
        st.session_state.classify_results = None
        st.session_state.classify_length_notes = []
        show_problems("Could not classify:", exc)

if custom is None:
    with st.expander("Tune the model on these examples", expanded=st.session_state.get("classify_tune") is not None):
        st.caption("Tunes the encoder's top layers on the grid (seconds on small), so Classify answers with a model "
                   "that learned your labels. The scores are cross-validated: each fold's copy is tuned without the "
                   "examples it is scored on.")
        running = (job := st.session_state.get("classify_tune")) is not None and not job.done
        if st.button("Tune", disabled=running or grid_error is not None or not examples):
            try:
                check_examples(examples)
                start_tuning(examples, model, descriptions)
            except ValidationError as exc:
                show_problems("Could not tune:", exc)
        tune_status(examples, model, descriptions)

if custom is None:
    render_label_next(examples, model, precision, grid_error is None and bool(examples),
                      lambda grown: set_examples(grown, descriptions),  # the grid grows, its descriptions stay
                      truncate=truncate)

if st.session_state.classify_results:
    st.subheader("Results")
    for note in st.session_state.get("classify_length_notes") or []:
        st.caption(f"Longer than the model's window: {note}")
    show_results(st.session_state.classify_results)

if "classify_server_url" not in st.session_state:
    st.session_state.classify_server_url = export.DEFAULT_SERVER_URL
if custom is None:
    render_evaluate(examples, model, truncate=truncate)
show_export(inputs, examples if custom is None else None, model, label_names=label_names and custom is None,
            descriptions=descriptions, unknown_below=unknown_below)
save_state()
autosave()
