"""The Classify page's workspaces: which one is open (the URL's ``?w=``), the sidebar, a save after every change.

A thin view over ``playground.workspace``. ``open_workspace_for_page()`` runs first on the page:
it opens the workspace the URL names (or this tab's, the last one, or a new one from the preset)
into the page's ``classify_*`` / ``label_*`` keys. ``autosave()`` runs last: it reads those keys
back into a ``Workspace`` and hands it to the tab's ``DebouncedSaver`` when it changed. A sidebar
fragment also saves (a tuning that finished in the background), watches the file for saves from
other tabs and offers a reload. Session keys carry ``workspace_``.
"""

from __future__ import annotations

import time
import uuid

import pandas as pd
import streamlit as st

from playground.presets import DEFAULT_PRESET, list_presets, load_preset
from playground.store import read_folder
from playground.training import tuned_grid_folder
from playground.ui.widgets import problem_list, problems_of, show_notice
from playground.validation import ValidationError
from playground.workspace import (
    DAMAGED_FILE,
    DEFAULT_WORKSPACE,
    DebouncedSaver,
    OpenedWorkspace,
    UnknownWorkspaceError,
    Workspace,
    create_workspace,
    delete_workspace,
    duplicate_workspace,
    last_workspace,
    learning_points,
    list_workspaces,
    open_workspace,
    pool_state,
    read_revision,
    remember_last,
    rename_workspace,
    results_to_dicts,
    undo_delete,
    validate_workspace_name,
    workspaces_dir,
)

GRID_COLUMNS = ["text", "label", "description"]
NAME = "workspace_name"
SAVER = "workspace_saver"
BASELINE = "workspace_baseline"
LAST = "workspace_last"
DAMAGED = "workspace_damaged"
NOTICE = "workspace_notice"
UNDO = "workspace_undo"
RELOAD = "workspace_reload_asked"
SETTINGS = {  # session key -> Workspace field, for the plain values
    "classify_inputs": "inputs", "classify_model": "model", "classify_truncate": "truncate",
    "classify_precision": "precision", "classify_label_names": "label_names", "classify_unknown": "unknown",
    "classify_unknown_below": "unknown_below", "classify_unknown_target": "unknown_target",
    "classify_preset": "preset",
}
WRITE_ERRORS = (OSError, ValidationError, UnknownWorkspaceError)


# ----------------------------------------------------------------------------------------------
# Session state ↔ Workspace


def grid_frame(rows) -> pd.DataFrame:
    return pd.DataFrame([list(row) for row in rows], columns=GRID_COLUMNS, dtype="string")


def grid_rows(frame: pd.DataFrame | None) -> tuple[tuple[str, str, str], ...]:
    """The grid as typed (every row, empty cells as ""), in the workspace's shape."""
    if frame is None:
        return ()
    return tuple(tuple("" if pd.isna(cell) else str(cell) for cell in row)
                 for row in frame.reindex(columns=GRID_COLUMNS).itertuples(index=False))


def apply_workspace(workspace: Workspace, pool_texts=None) -> None:
    """Put a workspace into the page's keys (before its widgets are drawn, or from a callback)."""
    ss = st.session_state
    frame = grid_frame(workspace.examples)
    ss.classify_examples = frame
    ss.classify_current = frame
    ss.classify_editor_version = ss.get("classify_editor_version", 0) + 1
    values = {key: getattr(workspace, attr) for key, attr in SETTINGS.items()}
    if values["classify_preset"] not in list_presets():
        values["classify_preset"] = DEFAULT_PRESET
    ss.update(values)
    ss.setdefault("classify_saved", {}).update(values)
    ss.classify_results = workspace.classifications()
    ss.update(classify_notice=None, classify_unknown_choice=None, evaluate_report=None, classify_tune=None)
    ss.classify_tune_restore = _tuning_to_restore(workspace)
    pool = workspace.pool
    ss.update(label_pool=None, label_notice=None, label_batch_edited=None,
              label_batch=None if pool is None or not pool.batch else pd.DataFrame([dict(r) for r in pool.batch]),
              label_curve=[] if pool is None else learning_points(pool),
              label_restore=None if pool is None or pool_texts is None else (pool, pool_texts))
    ss.label_batch_version = ss.get("label_batch_version", 0) + 1


def _tuning_to_restore(workspace: Workspace) -> dict | None:
    """The finished tuning the workspace used, if the cache still has it (it keeps the newest few)."""
    if workspace.tuned_grid is None:
        return None
    folder = tuned_grid_folder(workspace.tuned_grid)
    try:
        config = read_folder(folder).config
    except (LookupError, OSError):
        return None
    return {"key": workspace.tuned_grid, "model": workspace.model, "folder": folder, "config": config}


