"""processes.run_in_processes: jobs in worker processes, their progress relayed, a stop that ends them."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from fixtures import process_jobs
from playground.processes import JobsStopped, WorkersUnavailable, run_in_processes

TESTS = Path(__file__).parent


@pytest.fixture(autouse=True)
def workers_import_the_test_jobs(monkeypatch):
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in (str(TESTS), os.environ.get("PYTHONPATH")) if p))


def test_results_in_order_and_every_event_relayed():
    events = []
    lock = threading.Lock()

    def on_event(*event):
        with lock:
            events.append(event)

    assert run_in_processes(process_jobs.square_with_progress, [(2,), (3,), (4,)], workers=2,
                            on_event=on_event) == [4, 9, 16]
    assert sorted(events) == [(x, step) for x in (2, 3, 4) for step in (1, 2, 3)]
    for x in (2, 3, 4):  # each job's own events arrive in the order it made them
        assert [s for y, s in events if y == x] == [1, 2, 3]


def test_a_job_error_is_raised_as_itself():
    with pytest.raises(ValueError, match="row 3 has no label"):
        run_in_processes(process_jobs.fail, [("row 3 has no label",)], workers=1)


def test_stopping_ends_the_workers(tmp_path):
    pid_file = tmp_path / "pid"
    started = threading.Event()
    t0 = time.monotonic()
    with pytest.raises(JobsStopped):
        run_in_processes(process_jobs.sleep, [(60.0, str(pid_file))], workers=1,
                         on_event=lambda *e: started.set(), stopped=started.is_set)
    assert time.monotonic() - t0 < 30  # not the job's 60 s
    pid = int(pid_file.read_text())
    with pytest.raises(ProcessLookupError):  # the worker is gone, not left running
        os.kill(pid, 0)


def test_a_worker_that_dies_is_reported_with_its_exit_code():
    with pytest.raises(WorkersUnavailable, match="exited with code 3 without an answer"):
        run_in_processes(process_jobs.die, [(3,)], workers=1)
