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
mod grants;
#[cfg(target_os = "linux")]
mod linux_dialogs;
mod notices;
mod state;
mod views;

fn main() {
    // Before any thread starts: the web view's processes inherit these.
    jitless_web_view();
    software_rendering_without_gpu();
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

/// On a machine without a GPU (no DRM render node: virtual machines, remote
/// desktops, test displays) WebKit would composite through Mesa's software
/// OpenGL in the web process and load the same OpenGL stack in the app's own
/// process just to ask EGL which render node to hand the web process (the
/// answer is "none"); GTK, when it is the first program on the display to
/// look, loads it too to pick visuals for OpenGL. There the web view paints
/// with the CPU instead (`WEBKIT_DISABLE_COMPOSITING_MODE`,
/// `WEBKIT_DISABLE_DMABUF_RENDERER`), is told the render node
/// (`WEBKIT_WEB_RENDER_DEVICE_FILE`, which the web process looks for among
/// the DRM devices and, finding none, goes without) and GTK's OpenGL is off
/// (`GDK_GL=disable`), so the app's process never loads OpenGL: ~25 MB less
/// in the app's process, ~15 MB less across the app (`docs/PERFORMANCE.md`).
/// Each is left alone when already set; machines with a GPU keep the
/// defaults.
fn software_rendering_without_gpu() {
    #[cfg(target_os = "linux")]
    if !has_render_node(std::path::Path::new("/dev/dri")) {
        for (key, value) in [
            ("WEBKIT_DISABLE_COMPOSITING_MODE", "1"),
            ("WEBKIT_DISABLE_DMABUF_RENDERER", "1"),
            ("WEBKIT_WEB_RENDER_DEVICE_FILE", "/dev/dri/renderD128"),
            ("GDK_GL", "disable"),
        ] {
            if std::env::var_os(key).is_none() {
                std::env::set_var(key, value);
            }
        }
    }
}

/// Whether `dir` (`/dev/dri`) holds a DRM render node (`renderD128`, ...).
#[cfg(target_os = "linux")]
fn has_render_node(dir: &std::path::Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|entries| {
        entries.flatten().any(|e| e.file_name().to_string_lossy().starts_with("renderD"))
    })
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::has_render_node;

    #[test]
    fn a_render_node_is_recognised_by_its_name() {
        let dir = tempfile::tempdir().unwrap();
        assert!(!has_render_node(&dir.path().join("missing")));
        assert!(!has_render_node(dir.path()));
        std::fs::write(dir.path().join("card0"), b"").unwrap();
        assert!(!has_render_node(dir.path()), "a card node alone is not a render node");
        std::fs::write(dir.path().join("renderD128"), b"").unwrap();
        assert!(has_render_node(dir.path()));
    }
}
