#!/usr/bin/env bash
# Install everything legate needs to build, run and test, from Debian 12's packages.
set -euo pipefail
packages=(
  build-essential cmake pkg-config clang-format
  libev-dev libnghttp2-dev libssl-dev libyaml-dev libzmq3-dev libcmocka-dev
  libhttp-parser-dev                     # HTTP/1 parsing: Debian's http_parser 2.9
  libseccomp-dev libcap-dev              # the children's seccomp filters and capabilities
  libxxhash-dev                          # XXH64 for the hashing load balancers
  libc-ares-dev                          # asynchronous DNS for STRICT_DNS and LOGICAL_DNS clusters
  dnsmasq-base                           # a real DNS server for the DNS cluster tests
  clang libclang-rt-14-dev               # the libFuzzer targets (tests/fuzz)
  python3 curl wrk procps                # integration tests and the quickstart
  prometheus                             # promtool checks /stats/prometheus in the tests
  haproxy nginx nghttp2-client           # tools/bench runs legate beside them (and a test runs it)
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
