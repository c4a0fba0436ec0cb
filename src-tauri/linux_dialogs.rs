//! The native file and folder choosers and the "open a program?"
//! confirmation on Linux, built with GTK on the main thread.
//!
//! The dialog plugin's GTK backend runs its dialogs from a GTK thread of its
//! own, which waits for GTK's main context; Tauri's event loop holds that
//! context for the life of the app, so under Tauri those dialogs never
//! appear and the command waiting for them never returns. Here the dialog is
//! made on the thread that owns the context, parented to the main window,
//! and answers through a channel. Windows and macOS use the plugin.

use std::path::PathBuf;
use std::sync::Mutex;

use gtk::prelude::*;
use tauri::{AppHandle, Manager};
use tokio::sync::oneshot;

/// What the buttons say, in the person's language, with their access keys
/// (Alt+C and Alt+O; Alt+S is the chooser's own search key).
fn labels(chinese: bool) -> (&'static str, &'static str) {
    if chinese {
        ("取消(_C)", "选择(_O)")
    } else {
        ("_Cancel", "Ch_oose")
    }
}

/// Runs `build` on the main thread; it gets a sender for the answer, which
/// is `None` if the dialog could not be shown.
async fn on_main_thread<T: Send + 'static>(
    app: &AppHandle,
    build: impl FnOnce(Option<gtk::ApplicationWindow>, oneshot::Sender<T>) + Send + 'static,
) -> Option<T> {
    let (tx, rx) = oneshot::channel();
    let handle = app.clone();
    app.run_on_main_thread(move || {
        let parent = handle.get_webview_window("main").and_then(|w| w.gtk_window().ok());
        build(parent, tx);
    })
    .ok()?;
    rx.await.ok()
}

/// The answer goes once; the dialog is then destroyed.
fn answer_once<T>(tx: oneshot::Sender<T>) -> impl Fn(&gtk::Dialog, T) {
    let tx = Mutex::new(Some(tx));
    move |dialog, value| {
        if let Some(tx) = tx.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = tx.send(value);
        }
        // SAFETY: nothing holds the dialog after its response (the closure
        // owns no reference to it, GTK drops its own on destroy).
        unsafe { dialog.destroy() };
    }
}

/// Files (several unless `single`) or folders, starting in `start` (the
/// home folder when `None`; GTK would open its "Recent" list, where a typed
/// path does not choose); `None` when cancelled.
pub async fn pick(
    app: &AppHandle,
    title: &str,
    chinese: bool,
    folders: bool,
    single: bool,
    start: Option<PathBuf>,
) -> Option<Vec<PathBuf>> {
    let title = title.to_owned();
    let start = start.filter(|p| p.is_dir()).or_else(|| std::env::var_os("HOME").map(PathBuf::from));
    on_main_thread(app, move |parent, tx| {
        let action =
            if folders { gtk::FileChooserAction::SelectFolder } else { gtk::FileChooserAction::Open };
        let (cancel, choose) = labels(chinese);
        let dialog = gtk::FileChooserDialog::with_buttons(
            Some(&title),
            parent.as_ref(),
            action,
            &[(cancel, gtk::ResponseType::Cancel), (choose, gtk::ResponseType::Accept)],
        );
        dialog.set_select_multiple(!single);
        dialog.set_local_only(true);
        dialog.set_modal(true);
        dialog.set_default_response(gtk::ResponseType::Accept);
        if let Some(start) = &start {
            dialog.set_current_folder(start);
        }
        let answer = answer_once(tx);
        dialog.connect_response(move |d, response| {
            let picked =
                (response == gtk::ResponseType::Accept).then(|| d.filenames()).filter(|p| !p.is_empty());
            answer(d.upcast_ref(), picked);
        });
        dialog.show();
    })
    .await
    .flatten()
}

/// A warning with `proceed` and `cancel` buttons; Cancel (and Escape, and
/// closing the window) is the default. True only for `proceed`.
pub async fn confirm(app: &AppHandle, title: &str, text: &str, proceed: &str, cancel: &str) -> bool {
    let (title, text, proceed, cancel) =
        (title.to_owned(), text.to_owned(), proceed.to_owned(), cancel.to_owned());
    on_main_thread(app, move |parent, tx| {
        let dialog = gtk::MessageDialog::new(
            parent.as_ref(),
            gtk::DialogFlags::MODAL | gtk::DialogFlags::DESTROY_WITH_PARENT,
            gtk::MessageType::Warning,
            gtk::ButtonsType::None,
            &text,
        );
        dialog.set_title(&title);
        dialog.add_button(&cancel, gtk::ResponseType::Cancel);
        dialog.add_button(&proceed, gtk::ResponseType::Accept);
        dialog.set_default_response(gtk::ResponseType::Cancel);
        let answer = answer_once(tx);
        dialog.connect_response(move |d, response| {
            answer(d.upcast_ref(), response == gtk::ResponseType::Accept)
        });
        dialog.show();
    })
    .await
    .unwrap_or(false)
}
