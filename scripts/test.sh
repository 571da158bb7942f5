#!/usr/bin/env bash
# Runs every test of the workspace on a machine that has Rust (with cargo-nextest) and
# CPython 3.11 with its shared library: creates .venv from fixtures/requirements.txt when
# it is missing or out of date, runs the unit, integration, end-to-end and doc tests, then
# builds the wheel for each interpreter at hand and runs the Python tests (tests/python).
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
cargo test --workspace --doc --quiet
cargo nextest run --workspace --no-fail-fast "$@"

# The wheel, built by maturin for each interpreter the Python tests install it into: the
# one on PATH (pyenv's), Debian's /usr/bin/python3, and pyenv's oldest 3.10 (the oldest
# the package supports) and newest CPython from 3.12 on, where the machine has them. Each goes to target/wheels/VERSION/ with the
# interpreter's path beside it. The dev profile: these tests check the code (bench/
# measures a release build). Linked by zig (the ziglang package) against glibc 2.28, so
# the wheels are manylinux_2_28, as shipped, which --compatibility makes maturin check;
# maturin finds zig through the python on PATH.
interpreters=("$(command -v "$python")")
if [ -x /usr/bin/python3 ] && /usr/bin/python3 -c "import ensurepip, venv" 2>/dev/null; then
  interpreters+=(/usr/bin/python3)
fi
pyenv_versions=${PYENV_ROOT:-$HOME/.pyenv}/versions
oldest=$(ls -d "$pyenv_versions"/3.10.* 2>/dev/null | sort -V | head -n 1 || true)
newest=$(ls -d "$pyenv_versions"/3.1[2-9]* 2>/dev/null | sort -V | tail -n 1 || true)
for version in "$oldest" "$newest"; do
  if [ -n "$version" ] && [ -x "$version/bin/python3" ]; then
    interpreters+=("$version/bin/python3")
  fi
done
rm -rf target/wheels
for interpreter in "${interpreters[@]}"; do
  interpreter=$("$interpreter" -c "import sys; print(sys.executable)")
  version=$("$interpreter" -c "import platform; print(platform.python_version())")
  echo "building the wheel for Python $version ($interpreter)"
  PATH="$PWD/.venv/bin:$PATH" .venv/bin/maturin build --quiet --profile dev \
    --zig --compatibility manylinux_2_28 \
    -m cli/Cargo.toml -i "$interpreter" --target-dir target/wheel --out "target/wheels/$version"
  echo "$interpreter" > "target/wheels/$version/interpreter"
done
own=$(.venv/bin/python -c "import platform; print(platform.python_version())")
.venv/bin/pip install --quiet --disable-pip-version-check --force-reinstall --no-deps \
  target/wheels/"$own"/torsion-*.whl
.venv/bin/python -m pytest -p no:cacheprovider tests/python
