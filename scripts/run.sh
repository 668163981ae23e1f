#!/usr/bin/env bash
# Runs a command with the project's Node (after setup): scripts/run.sh vitest run ...
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
[ -e "$root/.tools/node/bin/node" ] && export PATH="$root/.tools/node/bin:$PATH"
export PATH="$root/node_modules/.bin:$root/.tools/bin:$PATH"
exec "$@"
