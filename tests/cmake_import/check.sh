#!/bin/bash
# Installs the built project into a staging prefix, then configures, builds and runs tests/cmake_import
# against it with find_package(podproxy): what a user's own project does.
set -euo pipefail
build_dir=$1
work=$2
here=$(cd "$(dirname "$0")" && pwd)
rm -rf "$work"
mkdir -p "$work"
cmake --install "$build_dir" --prefix "$work/stage" >/dev/null
test -f "$work/stage/share/podproxy/podproxyConfig.cmake"
test -f "$work/stage/share/podproxy/podproxyConfigVersion.cmake"
test -f "$work/stage/share/podproxy/FindAsio.cmake"
test -f "$work/stage/include/podproxy/podproxy.hpp"
cmake -S "$here" -B "$work/build" -DCMAKE_PREFIX_PATH="$work/stage" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$work/build" >/dev/null
"$work/build/consumer"
# SameMajorVersion: a project asking for podproxy 1.0 must be refused by this 0.x package.
if cmake -S "$here" -B "$work/build-v1" -DCMAKE_PREFIX_PATH="$work/stage" -DCONSUMER_WANTS=1.0 >/dev/null 2>&1; then
  echo "find_package(podproxy 1.0) unexpectedly accepted a 0.x package" >&2
  exit 1
fi
echo "find_package(podproxy 1.0) refused, as it should be"
