#!/usr/bin/env bash
# Runs every test of the workspace on a machine that has Rust (with cargo-nextest) and
# CPython 3.11 with its shared library: creates .venv from fixtures/requirements.txt when
# it is missing or out of date, then runs the unit, integration, end-to-end and doc tests.
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-python3}
stamp=.venv/.requirements.sha256
wanted=$(sha256sum fixtures/requirements.txt | cut -d' ' -f1)
if [ ! -x .venv/bin/python ] || [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]; then
  echo "creating .venv from fixtures/requirements.txt"
  rm -rf .venv
  "$python" -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check -r fixtures/requirements.txt
  echo "$wanted" > "$stamp"
fi

# Build against the interpreter on PATH, not the test venv (same CPython, but the build
# must not depend on whether a venv happens to be active).
unset VIRTUAL_ENV
# Doc tests first, so that the run ends with nextest's summary of every other test.
cargo test --workspace --doc --quiet
cargo nextest run --workspace --no-fail-fast "$@"
