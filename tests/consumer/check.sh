#!/usr/bin/env bash
# check.sh BUILD_DIR [WORK_DIR]: installs weft from a configured meson build
# dir into WORK_DIR/stage (meson install --destdir), then builds and runs
# the consumer in this folder against it twice, with pkg-config and with
# CMake (find_package(weft CONFIG) + weft::weft); then moves the installed
# prefix elsewhere and does both again (the installed weft.pc and
# weftConfig.cmake must name no absolute path of the prefix). ./dev test
# consumer runs it; it counts as one test. Exit 0 when all of it passed.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=$(cd "$1" && pwd)
work=${2:-$build/consumer-check}
cxx=${CXX:-g++}

opt() {  # the value of a meson option of the build dir
  meson introspect "$build" --buildoptions |
    python3 -c "import json,sys; print(next(o['value'] for o in json.load(sys.stdin) if o['name'] == '$1'))"
}
prefix=$(opt prefix)
libdir=$(opt libdir)
rm -rf "$work"
mkdir -p "$work"
work=$(cd "$work" && pwd)  # meson install takes a relative --destdir from the build dir
echo "== consumer: installing $build (prefix $prefix) into $work/stage"
meson install -C "$build" --no-rebuild --destdir "$work/stage" --quiet >/dev/null

fail() { echo "== consumer: FAILED: $*" >&2; exit 1; }

# Runs the consumer binary $1 and checks what it prints.
run_consumer() {
  local out
  out=$("$1") || fail "$1 exited $? ($out)"
  [ "$out" = "consumer ok: echo: hello;echo: weft;" ] || fail "$1 printed: $out"
  echo "   $out"
}

# check ROOT TAG: build the consumer against the prefix at ROOT both ways.
check() {
  local root=$1 tag=$2 flags
  echo "== consumer ($tag): pkg-config"
  flags=$(PKG_CONFIG_PATH="$root/$libdir/pkgconfig" pkg-config --cflags --libs weft)
  echo "   $cxx -std=c++20 main.cpp $flags"
  # shellcheck disable=SC2086 # the flags are words
  "$cxx" -std=c++20 "$here/main.cpp" $flags -o "$work/consumer-pc-$tag"
  run_consumer "$work/consumer-pc-$tag"
  echo "== consumer ($tag): cmake"
  cmake -S "$here" -B "$work/cmake-$tag" -G Ninja -DCMAKE_CXX_COMPILER="$cxx" -DCMAKE_PREFIX_PATH="$root" \
    -DCMAKE_BUILD_TYPE=Release >"$work/cmake-$tag.log" 2>&1 || { cat "$work/cmake-$tag.log"; fail "cmake configure"; }
  cmake --build "$work/cmake-$tag" >>"$work/cmake-$tag.log" 2>&1 || { cat "$work/cmake-$tag.log"; fail "cmake build"; }
  grep -q -- "-std=gnu++20\|-std=c++20" "$work/cmake-$tag/build.ninja" || fail "weft::weft did not ask for C++20"
  run_consumer "$work/cmake-$tag/consumer"
}

root=$work/stage$prefix
[ -f "$root/$libdir/pkgconfig/weft.pc" ] || fail "no $libdir/pkgconfig/weft.pc installed"
[ -f "$root/$libdir/cmake/weft/weftConfig.cmake" ] || fail "no $libdir/cmake/weft/weftConfig.cmake installed"
[ -f "$root/$libdir/cmake/weft/weftConfigVersion.cmake" ] || fail "no weftConfigVersion.cmake installed"
if [ "$prefix" != /usr ] && grep -n "$prefix" "$root/$libdir/pkgconfig/weft.pc" "$root/$libdir/cmake/weft/"*.cmake; then
  fail "the installed package files name the prefix $prefix: not relocatable"
fi
check "$root" installed

# Move the prefix elsewhere (nothing left at the old place) and do it again.
moved=$work/moved/somewhere/else
mkdir -p "$(dirname "$moved")"
mv "$root" "$moved"
rm -rf "$work/stage"
check "$moved" moved
echo "== consumer: ok (pkg-config and CMake, installed and moved)"
