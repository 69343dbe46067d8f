#!/usr/bin/env bash
# tools/libkqueue.sh: builds libkqueue (github.com/mheily/libkqueue,
# BSD-2-Clause) and installs it where ./dev test kqueue and
# `meson setup -Dpoller=kqueue` look: /opt/libkqueue. Its source is never
# part of weft.
#   tools/libkqueue.sh [SOURCE] [PREFIX] [REF]
#     SOURCE  a git repository or URL to clone (default: the github one)
#     PREFIX  install prefix (default /opt/libkqueue)
#     REF     commit or tag to build (default: the commit weft was tested
#             with, f96608964f7da711e686e09c39b79abdb4cc358e)
# With WEFT_LIBKQUEUE_TSAN=1 it builds with clang -fsanitize=thread instead
# (default prefix /opt/libkqueue-tsan); see README "kqueue on Linux".
set -euo pipefail
src=${1:-https://github.com/mheily/libkqueue.git}
tsan=${WEFT_LIBKQUEUE_TSAN:-0}
if [ "$tsan" = 1 ]; then prefix=${2:-/opt/libkqueue-tsan}; else prefix=${2:-/opt/libkqueue}; fi
ref=${3:-f96608964f7da711e686e09c39b79abdb4cc358e}
work=$(mktemp -d /tmp/libkqueue-build.XXXXXX)
trap 'rm -rf "$work"' EXIT
git clone -q "$src" "$work/src"
git -C "$work/src" checkout -q "$ref"
extra=()
if [ "$tsan" = 1 ]; then
  extra=(-DCMAKE_C_COMPILER=clang -DCMAKE_C_FLAGS=-fsanitize=thread -DCMAKE_SHARED_LINKER_FLAGS=-fsanitize=thread)
fi
cmake -S "$work/src" -B "$work/build" -DCMAKE_INSTALL_PREFIX="$prefix" -DCMAKE_BUILD_TYPE=RelWithDebInfo "${extra[@]}" >/dev/null
cmake --build "$work/build" -j"$(nproc)" >/dev/null
cmake --install "$work/build" >/dev/null
pc=$(find "$prefix" -name libkqueue.pc | head -1)
echo "libkqueue $(git -C "$work/src" rev-parse HEAD) installed in $prefix"
echo "check: PKG_CONFIG_PATH=$(dirname "$pc") pkg-config --cflags --libs libkqueue"
