"""The HTTP API in process (FastAPI's TestClient): Cohere's shapes, every error path, auth, limits."""

from __future__ import annotations

import json
import math
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from playground import embeddings
from playground.engine import classify
from playground.server import DEFAULT_MAX_BODY_BYTES, bind_warning, create_app


def save_custom_model(directory: Path, name: str, examples, encoder) -> None:
    """A real single-label custom model through the store: the small body with a head fitted on ``examples``.

    No contrastive tuning (that is the training module's job and slow); the store, the loader
    and the API path are the same.
    """
    from playground.classifier import FewShotClassifier
    from playground.store import now_iso, save_model

    clf = FewShotClassifier().fit(encoder.embed([ex.text for ex in examples]), [ex.label for ex in examples])
    config = {"type": "single-label", "base_model": "small", "labels": [str(c) for c in clf.classes_],
              "head": clf.to_config(), "n_examples": len(examples), "created": now_iso()}
    save_model(name, config=config, head_arrays=clf.to_arrays(),
               write_body=lambda path: encoder.model.save(str(path)), directory=directory)


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory, small_encoder, seed):
    directory = tmp_path_factory.mktemp("models")
    save_custom_model(directory, "review-sentiment", list(seed.examples), small_encoder)
    return directory


@pytest.fixture(scope="module")
def client(small_encoder):
    return TestClient(create_app(api_key="", max_body_bytes=DEFAULT_MAX_BODY_BYTES, preload=False),
                      raise_server_exceptions=False)


@pytest.fixture(scope="module")
def seed_body(seed):
    return {"inputs": list(seed.inputs), "examples": [ex.to_dict() for ex in seed.examples]}


def test_seed_request_gives_cohere_v1_response(client, seed, seed_body):
    r = client.post("/v1/classify", json=seed_body)
    assert r.status_code == 200, r.text
    data = r.json()
    assert set(data) == {"id", "classifications", "meta"}
    assert data["meta"] == {"api_version": {"version": "1"}}
    expected = classify(list(seed.inputs), list(seed.examples))
    assert [c["input"] for c in data["classifications"]] == list(seed.inputs)
    ids = {data["id"]} | {c["id"] for c in data["classifications"]}
    assert len(ids) == 3  # every id distinct
    for item, want in zip(data["classifications"], expected):
        assert set(item) == {"id", "input", "prediction", "predictions", "confidence", "confidences", "labels",
                             "classification_type"}
        assert item["prediction"] == "negative" == want.prediction
        assert item["predictions"] == ["negative"]
        assert item["confidence"] == pytest.approx(want.confidence)
        assert item["confidences"] == [item["confidence"]]
        assert set(item["labels"]) == {"negative", "positive"}
        assert item["labels"]["negative"] == {"confidence": item["confidence"]}
        assert math.isclose(sum(v["confidence"] for v in item["labels"].values()), 1.0, abs_tol=1e-6)
        assert item["classification_type"] == "single-label"


def test_truncate_windows_is_an_extension_reading_past_the_window(client):
    from fixtures.long_documents import LONG_EXAMPLES, LONG_TICKETS

    body = {"inputs": list(LONG_TICKETS), "examples": [{"text": t, "label": l} for t, l in LONG_EXAMPLES]}
    plain = client.post("/v1/classify", json=body).json()["classifications"]  # no truncate: Cohere's END
    windowed = client.post("/v1/classify", json={**body, "truncate": "WINDOWS"}).json()["classifications"]
    expected = classify(list(LONG_TICKETS), LONG_EXAMPLES, truncate="END")
    assert [c["confidence"] for c in plain] == pytest.approx([r.confidence for r in expected])
    assert [c["prediction"] for c in windowed] == list(LONG_TICKETS.values())
    assert set(windowed[0]) == set(plain[0])  # the same Cohere shape either way


def test_preset_is_accepted_and_truncate_is_case_insensitive(client, seed_body):
    r = client.post("/v1/classify", json={**seed_body, "preset": "some-preset-id", "truncate": "start",
                                          "model": "small"})
    assert r.status_code == 200, r.text
    assert [c["prediction"] for c in r.json()["classifications"]] == ["negative", "negative"]


