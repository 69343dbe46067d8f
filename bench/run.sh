#!/usr/bin/env bash
# Builds the benchmarks (release) and runs every weft benchmark side by side
# with its Go twin, printing medians and weft/Go ratios as a Markdown table.
#   bench/run.sh [--reps N] [--filter REGEX]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(dirname "$here")
build=${WEFT_BENCH_BUILD:-$top/build-bench}
if [ ! -f "$build/build.ninja" ]; then
  meson setup "$build" "$top" -Dbuildtype=release -Dtests=false >/dev/null
fi
ninja -C "$build" >/dev/null
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(uname -r); $(go version); $(date -u +%F)"
exec python3 "$here/compare.py" --build "$build" "$@"
