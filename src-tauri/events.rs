//! Client events to UI events. Events are taken in batches (everything
//! already queued, up to a bound), so a burst of a thousand incoming messages
//! reaches the UI as a few `messages` events rather than a thousand IPC calls;
//! each batch then decides notifications and the unread total once. Transfer
//! progress is coalesced too: a batch carries the newest state of each transfer.

use hutong_client::{Client, Event, Status};
use serde_json::json;
use tauri::async_runtime::JoinHandle;
use tauri::{AppHandle, Emitter as _, Manager as _};
use tokio::sync::broadcast::error::{RecvError, TryRecvError};

use crate::desktop;
use crate::state::{lock, AppState};
use crate::views::{people_of, MessageView, Names, TransferView};

pub const EVENT: &str = "hutong://event";
const MAX_BATCH: usize = 512;

pub fn status_json(status: &Status) -> serde_json::Value {
    match status {
        Status::Connecting => json!({ "state": "connecting" }),
        Status::Online => json!({ "state": "online" }),
        Status::Reconnecting { in_ms, reason, code } => {
            json!({ "state": "reconnecting", "inMs": in_ms, "reason": reason, "code": code })
        }
        Status::Offline { code, reason } => json!({ "state": "offline", "code": code, "reason": reason }),
    }
}

pub fn emit(app: &AppHandle, payload: serde_json::Value) {
    if let Err(e) = app.emit(EVENT, payload) {
        tracing::warn!("could not deliver an event to the UI: {e}");
    }
}

pub fn spawn_forwarder(app: AppHandle, client: Client) -> JoinHandle<()> {
    let mut rx = client.events();
    tauri::async_runtime::spawn(async move {
        let mut alerted = desktop::NoticeAlerts::default();
        loop {
            let mut batch = Vec::new();
            match rx.recv().await {
                Ok(e) => batch.push(e),
                // Missed events: the UI re-reads from the cache.
                Err(RecvError::Lagged(_)) => {
                    emit(&app, json!({ "event": "conversationsChanged" }));
                    continue;
                }
                Err(RecvError::Closed) => break,
            }
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(e) => batch.push(e),
                    Err(TryRecvError::Lagged(_)) => emit(&app, json!({ "event": "conversationsChanged" })),
                    Err(_) => break,
                }
            }
            forward(&app, &client, batch, &mut alerted).await;
        }
    })
}