def _examples(seed_body, drop_label=None, keep=1):
    """The seed's examples with all but ``keep`` of ``drop_label`` removed."""
    out, seen = [], 0
    for ex in seed_body["examples"]:
        if ex["label"] == drop_label:
            seen += 1
            if seen > keep:
                continue
        out.append(ex)
    return out


BAD_REQUESTS = {
    "one example for a label": (
        lambda b: {**b, "examples": _examples(b, "positive")},
        "invalid request: each unique label must have at least 2 examples. Not enough examples for: positive"),
    "104 inputs": (lambda b: {**b, "inputs": ["fine"] * 104},
                   "total number of texts must be at most 96 - received 104"),
    "empty input": (lambda b: {**b, "inputs": ["", "ok"]},
                    "inputs contains an element that is the empty string at index 0"),
    "blank input": (lambda b: {**b, "inputs": ["ok", "   "]},
                    "inputs contains an element that is the empty string at index 1"),
    "no inputs": (lambda b: {**b, "inputs": []}, "invalid request: inputs cannot be empty"),
    "one label": (lambda b: {**b, "examples": [e for e in b["examples"] if e["label"] == "negative"]},
                  "invalid request: examples must have at least 2 unique labels - found 'negative'"),
    "2,501 examples": (lambda b: {**b, "examples": [{"text": f"t{i}", "label": "ab"[i % 2]} for i in range(2501)]},
                       "too many examples: at most 2500 - received 2501"),
    "empty example text": (lambda b: {**b, "examples": [{"text": " ", "label": "positive"}] + b["examples"]},
                           "examples contains an empty text at index 0"),
    "conflicting labels": (
        lambda b: {**b, "examples": b["examples"] + [{"text": "The package was damaged", "label": "positive"}]},
        "is given different labels (negative, positive)"),
    "bad truncate": (lambda b: {**b, "truncate": "MIDDLE"},
                     "truncate must be one of NONE, START, END, WINDOWS - received 'MIDDLE'"),
    "too long with NONE": (lambda b: {**b, "inputs": ["word " * 400], "truncate": "NONE"},
                           "inputs[0] is too long"),
    "base model without examples": (lambda b: {"inputs": b["inputs"]}, "model 'small' needs examples"),
    "empty examples": (lambda b: {**b, "examples": []}, "invalid request: no examples given"),
    "wrong types": (lambda b: {"inputs": [1, None], "examples": [{"text": 3}], "model": 5},
                    "invalid request: inputs[0] must be a string, got a number; inputs[1] must be a string, "
                    "got null; examples[0].text must be a string, got a number; examples[0].label is required; "
                    "model must be a string, got a number"),
    "inputs not a list": (lambda b: {**b, "inputs": "one text"}, "invalid request: inputs must be a list, got a string"),
    "missing inputs": (lambda b: {"examples": b["examples"]}, "invalid request: inputs is required"),
    "example not an object": (lambda b: {**b, "examples": ["text"]},
                              "examples[0] must be an object with text and label, got a string"),
    "body is a list": (lambda b: [b], "the body must be a JSON object with inputs and examples, got a list"),
}


@pytest.mark.parametrize("case", list(BAD_REQUESTS), ids=list(BAD_REQUESTS))
def test_bad_input_is_400_with_a_message_never_422_or_500(client, seed_body, case):
    make, message = BAD_REQUESTS[case]
    r = client.post("/v1/classify", json=make(seed_body))
    assert r.status_code == 400, r.text
    assert set(r.json()) == {"message"}
    assert message in r.json()["message"]


@pytest.mark.parametrize("content, headers, message", [
    (b"{not json", {"content-type": "application/json"}, "the body is not valid JSON"),
    (b"", {"content-type": "application/json"}, "the body is empty"),
    (b'{"inputs": ["x"]}', {"content-type": "text/plain"}, "Content-Type: application/json"),
    (b'{"inputs": ["x"]}', {"content-type": "application/json", "content-length": "abc"},
     "invalid Content-Length header"),
], ids=["invalid json", "empty body", "not json content type", "bad content length"])
def test_unparseable_bodies_are_400(client, content, headers, message):
    r = client.post("/v1/classify", content=content, headers=headers)
    assert r.status_code == 400, r.text
    assert message in r.json()["message"]


