"""pyproject.toml: ``pip install .`` gives a working package, its ``classify-playground`` command and the presets.

The wheel is built from a copy of the checkout in a temporary folder (setuptools writes
``build/`` next to the sources), with ``--no-build-isolation`` so nothing is downloaded.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

import playground

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def test_metadata_matches_the_package():
    project = PYPROJECT["project"]
    assert project["name"] == "classify-playground"
    assert project["version"] == playground.__version__
    assert project["scripts"] == {"classify-playground": "playground.cli:main"}
    assert {"spark", "bench"} <= set(project["optional-dependencies"])


def test_every_package_folder_is_listed():
    listed = set(PYPROJECT["tool"]["setuptools"]["packages"])
    on_disk = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "playground").rglob("__init__.py")}
    assert on_disk <= listed, f"packages missing from pyproject.toml: {sorted(on_disk - listed)}"
    mapped = PYPROJECT["tool"]["setuptools"]["package-dir"]["playground.preset_files"]
    assert sorted((ROOT / mapped).glob("*.json")), f"{mapped}/ holds no presets"


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The wheel built and installed (``pip install --no-deps --target``) outside the checkout."""
    work = tmp_path_factory.mktemp("wheel")
    source = work / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    for folder in ("playground", "presets"):
        shutil.copytree(ROOT / folder, source / folder, ignore=shutil.ignore_patterns("__pycache__"))
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]
    build = subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", str(work / "dist"),
                            str(source)], capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    wheel = next((work / "dist").glob("classify_playground-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "playground/engine.py" in names and "playground/ui/widgets.py" in names
    assert "playground/preset_files/review-sentiment.json" in names
    site = work / "site"
    install = subprocess.run([*pip, "install", "--no-deps", "--no-index", "--target", str(site), str(wheel)],
                             capture_output=True, text=True, timeout=600)
    assert install.returncode == 0, install.stdout[-3000:] + install.stderr[-3000:]
    return site


def _run_installed(site: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(site)}
    return subprocess.run(list(args), cwd=site.parent, env=env, capture_output=True, text=True, timeout=300)


def test_the_installed_package_is_the_wheel_and_finds_its_presets(installed):
    code = ("import playground, playground.presets as p; print(playground.__file__); "
            "print(sorted(p.list_presets())[0], p.load_preset('review-sentiment').title)")
    run = _run_installed(installed, sys.executable, "-c", code)
    assert run.returncode == 0, run.stderr
    where, presets = run.stdout.splitlines()
    assert Path(where).is_relative_to(installed)
    assert presets.startswith("intent-detection ")


def test_the_console_command_answers(installed):
    run = _run_installed(installed, str(installed / "bin" / "classify-playground"), "--help")
    assert run.returncode == 0, run.stderr
    assert "classify" in run.stdout and "spark-classify" in run.stdout
    module = _run_installed(installed, sys.executable, "-m", "playground", "--help")
    assert module.returncode == 0 and module.stdout == run.stdout
