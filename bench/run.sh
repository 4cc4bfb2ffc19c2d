#!/usr/bin/env bash
# The whole comparison in one command: installs the peers, builds pipe, runs the
# orchestration and training benchmarks, and prints their tables. Extra arguments go to
# bench/train.py (e.g. --epochs 5, --device cuda). Takes about an hour on 2 cores, half of it
# DVC's first build at N = 500.
set -euo pipefail
cd "$(dirname "$0")/.."
bench/setup.sh
bench/.venv/bin/python bench/orchestration.py
bench/.venv/bin/python bench/train.py "$@"