@pytest.mark.parametrize("with_examples", [True, False], ids=["with examples", "without examples"])
def test_unknown_model_is_404(client, seed_body, with_examples):
    body = {**seed_body, "model": "no-such-model"} if with_examples else {"inputs": ["x"], "model": "no-such-model"}
    r = client.post("/v1/classify", json=body)
    assert r.status_code == 404, r.text
    assert "no-such-model" in r.json()["message"]


def test_unknown_route_and_method_use_the_message_shape(client):
    assert client.get("/v2/classify").json()["message"].startswith("no route GET /v2/classify")
    r = client.get("/v1/classify")
    assert r.status_code == 405 and "GET is not allowed" in r.json()["message"]


def test_body_over_the_limit_is_413_before_parsing(seed_body, monkeypatch):
    monkeypatch.setenv("CLASSIFY_MAX_BODY_BYTES", "2000")
    small = TestClient(create_app(preload=False))
    assert small.post("/v1/classify", json=seed_body).status_code == 200  # ~700 bytes: under the limit
    big = {**seed_body, "inputs": ["x" * 3000]}
    r = small.post("/v1/classify", json=big)
    assert r.status_code == 413
    assert "at most 2000 bytes" in r.json()["message"] and "CLASSIFY_MAX_BODY_BYTES" in r.json()["message"]
    # not valid JSON either: the size is checked before any parsing
    assert small.post("/v1/classify", content=b"{" * 5000,
                      headers={"content-type": "application/json"}).status_code == 413

    def chunks():  # no Content-Length: the guard counts the streamed bytes
        for _ in range(5):
            yield b" " * 1000
    r = small.post("/v1/classify", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413


def test_default_body_limit_is_5_mb(client):
    assert DEFAULT_MAX_BODY_BYTES == 5 * 1024 * 1024
    r = client.post("/v1/classify", content=b" " * (DEFAULT_MAX_BODY_BYTES + 1),
                    headers={"content-type": "application/json"})
    assert r.status_code == 413


def test_bad_body_limit_setting_is_refused(monkeypatch):
    monkeypatch.setenv("CLASSIFY_MAX_BODY_BYTES", "5MB")
    with pytest.raises(ValueError, match="CLASSIFY_MAX_BODY_BYTES must be a positive number of bytes"):
        create_app(preload=False)


def test_api_key_is_required_everywhere_but_health(seed_body, monkeypatch):
    monkeypatch.setenv("CLASSIFY_API_KEY", "s3cret-key")
    locked = TestClient(create_app(preload=False))
    assert locked.get("/health").status_code == 200
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret-key"},
                    {"Authorization": "Basic s3cret-key"}):
        for method, path in (("post", "/v1/classify"), ("get", "/v1/models"), ("get", "/openapi.json")):
            r = getattr(locked, method)(path, headers=headers, **({"json": seed_body} if method == "post" else {}))
            assert r.status_code == 401, (headers, path)
            assert r.json()["message"].startswith("invalid api token")
            assert r.headers["www-authenticate"] == "Bearer"
    good = {"Authorization": "Bearer s3cret-key"}
    assert locked.get("/v1/models", headers=good).status_code == 200
    r = locked.post("/v1/classify", json=seed_body, headers=good)
    assert r.status_code == 200 and r.json()["classifications"][0]["prediction"] == "negative"


def test_without_a_key_any_authorization_header_is_accepted(client):
    assert client.get("/v1/models", headers={"Authorization": "Bearer none"}).status_code == 200


def test_models_lists_base_models(client):
    r = client.get("/v1/models")
    assert r.status_code == 200
    models = {m["name"]: m for m in r.json()["models"]}
    assert models["small"]["type"] == models["large"]["type"] == "base"
    assert models["small"]["labels"] == [] and models["small"]["endpoints"] == ["classify"]
    for m in models.values():
        assert {"name", "type", "labels"} <= set(m)


