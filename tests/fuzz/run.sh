#!/usr/bin/env bash
# Run one libFuzzer target for a bounded time from a copy of its seed corpus
# (the committed corpus is never written). A crash fails the test: the input
# that caused it is kept in the build directory and named in the output.
set -uo pipefail
target=$1 corpus=$2 seconds=$3
name=$(basename "$target")
work=$(mktemp -d "${TMPDIR:-/tmp}/legate-$name.XXXXXX")
trap 'rm -rf "$work"' EXIT
cp -r "$corpus"/. "$work/"
artifacts="$(dirname "$target")/fuzz-artifacts/$name"
mkdir -p "$artifacts"
"$target" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
  -artifact_prefix="$artifacts/" "$work" > "$work.log" 2>&1
status=$?
# The progress lines are many; the summary and any report are what matter.
grep -vE '^#[0-9]+[[:space:]]+(NEW|REDUCE|pulse|RELOAD)' "$work.log"
rm -f "$work.log"
if [ "$status" -ne 0 ]; then
  echo "$name: the fuzzer stopped with status $status; inputs in $artifacts:" >&2
  ls -l "$artifacts" >&2
fi
exit "$status"
