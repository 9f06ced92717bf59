"""Workspaces on disk (``playground.workspace``): the file format, its errors, names, saves, two writers, faults.

Each test has its own workspaces folder (``workspaces_folder`` in conftest.py). The pool and
results round trips use the real small model; the disk-full and read-only cases a real tmpfs in a
private mount namespace (root and ``unshare``, as tests/test_setup_scripts.py).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from playground.engine import classify
from playground.label_next import LabelPool
from playground.presets import load_preset
from playground.validation import ValidationError
from playground.workspace import (
    DAMAGED_FILE,
    LAST_FILE,
    WORKSPACE_FILE,
    WORKSPACES_DIR_ENV,
    DebouncedSaver,
    UnknownWorkspaceError,
    Workspace,
    create_workspace,
    delete_workspace,
    duplicate_workspace,
    last_workspace,
    list_workspaces,
    open_workspace,
    pool_state,
    purge_deleted,
    read_revision,
    remember_last,
    rename_workspace,
    restore_pool,
    results_to_dicts,
    save_workspace,
    undo_delete,
)

REPO = Path(__file__).resolve().parent.parent
SEED = Workspace.from_preset(load_preset("review-sentiment"))


def edited(**changes) -> Workspace:
    return Workspace(**{**SEED.__dict__, **changes})


# ----------------------------------------------------------------------------------------------
# The format


def test_a_workspace_round_trips_with_a_revision_stamp(workspaces_folder):
    first = create_workspace("reviews", SEED)
    opened = open_workspace("reviews")
    assert opened.workspace == SEED and opened.revision == first and not opened.damaged
    assert first.number == 1 and len(first.id) == 16
    changed = edited(inputs="one\ntwo", unknown=True, unknown_below=0.62, truncate="START",
                     examples=SEED.examples + (("half typed", "", ""), ("", "", "")))
    second = save_workspace("reviews", changed)
    assert second.number == 2 and second.id != first.id
    again = open_workspace("reviews")
    assert again.workspace == changed and again.revision == second  # half-typed and empty rows kept as typed
    assert again.workspace.n_examples == 10
    assert read_revision("reviews") == second


def test_the_file_is_plain_json_one_top_level_field_per_line(workspaces_folder):
    create_workspace("reviews", SEED)
    text = (workspaces_folder / "reviews" / WORKSPACE_FILE).read_text(encoding="utf-8")
    data = json.loads(text)
    assert list(data)[:5] == ["format", "schema_version", "revision", "revision_id", "saved_at"]
    assert data["format"] == "classify-playground-workspace" and data["schema_version"] == 1
    assert data["examples"][0] == ["The order came 5 days early", "positive", ""]
    assert set(data) - {"format", "schema_version", "revision", "revision_id", "saved_at"} == set(SEED.to_dict())
    top = [line for line in text.splitlines() if line.startswith('  "')]
    assert len(top) == len(data)  # the layout the lenient reader relies on
    assert sorted(p.name for p in workspaces_folder.iterdir()) == ["reviews"]  # no temp folder left


def test_workspace_checks_its_fields_and_names_each_problem():
    with pytest.raises(ValidationError) as info:
        Workspace(truncate="MIDDLE", unknown_below=3, precision="fp64", label_names="yes", examples="not rows")
    problems = info.value.problems
    assert any(p.startswith("truncate: 'MIDDLE' is not one of NONE, START, END, WINDOWS") for p in problems)
    assert any(p.startswith("unknown_below: not a number from 0 to 1") for p in problems)
    assert any(p.startswith("precision: 'fp64'") for p in problems)
    assert any(p.startswith("label_names: not true or false") for p in problems)
    assert any(p.startswith("examples: not a list of rows") for p in problems)


def test_results_round_trip_as_the_engine_made_them(workspaces_folder, seed):
    results = classify(list(seed.inputs), list(seed.examples), "small")
    create_workspace("reviews", edited(results=results_to_dicts(results)))
    assert open_workspace("reviews").workspace.classifications() == results


# ----------------------------------------------------------------------------------------------
# Damaged files: open as far as readable, say what was dropped, never overwritten on open


def _damage(folder: Path, edit) -> bytes:
    path = folder / WORKSPACE_FILE
    path.write_bytes(edit(path.read_bytes()))
    return path.read_bytes()


@pytest.mark.parametrize("edit, kept, dropped", [
    (lambda b: b.replace(b'"inputs": "', b'"inputs": ', 1), {"model", "examples"},
     ["is not valid JSON (line", "inputs: missing or unreadable"]),
    (lambda b: b[: b.index(b'"results"') + 5], {"examples", "inputs", "model"},
     ["is not valid JSON", "results: missing or unreadable", "pool: missing or unreadable"]),
    (lambda b: b.replace(b'"unknown_below": 0.5', b'"unknown_below": 7'), {"examples", "inputs", "model"},
     ["unknown_below: not a number from 0 to 1 (7); set to its default"]),
    (lambda b: b.replace(b'"truncate": "WINDOWS"', b'"truncate": "MIDDLE"'), {"examples", "inputs"},
     ["truncate: 'MIDDLE' is not one of NONE, START, END, WINDOWS; set to its default"]),
    (lambda b: b.replace(b'"results": null', b'"results": [{"input": 3}]'), {"examples", "inputs"},
     ["results: a result's labels are not label: confidence pairs; set to its default"]),
    (lambda b: b.replace(b'"label_names": true,\n', b''), {"examples", "inputs"},
     ["label_names: missing or unreadable, set to its default"]),
    (lambda b: b.replace(b'"inputs": "', b'"inputs": "\xff', 1), {"examples", "model"},
     ["is not valid UTF-8 (byte"]),
    (lambda b: b"[1, 2, 3]", set(), ["the file holds a list, not a workspace object: nothing was read"]),
    (lambda b: b"", set(), ["is not valid JSON (line 1, column 1: Expecting value)"]),
], ids=["broken-quote", "truncated", "out-of-range", "bad-choice", "bad-results", "field-deleted", "not-utf8",
        "not-an-object", "empty"])
def test_a_damaged_file_opens_as_far_as_it_can_be_read(workspaces_folder, edit, kept, dropped):
    original = edited(inputs="my own inputs", model="large", label_names=True)
    create_workspace("hand-edited", original)
    damaged_bytes = _damage(workspaces_folder / "hand-edited", edit)
    opened = open_workspace("hand-edited")
    assert opened.damaged
    for fragment in dropped:
        assert any(fragment in line for line in opened.dropped), (fragment, opened.dropped)
    for name in kept:
        assert getattr(opened.workspace, name) == getattr(original, name), name
    # opening (or listing) never writes: the file stays as the user left it
    list_workspaces()
    assert (workspaces_folder / "hand-edited" / WORKSPACE_FILE).read_bytes() == damaged_bytes


def test_one_bad_grid_row_drops_that_row_only(workspaces_folder):
    create_workspace("rows", SEED)
    path = workspaces_folder / "rows" / WORKSPACE_FILE
    data = json.loads(path.read_text())
    data["examples"][2] = ["text", 5, ""]
    data["examples"][4] = "just a string"
    path.write_text(json.dumps(data, indent=2))
    opened = open_workspace("rows")
    assert opened.dropped == ("examples row 3: a cell is not text; the row was left out",
                              "examples row 5: not a row of text, label and description; the row was left out")
    assert opened.workspace.examples == SEED.examples[:2] + SEED.examples[3:4] + SEED.examples[5:]


def test_the_first_save_over_a_damaged_file_keeps_it_aside(workspaces_folder):
    create_workspace("hand-edited", SEED)
    damaged = _damage(workspaces_folder / "hand-edited", lambda b: b.replace(b'"model": "small"', b'"model": \xffsmal'))
    opened = open_workspace("hand-edited")
    save_workspace("hand-edited", opened.workspace, keep_damaged=True)
    assert (workspaces_folder / "hand-edited" / DAMAGED_FILE).read_bytes() == damaged
    assert not open_workspace("hand-edited").damaged


def test_a_pool_whose_file_is_gone_is_dropped_and_said(workspaces_folder, small_encoder):
    pool = LabelPool(["where is my parcel", "refund please", "great service"], "small")
    state = pool_state(pool, source="texts.csv", pool_id="0123456789abcdef")
    create_workspace("pooled", edited(pool=state), pool_texts=pool.texts)
    (workspaces_folder / "pooled" / state.file_name).unlink()
    opened = open_workspace("pooled")
    assert opened.workspace.pool is None and opened.workspace.examples == SEED.examples
    assert opened.dropped == ("pool: the Label next pool 'texts.csv' was dropped: pool-0123456789abcdef.json cannot "
                              "be read (it is missing); load its file again",)


# ----------------------------------------------------------------------------------------------
# Names


@pytest.mark.parametrize("name, fragment", [
    ("../escape", "looks like a path"), ("a/b", "looks like a path"), ("/etc", "looks like a path"),
    ("a\\b", "looks like a path"), ("two words", "SPACE"), ("", "is empty"), ("x" * 65, "at most 64"),
    ("-x", "starts with '-'"), (".last", "not allowed"), ("caf\u00e9", "LATIN SMALL LETTER E WITH ACUTE"),
], ids=["dotdot", "slash", "absolute", "backslash", "space", "empty", "too-long", "dash", "dot", "accent"])
def test_names_with_path_characters_are_refused_clearly_everywhere(workspaces_folder, tmp_path, name, fragment):
    create_workspace("fine", SEED)
    calls = [lambda: create_workspace(name, SEED), lambda: open_workspace(name), lambda: save_workspace(name, SEED),
             lambda: rename_workspace("fine", name), lambda: duplicate_workspace("fine", name)]
    for call in calls:
        with pytest.raises(ValidationError, match="workspace name") as info:
            call()
        assert fragment in str(info.value)
    assert sorted(p.name for p in workspaces_folder.iterdir()) == ["fine"]
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # nothing written beside the folder either


def test_an_unknown_workspace_lists_the_ones_there_are(workspaces_folder):
    create_workspace("alpha", SEED)
    create_workspace("beta", SEED)
    with pytest.raises(UnknownWorkspaceError, match=r"no workspace named 'gamma' in .*: there are (alpha, beta|beta, alpha)"):
        open_workspace("gamma")
    with pytest.raises(ValidationError, match="a workspace named 'alpha' already exists"):
        create_workspace("alpha", SEED)


# ----------------------------------------------------------------------------------------------
# Listing, rename, duplicate, delete with undo, the last one opened


def test_list_rename_duplicate_delete_and_undo(workspaces_folder):
    create_workspace("first", SEED)
    time.sleep(0.02)
    create_workspace("second", edited(examples=SEED.examples[:4] + (("no label yet", "", ""),)))
    (workspaces_folder / "broken").mkdir()
    (workspaces_folder / "broken" / WORKSPACE_FILE).write_text("{oops")
    (workspaces_folder / ".tmp-half-1234").mkdir()  # a create that was killed: never listed
    infos = {i.name: i for i in list_workspaces()}
    assert set(infos) == {"first", "second", "broken"}
    assert infos["first"].n_examples == 10 and infos["second"].n_examples == 4
    assert "damaged" in infos["broken"].problem and infos["first"].problem is None
    assert [i.name for i in list_workspaces() if i.name != "broken"] == ["second", "first"]  # newest first

    rename_workspace("first", "renamed")
    assert open_workspace("renamed").workspace == SEED
    with pytest.raises(UnknownWorkspaceError):
        open_workspace("first")
    duplicate_workspace("renamed", "copy")
    save_workspace("copy", edited(inputs="only in the copy"))
    assert open_workspace("renamed").workspace.inputs == SEED.inputs  # the copy is independent
    with pytest.raises(ValidationError, match="already exists"):
        rename_workspace("copy", "second")

    token = delete_workspace("copy")
    assert "copy" not in [i.name for i in list_workspaces()]
    assert undo_delete(token) == "copy"
    assert open_workspace("copy").workspace.inputs == "only in the copy"
    token = delete_workspace("copy")
    create_workspace("copy", SEED)
    with pytest.raises(ValidationError, match="a workspace named 'copy' already exists"):
        undo_delete(token)
    assert purge_deleted(older_than_s=0) == [token]
    with pytest.raises(UnknownWorkspaceError, match="no longer in the trash"):
        undo_delete(token)


def test_the_last_workspace_is_remembered_and_follows_a_rename(workspaces_folder):
    assert last_workspace() is None
    create_workspace("mine", SEED)
    remember_last("mine")
    assert last_workspace() == "mine"
    rename_workspace("mine", "ours")
    assert last_workspace() == "ours"
    delete_workspace("ours")
    assert last_workspace() is None  # gone: the page opens another
    (workspaces_folder / LAST_FILE).write_text("../../etc\n")
    assert last_workspace() is None


# ----------------------------------------------------------------------------------------------
# Saving: debounced, atomic, two writers


def test_a_burst_of_changes_is_one_write_after_a_pause(workspaces_folder):
    create_workspace("busy", SEED)
    saver = DebouncedSaver(quiet_s=0.3, max_wait_s=5)
    saver.opened(read_revision("busy"))
    for n in range(20):
        saver.submit("busy", edited(inputs=f"draft {n}"))
    assert saver.pending and read_revision("busy").number == 1  # nothing written while changes keep coming
    deadline = time.monotonic() + 10
    while saver.pending and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not saver.pending and saver.status.error is None
    assert read_revision("busy").number == 2 and saver.status.known == read_revision("busy")
    assert open_workspace("busy").workspace.inputs == "draft 19"


def test_a_long_burst_is_still_saved_within_the_longest_wait(workspaces_folder):
    create_workspace("typing", SEED)
    saver = DebouncedSaver(quiet_s=0.5, max_wait_s=0.8)
    started = time.monotonic()
    while time.monotonic() - started < 2.5:  # a change every 0.1 s: never a pause of 0.5 s
        saver.submit("typing", edited(inputs=f"at {time.monotonic() - started:.1f}"))
        time.sleep(0.1)
    assert read_revision("typing").number >= 3  # written every 0.8 s or so all the same
    saver.flush()


def test_two_tabs_the_later_save_wins_and_the_other_can_tell(workspaces_folder):
    create_workspace("shared", SEED)
    tab_a, tab_b = DebouncedSaver(), DebouncedSaver()
    tab_a.opened(read_revision("shared"))
    tab_b.opened(read_revision("shared"))
    tab_b.submit("shared", edited(inputs="from tab B"))
    tab_b.flush()
    assert read_revision("shared") != tab_a.status.known  # tab A sees that someone else saved
    assert read_revision("shared") == tab_b.status.known
    tab_a.submit("shared", edited(inputs="from tab A"))
    tab_a.flush()
    assert open_workspace("shared").workspace.inputs == "from tab A"  # later save wins
    assert read_revision("shared") != tab_b.status.known and read_revision("shared").number == 3


def test_concurrent_writers_never_leave_a_mixed_file(workspaces_folder):
    big = edited(examples=tuple((f"example text number {i} " * 8, f"label{i % 5}", "") for i in range(1500)))
    create_workspace("contended", big)
    errors: list[str] = []
    stop = threading.Event()

    def writer(tag: str) -> None:
        for n in range(25):
            save_workspace("contended", Workspace(**{**big.__dict__, "inputs": f"{tag} {n}"}))

    def reader() -> None:
        path = workspaces_folder / "contended" / WORKSPACE_FILE
        while not stop.is_set():
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except ValueError as exc:
                errors.append(str(exc))
                continue
            if len(data["examples"]) != 1500:
                errors.append(f"{len(data['examples'])} rows")

    threads = [threading.Thread(target=writer, args=(t,)) for t in "AB"]
    watcher = threading.Thread(target=reader)
    watcher.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stop.set()
    watcher.join()
    assert errors == []
    assert open_workspace("contended").workspace.inputs in {"A 24", "B 24"}
    assert [p.name for p in (workspaces_folder / "contended").iterdir()] == [WORKSPACE_FILE]  # no temp file left


def test_a_save_to_a_workspace_renamed_elsewhere_is_reported_not_raised(workspaces_folder):
    create_workspace("moving", SEED)
    saver = DebouncedSaver()
    saver.opened(read_revision("moving"))
    rename_workspace("moving", "moved")
    saver.submit("moving", edited(inputs="lost?"))
    assert saver.flush() is None
    assert saver.status.gone and "renamed or deleted elsewhere" in saver.status.error
    assert not (workspaces_folder / "moving").exists()  # not silently recreated
    assert open_workspace("moved").workspace == SEED


# ----------------------------------------------------------------------------------------------
# The Label next pool


def test_a_pool_and_its_decisions_round_trip(workspaces_folder, small_encoder):
    texts = ["where is my parcel", "refund please", "great service", "broken on arrival", "love it", "too slow"]
    pool = LabelPool(texts, "small")
    examples = pool.accept(list(load_preset("review-sentiment").examples), [(1, "negative"), (4, None)])
    batch = [{"index": 0, "text": texts[0], "guess": "negative", "confidence": 0.7, "label": "negative"}]
    state = pool_state(pool, source="texts.csv", pool_id="abcdef0123456789", batch=batch)
    ws = edited(examples=tuple((e.text, e.label, "") for e in examples), pool=state)
    create_workspace("labelling", ws, pool_texts=pool.texts)
    opened = open_workspace("labelling")
    assert opened.workspace == ws and opened.pool_texts == tuple(texts)
    again = restore_pool(opened.workspace.pool, opened.pool_texts)
    assert again.remaining == 4 and list(again.left) == list(pool.left)
    assert again.vectors == pytest.approx(pool.vectors, abs=1e-5)
    assert again.truncate == "END" and restore_pool(opened.workspace.pool, opened.pool_texts,
                                                    truncate="WINDOWS").truncate == "WINDOWS"
    # the pool file is written once; a new pool replaces it
    save_workspace("labelling", edited(pool=state), pool_texts=pool.texts)
    other = pool_state(pool, source="other.txt", pool_id="fedcba9876543210")
    save_workspace("labelling", edited(pool=other), pool_texts=pool.texts)
    assert sorted(p.name for p in (workspaces_folder / "labelling").iterdir()) == [
        "pool-fedcba9876543210.json", WORKSPACE_FILE]


# ----------------------------------------------------------------------------------------------
# Faults: kill -9 mid-save, a full disk, a read-only folder


KILL_MID_SAVE = """
import os, signal, sys
import playground._files as files
from playground.workspace import Workspace, save_workspace, open_workspace
_write_temp = files.write_temp
def _die_after_temp(path, text):
    temp = _write_temp(path, text)
    if "KILL ME" in text:
        os.kill(os.getpid(), signal.SIGKILL)
    return temp