def test_health_and_openapi(client):
    assert client.get("/health").json() == {"status": "ok", "version": "0.1.0"}
    spec = client.get("/openapi.json").json()
    assert {"/v1/classify", "/v1/tune", "/v1/models", "/health"} <= set(spec["paths"])
    request = spec["components"]["schemas"]["ClassifyRequest"]
    # Cohere's fields, plus the optional extensions (label names as a prior, label descriptions, unknown below, explain)
    assert set(request["properties"]) == {"inputs", "examples", "model", "truncate", "preset", "label_names",
                                          "descriptions", "unknown_below", "explain"}
    assert set(request.get("required", [])) == {"inputs"}
    assert "400" in spec["paths"]["/v1/classify"]["post"]["responses"]


def test_concurrent_requests_share_one_encoder(client, seed_body):
    assert client.post("/v1/classify", json=seed_body).status_code == 200
    encoders = dict(embeddings._ENCODERS)
    bodies = [seed_body, {**seed_body, "inputs": ["I love it", "Never again"]}] * 4
    bodies += [{**seed_body, "inputs": [f"Review number {i} says it is fine"]} for i in range(4)]
    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda b: client.post("/v1/classify", json=b), bodies))
    assert all(r.status_code == 200 for r in answers)
    first = [c["labels"] for c in answers[0].json()["classifications"]]
    assert all([c["labels"] for c in r.json()["classifications"]] == first for r in answers[:8:2])
    # no request loaded a second copy of the model
    assert embeddings._ENCODERS == encoders


@pytest.mark.parametrize("host, key, warns", [
    ("127.0.0.1", None, False), ("localhost", None, False), ("::1", None, False),
    ("0.0.0.0", None, True), ("192.168.1.5", None, True), ("0.0.0.0", "k", False),
])
def test_bind_warning_for_open_addresses_without_a_key(host, key, warns):
    message = bind_warning(host, key)
    assert (message is not None) == warns
    if warns:
        assert host in message and "CLASSIFY_API_KEY" in message


def test_response_is_json_serialisable_with_unicode(client, seed_body):
    text = "naïve café ☃ 日本語 \"quoted\" $(rm -rf /)"
    r = client.post("/v1/classify", json={**seed_body, "inputs": [text]})
    assert r.status_code == 200
    assert json.loads(r.content)["classifications"][0]["input"] == text


def test_multi_label_results_take_cohere_multi_label_shape():
    from playground.engine import multi_label_results
    from playground.server import to_cohere
    import numpy as np

    results = multi_label_results(["both", "neither"], ["billing", "bug", "praise"],
                                  np.array([[0.9, 0.7, 0.1], [0.2, 0.3, 0.1]]),
                                  {"billing": 0.5, "bug": 0.5, "praise": 0.5})
    both, neither = (to_cohere(r).model_dump() for r in results)
    assert both["classification_type"] == "multi-label"
    assert both["predictions"] == ["billing", "bug"] and both["confidences"] == [0.9, 0.7]
    assert both["prediction"] is None and both["confidence"] is None
    assert both["labels"] == {"billing": {"confidence": 0.9}, "bug": {"confidence": 0.7},
                              "praise": {"confidence": 0.1}}
    assert neither["predictions"] == [] and neither["confidences"] == []


def test_custom_model_classifies_without_examples(client, models_dir, seed, monkeypatch):
    monkeypatch.setenv("CLASSIFY_MODELS_DIR", str(models_dir))
    listed = {m["name"]: m for m in client.get("/v1/models").json()["models"]}
    assert listed["review-sentiment"]["type"] == "single-label"
    assert listed["review-sentiment"]["labels"] == ["negative", "positive"]
    assert listed["review-sentiment"]["status"] == "ok" and listed["review-sentiment"]["base_model"] == "small"
    r = client.post("/v1/classify", json={"inputs": list(seed.inputs), "model": "review-sentiment"})
    assert r.status_code == 200, r.text
    items = r.json()["classifications"]
    assert [c["prediction"] for c in items] == ["negative", "negative"]
    assert all(c["classification_type"] == "single-label" and set(c["labels"]) == {"negative", "positive"}
               for c in items)


