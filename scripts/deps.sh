#!/usr/bin/env bash
# Installs what Kindling needs to build, run and test, from Debian 12 packages (and, for the JS SDK
# test, one npm package pinned by a lock file). Idempotent: only missing packages are installed.
set -euo pipefail

PACKAGES=(
  build-essential cmake pkg-config clang libclang-rt-14-dev
  libboost-dev nlohmann-json3-dev libsqlite3-dev sqlite3 libssl-dev libseccomp-dev libcap-dev
  libzip-dev libzstd-dev libspdlog-dev libfmt-dev libcli11-dev libfuse3-dev fuse3 erofs-utils
  libgtest-dev libgmock-dev libbenchmark-dev
  python3 nodejs zip unzip iproute2
  awscli python3-boto3 python3-pytest
  etcd-server curl
)

missing=()
for p in "${PACKAGES[@]}"; do
  # A node installed by other means satisfies the nodejs runtime.
  [[ $p == nodejs ]] && [[ -x /usr/bin/node ]] && continue
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# The AWS SDK for JavaScript v3 for tests/e2e/test_e2e_auth.py (test_js_sdk_invokes_with_the_right_keys_only), pinned by tests/js/package-lock.json
# (npm ci installs exactly that). Only when missing; offline, the test is skipped with the reason.
js_dir="$(cd "$(dirname "$0")/.." && pwd)/tests/js"
if [[ ! -d $js_dir/node_modules ]] && command -v npm >/dev/null; then
  echo "deps: npm ci in tests/js (@aws-sdk/client-lambda)"
  (cd "$js_dir" && timeout 300 npm ci --no-audit --no-fund --loglevel=error) ||
    echo "deps: npm ci failed (registry unreachable?); the JS SDK test will be skipped"
fi
