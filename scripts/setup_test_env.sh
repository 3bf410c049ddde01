#!/usr/bin/env bash
# What the test suite needs beyond `pip install -e '.[dev]'` (ROS 2 wheels, Debian packages, …).
# Run by the README's test command: `bash scripts/setup_test_env.sh .venv`. Each part lives in
# scripts/setup.d/*.sh, takes the venv path, is idempotent and prints one line of what it did.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${1:-.venv}
if [ ! -x "$venv/bin/python" ]; then
  echo "setup_test_env: $venv/bin/python not found; create the venv first (see README)" >&2
  exit 1
fi
shopt -s nullglob
for part in scripts/setup.d/*.sh; do
  bash "$part" "$venv"
done