def current_workspace() -> tuple[Workspace, tuple[str, ...] | list[str] | None]:
    """The page's keys as a ``Workspace``, and the pool's texts (written once per pool)."""
    ss = st.session_state
    values = {attr: ss[key] for key, attr in SETTINGS.items() if key in ss}
    job = ss.get("classify_tune")
    tuned = job.key if job is not None and job.done and not job.error and job.folder is not None else None
    pool, texts = None, None
    if ss.get("label_pool") is not None:
        live = ss.label_pool
        if ss.get("label_pool_id") is None:  # a pool the page loaded from a file: a new id, its texts to write
            ss.label_pool_id = uuid.uuid4().hex[:16]
        batch = ss.get("label_batch_edited")
        if batch is None or ss.get("label_batch") is None or len(batch) != len(ss.label_batch):
            batch = ss.get("label_batch")
        pool = pool_state(live, source=ss.get("label_pool_source") or "pool", pool_id=ss.label_pool_id,
                          batch=[] if batch is None else batch.to_dict("records"), curve=ss.get("label_curve", []))
        texts = live.texts
    elif ss.get("label_restore") is not None:  # not embedded again yet: keep it as it was
        pool = ss.label_restore[0]
    return Workspace(examples=grid_rows(ss.get("classify_current")), tuned_grid=tuned, pool=pool,
                     results=results_to_dicts(ss.get("classify_results")), **values), texts


# ----------------------------------------------------------------------------------------------
# Opening


def _notice(kind: str, message: str) -> None:
    st.session_state[NOTICE] = (kind, message)


def _open(name: str, *, announce_new: bool) -> None:
    """Open ``name`` into this tab (created from the preset when there is none); say what went wrong, if anything."""
    ss = st.session_state
    saver: DebouncedSaver = ss[SAVER]
    saver.flush()  # the last change to the workspace this tab leaves
    try:
        opened = open_workspace(name)
    except UnknownWorkspaceError:
        workspace = Workspace.from_preset(load_preset(DEFAULT_PRESET))
        try:
            opened = OpenedWorkspace(name, workspace, create_workspace(name, workspace))
            if announce_new:
                _notice("info", f"There was no workspace **{name}**: it is new, started from the preset.")
        except WRITE_ERRORS as exc:
            opened = OpenedWorkspace(name, workspace, None)
            _notice("warning", problem_list(f"Workspace **{name}** could not be created in `{workspaces_dir()}`; "
                                            "this tab keeps working in memory:", problems_of(exc)))
    except OSError as exc:
        opened = OpenedWorkspace(name, Workspace.from_preset(load_preset(DEFAULT_PRESET)), None)
        _notice("warning", f"Workspace **{name}** could not be read ({exc}); this tab shows the preset and saves "
                           "nothing over the file until you change something.")
    apply_workspace(opened.workspace, opened.pool_texts)
    ss[NAME] = name
    ss[BASELINE] = None  # the first run draws it; what that run holds is the baseline, not a change
    ss[DAMAGED] = opened.damaged
    saver.opened(opened.revision)
    if opened.dropped:
        _notice("warning", problem_list(
            f"Workspace **{name}** is damaged: it opened as far as it could be read. Left out:", opened.dropped)
            + f"\n\nThe file is left as it is until you change something; then it is kept as `{DAMAGED_FILE}` "
              "beside the new one.")
    remember_last(name)


def open_workspace_for_page() -> None:
    """Open the workspace this run should show: the URL's ``?w=``, else this tab's, the last one, or a new one."""
    ss = st.session_state
    ss.setdefault(SAVER, DebouncedSaver())
    if ss.pop(RELOAD, False) and ss.get(NAME):
        reload_workspace()
    asked = st.query_params.get("w")
    target = None
    if asked:
        try:
            target = validate_workspace_name(asked)
        except ValidationError as exc:
            _notice("error", problem_list("The address names a workspace that cannot exist:", problems_of(exc))
                    + "\n\nOpened another one instead.")
    if target is None:
        names = [info.name for info in list_workspaces()]
        target = ss.get(NAME) or last_workspace() or (names[0] if names else DEFAULT_WORKSPACE)
    if target != ss.get(NAME):
        _open(target, announce_new=target == asked)
    if st.query_params.get("w") != ss[NAME]:
        st.query_params["w"] = ss[NAME]