async fn forward(app: &AppHandle, client: &Client, batch: Vec<Event>, alerted: &mut desktop::NoticeAlerts) {
    let me = client.user_id();
    let mut names = Names::new(client);
    names
        .prefetch(batch.iter().flat_map(|e| match e {
            Event::Message(m) => people_of(m),
            Event::Typing { user_id, .. } => vec![*user_id],
            _ => Vec::new(),
        }))
        .await;
    let mut messages: Vec<MessageView> = Vec::new();
    // The newest state of each transfer, in the order transfers first showed up.
    let mut transfers: Vec<TransferView> = Vec::new();
    // Notices that arrived (or were reminded) and want a notification.
    let mut new_notices: Vec<hutong_client::notices::CachedNotice> = Vec::new();
    let mut unread_changed = false;
    let (mut conversations_changed, mut directory_changed, mut synced) = (false, false, false);
    for event in batch {
        match event {
            // A reaction changes its target: the UI gets the target's new view
            // (counts and names from the cache), not the entry itself.
            Event::Message(m) if m.kind == "reaction" => {
                if let Ok(Some(target)) = client.cached_message(m.conversation_id, m.target_seq) {
                    names.prefetch(people_of(&target)).await;
                    messages.push(names.message(&target));
                }
            }
            Event::Message(m) => {
                unread_changed = true;
                messages.push(names.message(&m));
            }
            Event::Status(s) => emit(app, json!({ "event": "status", "status": status_json(&s) })),
            Event::Acked { client_msg_id, conversation_id, seq } => emit(
                app,
                json!({ "event": "acked", "clientMsgId": client_msg_id, "conversationId": conversation_id, "seq": seq }),
            ),
            Event::SendFailed { client_msg_id, code, message } => emit(
                app,
                json!({ "event": "sendFailed", "clientMsgId": client_msg_id, "code": code, "message": message }),
            ),
            Event::Cursor { conversation_id, user_id, read_seq, .. } => {
                unread_changed |= user_id == me;
                emit(
                    app,
                    json!({ "event": "cursor", "conversationId": conversation_id, "userId": user_id, "readSeq": read_seq }),
                )
            }
            Event::Presence { user_id, status } => {
                lock(&app.state::<AppState>().presence).insert(user_id, status);
                emit(app, json!({ "event": "presence", "userId": user_id, "status": status }));
            }
            Event::Typing { conversation_id, user_id } if user_id != me => emit(
                app,
                json!({ "event": "typing", "conversationId": conversation_id, "userId": user_id, "name": names.get(user_id) }),
            ),
            Event::Typing { .. } => {}
            Event::ConversationsChanged => conversations_changed = true,
            Event::DirectoryChanged => directory_changed = true,
            Event::Synced => {
                synced = true;
                unread_changed = true;
            }
            Event::Transfer(t) => keep_newest(&mut transfers, TransferView::from(&t)),
            Event::Notice(n) => {
                unread_changed = true;
                emit(app, json!({ "event": "notice", "notice": n }));
                if alerted.is_new(&n) {
                    new_notices.push(n);
                }
            }
            Event::NoticeProgress { notice_id, recipient } => {
                emit(app, json!({ "event": "noticeProgress", "noticeId": notice_id, "recipient": recipient }))
            }
        }
    }
    // One read of the conversation list serves the notifications and the unread total.
    let conversations = if !messages.is_empty() || unread_changed || conversations_changed {
        client.conversations().unwrap_or_else(|e| {
            tracing::warn!("reading the conversation list: {e}");
            Vec::new()
        })
    } else {
        Vec::new()
    };
    if !messages.is_empty() {
        for chunk in messages.chunks(MAX_BATCH) {
            emit(app, json!({ "event": "messages", "messages": chunk }));
        }
        desktop::notify_messages(app, me, &conversations, &messages);
    }
    if !transfers.is_empty() {
        emit(app, json!({ "event": "transfers", "transfers": transfers }));
    }
    if conversations_changed {
        emit(app, json!({ "event": "conversationsChanged" }));
    }
    if directory_changed {
        emit(app, json!({ "event": "directoryChanged" }));
    }
    if synced {
        emit(app, json!({ "event": "synced" }));
    }
    if !new_notices.is_empty() {
        names.prefetch(new_notices.iter().map(|n| n.sender_id).collect::<Vec<_>>()).await;
        let senders: Vec<String> = new_notices.iter().map(|n| names.get(n.sender_id)).collect();
        desktop::notify_notices(app, &new_notices, &senders);
    }
    if unread_changed || conversations_changed {
        let notices = client.unread_notices().unwrap_or_else(|e| {
            tracing::warn!("counting unread notices: {e}");
            0
        });
        desktop::set_unread(app, desktop::unread_total(&conversations) + notices);
    }
}

/// Adds a transfer's state to a batch, replacing an older state of the same
/// transfer (so a batch carries each transfer once, as it is now).
fn keep_newest(batch: &mut Vec<TransferView>, view: TransferView) {
    match batch.iter_mut().find(|v| v.id == view.id) {
        Some(older) => *older = view,
        None => batch.push(view),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hutong_client::{AttachmentKind, Transfer, TransferDirection, TransferState};

    fn transfer(id: &str, state: TransferState, done_bytes: u64) -> TransferView {
        TransferView::from(&Transfer {
            id: id.into(),
            direction: TransferDirection::Upload,
            state,
            conversation_id: 7,
            seq: 0,
            client_msg_id: format!("c-{id}"),
            kind: AttachmentKind::Folder,
            name: "项目资料".into(),
            local_path: "/home/me/项目资料".into(),
            total_bytes: 100,
            done_bytes,
            wire_bytes: done_bytes,
            error: None,
            error_code: None,
            created_at_ms: 1,
        })
    }

    #[test]
    fn a_batch_keeps_the_newest_state_of_each_transfer_in_first_seen_order() {
        let mut batch = Vec::new();
        keep_newest(&mut batch, transfer("a", TransferState::Running, 10));
        keep_newest(&mut batch, transfer("b", TransferState::Queued, 0));
        keep_newest(&mut batch, transfer("a", TransferState::Running, 60));
        keep_newest(&mut batch, transfer("a", TransferState::Done, 100));
        let seen: Vec<_> = batch.iter().map(|t| (t.id.as_str(), t.state, t.done_bytes)).collect();
        assert_eq!(seen, [("a", TransferState::Done, 100), ("b", TransferState::Queued, 0)]);
        let json = serde_json::to_value(&batch[0]).unwrap();
        assert_eq!(json["state"], "done");
        assert_eq!(json["direction"], "upload");
        assert_eq!(json["kind"], "folder");
        assert_eq!(json["localPath"], "/home/me/项目资料");
        assert_eq!(json["clientMsgId"], "c-a");
    }
}
