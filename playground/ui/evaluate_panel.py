"""The "Evaluate examples" section of the Classify page: how good are these examples?

A thin view over ``playground.evaluate.evaluate``: one button, then the report. The report
is kept in ``st.session_state["evaluate_report"]`` with the examples it was made from, so a
rerun shows it again and an edit of the grid says the numbers are stale.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import streamlit as st

from playground.charts import confusion_cells, confusion_frame, reliability_frame
from playground.embeddings import ModelNotFoundError, is_loaded
from playground.evaluate import LOO_MAX_EXAMPLES, EvaluationReport, evaluate
from playground.ui.widgets import show_confusion_heatmap, show_problems, show_reliability
from playground.validation import Example, ValidationError


def _key(examples: Sequence[Example], model: str, truncate: str) -> tuple:
    return (model, truncate, tuple((ex.text, ex.label) for ex in examples))


def per_label_frame(report: EvaluationReport) -> pd.DataFrame:
    return pd.DataFrame([m.to_dict() for m in report.per_label]).set_index("label")


def flagged_frame(report: EvaluationReport) -> pd.DataFrame:
    rows = [{"row": f.index + 1, "text": f.text, "label": f.label, "predicted": f.predicted,
             "confidence": f.confidence, "wrong": not f.correct} for f in report.flagged]
    return pd.DataFrame(rows, columns=["row", "text", "label", "predicted", "confidence", "wrong"])


def show_report(report: EvaluationReport) -> None:
    method = ("leave-one-out" if report.method == "leave-one-out"
              else f"{report.n_folds}-fold cross-validation")
    cols = st.columns(4)
    cols[0].metric("Accuracy", f"{report.accuracy:.1%}", help="Each example predicted by a model fitted without it.")
    cols[1].metric("Macro-F1", f"{report.macro_f1:.1%}", help="F1 averaged over labels, each label counting the same.")
    cols[2].metric("Wrong", f"{report.n_wrong} of {report.n_examples}")
    cols[3].metric("Method", method, help=f"Leave-one-out up to {LOO_MAX_EXAMPLES} examples, stratified k-fold above.")
    if report.classification_type == "multi-label":
        st.caption(f"Micro-F1 {report.micro_f1:.1%} · accuracy is exact match of the whole label set.")

    st.markdown("**Per label**")
    st.dataframe(per_label_frame(report).style.format({"precision": "{:.1%}", "recall": "{:.1%}", "f1": "{:.1%}"}),
                 width="stretch")
    if report.confusion_matrix:
        st.markdown("**Confusion matrix** (rows: your label, columns: predicted)")
        matrix = confusion_frame(report)
        picture, numbers = st.columns(2)
        with picture:
            show_confusion_heatmap(confusion_cells(matrix))
        numbers.dataframe(matrix.style.background_gradient(cmap="Blues", axis=None), width="stretch")

    st.markdown("**Check these examples** (wrong first, then least sure)")
    st.caption("A wrong one with high confidence is often mislabelled; unsure ones sit where labels blur: "
               "add examples there. Row numbers are the grid's.")
    st.dataframe(flagged_frame(report).style.format({"confidence": "{:.1%}"}), hide_index=True, width="stretch")

    if report.near_duplicates:
        st.markdown("**Near-duplicates with different labels**")
        st.dataframe(pd.DataFrame([{"row": d.first + 1, "text": d.first_text, "label": d.first_label,
                                    "other row": d.second + 1, "other text": d.second_text,
                                    "other label": d.second_label, "similarity": round(d.similarity, 3)}
                                   for d in report.near_duplicates]), hide_index=True, width="stretch")
    else:
        st.caption("No near-duplicate texts with different labels.")

    if report.learning_curve:
        st.markdown("**Learning curve**: accuracy with this many examples per label")
        curve = pd.DataFrame({"examples per label": [p.per_label for p in report.learning_curve],
                              "accuracy": [p.accuracy for p in report.learning_curve]})
        st.line_chart(curve, x="examples per label", y="accuracy")
    if report.reliability:
        decisions = "each label decision" if report.classification_type == "multi-label" else "each example's answer"
        st.markdown("**Are the confidences honest?** Out-of-fold confidence against how often it was right "
                    f"({decisions}); on the dashed line, 80 % sure means right 8 times in 10")
        bins = reliability_frame(report)
        picture, numbers = st.columns(2)
        with picture:
            show_reliability(bins)
        numbers.dataframe(bins.style.format({"confidence": "{:.1%}", "accuracy": "{:.1%}"}),
                          hide_index=True, width="stretch")
    st.caption(f"Evaluated in {report.seconds:.1f}s.")


def render_evaluate(examples: Sequence[Example], model: str, *, truncate: str = "END") -> None:
    """An "Evaluate examples" expander: a button, then the cross-validation report (long examples read as
    ``truncate`` says, as Classify reads them)."""
    st.session_state.bulk_classify_model = model  # the Bulk page's default; widget keys vanish on page change
    with st.expander("Evaluate examples", expanded=st.session_state.get("evaluate_report") is not None):
        st.caption("How well do these examples teach the model? Each example is classified by a model "
                   "fitted on all the others.")
        key = _key(examples, model, truncate)
        if st.button("Evaluate", key="evaluate_run"):
            spinner = "Evaluating…" if is_loaded(model) else f"Loading the {model} model (first use only)…"
            try:
                with st.spinner(spinner):
                    st.session_state.evaluate_report = (key, evaluate(list(examples), model, truncate=truncate))
            except (ValidationError, ModelNotFoundError) as exc:
                st.session_state.evaluate_report = None
                show_problems("Could not evaluate:", exc)
        stored = st.session_state.get("evaluate_report")
        if stored:
            made_for, report = stored
            if made_for != key:
                st.info("The examples, the model or the reading of long texts changed since this report: "
                        "press **Evaluate** again.")
            show_report(report)
