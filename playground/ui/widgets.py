"""What every page draws the same way: a kept notice, and a list of problems from the core.

Each helper is a statement that draws, so a page never writes a bare ``st.a(...) if … else
st.b(...)`` expression (Streamlit's magic would also ``st.write`` its return value).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import streamlit as st

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
