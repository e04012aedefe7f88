#!/usr/bin/env bash
# Time and disk of a setup on a fresh clone with a fresh HOME (nothing cached): what README line 1 costs a new user.
#   bench/setup_footprint.sh COMMIT [SETUP_ARGS...]     e.g.  bench/setup_footprint.sh HEAD --demo
# Prints the seconds `bash .ci/setup SETUP_ARGS` took and the bytes of HOME (caches: pip, Maven, jars, Go) and .venv.
# It downloads everything again (PyPI, Maven Central, and the Go module proxy for a full setup): minutes, not seconds.
set -euo pipefail
commit=$1; shift
repo="$(cd "$(dirname "$0")/.." && pwd)"
work="$(mktemp -d)"
git clone -q "$repo" "$work/repo" && git -C "$work/repo" checkout -q "$commit"
mkdir "$work/home"
cd "$work/repo"
start=$(date +%s.%N)
HOME="$work/home" bash .ci/setup "$@" > "$work/setup.log" 2>&1 || { echo "setup failed: $work/setup.log"; exit 1; }
end=$(date +%s.%N)
printf 'setup %s: %.0f s; HOME %s bytes; .venv %s bytes (load average %s)\n' "$*" "$(echo "$end - $start" | bc)" \
  "$(du -sb "$work/home" | cut -f1)" "$(du -sb "$work/repo/.venv" | cut -f1)" "$(cut -d' ' -f1-3 /proc/loadavg)"
echo "left in $work (remove it when done)"
