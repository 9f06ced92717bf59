"""A live server (``python -m playground serve``) called by real clients: the cohere SDK, the
exported Cohere SDK snippet and the exported curl command.

The server runs with an API key, so the clients also prove they send it the way Cohere's do.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import cohere
import pytest
from cohere import ClassifyExample

from playground.export import cohere_snippet, curl_snippet
from playground.validation import Example
from live_server import free_port, running
from test_server import save_custom_model

ROOT = Path(__file__).resolve().parent.parent
API_KEY = "x"
START_TIMEOUT_S = 180
CUSTOM = "review-sentiment"


@pytest.fixture(scope="module")
def server(tmp_path_factory, small_encoder, seed):
    """The server in a subprocess on 127.0.0.1, up once /health answers; killed at teardown.

    Its model folder holds one custom model, ``review-sentiment``.
    """
    models = tmp_path_factory.mktemp("models")
    save_custom_model(models, CUSTOM, list(seed.examples), small_encoder)
    port = free_port()
    log = tmp_path_factory.mktemp("server") / "server.log"
    env = {**os.environ, "CLASSIFY_API_KEY": API_KEY, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "PYTHONPATH": str(ROOT), "CLASSIFY_MODELS_DIR": str(models)}
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "playground", "serve", "--host", "127.0.0.1", "--port", str(port)]
    with running(command, health_url=url + "/health", cwd=ROOT, env=env, log_path=log, timeout=START_TIMEOUT_S):
        yield url


@pytest.fixture(scope="module")
def co(server):
    return cohere.Client(api_key=API_KEY, base_url=server)


def test_cohere_sdk_classifies_the_guide_example(co, seed):
    response = co.classify(
        inputs=list(seed.inputs),
        examples=[ClassifyExample(text=ex.text, label=ex.label) for ex in seed.examples],
    )
    assert isinstance(response, cohere.ClassifyResponse)
    assert isinstance(response.id, str) and response.id
    assert response.meta.api_version.version == "1"
    assert [c.input for c in response.classifications] == list(seed.inputs)
    for c in response.classifications:
        # every field landed in a typed attribute, none in the model's "extra" bag
        assert not (c.model_extra or {}), c.model_extra
        assert isinstance(c.id, str) and c.id
        assert c.prediction == "negative"
        assert c.predictions == ["negative"]
        assert 0.5 <= c.confidence <= 1.0
        assert c.confidences == [c.confidence]
        assert set(c.labels) == {"negative", "positive"}
        assert c.labels["negative"].confidence == c.confidence
        assert c.labels["negative"].confidence + c.labels["positive"].confidence == pytest.approx(1.0)
        assert c.classification_type == "single-label"
    assert not (response.model_extra or {})


def test_cohere_sdk_raises_with_our_message(co, seed):
    examples = [ClassifyExample(text=ex.text, label=ex.label) for ex in seed.examples if ex.label == "negative"]
    examples.append(ClassifyExample(text="I would buy this again", label="positive"))
    with pytest.raises(cohere.BadRequestError) as info:
        co.classify(inputs=list(seed.inputs), examples=examples)
    assert info.value.status_code == 400
    assert info.value.body == {"message": "invalid request: each unique label must have at least 2 examples. "
                                          "Not enough examples for: positive"}


def test_cohere_sdk_unknown_model_and_bad_key(server, co, seed):
    with pytest.raises(cohere.NotFoundError) as info:
        co.classify(inputs=["x"], model="no-such-model")
    assert "no-such-model" in info.value.body["message"]
    with pytest.raises(cohere.UnauthorizedError) as info:
        cohere.Client(api_key="wrong", base_url=server).classify(
            inputs=list(seed.inputs), examples=[ClassifyExample(text=e.text, label=e.label) for e in seed.examples])
    assert info.value.body["message"].startswith("invalid api token")


def test_cohere_sdk_lists_models(co):
    models = {m.name: m for m in co.models.list().models}
    assert list(models)[:2] == ["small", "large"]
    assert models[CUSTOM].endpoints == ["classify"]
    assert models[CUSTOM].model_extra["labels"] == ["negative", "positive"]


def test_cohere_sdk_calls_a_custom_model_without_examples(co, seed):
    response = co.classify(inputs=list(seed.inputs), model=CUSTOM)
    assert [c.prediction for c in response.classifications] == ["negative", "negative"]
    assert all(c.classification_type == "single-label" and not (c.model_extra or {})
               for c in response.classifications)


def test_exported_snippets_for_a_custom_model_run(server, co, seed, tmp_path):
    inputs = list(seed.inputs)
    script = tmp_path / "cohere_custom.py"
    script.write_text(cohere_snippet(inputs, None, model=CUSTOM, server_url=server), encoding="utf-8")
    reference = co.classify(inputs=inputs, model=CUSTOM)
    assert _run_snippet([sys.executable, str(script)], tmp_path).splitlines() == [
        f"{c.prediction} {round(c.confidence, 3)} {c.input}" for c in reference.classifications]
    data = json.loads(_run_snippet(["bash", "-c", curl_snippet(inputs, None, model=CUSTOM, server_url=server)],
                                   tmp_path))
    assert [c["prediction"] for c in data["classifications"]] == ["negative", "negative"]


def _run_snippet(args: list[str], tmp_path: Path) -> str:
    env = {**os.environ, "CLASSIFY_API_KEY": API_KEY}
    run = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    return run.stdout


def test_exported_cohere_snippet_runs_against_the_server(server, co, seed, tmp_path):
    inputs, examples = list(seed.inputs), list(seed.examples)
    script = tmp_path / "cohere_classify.py"
    script.write_text(cohere_snippet(inputs, examples, server_url=server), encoding="utf-8")
    out = _run_snippet([sys.executable, str(script)], tmp_path)
    reference = co.classify(inputs=inputs, examples=[ClassifyExample(text=e.text, label=e.label) for e in examples])
    assert out.splitlines() == [f"{c.prediction} {round(c.confidence, 3)} {c.input}"
                                for c in reference.classifications]


AWKWARD = [
    Example('He said "it\'s fine"', "quote's"),
    Example("back\\slash and '''triple''' and \"\"\"double\"\"\"", "tricky"),
    Example("line one\nline two", "quote's"),
    Example("naïve café ☃ 日本語 $(rm -rf /) ${HOME} `id`", "tricky"),
]


def test_exported_curl_runs_against_the_server(server, seed, tmp_path):
    assert shutil.which("curl"), "curl is needed to run the exported curl command"
    out = _run_snippet(["bash", "-c", curl_snippet(list(seed.inputs), list(seed.examples), server_url=server)],
                       tmp_path)
    data = json.loads(out)
    assert [c["prediction"] for c in data["classifications"]] == ["negative", "negative"]
    assert data["meta"] == {"api_version": {"version": "1"}}
    # awkward strings survive the shell quoting and come back verbatim
    inputs = ["émoji 🎉 and \"quotes\"", "tab\there $(id)"]
    out = _run_snippet(["bash", "-c", curl_snippet(inputs, AWKWARD, model="small", truncate="START",
                                                   server_url=server)], tmp_path)
    data = json.loads(out)
    assert [c["input"] for c in data["classifications"]] == inputs
    assert all(set(c["labels"]) == {"quote's", "tricky"} for c in data["classifications"])


def test_live_server_refuses_an_oversized_body_and_stays_up(server, co, seed):
    body = json.dumps({"inputs": ["x" * 1000] * 6000}).encode()  # about 6 MB, over the 5 MB default
    request = urllib.request.Request(server + "/v1/classify", data=body, method="POST",
                                     headers={"Content-Type": "application/json",
                                              "Authorization": f"Bearer {API_KEY}"})
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(request, timeout=60)
    assert info.value.code == 413
    assert json.loads(info.value.read())["message"].startswith("request body too large")
    response = co.classify(inputs=list(seed.inputs),
                           examples=[ClassifyExample(text=e.text, label=e.label) for e in seed.examples])
    assert [c.prediction for c in response.classifications] == ["negative", "negative"]


def test_exported_cohere_snippet_sends_windows_to_the_local_server(server, tmp_path):
    from fixtures.long_documents import LONG_EXAMPLES, LONG_TICKETS

    examples = [Example(t, l) for t, l in LONG_EXAMPLES]
    script = tmp_path / "cohere_windows.py"
    script.write_text(cohere_snippet(list(LONG_TICKETS), examples, truncate="WINDOWS", server_url=server),
                      encoding="utf-8")
    out = _run_snippet([sys.executable, str(script)], tmp_path)
    assert [line.split()[0] for line in out.splitlines()] == list(LONG_TICKETS.values())  # read past the window
