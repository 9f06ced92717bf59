#!/usr/bin/env bash
# Install everything the tests need, then run the whole suite (browser tests included).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
# The browser tests (pytest -m browser) drive Debian's Chromium; never `playwright install`.
if [ ! -x /usr/bin/chromium ]; then
  echo "installing Chromium for the browser tests (apt-get install -y chromium)" >&2
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  if ! { $SUDO apt-get update -qq && $SUDO DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } \
      || [ ! -x /usr/bin/chromium ]; then
    echo "could not install Chromium at /usr/bin/chromium: the browser tests cannot run, so the test run fails" >&2
    exit 1
  fi
fi
# The Spark tests (tests/test_spark.py) need pyspark (requirements-spark.txt) and Java 17+.
.venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-spark.txt
java_major() { java -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -1; }
if ! command -v java >/dev/null 2>&1 || [ "$(java_major)" -lt 17 ]; then
  echo "installing Java 17 for the Spark tests (apt-get install -y openjdk-17-jre-headless)" >&2
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  if ! { $SUDO apt-get update -qq && $SUDO DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openjdk-17-jre-headless; } \
      || ! command -v java >/dev/null 2>&1; then
    echo "could not install Java 17: the Spark tests cannot run, so the test run fails" >&2
    exit 1
  fi
fi
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
set +e
.venv/bin/python -m pytest "$@"
status=$?
set -e
if [ "$status" -eq 5 ]; then
  echo "pytest collected no tests: that is a failure here" >&2
  exit 1
fi
exit "$status"
