"""The Bulk page: a whole CSV (uploaded or pasted) classified in batches, then downloaded.

Widgets in, one call into ``playground.bulk.classify_file``, results out. The input is saved
to a per-session temporary folder and streamed from there, so the page holds one chunk of
rows at a time. Pressing **Stop** reruns the page, which interrupts the job inside its
progress callback; the job's temporary file is removed and no result file appears.
Session keys carry the ``bulk_`` prefix.
"""

from __future__ import annotations

import csv
import tempfile
from pathlib import Path

import pandas as pd
import streamlit as st

from playground.bulk import BulkProgress, classify_file, format_eta, inspect_csv
from playground.embeddings import BASE_MODELS, ModelNotFoundError
from playground.label_next import REVIEW_ROWS, corrections_csv, review_queue
from playground.presets import DEFAULT_PRESET, load_preset
from playground.store import list_models
from playground.ui.widgets import show_notice, show_problems
from playground.validation import Example, ValidationError, examples_from_rows, inputs_from_text

PREVIEW_ROWS = 100
INPUT_NAME = "input.csv"
OUTPUT_NAME = "results.csv"
CURRENT = "Current examples (Classify page)"


def work_dir() -> Path:
    if "bulk_dir" not in st.session_state:
        st.session_state.bulk_dir = tempfile.mkdtemp(prefix="playground-bulk-")
    return Path(st.session_state.bulk_dir)


def save_upload() -> None:
    uploaded = st.session_state.get("bulk_upload")
    if uploaded is not None:
        (work_dir() / INPUT_NAME).write_bytes(uploaded.getvalue())
        st.session_state.bulk_result = None


def save_paste(text: str) -> Path | None:
    """One text per line, written as a one-column CSV with a ``text`` header."""
    lines = inputs_from_text(text)
    if not lines:
        return None
    path = work_dir() / "pasted.csv"
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["text"])
        writer.writerows([line] for line in lines)
    return path


def current_examples() -> tuple[list[Example], str, str | None]:
    """The Classify page's grid and model; the default preset when that page was not opened yet."""
    frame = st.session_state.get("classify_current")
    model = st.session_state.get("classify_model") or st.session_state.get("bulk_classify_model", "small")
    if frame is None:
        preset = load_preset(DEFAULT_PRESET)
        note = f"The Classify page was not opened yet: using the preset **{preset.title}**."
        return list(preset.examples), preset.model, note
    return examples_from_rows(frame[["text", "label"]].itertuples(index=False)), model, None


def custom_models() -> list[str]:
    try:
        return [info.name for info in list_models() if getattr(info, "status", "ok") == "ok"]
    except (OSError, ValueError):
        return []


def init_state() -> None:
    for key, value in (("bulk_result", None), ("bulk_notice", None), ("bulk_paste", "")):
        if key not in st.session_state:
            st.session_state[key] = value


def on_stop() -> None:
    st.session_state.bulk_notice = ("warning", "Stopped: nothing was written. Press **Classify all** to start again.")


init_state()
st.title("Bulk classify")
st.caption("Classify every row of a CSV with the Classify page's examples or a custom model, then download "
           "the rows with `prediction`, `confidence`, `confidence_<label>` and `error` columns added.")

source = st.radio("Texts", ["Upload CSV", "Paste"], key="bulk_source", horizontal=True)
if source == "Upload CSV":
    st.file_uploader("CSV with a header row (comma, semicolon or tab)", type=["csv", "tsv", "txt"],
                     key="bulk_upload", on_change=save_upload)
    path = work_dir() / INPUT_NAME if st.session_state.get("bulk_upload") is not None else None
else:
    st.text_area("One text per line", key="bulk_paste", height=160)
    path = save_paste(st.session_state.bulk_paste)

if path is None or not path.is_file():
    st.info("Upload a CSV or paste some texts to begin.")
    st.stop()

try:
    layout, total = inspect_csv(path)
except ValidationError as exc:
    show_problems("This file cannot be read:", exc)
    st.stop()
column = st.selectbox("Text column", list(layout.header), index=layout.text_index, key="bulk_text_column")
st.caption(f"{total:,} rows · {len(layout.header)} columns")

choices = [CURRENT, *custom_models()]
choice = st.selectbox("Classify with", choices, key="bulk_classifier")
examples: list[Example] | None = None
if choice == CURRENT:
    try:
        examples, model, note = current_examples()
    except ValidationError as exc:
        show_problems("The Classify page's examples have problems:", exc)
        st.stop()
    if note:
        st.caption(note)
    title = BASE_MODELS[model].title if model in BASE_MODELS else model
    st.caption(f"{len(examples)} examples on the **{title}** model.")
