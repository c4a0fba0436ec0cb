#!/usr/bin/env bash
# The web front ends (ui/): install their tools, build, and test.
#   scripts/ui.sh deps    Node.js + npm, Chromium and CJK fonts (Debian packages) when missing,
#                         then the npm packages (npm install) when node_modules is missing or stale
#   scripts/ui.sh build   deps, then build the administration console into ui/dist/admin
#                         (the server embeds it) and the desktop app's UI into
#                         ui/dist/desktop (the desktop binary embeds it)
#   scripts/ui.sh test    deps, type checks, component tests, and the browser test against the
#                         real server (needs the debug hutong-server and hutong binaries built)
set -euo pipefail
cd "$(dirname "$0")/.."

# Vite 8 and Vitest 4 need at least this Node.js (package.json "engines" says the same).
NODE_MIN_MAJOR=20
NODE_MIN_MINOR=19

apt_install() {
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  local pkg missing=()
  for pkg in "$@"; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
  done
  ((${#missing[@]})) || return 0
  echo "ui: installing ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}"
}

check_node() {
  local version major minor
  version="$(node --version)"
  IFS=. read -r major minor _ <<<"${version#v}"
  if ((major < NODE_MIN_MAJOR || (major == NODE_MIN_MAJOR && minor < NODE_MIN_MINOR))); then
    echo "ui: Node.js $version is too old; the console's build needs ${NODE_MIN_MAJOR}.${NODE_MIN_MINOR} or newer." >&2
    echo "ui: Debian 12 ships Node.js 18; install Node.js 20 or 22 (for example from NodeSource) and run this again." >&2
    exit 1
  fi
}

deps() {
  command -v node >/dev/null 2>&1 || apt_install nodejs
  # NodeSource's nodejs package brings npm; Debian's does not.
  command -v npm >/dev/null 2>&1 || apt_install npm
  [ -x /usr/bin/chromium ] || apt_install chromium
  # Without CJK fonts Chinese renders as boxes in the browser and its screenshots.
  apt_install fonts-noto-cjk
  check_node
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
    npm run build:desktop
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