def test_custom_model_errors(client, models_dir, seed_body, monkeypatch):
    monkeypatch.setenv("CLASSIFY_MODELS_DIR", str(models_dir))
    r = client.post("/v1/classify", json={**seed_body, "model": "review-sentiment"})
    assert r.status_code == 400 and "is a custom model and takes no examples" in r.json()["message"]
    r = client.post("/v1/classify", json={"inputs": ["x"], "model": "review-sentiment", "examples": []})
    assert r.status_code == 200  # an empty examples list is no examples
    r = client.post("/v1/classify", json={"inputs": [""], "model": "review-sentiment"})
    assert r.status_code == 400 and r.json()["message"] == "inputs contains an element that is the empty string at index 0"
    r = client.post("/v1/classify", json={"inputs": ["x"], "model": "review-sentimen"})
    assert r.status_code == 404
    assert "unknown model 'review-sentimen'" in r.json()["message"] and "review-sentiment" in r.json()["message"]
    r = client.post("/v1/classify", json={"inputs": ["x"], "model": "../etc"})
    assert r.status_code == 404


def test_broken_custom_model_is_listed_and_refused_with_the_reason(client, tmp_path, monkeypatch):
    (tmp_path / "half-saved").mkdir()
    (tmp_path / "half-saved" / "config.json").write_text("{not json", encoding="utf-8")
    monkeypatch.setenv("CLASSIFY_MODELS_DIR", str(tmp_path))
    listed = {m["name"]: m for m in client.get("/v1/models").json()["models"]}
    assert listed["half-saved"]["status"] == "broken" and "not valid JSON" in listed["half-saved"]["problem"]
    r = client.post("/v1/classify", json={"inputs": ["x"], "model": "half-saved"})
    assert r.status_code == 404
    assert "config.json" in r.json()["message"] and "not valid JSON" in r.json()["message"]


def test_the_server_caps_malloc_arenas_unless_the_environment_does(monkeypatch):
    from playground.server import limit_malloc_arenas

    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert limit_malloc_arenas() is False  # glibc already read the user's setting at start-up
    monkeypatch.delenv("MALLOC_ARENA_MAX")
    assert limit_malloc_arenas() is True  # glibc (this image): mallopt(M_ARENA_MAX, 2) accepted


def test_health_says_loading_until_the_model_has_answered_then_ok():
    """The server listens before the model is read: /health answers "loading", then "ok"."""
    import threading

    from playground.server import WarmUp

    warm_up, release = WarmUp(), threading.Event()
    worker = threading.Thread(target=warm_up.run, args=(lambda: release.wait(30),))
    worker.start()
    assert warm_up.status == "loading"
    release.set()
    worker.join(30)
    assert (warm_up.status, warm_up.detail) == ("ok", None)


def test_health_names_a_start_up_failure_with_503(monkeypatch):
    """A model that cannot be read leaves the server up, /health 503 with the reason."""
    from playground import server

    def broken(precision):
        raise FileNotFoundError("no sentence-transformers model in /nowhere")

    monkeypatch.setattr(server, "_warm_up", broken)
    with TestClient(server.create_app(api_key="", preload=True)) as client:
        for _ in range(100):
            response = client.get("/health")
            if response.json()["status"] != "loading":
                break
            time.sleep(0.05)
    assert response.status_code == 503
    assert response.json()["status"] == "error"
    assert "could not be loaded: no sentence-transformers model in /nowhere" in response.json()["detail"]


def test_a_preloading_server_answers_health_and_classifies(seed_body):
    """With the real warm-up: /health is loading or ok at once, and a request made meanwhile waits and answers."""
    from playground import server

    with TestClient(server.create_app(api_key="", preload=True)) as client:
        assert client.get("/health").json()["status"] in ("loading", "ok")
        assert client.post("/v1/classify", json=seed_body).status_code == 200
        for _ in range(600):
            if client.get("/health").json()["status"] == "ok":
                break
            time.sleep(0.05)
        assert client.get("/health").json() == {"status": "ok", "version": "0.1.0"}
