#!/usr/bin/env bash
# Runs every check and test: formatting, lints, then all unit and end-to-end
# tests (real servers on port 0, real client cores, the delivery checker).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"

# The server embeds the administration console and the desktop app its UI: build them first.
./scripts/ui.sh build
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
# The end-to-end tests start the real `hutong-server` and `hutong` binaries.
cargo build --workspace --bins --locked
cargo test --workspace --locked
# The web UIs: type checks, component tests, and the console's browser test against the real server.
./scripts/ui.sh test
# The desktop app binary end to end under Xvfb (WebDriver), against the real server and CLI.
./scripts/desktop-e2e.sh
