"""Run jobs in worker processes, with their progress relayed to the caller and a stop that ends them.

Why processes and not threads: a tuning with dropout draws random numbers from torch's generator, which
is one per process. Jobs in threads would share it, so which job drew which numbers would follow the
scheduler and the same examples would give different scores from run to run. In a process of its own,
each job draws its own sequence from its own seed and repeats exactly; it also gets a core of its own
(one torch thread each), which is how the cross-validation folds run beside the final tuning.

Why not ``multiprocessing``: its ``spawn`` start imports the caller's main script again in every worker,
so a user's script without an ``if __name__ == "__main__":`` guard would run its own code twice (and
``fork`` is unsafe once torch has started its threads). Here a worker is ``python -m playground.processes``:
it reads one job from its stdin, runs it, and writes JSON lines (progress events, then the result or the
error) to a pipe of its own; anything the job prints goes to a log that is shown if the worker dies.

A leaf module: a job is any importable module-level function ``job(*args, report=...)`` whose arguments,
events and result are JSON values; ``report(*event)`` reaches the caller's ``on_event``. A job's error comes
back as its type and message and is raised here as that type (JSON, not pickle: the project loads no pickle).
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

POLL_S = 0.1
"""How often the caller checks its stop flag while the workers run."""

PACKAGE_ROOT = str(Path(__file__).resolve().parent.parent)
"""Put on the workers' ``PYTHONPATH`` so they import this same ``playground``."""


class WorkersUnavailable(RuntimeError):
    """A worker process could not start or died without an answer (not a job's own error)."""


class JobsStopped(RuntimeError):
    """The caller's ``stopped()`` turned True: the workers were ended."""


class _Worker:
    """One worker process running one job, and the thread reading its frames."""

    def __init__(self, index: int, job: Callable[..., Any], args: tuple, threads: int,
                 on_event: Callable[..., None] | None) -> None:
        self.index, self.outcome, self.on_event = index, None, on_event
        self.log = tempfile.TemporaryFile()
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
               "PYTHONPATH": os.pathsep.join(p for p in (PACKAGE_ROOT, os.environ.get("PYTHONPATH")) if p)}
        self.process = subprocess.Popen([sys.executable, "-m", "playground.processes"], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, stderr=self.log, env=env)
        assert self.process.stdin is not None
        with self.process.stdin:
            self.process.stdin.write(json.dumps({"module": job.__module__, "name": job.__qualname__, "args": list(args),
                                                 "threads": threads}).encode("utf-8"))
        self.reader = threading.Thread(target=self._read, name=f"worker-{index}", daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        try:
            for line in self.process.stdout:
                frame = json.loads(line)
                if frame["kind"] == "event":
                    if self.on_event is not None:
                        self.on_event(*frame["value"])
                else:
                    self.outcome = (frame["kind"], frame["value"])
                    return
        except (ValueError, KeyError, OSError):
            return

    def done(self) -> bool:
        return not self.reader.is_alive()

    def end(self, grace_s: float = 0.0) -> None:
        """Wait ``grace_s`` for the worker to exit by itself, then kill it."""
        try:
            self.process.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.reader.join()

    def result(self) -> Any:
        self.end(grace_s=5.0)  # it has answered (or died): it exits on its own
        if self.outcome is None:
            self.log.seek(0)
            tail = self.log.read().decode("utf-8", "replace").strip().splitlines()[-8:]
            self.log.close()
            raise WorkersUnavailable(f"worker process {self.index} exited with code {self.process.returncode} "
                                     f"without an answer" + (": " + " | ".join(tail) if tail else ""))
        self.log.close()
        kind, value = self.outcome
        if kind == "error":
            raise _exception(value["type"], value["message"])
        return value


def _exception(type_path: str, message: str) -> Exception:
    """The job's error as its own type when that is an importable ``Exception`` taking a message, else a
    ``RuntimeError`` naming it."""
    module, _, name = type_path.rpartition(".")
    try:
        cls: Any = importlib.import_module(module or "builtins")
        for part in name.split("."):
            cls = getattr(cls, part)
        if isinstance(cls, type) and issubclass(cls, Exception):
            return cls(message)
    except Exception:  # noqa: BLE001 - any failure to rebuild it: say what it was
        pass
    return RuntimeError(f"{name}: {message}")


def run_in_processes(job: Callable[..., Any], calls: Sequence[tuple], *, workers: int, threads: int = 1,
                     on_event: Callable[..., None] | None = None,
                     stopped: Callable[[], bool] | None = None) -> list[Any]:
    """``[job(*args, report=...) for args in calls]``, at most ``workers`` processes at a time; results in order.

    ``on_event(*event)`` is called (from a reader thread) for every ``report(*event)`` a job makes; each worker
    runs ``threads`` torch threads. When ``stopped()`` turns True the workers are ended and ``JobsStopped`` is
    raised; the first job that fails ends the others and its error is raised here; ``WorkersUnavailable`` when
    a worker could not start or died without an answer.
    """
    waiting = list(enumerate(calls))
    running: list[_Worker] = []
    results: dict[int, Any] = {}
    try:
        while waiting or running:
            while waiting and len(running) < max(1, workers):
                index, args = waiting.pop(0)
                try:
                    running.append(_Worker(index, job, tuple(args), threads, on_event))
                except OSError as exc:
                    raise WorkersUnavailable(f"could not start a worker process: {exc}") from exc
            if stopped is not None and stopped():
                raise JobsStopped("stopped: the worker processes were ended")
            for worker in [w for w in running if w.done()]:
                running.remove(worker)
                results[worker.index] = worker.result()
            time.sleep(POLL_S)
    finally:
        for worker in running:
            worker.end()
            worker.log.close()
    return [results[i] for i in range(len(calls))]


def _serve() -> int:
    """The worker's side: one job from stdin, its JSON lines to the pipe that was stdout."""
    frames = os.fdopen(os.dup(sys.stdout.fileno()), "w", encoding="utf-8")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # the job's prints go to the log, not into the frames
    lock = threading.Lock()

    def send(kind: str, value: Any) -> None:
        with lock:
            frames.write(json.dumps({"kind": kind, "value": value}) + "\n")
            frames.flush()

    call = json.loads(sys.stdin.buffer.read())
    try:
        import torch

        torch.set_num_threads(int(call["threads"]))
        job: Any = importlib.import_module(call["module"])
        for part in call["name"].split("."):
            job = getattr(job, part)
        send("result", job(*call["args"], report=lambda *event: send("event", list(event))))
    except BaseException as exc:  # sent to the caller, raised there
        kind = type(exc)
        send("error", {"type": f"{kind.__module__}.{kind.__qualname__}", "message": str(exc)})
    return 0


if __name__ == "__main__":
    sys.exit(_serve())
