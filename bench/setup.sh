#!/usr/bin/env bash
# Installs the peers the benchmarks compare pipe with into bench/.venv (git-ignored), and
# builds pipe in release mode. Pinned versions, so a rerun measures the same peers.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x bench/.venv/bin/python ] || python3 -m venv bench/.venv
bench/.venv/bin/python -m pip install --quiet --disable-pip-version-check \
    torch==2.11.0 numpy dvc==3.67.1 snakemake==9.27.1
cargo build --release --quiet
bench/.venv/bin/python - <<'PY'
import torch, dvc, snakemake
print(f"torch {torch.__version__}, dvc {dvc.__version__}, snakemake {snakemake.__version__}")
PY
