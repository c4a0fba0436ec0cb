//! The app around the window: start-up and the remembered session, the tray
//! with the unread total, native notifications, taskbar attention, a single
//! instance, the remembered window geometry and start with the system.

use std::collections::BTreeMap;

use hutong_client::notices::CachedNotice;
use hutong_client::{Client, ConversationSummary, Credential, Profile};
use serde_json::json;
use tauri::menu::{Menu, MenuItem};
use tauri::tray::{MouseButton, MouseButtonState, TrayIconBuilder, TrayIconEvent};
use tauri::{AppHandle, Manager as _, UserAttentionType, WindowEvent, Wry};

use crate::events::emit;
use crate::state::{lock, AppState};
use crate::views::{isolate, AppError, MessageView, Settings};
use crate::{commands, notices};

const TRAY: &str = "main";
const BODY_CHARS: usize = 120;

struct TrayItems {
    show: MenuItem<Wry>,
    quit: MenuItem<Wry>,
}

fn labels(chinese: bool) -> (&'static str, &'static str) {
    if chinese {
        ("显示 Hutong", "退出")
    } else {
        ("Show Hutong", "Quit")
    }
}

pub fn run() {
    let launched_minimized = std::env::args().any(|a| a == "--minimized");
    tauri::Builder::default()
        // First: a second start only brings the running window forward.
        .plugin(tauri_plugin_single_instance::init(|app, _args, _cwd| show_main(app)))
        .plugin(
            tauri_plugin_window_state::Builder::default()
                .with_state_flags(
                    tauri_plugin_window_state::StateFlags::SIZE
                        | tauri_plugin_window_state::StateFlags::POSITION
                        | tauri_plugin_window_state::StateFlags::MAXIMIZED,
                )
                .build(),
        )
        // Its Rust API only (`commands::pick_paths`); the UI has no dialog permission.
        .plugin(tauri_plugin_dialog::init())
        .plugin(tauri_plugin_autostart::init(
            tauri_plugin_autostart::MacosLauncher::LaunchAgent,
            Some(vec!["--minimized"]),
        ))
        .setup(move |app| {
            let home = match std::env::var_os("HUTONG_DESKTOP_HOME") {
                Some(dir) => dir.into(),
                None => app.path().app_data_dir()?,
            };
            std::fs::create_dir_all(&home)?;
            let downloads = app
                .path()
                .download_dir()
                .or_else(|_| app.path().home_dir().map(|h| h.join("Downloads")))
                .unwrap_or_else(|_| home.join("downloads"));
            let state = AppState::new(home, downloads.join("Hutong"));
            forget_old_pastes(&state.tmp_dir());
            if launched_minimized || state.settings().start_minimized {
                // Straight to the tray (started with the system, or asked to).
                if let Some(window) = app.get_webview_window("main") {
                    window.hide()?;
                }
            }
            app.manage(state);
            lighten_webview(app.handle());
            build_tray(app.handle())?;
            exit_on_signals(app.handle());
            restore_session(app.handle());
            Ok(())
        })
        .on_window_event(|window, event| match event {
            // Closing the window keeps the app running in the tray, as messengers do.
            WindowEvent::CloseRequested { api, .. } if window.label() == "main" => {
                api.prevent_close();
                let _ = window.hide();
            }
            // A drop seen by the shell itself: these paths may be sent (and no others but picked ones).
            WindowEvent::DragDrop(tauri::DragDropEvent::Drop { paths, .. }) => {
                if let Some(state) = window.try_state::<AppState>() {
                    state.grants.grant(paths.iter().cloned());
                }
            }
            _ => {}
        })
        .invoke_handler(tauri::generate_handler![
            commands::pick_download_dir,
            commands::session_state,
            commands::probe_server,
            commands::sign_in,
            commands::change_password,
            commands::sign_out,
            commands::conversations,
            commands::history,
            commands::outbox,
            commands::read_state,
            commands::read_list,
            commands::send_text,
            commands::retry,
            commands::mark_read,
            commands::recall,
            commands::edit_message,
            commands::react,
            commands::pin_message,
            commands::pins,
            commands::forward_messages,
            commands::fetch_forwarded,
            commands::mass_send,
            commands::mass_send_status,
            commands::typing,
            commands::set_pinned,
            commands::set_muted,
            commands::set_focus,
            commands::directory_children,
            commands::person,
            commands::search,
            commands::open_direct,
            commands::create_group,
            commands::rename_group,
            commands::add_members,
            commands::remove_member,
            commands::leave_group,
            commands::settings,
            commands::save_settings,
            commands::ui_ready,
            commands::send_paths,
            commands::paste_image,
            commands::fetch_attachment,
            commands::transfers,
            commands::pause_transfer,
            commands::resume_transfer,
            commands::cancel_transfer,
            commands::open_path,
            commands::reveal_path,
            commands::pick_paths,
            notices::notices,
            notices::notice,
            notices::unread_notices,
            notices::read_notices,
            notices::sign_notice,
            notices::choose_notice,
            notices::notice_rights,
            notices::send_notice,
            notices::sent_notices,
            notices::notice_status,
            notices::remind_notice,
            notices::withdraw_notice,
            notices::export_notice_csv,
            notices::open_link,
        ])
        .run(tauri::generate_context!())
        .unwrap_or_else(|e| {
            eprintln!("hutong-desktop: {e}");
            std::process::exit(1);
        });
}