files.write_temp = _die_after_temp
ws = open_workspace("crash").workspace
save_workspace("crash", Workspace(**{**ws.__dict__, "inputs": "KILL ME"}))
"""


def test_kill_9_in_the_middle_of_a_save_leaves_the_previous_state(workspaces_folder):
    create_workspace("crash", SEED)
    save_workspace("crash", edited(inputs="saved before the crash"))
    before = (workspaces_folder / "crash" / WORKSPACE_FILE).read_bytes()
    env = {**os.environ, WORKSPACES_DIR_ENV: str(workspaces_folder), "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", KILL_MID_SAVE], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=300, check=False)
    assert done.returncode == -signal.SIGKILL, done.stderr[-2000:]
    folder = workspaces_folder / "crash"
    leftovers = [p for p in folder.iterdir() if p.name != WORKSPACE_FILE]
    assert len(leftovers) == 1 and "KILL ME" in leftovers[0].read_text()  # the new state got as far as a temp file
    assert (folder / WORKSPACE_FILE).read_bytes() == before
    assert open_workspace("crash").workspace.inputs == "saved before the crash"
    old = time.time() - 3600
    os.utime(leftovers[0], (old, old))
    save_workspace("crash", edited(inputs="after"))  # the next save clears the killed one's temp file
    assert [p.name for p in folder.iterdir()] == [WORKSPACE_FILE]


FULL_AND_READ_ONLY = """
import errno, json, os, subprocess, sys
from pathlib import Path
from playground.presets import load_preset
from playground.workspace import DebouncedSaver, Workspace, create_workspace, open_workspace, save_workspace
folder = Path(sys.argv[1])
seed = Workspace.from_preset(load_preset("review-sentiment"))
create_workspace("tiny", seed, folder)
before = (folder / "tiny" / "workspace.json").read_bytes()
filler = folder / "filler"
with open(filler, "wb", buffering=0) as f:  # fill the disk (unbuffered: nothing left to fail on close)
    try:
        while True:
            f.write(b"x" * 4096)
    except OSError:
        pass
