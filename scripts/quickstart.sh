#!/usr/bin/env bash
# Install, build, start a local upstream on 127.0.0.1:8080 and run legate on its
# embedded default config. Try, in another terminal:
#   curl http://127.0.0.1:10000/            (a direct response)
#   curl http://127.0.0.1:10000/upstream/   (proxied to the local upstream)
#   curl http://127.0.0.1:9901/ready        (the admin listener)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh build
/usr/bin/python3 -m http.server 8080 --bind 127.0.0.1 --directory examples/www -p HTTP/1.1 \
  >/dev/null 2>&1 &
upstream_pid=$!
trap 'kill $upstream_pid 2>/dev/null || true' EXIT
echo "legate: serving on http://127.0.0.1:10000/ (admin on 127.0.0.1:9901); Ctrl-C stops it"
build/legate "$@"
