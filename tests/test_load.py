"""A bounded load test on 127.0.0.1, and the API key on every route but /health.

8 clients for ``CLASSIFY_LOAD_SECONDS`` (default 60; shorten it only while iterating locally)
send a mix of valid and invalid requests to a real ``python -m playground serve``: no 5xx, no
dropped response, server RSS growth under 10 % between warm-up and the end. The figures are
printed (``-s``) and recorded in docs/RELIABILITY.md.
"""

from __future__ import annotations

import itertools
import json
import os
import sys
import threading
import time
from pathlib import Path

import requests
from fastapi.testclient import TestClient

from live_server import free_port, running
from playground.server import OPEN_PATHS, create_app

REPO = Path(__file__).resolve().parent.parent
CLIENTS = 8
SECONDS = float(os.environ.get("CLASSIFY_LOAD_SECONDS", "60"))
MAX_BODY = 200_000
TEXTS = [f"order {i}: the parcel was {w}" for i, w in
         enumerate(["late", "broken", "perfect", "lovely", "lost", "fine", "crushed", "early"] * 4)]


def _requests(seed_examples: list[dict]) -> list[tuple[str, str, object, set[int]]]:
    """(method, path, json body or raw bytes, acceptable statuses): half valid, half invalid."""
    valid = [("POST", "/v1/classify", {"inputs": TEXTS[i:i + 4], "examples": seed_examples}, {200})
             for i in range(0, len(TEXTS), 4)]
    return valid + [
        ("GET", "/health", None, {200}),
        ("GET", "/v1/models", None, {200}),
        ("POST", "/v1/classify", {"inputs": [], "examples": seed_examples}, {400}),
        ("POST", "/v1/classify", {"inputs": ["x"] * 97, "examples": seed_examples}, {400}),
        ("POST", "/v1/classify", {"inputs": ["x"], "examples": seed_examples[:1]}, {400}),
        ("POST", "/v1/classify", {"inputs": ["x"], "model": "no-such-model"}, {404}),
        ("POST", "/v1/classify", {"inputs": [1, None], "examples": "nope"}, {400}),
        ("POST", "/v1/classify", b"{not json", {400}),
        ("POST", "/v1/classify", b"\x9c\xff", {400}),
        ("POST", "/v1/classify", b" " * (MAX_BODY + 1), {413}),
        ("GET", "/v1/classify", None, {405}),
        ("GET", "/no/such/route", None, {404}),
    ]


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for pid {pid}")


def _client_loop(base: str, plan, deadline: float, offset: int, out: dict, lock: threading.Lock) -> None:
    session = requests.Session()
    latencies, statuses, bad, dropped = [], [], [], []
    for method, path, body, ok in itertools.islice(itertools.cycle(plan), offset, None):
        if time.monotonic() >= deadline:
            break
        kwargs = {"json": body} if isinstance(body, dict) else ({"data": body} if body is not None else {})
        if isinstance(body, bytes):
            kwargs["headers"] = {"content-type": "application/json"}
        started = time.perf_counter()
        try:
            r = session.request(method, base + path, timeout=60, **kwargs)
            r.json()  # every answer is JSON, errors included
        except (requests.RequestException, ValueError) as exc:
            dropped.append(f"{method} {path}: {exc!r}")
            session = requests.Session()
            continue
        latencies.append(time.perf_counter() - started)
        statuses.append(r.status_code)
        if r.status_code not in ok:
            bad.append(f"{method} {path} → {r.status_code} {r.text[:200]}")
    with lock:
        out["latencies"] += latencies
        out["statuses"] += statuses
        out["bad"] += bad
        out["dropped"] += dropped


