# Sourced by scripts/serve and scripts/test: make sure uv is there and the venv is in sync.
# Only PyPI and Debian's packages are used; nothing is downloaded from anywhere else.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if command -v uv >/dev/null 2>&1; then
  UV=(uv)
elif python3 -m uv --version >/dev/null 2>&1; then
  UV=(python3 -m uv)
else
  echo "bootstrap: installing uv from PyPI" >&2
  python3 -m pip install --quiet uv 2>/dev/null \
    || python3 -m pip install --quiet --user uv 2>/dev/null \
    || python3 -m pip install --quiet --break-system-packages uv
  UV=(python3 -m uv)
fi
export UV_PYTHON_DOWNLOADS=never  # use the machine's Python 3.11+, never fetch one
# Install packages with their bytecode: where PYTHONDONTWRITEBYTECODE is set (as on our CI
# machines) nothing would ever be cached, and every process (the CLI, each service the tests
# start) would compile SQLAlchemy, FastAPI & co. from source again: 3.3 s for `lifecycle
# --version` instead of 1.1 s.
export UV_COMPILE_BYTECODE=1
