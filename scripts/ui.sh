#!/usr/bin/env bash
# The web front ends (ui/): install their tools, build, and test.
#   scripts/ui.sh deps    Node.js, npm, Chromium and CJK fonts (Debian packages), npm packages
#   scripts/ui.sh build   deps, then build the administration console into ui/dist/admin
#   scripts/ui.sh test    deps, type checks, component tests, and the browser test
#                         (needs the debug hutong-server and hutong binaries built)
set -euo pipefail
cd "$(dirname "$0")/.."

deps() {
  local missing=()
  command -v node >/dev/null 2>&1 || missing+=(nodejs npm)
  [ -x /usr/bin/chromium ] || missing+=(chromium)
  # Without CJK fonts Chinese renders as boxes in the browser and its screenshots.
  dpkg -s fonts-noto-cjk >/dev/null 2>&1 || missing+=(fonts-noto-cjk)
  if ((${#missing[@]})); then
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    echo "ui: installing ${missing[*]}"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}"
  fi
  if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
    # `npm install` rather than `npm ci`: it keeps the locked versions, and npm ci
    # refuses this lock file over a Windows-only optional package of vite's that
    # npm leaves out of the lock on Linux.
    npm install --no-audit --no-fund
  fi
}

case "${1:-}" in
  deps) deps ;;
  build)
    deps
    npm run build:admin
    ;;
  test)
    deps
    npm run check:ui
    npm run test:ui
    npm run test:browser
    ;;
  *)
    echo "usage: scripts/ui.sh deps|build|test" >&2
    exit 2
    ;;
esac
