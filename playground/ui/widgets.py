"""What every page draws the same way: a kept notice, a list of problems from the core, a background job, charts.

Each helper is a statement that draws, so a page never writes a bare ``st.a(...) if … else
st.b(...)`` expression (Streamlit's magic would also ``st.write`` its return value).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import altair as alt
import pandas as pd
import streamlit as st

from playground.store import TrainingBusyError
from playground.training import TrainingCancelled, TrainingProgress
from playground.validation import ValidationError

NoticeKind = Literal["success", "info", "warning", "error"]
Notice = tuple[NoticeKind, str]
"""A message kept in ``st.session_state`` across a rerun: ``("warning", "Stopped: …")``."""


def show_notice(notice: Notice | None) -> None:
    """Draw a kept notice in its colour; nothing for ``None``."""
    if not notice:
        return
    kind, message = notice
    {"success": st.success, "info": st.info, "warning": st.warning}.get(kind, st.error)(message)


def problems_of(exc: BaseException) -> list[str]:
    """Every problem an error names: ``ValidationError.problems``, else its message."""
    return list(getattr(exc, "problems", None) or [str(exc)])


def problem_list(title: str, problems: Sequence[str]) -> str:
    """``title`` followed by one Markdown bullet per problem."""
    return title + "\n" + "\n".join(f"- {p}" for p in problems)


def show_problems(title: str, exc: BaseException) -> None:
    """``st.error`` with ``title`` and every problem of ``exc`` as a bullet ("Could not classify:\\n- …")."""
    st.error(problem_list(title, problems_of(exc)))


@dataclass(kw_only=True)
class BackgroundJob:
    """Work on a thread (a tuning, a training): written by the thread, read by the page's fragment."""

    cancel: threading.Event = field(default_factory=threading.Event)
    progress: TrainingProgress | None = None
    error: str | None = None
    done: bool = False


def start_job(job: BackgroundJob, work: Callable[[Callable[[TrainingProgress], None], threading.Event], None], *,
              name: str, cancelled: str, failed: str) -> None:
    """Run ``work(progress, cancel)`` on a daemon thread; ``job.error`` says why it stopped, if it did.

    ``cancelled`` is the message for a cancel, ``failed`` the title above the problems of a bad input.
    """

    def progress(p: TrainingProgress) -> None:
        job.progress = p

    def run() -> None:
        try:
            work(progress, job.cancel)
        except TrainingCancelled:
            job.error = cancelled
        except (ValidationError, TrainingBusyError, LookupError, ValueError, OSError) as exc:
            job.error = problem_list(failed, problems_of(exc))
        finally:
            job.done = True

    threading.Thread(target=run, name=name, daemon=True).start()


def show_job_progress(job: BackgroundJob, *, cancel_label: str, cancel_key: str) -> None:
    """The progress bar with time left and the Cancel button of a running job."""
    p = job.progress
    if p is None:
        st.progress(0.0, text="Starting…")
    else:
        left = f" · about {p.seconds_left:.0f} s left" if p.seconds_left is not None else ""
        st.progress(p.fraction, text=f"{p.elapsed:.0f} s{left} · {p.message}")
    if st.button(cancel_label, key=cancel_key, disabled=job.cancel.is_set()):
        job.cancel.set()


# ----------------------------------------------------------------------------------------------
# Charts of the frames ``playground.charts`` builds (each page shows the same numbers beside them)


def show_confusion_heatmap(cells: pd.DataFrame) -> None:
    """``charts.confusion_cells``: a cell per (label, predicted), darker for a larger share of the label's row."""
    order = list(dict.fromkeys(cells["label"]))
    base = alt.Chart(cells).encode(x=alt.X("predicted:N", sort=order, title="predicted"),
                                   y=alt.Y("label:N", sort=order, title="your label"))
    squares = base.mark_rect().encode(
        color=alt.Color("share:Q", scale=alt.Scale(scheme="blues", domain=[0, 1]), title="share of the row"),
        tooltip=["label", "predicted", "count", alt.Tooltip("share:Q", format=".0%")])
    counts = base.mark_text().encode(text="count:Q", color=alt.condition("datum.share > 0.5", alt.value("white"),
                                                                         alt.value("black")))
    st.altair_chart(squares + counts, width="stretch", alt="Confusion matrix: your labels against the predictions")


def show_reliability(frame: pd.DataFrame) -> None:
    """``charts.reliability_frame``: accuracy against mean confidence per bin, over the diagonal a calibrated model follows."""
    diagonal = alt.Chart(pd.DataFrame({"confidence": [0.0, 1.0], "accuracy": [0.0, 1.0]})).mark_line(
        strokeDash=[4, 4], color="gray").encode(x="confidence:Q", y="accuracy:Q")
    points = alt.Chart(frame).mark_line(point=True).encode(
        x=alt.X("confidence:Q", scale=alt.Scale(domain=[0, 1]), title="confidence (mean of the bin)"),
        y=alt.Y("accuracy:Q", scale=alt.Scale(domain=[0, 1]), title="share right"),
        tooltip=["bin", alt.Tooltip("confidence:Q", format=".1%"), alt.Tooltip("accuracy:Q", format=".1%"), "count"])
    st.altair_chart(diagonal + points, width="stretch", alt="Reliability diagram: confidence against accuracy")


def show_f1_bars(frame: pd.DataFrame) -> None:
    """``charts.per_label_f1_frame``: F1 per label, a bar per model side by side."""
    chart = alt.Chart(frame).mark_bar().encode(
        x=alt.X("label:N", sort=list(dict.fromkeys(frame["label"])), title=None),
        xOffset="model:N", y=alt.Y("f1:Q", scale=alt.Scale(domain=[0, 1]), title="F1"),
        color=alt.Color("model:N", title=None), tooltip=["label", "model", alt.Tooltip("f1:Q", format=".3f"), "support"])
    st.altair_chart(chart, width="stretch", alt="F1 per label: the trained model and the few-shot baseline")
