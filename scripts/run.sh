#!/usr/bin/env bash
# Builds and starts Hutong: the server with its embedded database in
# ./hutong-data and, where there is a display, the desktop app connected to
# it. Extra arguments go to `hutong-server serve`.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"

./scripts/ui.sh build
cargo build --release --locked -p hutong-server -p hutong-client -p hutong-desktop
target_dir="${CARGO_TARGET_DIR:-target}"
echo "Administration console: https://localhost:7380/admin (account admin; the certificate is the server's own:"
echo "compare the fingerprint the browser shows with the one the server prints)"

if [ -z "${DISPLAY:-}" ] && [ -z "${WAYLAND_DISPLAY:-}" ]; then
  echo "No display here: starting the server alone. Chat with the CLI ($target_dir/release/hutong --help),"
  echo "or run $target_dir/release/hutong-desktop on a computer with a desktop."
  exec "$target_dir/release/hutong-server" --data-dir ./hutong-data serve "$@"
fi

"$target_dir/release/hutong-server" --data-dir ./hutong-data serve "$@" &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT INT TERM
# The app may start once the server listens (its first start also makes the certificate).
for _ in $(seq 1 300); do
  (exec 3<>/dev/tcp/127.0.0.1/7300) 2>/dev/null && break
  kill -0 "$server" 2>/dev/null || { echo "the server did not start" >&2; exit 1; }
  sleep 0.1
done
echo "Starting the desktop app: sign in as admin with the one-time password above, or as a person you created."
HUTONG_SERVER="tls://127.0.0.1:7300" "$target_dir/release/hutong-desktop" &
wait "$server"