def reload_workspace() -> None:
    """Take the saved workspace over this tab's copy (after another tab saved)."""
    ss = st.session_state
    ss[SAVER].opened(None)  # drop this tab's pending change: the saved one wins
    name = ss[NAME]
    ss[NAME] = None
    _open(name, announce_new=False)
    _notice("success", f"Reloaded **{name}** as it was saved.")


# ----------------------------------------------------------------------------------------------
# Saving


def autosave() -> None:
    """Hand the page's workspace to the saver when it differs from what was last handed over (or opened)."""
    ss = st.session_state
    if ss.get(NAME) is None or SAVER not in ss:
        return
    try:
        workspace, texts = current_workspace()
    except ValidationError as exc:  # a widget holds what no workspace can: say so, keep the last save
        _notice("warning", problem_list("This change cannot be saved:", problems_of(exc)))
        return
    if ss.get(BASELINE) is None:
        ss[BASELINE] = ss[LAST] = workspace
        return
    if workspace == ss.get(LAST):
        return
    ss[LAST] = workspace
    ss[SAVER].submit(ss[NAME], workspace, pool_texts=texts, keep_damaged=ss.get(DAMAGED, False))
    ss[DAMAGED] = False


def save_again() -> None:
    """After a failed save or a workspace removed elsewhere: write this tab's copy (recreating the folder)."""
    ss = st.session_state
    name, saver = ss[NAME], ss[SAVER]
    workspace, texts = current_workspace()
    try:
        if read_revision(name) is None and not (workspaces_dir() / name).is_dir():
            saver.opened(create_workspace(name, workspace, pool_texts=texts))
        else:
            saver.submit(name, workspace, pool_texts=texts)
            saver.flush()
        ss[LAST] = workspace
    except WRITE_ERRORS as exc:
        _notice("warning", problem_list("Still not saved:", problems_of(exc)))


def _when(seconds: float) -> str:
    """The time of a change today, its date before (short: the sidebar is narrow)."""
    same_day = time.localtime(seconds)[:3] == time.localtime()[:3]
    return time.strftime("%H:%M" if same_day else "%d %b %Y", time.localtime(seconds))


@st.fragment(run_every=2.0)
def save_status() -> None:
    """Saved / saving / could not save, and "changed elsewhere" with a reload, every two seconds."""
    ss = st.session_state
    if ss.get(NAME) is None:
        return
    autosave()  # also catches what changed without a rerun of the page (a tuning that finished)
    saver: DebouncedSaver = ss[SAVER]
    with saver.lock:
        status, pending = saver.status, saver.pending
        on_disk = read_revision(ss[NAME])
    if status.gone or (on_disk is None and status.known is not None and not pending):
        st.warning(f"Workspace **{ss[NAME]}** was renamed or deleted elsewhere. Your work is still in this tab.")
        st.button("Save it again under this name", key="workspace_save_again", on_click=save_again)
    elif on_disk is not None and status.known is not None and on_disk.id != status.known.id and not pending:
        st.warning(f"**{ss[NAME]}** was changed in another tab or window (saved {on_disk.saved_at}). Reload to see "
                   "that version; your next change here is saved over it otherwise.")
        if st.button("Reload the saved workspace", key="workspace_reload"):
            # reloaded at the top of the page's next run: a fragment's callback cannot set the page's widgets
            # (the browser's values of widgets outside the fragment win on the next full run)
            ss[RELOAD] = True
            st.rerun(scope="app")
    elif status.error:
        st.warning(f"Not saved: {status.error}. Your work is kept in this tab while it stays open; it is saved "
                   "again after your next change.")
        st.button("Try saving again", key="workspace_retry", on_click=save_again)
    elif pending:
        st.caption("Saving…")
    elif status.saved_at is not None:
        st.caption(f"All changes saved · {time.strftime('%H:%M:%S', time.localtime(status.saved_at))}")
    else:
        st.caption("Saved: every change is kept on disk.")


# ----------------------------------------------------------------------------------------------
# The sidebar: list, switch, new, rename, duplicate, delete


def _switch(name: str) -> None:
    st.session_state[SAVER].flush()
    st.query_params["w"] = name


def _on_choose() -> None:
    _switch(st.session_state.workspace_choice)


def _checked_new_name(key: str) -> str | None:
    try:
        return validate_workspace_name(st.session_state.get(key, "").strip())
    except ValidationError as exc:
        _notice("error", problem_list("Not done:", problems_of(exc)))
        return None


def _create() -> None:
    name = _checked_new_name("workspace_new_name")
    if name is None:
        return
    preset = st.session_state.get("workspace_new_preset", DEFAULT_PRESET)
    try:
        create_workspace(name, Workspace.from_preset(load_preset(preset)))
    except WRITE_ERRORS as exc:
        _notice("error", problem_list(f"Could not create **{name}**:", problems_of(exc)))
        return
    st.session_state.workspace_new_name = ""
    _notice("success", f"Created **{name}** from the preset.")
    _switch(name)