big = Workspace(**{**seed.__dict__, "inputs": "y" * 200_000})
out = {}
try:
    save_workspace("tiny", big, folder)
except OSError as exc:
    out["full"] = exc.errno
saver = DebouncedSaver()
saver.submit("tiny", big, directory=folder)
saver.flush()
out["full_status"] = saver.status.error
out["full_intact"] = (folder / "tiny" / "workspace.json").read_bytes() == before
out["full_leftovers"] = sorted(p.name for p in (folder / "tiny").iterdir())
filler.unlink()
subprocess.run(["mount", "-o", "remount,ro", str(folder)], check=True)
try:
    save_workspace("tiny", big, folder)
except OSError as exc:
    out["read_only"] = exc.errno
out["read_only_intact"] = open_workspace("tiny", folder).workspace == seed
print(json.dumps(out))
"""


def test_a_full_disk_or_a_read_only_folder_is_an_error_and_the_file_stays_whole(tmp_path):
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.fail("this test needs root and unshare (util-linux) for a tmpfs in a private mount namespace; "
                    "run the suite as root, as CI does")
    folder = tmp_path / "small-disk"
    folder.mkdir()
    script = tmp_path / "fault.py"
    script.write_text(FULL_AND_READ_ONLY)
    shell = (f"mount --make-rprivate / && mount -t tmpfs -o size=256k tmpfs {folder} && "
             f"{sys.executable} {script} {folder}")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(["unshare", "-m", "--propagation", "private", "bash", "-c", shell], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["full"] == 28  # ENOSPC
    assert "could not save workspace 'tiny'" in out["full_status"] and "No space left on device" in out["full_status"]
    assert out["full_intact"] and out["full_leftovers"] == ["workspace.json"]  # no half temp file left behind
    assert out["read_only"] == 30  # EROFS
    assert out["read_only_intact"]
