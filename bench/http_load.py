"""Load test of the HTTP API: requests/s and latency for the seed request, and the server's memory.

Starts ``python -m playground serve`` on 127.0.0.1 (a free port), waits for /health, then runs
``--clients`` threads posting the guide's example (presets/review-sentiment.json) for
``--seconds`` seconds, each on its own keep-alive connection. The loop is bounded by time and
by ``--max-requests``. Memory is read from /proc/<pid>/status (VmRSS now, VmHWM peak).

    python -m bench.http_load                       # 4 clients, 20 s, the same request each time
    python -m bench.http_load --vary-inputs         # fresh input texts each request (no embedding cache hits)

Prints one JSON object.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

from playground.presets import load_preset

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def memory_kb(pid: int) -> dict[str, int]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0])
    return out


def wait_for_health(port: int, proc: subprocess.Popen, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/health")
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.3)
    raise SystemExit(f"server not up after {timeout:.0f}s")


def post_file(port: int, args: argparse.Namespace) -> dict:
    """One client posting ``--texts-file`` 96 inputs a request, as the Cohere SDK would: texts/s over the loop."""
    import csv

    with open(args.texts_file, newline="", encoding="utf-8") as f:
        texts = [row["text"] for row in csv.DictReader(f)]
    with open(args.examples_file, newline="", encoding="utf-8") as f:
        examples = [{"text": row["text"], "label": row["label"]} for row in csv.DictReader(f)]
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)

    def post(inputs: list[str]) -> None:
        body = json.dumps({"inputs": inputs, "examples": examples, "model": args.model}).encode()
        conn.request("POST", "/v1/classify", body=body, headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        data = json.loads(response.read())
        if response.status != 200 or len(data["classifications"]) != len(inputs):
            raise SystemExit(f"HTTP {response.status}: {str(data)[:300]}")

    post([f"warm-up {i}" for i in range(8)])  # the model loaded and the examples fitted before the clock starts
    started = time.perf_counter()
    for start in range(0, len(texts), 96):
        post(texts[start:start + 96])
    seconds = time.perf_counter() - started
    conn.close()
    return {"texts": len(texts), "model": args.model, "seconds": round(seconds, 2),
            "texts_per_s": round(len(texts) / seconds, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--max-requests", type=int, default=200_000, help="hard cap on requests in total")
    parser.add_argument("--vary-inputs", action="store_true", help="new input texts on every request")
    parser.add_argument("--texts-file", default="", help="a CSV with a text column: one client posts all of it, 96 "
                        "inputs a request (Cohere's limit), with --examples-file's examples, and reports texts/s")
    parser.add_argument("--examples-file", default="", help="with --texts-file: a CSV of text,label examples")
    parser.add_argument("--model", default="small", help="with --texts-file: the model the requests name")
    args = parser.parse_args()
    if not (1 <= args.clients <= 64 and 0 < args.seconds <= 600):
        raise SystemExit("--clients must be 1-64 and --seconds 0-600")

    seed = load_preset("review-sentiment")
    examples = [ex.to_dict() for ex in seed.examples]
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}  # playground sets the offline variables itself
    env.pop("CLASSIFY_API_KEY", None)
    proc = subprocess.Popen([sys.executable, "-m", "playground", "serve", "--host", "127.0.0.1", "--port", str(port)],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        started = time.monotonic()
        wait_for_health(port, proc)
        startup_s = time.monotonic() - started
        idle = memory_kb(proc.pid)

        def body(n: int) -> bytes:
            inputs = [f"{t} (#{n})" for t in seed.inputs] if args.vary_inputs else list(seed.inputs)
            return json.dumps({"inputs": inputs, "examples": examples}).encode()

        def post(conn: http.client.HTTPConnection, n: int) -> tuple[int, dict]:
            conn.request("POST", "/v1/classify", body=body(n), headers={"Content-Type": "application/json"})
            r = conn.getresponse()
            return r.status, json.loads(r.read())

        if args.texts_file:
            print(json.dumps(post_file(port, args), indent=2))
            return
        warm = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        status, data = post(warm, -1)  # fits the examples once; later requests reuse the fit
        assert status == 200 and [c["prediction"] for c in data["classifications"]] == ["negative", "negative"], data
        warm.close()

        latencies: list[float] = []
        errors: list[str] = []
        counter = iter(range(args.max_requests))
        lock = threading.Lock()
        stop_at = time.monotonic() + args.seconds

        def client() -> None:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            while time.monotonic() < stop_at:
                with lock:
                    n = next(counter, None)
                if n is None:
                    break
                t0 = time.perf_counter()
                try:
                    status, _ = post(conn, n)
                except (OSError, http.client.HTTPException) as exc:
                    errors.append(repr(exc))
                    conn.close()
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
                    continue
                elapsed = time.perf_counter() - t0
                with lock:
                    latencies.append(elapsed)
                    if status != 200:
                        errors.append(f"HTTP {status}")
            conn.close()

        threads = [threading.Thread(target=client) for _ in range(args.clients)]
        t0 = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.monotonic() - t0
        mem = memory_kb(proc.pid)
        q = statistics.quantiles(latencies, n=100) if len(latencies) >= 2 else [float("nan")] * 99
        print(json.dumps({
            "clients": args.clients, "seconds": round(wall, 2), "vary_inputs": args.vary_inputs,
            "requests": len(latencies), "errors": len(errors), "error_samples": errors[:3],
            "requests_per_s": round(len(latencies) / wall, 1),
            "latency_ms": {"p50": round(q[49] * 1000, 1), "p95": round(q[94] * 1000, 1),
                           "max": round(max(latencies) * 1000, 1) if latencies else None},
            "server_startup_s": round(startup_s, 1),
            "server_rss_mb": {"idle_after_start": round(idle["VmRSS"] / 1024, 1),
                              "after_load": round(mem["VmRSS"] / 1024, 1),
                              "peak_hwm": round(mem["VmHWM"] / 1024, 1)},
            "cpus": os.cpu_count(),
        }, indent=2))
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()


if __name__ == "__main__":
    main()
