#!/usr/bin/env bash
# Builds and runs tests/consumer against tessera both ways:
# installed (cmake --install + find_package) and add_subdirectory.
# Usage: tests/consumer/run.sh [work-dir]
set -euo pipefail
src=$(cd "$(dirname "$0")/../.." && pwd)
work=${1:-$src/build/consumer}
rm -rf "$work" && mkdir -p "$work"
# CMake resolves a relative CMAKE_PREFIX_PATH against the build tree, not the shell's cwd.
work=$(cd "$work" && pwd)
# On failure, show the build log rather than just an exit status.
trap 'rc=$?; [ $rc -ne 0 ] && { echo "consumer: failed, log follows" >&2; tail -n 60 "$work/log" >&2; }; exit $rc' EXIT

cmake -S "$src" -B "$work/tessera" -DCMAKE_BUILD_TYPE=Release -DTESSERA_BUILD_TESTS=OFF \
  -DTESSERA_BUILD_EXAMPLES=OFF -DTESSERA_BUILD_BENCHMARKS=OFF > "$work/log" 2>&1
cmake --install "$work/tessera" --prefix "$work/prefix" >> "$work/log" 2>&1

cmake -S "$src/tests/consumer" -B "$work/installed" -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$work/prefix" \
  >> "$work/log" 2>&1
cmake --build "$work/installed" -j2 >> "$work/log" 2>&1
"$work/installed/consumer"
"$work/installed/block_test"
echo "consumer: find_package(tessera) ok"

cmake -S "$src/tests/consumer" -B "$work/subdir" -DCMAKE_BUILD_TYPE=Release -DTESSERA_SOURCE_DIR="$src" \
  >> "$work/log" 2>&1
cmake --build "$work/subdir" -j2 >> "$work/log" 2>&1
"$work/subdir/consumer"
"$work/subdir/block_test"
echo "consumer: add_subdirectory(tessera) ok"