else:
    model = choice

with st.expander("Unknown answer (opt-in)", expanded=bool(st.session_state.get("bulk_unknown"))):
    unknown_on = st.checkbox("Answer `unknown` below a confidence", key="bulk_unknown",
                             help="Single-label rows the model is less sure of than this get the prediction "
                                  "`unknown` (their confidences are kept). The Classify page can choose the "
                                  "threshold from your examples for a target precision.")
    unknown_at = st.slider("Threshold", 0.0, 1.0, value=st.session_state.get("classify_unknown_below", 0.5),
                           step=0.01, key="bulk_unknown_below", disabled=not unknown_on)
unknown_below = float(unknown_at) if unknown_on else None

truncate = st.session_state.get("classify_truncate", "END")  # the Classify page's Truncate option, as its examples
st.caption(f"Texts longer than the model's window: **{truncate}** (the Classify page's advanced settings)"
           + (", read in windows; progress counts them." if truncate == "WINDOWS" else "."))

left, right = st.columns([1, 1])
start = left.button("Classify all", type="primary", key="bulk_start")
right.button("Stop", key="bulk_stop", on_click=on_stop)

show_notice(st.session_state.bulk_notice)

if start:
    st.session_state.bulk_notice = None
    st.session_state.bulk_result = None
    bar = st.progress(0.0, text=f"0 / {total:,} rows")

    def show(p: BulkProgress) -> None:
        windows = f" · {p.windows_done:,} windows" if p.windows_done else ""
        bar.progress(p.fraction, text=f"{p.rows_done:,} / {p.total:,} rows{windows} · {p.rate:,.0f} rows/s · "
                                      f"{format_eta(p.seconds_left)} left")

    try:
        result = classify_file(path, work_dir() / OUTPUT_NAME, examples=examples, model=model, text_column=column,
                               progress=show, unknown_below=unknown_below, truncate=truncate)
    except (ValidationError, ModelNotFoundError, LookupError) as exc:
        show_problems("Could not classify:", exc)
        st.stop()
    st.session_state.bulk_result = result

result = st.session_state.bulk_result
if result is not None and result.output is not None and Path(result.output).is_file():
    st.success(f"{result.rows:,} rows classified in {result.seconds:.1f}s"
               + (f"; {result.errors:,} rows have an error (see the `error` column)." if result.errors else "."))
    if result.long_note:
        st.caption(result.long_note + ".")
    st.markdown(f"**Preview** (first {PREVIEW_ROWS} rows)")
    st.dataframe(pd.read_csv(result.output, nrows=PREVIEW_ROWS, dtype=str, keep_default_na=False),
                 hide_index=True, width="stretch")
    output = Path(result.output)
    st.download_button("Download results.csv", data=output.read_bytes, file_name=OUTPUT_NAME, mime="text/csv",
                       type="primary", key="bulk_download")

    with st.expander("Review queue: the rows the model is least sure of, first", expanded=False):
        st.caption("Check these by hand: fix the label where the model is wrong, tick **checked**, then download the "
                   "checked rows as examples (`text,label`, the file the Classify page's uploader takes).")
        top = st.number_input("Rows to review", min_value=1, max_value=1000, value=REVIEW_ROWS, key="bulk_review_top")
        try:
            queue = review_queue(output, top=int(top), text_column=result.text_column)
        except ValidationError as exc:
            show_problems("No review queue for this output:", exc)
            queue = []
        if queue:
            frame = pd.DataFrame([{**r.to_dict(), "label": r.prediction, "checked": False} for r in queue])
            options = sorted({*result.labels, *frame["prediction"]})
            edited = st.data_editor(
                frame, key=f"bulk_review_{result.seconds}_{int(top)}", hide_index=True, width="stretch",
                disabled=["row", "text", "prediction", "confidence", "uncertainty"],
                column_order=["row", "text", "prediction", "confidence", "label", "checked"],
                column_config={"confidence": st.column_config.ProgressColumn("confidence", min_value=0.0, max_value=1.0,
                                                                             format="percent"),
                               "label": st.column_config.SelectboxColumn("label", options=options, required=True),
                               "checked": st.column_config.CheckboxColumn("checked")})
            checked = int(edited["checked"].sum())
            st.download_button(f"Download the {checked} checked rows as examples", corrections_csv(
                edited.to_dict("records")), "corrected_examples.csv", "text/csv", disabled=not checked,
                key="bulk_review_download")
