#!/usr/bin/env bash
# Install (first run only takes long) and start the playground on http://localhost:8501
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
exec .venv/bin/streamlit run app.py --server.port "${PORT:-8501}" "$@"
