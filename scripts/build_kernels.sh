#!/usr/bin/env bash
# Build edgecl's CPU kernels for MLX (edgecl/backends/cpu_kernels) into edgecl/backends/.
# Usage: bash scripts/build_kernels.sh   (install.sh runs it; about 15 s)
# Without them edgecl runs the same math on MLX's own ops, slower on a CPU, so a failed build
# only warns. Rebuild after upgrading mlx: a kernel built for another MLX is not loaded.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=$PWD/.venv/bin/python
src=edgecl/backends/cpu_kernels
build=$src/build
CMAKE=$(command -v cmake || echo .venv/bin/cmake)
[ -x "$CMAKE" ] || $PY -m pip install -q "cmake>=3.24"
$PY -m pip install -q "nanobind>=2" || { echo "warning: no nanobind; CPU kernels not built"; exit 0; }
rm -rf $build  # a fresh configure: the clone, Python or MLX may have moved since
if "$CMAKE" -S $src -B $build -DCMAKE_BUILD_TYPE=Release -DPython_EXECUTABLE=$PY >$build.log 2>&1 &&
   "$CMAKE" --build $build -j "${CMAKE_BUILD_PARALLEL_LEVEL:-2}" >>$build.log 2>&1; then
  for so in $build/_cpu_kernels*.so; do  # a new file, not overwritten: running edgecl maps it
    name=$(basename "$so")
    cp "$so" "edgecl/backends/.$name" && mv -f "edgecl/backends/.$name" "edgecl/backends/$name"
  done
  echo "CPU kernels built: $(ls edgecl/backends/_cpu_kernels*.so)"
else
  echo "warning: the CPU kernels did not build (see $build.log); edgecl uses MLX's own ops"
fi
