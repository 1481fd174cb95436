#!/usr/bin/env bash
# Install, build and run the whole test suite (unit and integration) with ctest.
# LEGATE_SANITIZE=1 builds with ASan+UBSan into build-asan/ and runs the suite there.
# LEGATE_FUZZ=1 builds the libFuzzer targets with clang into build-fuzz/ and runs
# each for LEGATE_FUZZ_SECONDS (default 60) from its seed corpus in tests/fuzz/corpus.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
if [ "${LEGATE_FUZZ:-0}" = "1" ]; then
  dir=build-fuzz
  CC=clang scripts/build.sh "$dir" -DLEGATE_FUZZ=ON -DLEGATE_FUZZ_SECONDS="${LEGATE_FUZZ_SECONDS:-60}"
elif [ "${LEGATE_SANITIZE:-0}" = "1" ]; then
  dir=build-asan
  scripts/build.sh "$dir" -DLEGATE_SANITIZE=ON
else
  dir=build
  scripts/build.sh "$dir"
fi
cd "$dir"
ctest --output-on-failure --timeout 600 "$@"
