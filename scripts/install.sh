#!/usr/bin/env bash
# Install edgecl into ./.venv (idempotent). Usage: bash scripts/install.sh
# First run about 12 minutes on 2 cores (llama-cpp-python compiles; pip caches the wheel),
# later runs under a minute.
set -euo pipefail
cd "$(dirname "$0")/.."

# Linux: MLX's CPU wheel ships a slow reference BLAS; OpenBLAS makes training ~27x faster.
if [ "$(uname -s)" = Linux ] && command -v apt-get >/dev/null && \
   ! ls /usr/lib/*/libopenblas.so.0 >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq libopenblas0-pthread >/dev/null
fi

PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-2} \
  .venv/bin/python -m pip install -q -e ".[test]"
bash scripts/build_kernels.sh  # edgecl's CPU kernels for MLX (optional: only warns if it fails)
echo "edgecl installed in .venv ($(.venv/bin/python -c 'import edgecl; print(edgecl.__version__)'))"