def _rename() -> None:
    ss = st.session_state
    new = _checked_new_name("workspace_rename_to")
    if new is None:
        return
    old = ss[NAME]
    try:
        ss[SAVER].flush()
        rename_workspace(old, new)
    except WRITE_ERRORS as exc:
        _notice("error", problem_list(f"Could not rename **{old}**:", problems_of(exc)))
        return
    ss[NAME] = new  # the same work under its new name: nothing to reload
    ss.workspace_rename_to = ""
    st.query_params["w"] = new
    _notice("success", f"Renamed **{old}** to **{new}**; links with `?w={old}` no longer open it.")


def _duplicate() -> None:
    ss = st.session_state
    new = _checked_new_name("workspace_copy_to")
    if new is None:
        return
    try:
        ss[SAVER].flush()
        duplicate_workspace(ss[NAME], new)
    except WRITE_ERRORS as exc:
        _notice("error", problem_list(f"Could not duplicate **{ss[NAME]}**:", problems_of(exc)))
        return
    ss.workspace_copy_to = ""
    _notice("success", f"**{new}** is a copy of **{ss[NAME]}**; you are in the copy now.")
    _switch(new)


def _delete() -> None:
    ss = st.session_state
    name = ss[NAME]
    try:
        ss[SAVER].flush()
        token = delete_workspace(name)
    except WRITE_ERRORS as exc:
        _notice("error", problem_list(f"Could not delete **{name}**:", problems_of(exc)))
        return
    ss[UNDO] = (token, name)
    ss.workspace_confirm_delete = False
    ss[NAME] = None  # nothing open: the next run opens another (or a new one)
    ss[SAVER].opened(None)
    others = [info.name for info in list_workspaces()]
    st.query_params["w"] = others[0] if others else DEFAULT_WORKSPACE
    _notice("success", f"Deleted **{name}**.")


def _undo() -> None:
    ss = st.session_state
    token, name = ss.pop(UNDO)
    try:
        undo_delete(token)
    except WRITE_ERRORS as exc:
        _notice("error", problem_list(f"Could not bring back **{name}**:", problems_of(exc)))
        return
    _notice("success", f"**{name}** is back.")
    _switch(name)


def render_sidebar() -> None:
    ss = st.session_state
    with st.sidebar:
        st.subheader("Workspace")
        infos = list_workspaces()
        names = [info.name for info in infos]
        if ss[NAME] not in names:  # not on disk (a read-only folder): still this tab's
            names.insert(0, ss[NAME])
        ss.workspace_choice = ss[NAME]
        st.selectbox("Open", names, key="workspace_choice", on_change=_on_choose,
                     help="Each workspace has its own examples, inputs, settings and results, saved as you work. "
                          "Its address (`?w=name`) opens it again, in any tab, for anyone using this server.")
        save_status()
        show_notice(ss.get(NOTICE))
        if ss.get(UNDO):
            st.button(f"Undo: bring back {ss[UNDO][1]}", key="workspace_undo_button", on_click=_undo)
        if infos:
            st.dataframe(pd.DataFrame([{"workspace": i.name, "examples": i.n_examples, "changed": _when(i.modified)}
                                       for i in infos]), hide_index=True, width="stretch",
                         height=min(36 * (len(infos) + 1) + 3, 250))
        with st.expander("New, rename, duplicate, delete"):
            presets = list_presets()
            st.text_input("New workspace name", key="workspace_new_name", placeholder="review-triage")
            st.selectbox("Start from preset", list(presets), key="workspace_new_preset",
                         format_func=lambda n: presets[n].title)
            st.button("Create", key="workspace_create", on_click=_create)
            st.divider()
            st.text_input(f"Rename {ss[NAME]} to", key="workspace_rename_to")
            st.button("Rename", key="workspace_rename", on_click=_rename)
            st.text_input(f"Copy {ss[NAME]} as", key="workspace_copy_to")
            st.button("Duplicate", key="workspace_duplicate", on_click=_duplicate)
            st.divider()
            confirm = st.checkbox(f"Yes, delete {ss[NAME]}", key="workspace_confirm_delete")
            st.button("Delete", key="workspace_delete", on_click=_delete, disabled=not confirm, type="primary")
        st.caption(f"Kept in `{workspaces_dir()}`. To share one, copy the address (`?w={ss[NAME]}`): it opens the "
                   "same work in another tab, or for anyone on this server.")
