"""The "Label next" section of the Classify page: an unlabelled pool, batches to label, a learning curve.

A thin view over ``playground.label_next``: the upload is read and embedded once (with progress)
into a ``LabelPool`` kept in ``st.session_state["label_pool"]``; **Suggest what to label** shows a
batch with the model's guess in an editable grid (accept the guess, pick another label, or skip,
one click per row); **Add to examples** grows the Classify grid, takes the rows out of the pool,
adds a point to the learning curve and shows the next batch. Session keys carry ``label_``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pandas as pd
import streamlit as st

from playground.active import DEFAULT_BATCH
from playground.bulk import format_eta
from playground.embeddings import ModelNotFoundError
from playground.label_next import (
    MAX_POOL_ROWS,
    LabelPool,
    PoolProgress,
    Suggestion,
    decisions_from_rows,
    read_pool,
    score_examples,
)
from playground.ui.widgets import problem_list, problems_of, show_notice
from playground.validation import Example, ValidationError
from playground.workspace import restore_pool

SKIP_OPTION = "(skip)"
BATCH_COLUMNS = ["index", "text", "guess", "confidence", "label"]


def batch_frame(batch: Sequence[Suggestion]) -> pd.DataFrame:
    """The grid of a batch: the label column starts at the model's guess (accepting is no click at all)."""
    return pd.DataFrame([[s.index, s.text, s.guess, s.confidence, s.guess] for s in batch], columns=BATCH_COLUMNS)


def curve_frame(points: Sequence) -> pd.DataFrame:
    return pd.DataFrame({"examples": [p.n_examples for p in points],
                         "cross-validated accuracy": [p.accuracy for p in points]}).set_index("examples")


def _init() -> None:
    for key, value in (("label_pool", None), ("label_batch", None), ("label_curve", []), ("label_notice", None),
                       ("label_batch_version", 0)):
        if key not in st.session_state:
            st.session_state[key] = value


def _progress(bar) -> Callable[[PoolProgress], None]:
    def show(p: PoolProgress) -> None:
        bar.progress(p.fraction, text=f"{p.phase} {p.done:,} / {p.total:,} texts · {format_eta(p.seconds_left)} left")
    return show


def _record(examples: list[Example], model: str, precision: str) -> None:
    """A point of the learning curve for these examples (skipped silently when they cannot be scored yet)."""
    try:
        point = score_examples(examples, model, precision=precision)
    except ValidationError:
        return
    curve = [p for p in st.session_state.label_curve if p.n_examples != point.n_examples]
    st.session_state.label_curve = [*curve, point]


def _suggest(pool: LabelPool, examples: list[Example]) -> None:
    batch = pool.suggest(examples, k=int(st.session_state.get("label_k", DEFAULT_BATCH)))
    st.session_state.label_batch = batch_frame(batch) if batch else None
    st.session_state.label_batch_edited = None  # the workspace saves the new batch, not the old one's edits
    st.session_state.label_batch_version += 1
    if not batch:
        st.session_state.label_notice = ("info", "The pool is empty: every text was labelled or skipped.")


def _restore(state, texts, *, precision: str, truncate: str) -> LabelPool | None:
    """The workspace's pool, embedded again on request (it can take minutes for a big pool)."""
    decided = len(state.taken)
    st.info(f"This workspace has the pool **{state.source}**: {state.n_texts - decided:,} of {state.n_texts:,} texts "
            f"left, {decided:,} decided.")
    if not st.button("Continue with this pool (embeds its texts again)"):
        return None
    bar = st.progress(0.0, text="Embedding…")
    try:
        pool = restore_pool(state, texts, precision=precision, truncate=truncate, progress=_progress(bar))
    except (ValidationError, ModelNotFoundError) as exc:
        st.error(problem_list(f"The pool **{state.source}** could not be embedded again:", problems_of(exc)))
        return None
    finally:
        bar.empty()
    st.session_state.update(label_pool=pool, label_pool_id=state.pool_id, label_pool_source=state.source,
                            label_restore=None)
    return pool


