#!/usr/bin/env bash
# Installs what is missing, builds, and starts kindlingd on its embedded default
# (Lambda API on http://127.0.0.1:9000, data under ./kindling-data). Extra arguments go to kindlingd.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
bash scripts/build.sh
exec build/src/bin/kindlingd "$@"