/// Ends the app as the tray's Quit does when the desktop session ends or
/// someone stops it (SIGTERM, SIGINT, SIGHUP), so what is kept at exit (the
/// window's size and place) is written instead of lost.
#[cfg(unix)]
fn exit_on_signals(app: &AppHandle) {
    use tokio::signal::unix::{signal, SignalKind};
    let app = app.clone();
    tauri::async_runtime::spawn(async move {
        let watched =
            (signal(SignalKind::terminate()), signal(SignalKind::interrupt()), signal(SignalKind::hangup()));
        let (Ok(mut term), Ok(mut int), Ok(mut hup)) = watched else {
            tracing::warn!("cannot watch for stop signals; the window's place is kept only on Quit");
            return;
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
            _ = hup.recv() => {}
        }
        tracing::info!("stop signal: exiting");
        // Whatever happens to the event loop meanwhile, a stopped app does not linger.
        std::thread::spawn(|| {
            std::thread::sleep(std::time::Duration::from_secs(5));
            tracing::warn!("still running 5 s after a stop signal: leaving now");
            std::process::exit(0);
        });
        app.exit(0);
    });
}

#[cfg(not(unix))]
fn exit_on_signals(_: &AppHandle) {}

/// Pasted images wait in `tmp/` while their upload may still need them
/// (paused, failed, resumed after a restart); after a month they go.
fn forget_old_pastes(dir: &std::path::Path) {
    const KEEP: std::time::Duration = std::time::Duration::from_secs(30 * 86_400);
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let old = entry.metadata().and_then(|m| m.modified()).ok().and_then(|t| t.elapsed().ok());
        if old.is_some_and(|age| age > KEEP) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// WebKitGTK's default cache model is a web browser's (memory caches for
/// many pages and a back-forward cache); the app shows one page, so the
/// document viewer's model saves tens of megabytes in the web process.
fn lighten_webview(app: &AppHandle) {
    #[cfg(target_os = "linux")]
    if let Some(window) = app.get_webview_window("main") {
        let result = window.with_webview(|webview| {
            use webkit2gtk::{WebContextExt as _, WebViewExt as _};
            if let Some(context) = webview.inner().context() {
                context.set_cache_model(webkit2gtk::CacheModel::DocumentViewer);
            }
        });
        if let Err(e) = result {
            tracing::warn!("could not set the web view's cache model: {e}");
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = app;
}

/// Signs in again with the remembered token; works offline too (the cache
/// shows history and the client keeps trying to connect).
fn restore_session(app: &AppHandle) {
    let state = app.state::<AppState>();
    let profile = match Profile::load(&state.home) {
        Ok(Some(p)) => p,
        Ok(None) => return,
        Err(e) => {
            tracing::warn!("the remembered sign-in is unreadable, signing in afresh: {e}");
            return;
        }
    };
    let token = profile.token.clone();
    // Client::start spawns onto the async runtime.
    let started = tauri::async_runtime::block_on(async {
        commands::start_session(app, &state, &profile, Credential::Token(token))
    });
    if let Err(e) = started {
        tracing::warn!("could not restore the session: {}", e.message);
    }
}

fn build_tray(app: &AppHandle) -> tauri::Result<()> {
    let state = app.state::<AppState>();
    let (show_label, quit_label) = labels(state.settings().chinese(&state.system_locale));
    let show = MenuItem::with_id(app, "show", show_label, true, None::<&str>)?;
    let quit = MenuItem::with_id(app, "quit", quit_label, true, None::<&str>)?;
    let menu = Menu::with_items(app, &[&show, &quit])?;
    let mut tray = TrayIconBuilder::with_id(TRAY)
        .tooltip("Hutong")
        .menu(&menu)
        .show_menu_on_left_click(false)
        .on_menu_event(|app, event| match event.id.as_ref() {
            "show" => show_main(app),
            "quit" => app.exit(0),
            _ => {}
        })
        .on_tray_icon_event(|tray, event| {
            if let TrayIconEvent::Click {
                button: MouseButton::Left,
                button_state: MouseButtonState::Up,
                ..
            } = event
            {
                show_main(tray.app_handle());
            }
        });
    if let Some(icon) = app.default_window_icon() {
        tray = tray.icon(icon.clone());
    }
    tray.build(app)?;
    app.manage(TrayItems { show, quit });
    Ok(())
}

pub fn relabel_tray(app: &AppHandle, settings: &Settings, system_locale: &str) {
    let (show, quit) = labels(settings.chinese(system_locale));
    if let Some(items) = app.try_state::<TrayItems>() {
        let _ = items.show.set_text(show);
        let _ = items.quit.set_text(quit);
    }
}

pub fn show_main(app: &AppHandle) {
    if let Some(window) = app.get_webview_window("main") {
        let _ = window.unminimize();
        let _ = window.show();
        let _ = window.set_focus();
    }
}

/// The unread total on the tray and in the window title.
pub fn set_unread(app: &AppHandle, unread: u64) {
    let title = if unread == 0 { "Hutong".to_owned() } else { format!("Hutong ({unread})") };
    if let Some(tray) = app.tray_by_id(TRAY) {
        let _ = tray.set_tooltip(Some(&title));
        let _ = tray.set_title((unread > 0).then(|| {
            if unread > 99 {
                "99+".to_owned()
            } else {
                unread.to_string()
            }
        }));
    }
    if let Some(window) = app.get_webview_window("main") {
        let _ = window.set_title(&title);
    }
}

/// Unread messages in conversations that are not muted.
pub fn unread_total(conversations: &[ConversationSummary]) -> u64 {
    conversations.iter().filter(|c| !c.muted).map(|c| c.unread).sum()
}

/// The tray's total: unread messages (of conversations not muted) and unread notices.
pub fn refresh_unread(app: &AppHandle, client: &Client) {
    match (client.conversations(), client.unread_notices()) {
        (Ok(list), Ok(notices)) => set_unread(app, unread_total(&list) + notices),
        (Err(e), _) | (_, Err(e)) => tracing::warn!("counting unread messages and notices: {e}"),
    }
}

pub fn set_autostart(app: &AppHandle, enabled: bool) -> Result<(), AppError> {
    use tauri_plugin_autostart::ManagerExt as _;
    let launcher = app.autolaunch();
    let result = if enabled { launcher.enable() } else { launcher.disable() };
    result.map_err(|e| AppError::new("AUTOSTART", e.to_string()))
}

/// One notification per conversation with new messages from others, unless
/// it is muted, notifications are off, or it is on screen in a focused window.
pub fn notify_messages(
    app: &AppHandle,
    me: u64,
    conversations: &[ConversationSummary],
    messages: &[MessageView],
) {
    let state = app.state::<AppState>();
    let settings = state.settings();
    let window = app.get_webview_window("main");
    let focused = window.as_ref().and_then(|w| w.is_focused().ok()).unwrap_or(false);
    let visible = window.as_ref().and_then(|w| w.is_visible().ok()).unwrap_or(false);
    let on_screen = if focused && visible { *lock(&state.focus) } else { None };
    if !settings.notifications {
        return;
    }
    let muted = |id: u64| conversations.iter().any(|c| c.id == id && c.muted);
    let mut shown = false;
    for (conversation_id, items) in worth_notifying(messages, me, on_screen, muted) {
        let Some(summary) = conversations.iter().find(|c| c.id == conversation_id) else { continue };
        let last = items[items.len() - 1];
        // Names, file names and text are isolated: an RTL override in one
        // cannot reorder the rest of the line.
        let title = if summary.kind == "group" && !summary.name.is_empty() {
            isolate(&summary.name)
        } else {
            isolate(&last.sender_name)
        };
        let chinese = settings.chinese(&state.system_locale);
        let mut text = last.text.clone();
        if text.chars().count() > BODY_CHARS {
            text = text.chars().take(BODY_CHARS).chain(['…']).collect();
        }
        let text = match &last.attachment {
            Some(a) => format!("{} {}", file_label(a.kind, chinese), isolate(&text)),
            None => isolate(&text),
        };
        let mut body =
            if summary.kind == "group" { format!("{}: {text}", isolate(&last.sender_name)) } else { text };
        if items.len() > 1 {
            body = if chinese {
                format!("[{} 条新消息] {body}", items.len())
            } else {
                format!("[{} new messages] {body}", items.len())
            };
        }
        show_notification(app.clone(), conversation_id, title, body);
        shown = true;
    }
    if shown {
        if settings.sound && settings.notifications {
            emit(app, json!({ "event": "sound" }));
        }
        if let Some(w) = window.filter(|_| !focused) {
            let _ = w.request_user_attention(Some(UserAttentionType::Informational));
        }
    }
}

/// How a notification names a file message's kind.
fn file_label(kind: hutong_client::AttachmentKind, chinese: bool) -> &'static str {
    use hutong_client::AttachmentKind::*;
    match (kind, chinese) {
        (File, true) => "[文件]",
        (Image, true) => "[图片]",
        (Folder, true) => "[文件夹]",
        (File, false) => "[File]",
        (Image, false) => "[Image]",
        (Folder, false) => "[Folder]",
    }
}

/// New text and files from others, by conversation, leaving out the conversation on
/// screen in the focused window and muted ones.
fn worth_notifying(
    messages: &[MessageView],
    me: u64,
    on_screen: Option<u64>,
    muted: impl Fn(u64) -> bool,
) -> BTreeMap<u64, Vec<&MessageView>> {
    let mut out: BTreeMap<u64, Vec<&MessageView>> = BTreeMap::new();
    for m in messages {
        if m.sender_id != me
            && (m.kind == "text" || m.kind == "file")
            && !m.recalled
            && Some(m.conversation_id) != on_screen
            && !muted(m.conversation_id)
        {
            out.entry(m.conversation_id).or_default().push(m);
        }
    }
    out
}

/// Which notices were announced already in this run, so a notice re-sent
/// by a sync or changed by my own reading is not announced twice; a
/// reminder to sign (a newer `reminded_at_ms`) is announced again.
#[derive(Default)]
pub struct NoticeAlerts {
    seen: std::collections::HashMap<u64, i64>,
}

impl NoticeAlerts {
    /// Whether `n` is worth a notification now: unread, or reminded and
    /// still unsigned; not withdrawn; not announced in this state before.
    pub fn is_new(&mut self, n: &CachedNotice) -> bool {
        let wanted =
            n.withdrawn_at_ms == 0 && (n.read_at_ms == 0 || (n.reminded_at_ms > 0 && n.awaiting_signature()));
        if !wanted {
            // Read or withdrawn: a later reminder is new again.
            self.seen.entry(n.id).or_insert(n.reminded_at_ms);
            return false;
        }
        match self.seen.insert(n.id, n.reminded_at_ms) {
            None => true,
            Some(before) => n.reminded_at_ms > before,
        }
    }
}

/// One notification per notice (urgent ones marked critical), then the
/// sound; urgent notices also ask for the window's attention.
pub fn notify_notices(app: &AppHandle, notices: &[CachedNotice], senders: &[String]) {
    let state = app.state::<AppState>();
    let settings = state.settings();
    if !settings.notifications {
        return;
    }
    let chinese = settings.chinese(&state.system_locale);
    let mut urgent = false;
    for (n, sender) in notices.iter().zip(senders) {
        urgent |= n.priority == "urgent";
        let label = match (n.priority, chinese) {
            ("urgent", true) => "[紧急通知]",
            ("urgent", false) => "[Urgent notice]",
            (_, true) => "[通知]",
            (_, false) => "[Notice]",
        };
        let mut title: String = n.title.chars().take(BODY_CHARS).collect();
        if n.title.chars().count() > BODY_CHARS {
            title.push('…');
        }
        let body = match (n.reminded_at_ms > 0 && n.read_at_ms > 0, chinese) {
            (true, true) => format!("{} 提醒你签收", isolate(sender)),
            (true, false) => format!("{} reminds you to sign", isolate(sender)),
            (false, _) => isolate(sender),
        };
        show_notice_notification(
            app.clone(),
            n.id,
            format!("{label} {}", isolate(&title)),
            body,
            n.priority == "urgent",
        );
    }
    if settings.sound {
        emit(app, json!({ "event": "sound" }));
    }
    if let Some(w) = app.get_webview_window("main") {
        let kind = if urgent { UserAttentionType::Critical } else { UserAttentionType::Informational };
        if !w.is_focused().unwrap_or(false) {
            let _ = w.request_user_attention(Some(kind));
        }
    }
}

fn show_notice_notification(app: AppHandle, notice_id: u64, title: String, body: String, urgent: bool) {
    std::thread::spawn(move || {
        let mut n = notify_rust::Notification::new();
        n.appname("Hutong").summary(&title).body(&escape_markup(&body)).icon("hutong");
        #[cfg(all(unix, not(target_os = "macos")))]
        {
            n.action("default", "Open").hint(notify_rust::Hint::Category("im.received".into()));
            if urgent {
                n.urgency(notify_rust::Urgency::Critical);
            }
        }
        #[cfg(not(all(unix, not(target_os = "macos"))))]
        let _ = urgent;
        match n.show() {
            #[cfg(all(unix, not(target_os = "macos")))]
            Ok(handle) => handle.wait_for_action(|action| {
                if action == "default" {
                    show_main(&app);
                    emit(&app, json!({ "event": "openNotice", "noticeId": notice_id }));
                }
            }),
            #[cfg(not(all(unix, not(target_os = "macos"))))]
            Ok(_) => {
                let _ = (&app, notice_id);
            }
            Err(e) => tracing::warn!("no desktop notification: {e}"),
        }
    });
}

/// Notification servers may read the body as markup: never let message text
/// become markup.
fn escape_markup(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

fn show_notification(app: AppHandle, conversation_id: u64, title: String, body: String) {
    // Showing blocks on the session bus and waiting for a click blocks until
    // the notification closes: both happen off the async runtime.
    std::thread::spawn(move || {
        let mut n = notify_rust::Notification::new();
        n.appname("Hutong").summary(&title).body(&escape_markup(&body)).icon("hutong");
        #[cfg(all(unix, not(target_os = "macos")))]
        {
            n.action("default", "Open").hint(notify_rust::Hint::Category("im.received".into()));
        }
        match n.show() {
            #[cfg(all(unix, not(target_os = "macos")))]
            Ok(handle) => handle.wait_for_action(|action| {
                if action == "default" {
                    show_main(&app);
                    emit(&app, json!({ "event": "openConversation", "conversationId": conversation_id }));
                }
            }),
            #[cfg(not(all(unix, not(target_os = "macos"))))]
            Ok(_) => {
                let _ = (&app, conversation_id);
            }
            Err(e) => tracing::warn!("no desktop notification: {e}"),
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(conversation_id: u64, sender_id: u64, kind: &'static str) -> MessageView {
        MessageView {
            conversation_id,
            seq: 1,
            sender_id,
            sender_name: "李娜".into(),
            client_msg_id: String::new(),
            sent_at_ms: 0,
            kind,
            text: "下午开会".into(),
            mentions: vec![],
            reply_to_seq: 0,
            recalled: false,
            system: None,
            event: None,
            target_seq: 0,
            edited: false,
            reactions: Vec::new(),
            unpinned: false,
            forward: None,
            state: "sent",
            error: None,
            attachment: None,
        }
    }

    #[test]
    fn notifies_only_for_others_text_off_screen_and_not_muted() {
        let me = 1;
        let batch = [
            message(10, 2, "text"),
            message(10, 3, "text"),
            message(11, me, "text"),  // my own, from another device
            message(12, 2, "system"), // group changes
            message(13, 2, "text"),   // on screen
            message(14, 2, "text"),   // muted
            MessageView { recalled: true, ..message(15, 2, "text") },
            message(16, 2, "file"), // a file from a colleague
        ];
        let picked = worth_notifying(&batch, me, Some(13), |id| id == 14);
        assert_eq!(picked.keys().copied().collect::<Vec<_>>(), vec![10, 16]);
        assert_eq!(picked[&10].len(), 2, "one notification per conversation, counting its messages");
        let unfocused = worth_notifying(&batch, me, None, |_| false);
        assert_eq!(unfocused.keys().copied().collect::<Vec<_>>(), vec![10, 13, 14, 16]);
        assert_eq!(file_label(hutong_client::AttachmentKind::Folder, true), "[文件夹]");
        assert_eq!(file_label(hutong_client::AttachmentKind::Image, false), "[Image]");
    }

    #[test]
    fn notification_text_is_never_markup() {
        assert_eq!(escape_markup("<b>hi</b> & <a href=x>"), "&lt;b&gt;hi&lt;/b&gt; &amp; &lt;a href=x&gt;");
    }

    #[test]
    fn settings_follow_the_system_language_unless_chosen() {
        let mut s = Settings::default();
        assert!(s.chinese("zh-CN") && s.chinese("zh_TW") && !s.chinese("en-US"));
        s.locale = "en".into();
        assert!(!s.chinese("zh-CN"));
        s.locale = "zh-CN".into();
        assert!(s.chinese("de-DE"));
        s.locale = "fr".into();
        assert!(s.validate().is_err());
        s.locale = "auto".into();
        assert!(s.validate().is_ok());
        s.download_dir = "Downloads".into();
        assert_eq!(s.validate().unwrap_err().code, "BAD_DOWNLOAD_DIR");
        let dir = std::env::temp_dir();
        s.download_dir = dir.join("hutong 下载").to_string_lossy().into_owned();
        assert!(s.validate().is_ok(), "a folder that does not exist yet is fine");
        let file = dir.join(format!("hutong-not-a-dir-{}", std::process::id()));
        std::fs::write(&file, b"x").unwrap();
        s.download_dir = file.to_string_lossy().into_owned();
        assert_eq!(s.validate().unwrap_err().code, "BAD_DOWNLOAD_DIR");
        std::fs::remove_file(&file).unwrap();
    }
}
