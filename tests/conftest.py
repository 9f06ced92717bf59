"""Shared fixtures: the real models, loaded once per test session.

Importing ``playground`` sets the Hugging Face offline variables (``embeddings.OFFLINE_ENV``)
before any model library loads, for this process and the subprocesses the tests start.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from fixtures.trained_models import MULTI_JSONL, SINGLE_CSV, TINY
from playground.embeddings import get_encoder
from playground.presets import load_preset
from playground.training import train
from playground.workspace import WORKSPACES_DIR_ENV

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(autouse=True)
def workspaces_folder(tmp_path_factory, monkeypatch) -> Path:
    """Every test its own workspaces folder: a page opened in a test never reads or writes ./workspaces."""
    folder = tmp_path_factory.mktemp("workspaces")
    monkeypatch.setenv(WORKSPACES_DIR_ENV, str(folder))
    return folder


@pytest.fixture(scope="session")
def small_encoder():
    return get_encoder("small")


@pytest.fixture(scope="session")
def large_encoder():
    return get_encoder("large")


@pytest.fixture(scope="session")
def seed():
    """Cohere's guide example: 10 review examples and two inputs, both negative."""
    return load_preset("review-sentiment")


@pytest.fixture(scope="session")
def trained_dir(tmp_path_factory) -> Path:
    """A models folder holding ``tickets`` (single-label) and ``topics`` (multi-label), trained once per session.

    Tiny settings (``TINY``); pytest's temporary folders clean themselves up. Tests that break
    or rename models work on a copy.
    """
    directory = tmp_path_factory.mktemp("classify-models")
    train(SINGLE_CSV, "tickets", settings=TINY, directory=directory)
    train(MULTI_JSONL, "topics", settings=TINY, directory=directory)
    return directory


@pytest.fixture
def fixtures_dir() -> Path:
    return FIXTURES
