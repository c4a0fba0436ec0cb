#!/usr/bin/env bash
# Builds and starts the Hutong server with its embedded database in
# ./hutong-data. Extra arguments go to `hutong-server serve`.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"

./scripts/ui.sh build
cargo build --release --locked -p hutong-server -p hutong-client
target_dir="${CARGO_TARGET_DIR:-target}"
echo "Administration console: http://localhost:7380/admin (account admin)"
echo "The desktop app is not part of this build yet; chat with the CLI: $target_dir/release/hutong --help"
exec "$target_dir/release/hutong-server" --data-dir ./hutong-data serve "$@"
