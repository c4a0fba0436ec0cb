//! The Hutong desktop app: a Tauri 2 shell around the client core.
//!
//! Everything about messaging (connection, outbox, sync, cache) lives in
//! `hutong-client`; this crate only turns UI calls into client calls
//! (`commands`), client events into UI events, notifications and the tray
//! (`events`, `desktop`), and keeps the app's own files (`state`).

// No console window next to the app on Windows release builds.
#![cfg_attr(not(debug_assertions), windows_subsystem = "windows")]

mod commands;
mod desktop;
mod events;
mod state;
mod views;

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("HUTONG_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,hutong=info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    desktop::run();
}