def render_label_next(examples: list[Example], model: str, precision: str, grid_ok: bool,
                      set_examples: Callable[[list[Example]], None], *, truncate: str = "END") -> None:
    _init()
    pool: LabelPool | None = st.session_state.label_pool
    restore = st.session_state.get("label_restore")  # (PoolState, texts) of the workspace, not embedded yet
    with st.expander("Label next: suggest what to label from unlabelled texts",
                     expanded=pool is not None or restore is not None):
        st.caption(f"Upload texts without labels (a CSV with a `text` column, or a .txt file with one text per line; "
                   f"up to {MAX_POOL_ROWS:,}). The model ranks them by how much labelling them would teach it "
                   "(the ones it is least sure of, spread over different kinds of text) and shows a batch with its "
                   "guess: keep the guess, pick the right label, or skip.")
        upload = st.file_uploader("Unlabelled texts", type=["csv", "tsv", "txt"], key="label_upload")
        left, right = st.columns([1, 1], vertical_alignment="bottom")
        left.number_input("Batch size", min_value=1, max_value=100, value=DEFAULT_BATCH, key="label_k")
        if right.button("Load these texts", disabled=upload is None, width="stretch"):
            bar = st.progress(0.0, text="Reading…")
            try:
                pool_file = read_pool(upload.getvalue(), name=upload.name, progress=_progress(bar))
                pool = LabelPool(pool_file.texts, model, precision=precision, truncate=truncate, progress=_progress(bar))
            except (ValidationError, ModelNotFoundError) as exc:
                st.session_state.label_notice = ("error", problem_list(
                    f"**{upload.name}** was not loaded; the pool is unchanged.", problems_of(exc)))
            else:
                st.session_state.update(label_pool=pool, label_batch=None, label_curve=[], label_restore=None,
                                        label_pool_id=None, label_pool_source=upload.name,
                                        label_notice=("success", f"Loaded {pool_file.summary} from **{upload.name}**."))
                if grid_ok:
                    _record(examples, model, precision)
            bar.empty()
        show_notice(st.session_state.label_notice)
        if pool is None and restore is not None:
            pool = _restore(*restore, precision=precision, truncate=truncate)
        if pool is None:
            return
        if pool.model != model:
            st.info(f"The pool was embedded with the {pool.model} model: load the texts again to label with {model}.")
            return
        st.caption(f"{pool.remaining:,} texts left in the pool.")
        if st.button("Suggest what to label", type="primary", disabled=not grid_ok or not pool.remaining):
            try:
                _suggest(pool, examples)
            except ValidationError as exc:
                st.error(problem_list("Fix the examples first:", problems_of(exc)))
        if not grid_ok:
            st.caption("The examples grid has problems (see above): fix them to get suggestions.")
        batch: pd.DataFrame | None = st.session_state.label_batch
        if batch is not None:
            labels = sorted({ex.label for ex in examples})
            edited = st.data_editor(
                batch, key=f"label_batch_{st.session_state.label_batch_version}", hide_index=True, width="stretch",
                disabled=["index", "text", "guess", "confidence"], column_order=["text", "guess", "confidence", "label"],
                column_config={
                    "text": st.column_config.TextColumn("Text", width="large"),
                    "guess": st.column_config.TextColumn("Model's guess"),
                    "confidence": st.column_config.ProgressColumn("Confidence", min_value=0.0, max_value=1.0,
                                                                  format="percent"),
                    "label": st.column_config.SelectboxColumn("Label", options=[*labels, SKIP_OPTION], required=True,
                                                              help=f"Keep the guess, pick the right label, or "
                                                                   f"{SKIP_OPTION} to leave the text out."),
                })
            st.session_state.label_batch_edited = edited  # the workspace keeps the choices made so far
            if st.button("Add to examples and suggest the next batch", disabled=not grid_ok):
                rows = [{**row, "label": None if row["label"] == SKIP_OPTION else row["label"]}
                        for row in edited.to_dict("records")]
                try:
                    grown = pool.accept(examples, decisions_from_rows(rows))
                    set_examples(grown)
                    added = len(grown) - len(examples)
                    st.session_state.label_notice = ("success", (f"Added {added} examples ({len(rows) - added} "
                                                                 "skipped); here is the next batch."))
                    _record(grown, model, precision)
                    _suggest(pool, grown)
                except ValidationError as exc:
                    st.session_state.label_notice = ("error", problem_list("Could not add the batch:", problems_of(exc)))
                st.rerun()
        points = st.session_state.label_curve
        if points:
            last = points[-1]
            st.markdown(f"**Progress**: cross-validated accuracy **{last.accuracy:.0%}** on {last.n_examples} examples"
                        + (f" (from {points[0].accuracy:.0%} on {points[0].n_examples})" if len(points) > 1 else ""))
            if len(points) > 1:
                st.line_chart(curve_frame(points), height=180)
            st.caption("Examples per label: " + " · ".join(f"**{k}** {v}" for k, v in last.per_label.items()))
