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
    // Before any thread starts: the web view's processes inherit this.
    jitless_web_view();
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

/// Runs the page's JavaScript in JavaScriptCore's interpreter, without its
/// JIT compilers, unless `JSC_useJIT` is set already. The UI is one small
/// page; without compiled code the web process keeps 10–15 MB less
/// (`docs/PERFORMANCE.md`, "Desktop app") and no memory is both writable and
/// executable in the process that shows other people's text, at the price
/// of slower scripts (a conversation of 10,000 messages opens in ~85 ms
/// instead of ~63).
fn jitless_web_view() {
    #[cfg(target_os = "linux")]
    if std::env::var_os("JSC_useJIT").is_none() {
        std::env::set_var("JSC_useJIT", "0");
    }
}