def test_8_clients_for_a_minute_no_5xx_no_drops_flat_memory(tmp_path, seed):
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "CLASSIFY_MAX_BODY_BYTES": str(MAX_BODY),
           "CLASSIFY_MODELS_DIR": str(tmp_path / "models"), "PYTHONPATH": str(REPO)}
    env.pop("CLASSIFY_API_KEY", None)
    plan = _requests([ex.to_dict() for ex in seed.examples])
    with running([sys.executable, "-m", "playground", "serve", "--host", "127.0.0.1", "--port", str(port)],
                 health_url=base + "/health", cwd=REPO, env=env, log_path=tmp_path / "server.log",
                 timeout=180) as server:
        warm: dict = {"latencies": [], "statuses": [], "bad": [], "dropped": []}
        lock = threading.Lock()
        for _ in range(3):  # every request kind, every text embedded once: caches and pools settle
            for method, path, body, ok in plan:
                kwargs = {"json": body} if isinstance(body, dict) else ({"data": body} if body is not None else {})
                requests.request(method, base + path, timeout=60, **kwargs)
        warm_threads = [threading.Thread(target=_client_loop, args=(base, plan, time.monotonic() + 5, i * 3, warm, lock))
                        for i in range(CLIENTS)]
        for t in warm_threads:
            t.start()
        for t in warm_threads:
            t.join()
        rss_before = _rss_kb(server.pid)

        out: dict = {"latencies": [], "statuses": [], "bad": [], "dropped": []}
        started = time.monotonic()
        deadline = started + SECONDS
        threads = [threading.Thread(target=_client_loop, args=(base, plan, deadline, i * 3, out, lock))
                   for i in range(CLIENTS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=SECONDS + 120)
        elapsed = time.monotonic() - started
        rss_after = _rss_kb(server.pid)
        assert server.poll() is None, "the server died under load"

    latencies = sorted(out["latencies"])
    n = len(latencies)
    figures = {
        "clients": CLIENTS, "seconds": round(elapsed, 1), "requests": n, "req_per_s": round(n / elapsed, 1),
        "p50_ms": round(latencies[n // 2] * 1000, 1), "p95_ms": round(latencies[int(n * 0.95)] * 1000, 1),
        "max_ms": round(latencies[-1] * 1000, 1),
        "status_counts": {str(k): out["statuses"].count(k) for k in sorted(set(out["statuses"]))},
        "5xx": sum(1 for s in out["statuses"] if s >= 500), "dropped": len(out["dropped"]),
        "rss_before_mb": round(rss_before / 1024, 1), "rss_after_mb": round(rss_after / 1024, 1),
        "rss_growth_pct": round(100 * (rss_after - rss_before) / rss_before, 2),
    }
    print("\nLOAD " + json.dumps(figures))
    assert out["dropped"] == [], out["dropped"][:5]
    assert figures["5xx"] == 0 and out["bad"] == [], out["bad"][:5]
    assert n > CLIENTS * SECONDS  # the clients really ran for the whole time (over one request/s each)
    assert rss_after < rss_before * 1.10, figures


# ------------------------------------------------------------------------------------------ API key


def _all_routes(app) -> set[tuple[str, str]]:
    """Every (method, path) the app serves: the OpenAPI paths plus the docs routes that are not in it."""
    spec = TestClient(app).get("/openapi.json", headers={"Authorization": "Bearer s3cret"}).json()
    routes = {(method.upper(), path) for path, ops in spec["paths"].items() for method in ops}
    for route in app.routes:
        for method in getattr(route, "methods", None) or ():
            routes.add((method, route.path))
    return routes


def test_every_route_but_health_refuses_a_missing_or_wrong_key(seed):
    app = create_app(api_key="s3cret", preload=False)
    client = TestClient(app, raise_server_exceptions=False)
    routes = _all_routes(app)
    assert {("POST", "/v1/classify"), ("GET", "/v1/models"), ("GET", "/health"), ("GET", "/openapi.json")} <= routes
    body = {"inputs": ["x"], "examples": [ex.to_dict() for ex in seed.examples]}
    for method, path in sorted(routes):
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Bearer s3cret "[:-1] + "x"},
                        {"Authorization": "Basic s3cret"}, {"Authorization": "s3cret"}):
            r = client.request(method, path, headers=headers, **({"json": body} if method == "POST" else {}))
            if path in OPEN_PATHS:
                assert r.status_code == 200, (method, path)
            else:
                assert r.status_code == 401, (method, path, headers, r.status_code)
                if method != "HEAD":  # HEAD answers carry no body
                    assert r.json()["message"].startswith("invalid api token")
    good = {"Authorization": "Bearer s3cret"}
    assert client.get("/v1/models", headers=good).status_code == 200
    assert client.get("/openapi.json", headers=good).status_code == 200
