"""Shared fixtures: the real models, loaded once per test session."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from pathlib import Path

import pytest

from playground.embeddings import get_encoder
from playground.presets import load_preset

FIXTURES = Path(__file__).parent / "fixtures"


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


@pytest.fixture
def fixtures_dir() -> Path:
    return FIXTURES
