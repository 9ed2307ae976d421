#!/usr/bin/env bash
# Refreshes requirements.lock on purpose (`make lock`): resolves what scripts/requirements.py
# lists (pyproject.toml's build requirements, dependencies and test/bench extras, and pip) to
# exact versions for the project's machines (CPython 3.11, Linux x86-64). `make setup`, and so
# `make run` and `make test`, install exactly what the lock pins; commit it after a refresh.
set -euo pipefail
cd "$(dirname "$0")/.."
UV_VERSION=0.13.9
tools="${ACGS_CACHE_DIR:-$HOME/.cache/acgs}/uv-$UV_VERSION"
if [ ! -x "$tools/bin/uv" ]; then
	python3 -m venv "$tools"
	"$tools/bin/python" -m pip install -q "uv==$UV_VERSION"
fi
python3 scripts/requirements.py |
	"$tools/bin/uv" pip compile - --quiet --python-version 3.11 --python-platform x86_64-unknown-linux-gnu \
		--custom-compile-command "make lock" -o requirements.lock
echo "lock: wrote requirements.lock ($(grep -c '==' requirements.lock) packages)"
