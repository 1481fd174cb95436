#!/usr/bin/env bash
# Install, build and run the whole test suite (unit and integration) with ctest.
# LEGATE_SANITIZE=1 builds with ASan+UBSan into build-asan/ and runs the suite there.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
if [ "${LEGATE_SANITIZE:-0}" = "1" ]; then
  dir=build-asan
  scripts/build.sh "$dir" -DLEGATE_SANITIZE=ON
else
  dir=build
  scripts/build.sh "$dir"
fi
cd "$dir"
ctest --output-on-failure --timeout 600 "$@"
