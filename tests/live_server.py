"""A server subprocess for tests: a free port on 127.0.0.1, up once its health URL answers,
always stopped at the end (also when the test fails), its log shown if it never comes up."""

from __future__ import annotations

import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


@contextmanager
def running(command: Sequence[str], *, health_url: str, cwd: Path, env: Mapping[str, str], log_path: Path,
            timeout: float) -> Iterator[subprocess.Popen]:
    with log_path.open("wb") as log:
        process = subprocess.Popen(list(command), cwd=cwd, env=dict(env), stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + timeout
        while not answers(health_url):
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"{command[2:4]} did not answer {health_url} within {timeout:.0f}s "
                            f"(exit code {process.poll()}):\n{log_path.read_text(errors='replace')[-3000:]}")
            time.sleep(0.25)
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=15)
