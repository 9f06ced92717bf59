#!/usr/bin/env bash
# Install everything the tests need, then run the whole suite (browser and Spark tests included).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh

# Run a command as root: directly when we are root, else through sudo. `env` makes DEBIAN_FRONTEND an
# assignment in both cases (after an empty "$SUDO" expansion, VAR=value would be run as a command).
as_root() {
  if [ "$(id -u)" -eq 0 ]; then
    env DEBIAN_FRONTEND=noninteractive "$@"
  elif command -v sudo >/dev/null 2>&1; then
    sudo env DEBIAN_FRONTEND=noninteractive "$@"
  else
    echo "installing needs root or sudo, and this user is not root and has no sudo" >&2
    return 1
  fi
}

# apt_install WHAT PACKAGE: install one Debian package, saying why.
apt_install() {
  echo "installing $1 (apt-get install -y $2)" >&2
  as_root apt-get update -qq && as_root apt-get install -y -qq "$2"
}

# The browser tests (pytest -m browser) drive Debian's Chromium; never `playwright install`.
if [ ! -x /usr/bin/chromium ]; then
  if ! apt_install "Chromium for the browser tests" chromium || [ ! -x /usr/bin/chromium ]; then
    echo "could not install Chromium at /usr/bin/chromium: the browser tests cannot run, so the test run fails." >&2
    echo "Install it by hand (apt-get install -y chromium) and run this script again." >&2
    exit 1
  fi
fi

# The Spark tests (tests/test_spark.py) need pyspark (requirements-spark.txt) and Java 17+.
.venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-spark.txt
# java_ok: true when `java` runs and says its major version is 17 or newer. A java that is missing, not
# executable or prints no version is not ok (so it gets installed), never a shell error.
java_ok() {
  local out major
  out=$(java -version 2>&1) || return 1
  major=$(printf '%s\n' "$out" | sed -n 's/.*version "\([0-9][0-9]*\).*/\1/p' | head -n 1)
  [ -n "$major" ] && [ "$major" -ge 17 ]
}
if ! java_ok; then
  if ! apt_install "Java 17 for the Spark tests" openjdk-17-jre-headless || ! java_ok; then
    echo "could not install a working Java 17+ (openjdk-17-jre-headless): the Spark tests cannot run, so the test run fails." >&2
    echo "Install it by hand (apt-get install -y openjdk-17-jre-headless) and run this script again." >&2
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
