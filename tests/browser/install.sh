#!/usr/bin/env bash
# tests/browser/install.sh: installs the pinned playwright-core (package.json, package-lock.json) into
# tests/browser/node_modules (git-ignored) for tests/test_viewer.py, which drives Debian's chromium with it.
# playwright-core downloads no browser. Without node/npm it says so and exits 0: the viewer tests then skip.
set -euo pipefail
cd "$(dirname "$0")"
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  echo "tests/browser/install.sh: node or npm not found; the viewer tests will skip" >&2
  exit 0
fi
want=$(node -e "process.stdout.write(require('./package.json').dependencies['playwright-core'])")
have=$(node -e "try{process.stdout.write(require('./node_modules/playwright-core/package.json').version)}catch(e){}")
if [ "$have" = "$want" ]; then
  exit 0
fi
echo "tests/browser/install.sh: installing playwright-core $want" >&2
npm ci --no-audit --no-fund --ignore-scripts --loglevel=error >&2
