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
