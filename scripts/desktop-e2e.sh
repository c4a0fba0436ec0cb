#!/usr/bin/env bash
# End-to-end tests of the desktop app binary (tests/desktop/): installs what
# they need when missing (a virtual display, a session bus with a notification
# daemon, WebKitWebDriver and tauri-driver), then runs them on a private X
# display inside a private session bus. Needs the debug binaries built
# (hutong-server, hutong, hutong-desktop), as scripts/test.sh does.
# Arguments, if any, replace node's (scripts/bench-desktop.sh passes the benchmark).
set -euo pipefail
cd "$(dirname "$0")/.."

apt_install() {
  local sudo="" pkg missing=()
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  for pkg in "$@"; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
  ((${#missing[@]})) || return 0
  echo "desktop-e2e: installing ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}"
}
apt_install xvfb xauth x11-utils xclip xdotool python3-dbus python3-gi gir1.2-gtk-3.0 libglib2.0-bin dbus dbus-x11 webkit2gtk-driver dunst fonts-noto-cjk

export PATH="$HOME/.cargo/bin:$PATH"
if ! command -v tauri-driver >/dev/null 2>&1; then
  echo "desktop-e2e: installing tauri-driver"
  cargo install tauri-driver --version '^2' --locked --quiet
fi

# A display number nobody uses.
display=90
while [ -e "/tmp/.X11-unix/X$display" ] || [ -e "/tmp/.X$display-lock" ]; do display=$((display + 1)); done
Xvfb ":$display" -screen 0 1600x1000x24 -nolisten tcp >/dev/null 2>&1 &
xvfb=$!
trap 'kill $xvfb 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do [ -e "/tmp/.X11-unix/X$display" ] && break; sleep 0.1; done

export DISPLAY=":$display" GDK_BACKEND=x11 NO_AT_BRIDGE=1 LIBGL_ALWAYS_SOFTWARE=1 \
  WEBKIT_DISABLE_COMPOSITING_MODE=1 WEBKIT_DISABLE_DMABUF_RENDERER=1
args=("$@")
((${#args[@]})) || args=(--test --test-concurrency=1 tests/desktop/)
# The app, the notification daemon and the test share one private session bus.
dbus-run-session -- bash -c '
  dunst >/dev/null 2>&1 &
  dunst_pid=$!
  node "$@"
  status=$?
  kill $dunst_pid 2>/dev/null || true
  exit $status
' desktop-e2e "${args[@]}"
