#!/usr/bin/env bash
# Installs what is missing, builds, and starts kindlingd on its embedded default
# (Lambda API on http://127.0.0.1:9000). Data goes to /var/lib/kindling unless --data-dir is given:
# sandboxes must be able to traverse the data directory's parents, which a checkout under /root
# (mode 0700) does not allow. Extra arguments go to kindlingd.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
bash scripts/build.sh
case " $* " in
  *" --data-dir"*) exec build/src/bin/kindlingd "$@" ;;
  *) exec build/src/bin/kindlingd --data-dir /var/lib/kindling "$@" ;;
esac
