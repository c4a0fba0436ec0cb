#!/usr/bin/env bash
# The desktop app's benchmark (tests/desktop/bench.mjs): builds the app, the
# UI and the seeding server in release mode, then runs it on a private X
# display and session bus like the end-to-end tests.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
./scripts/ui.sh build
cargo build --release --locked -p hutong-desktop -p hutong-bench --bin hutong-desktop --bin hutong-bench-desktop-seed
target_dir="${CARGO_TARGET_DIR:-target}"
HUTONG_DESKTOP_BIN="$target_dir/release/hutong-desktop" ./scripts/desktop-e2e.sh tests/desktop/bench.mjs
