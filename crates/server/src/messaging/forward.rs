//! Forwarding messages (`ForwardMessages`): the checks that need no state,
//! reading and checking the source messages on the read pool, then one
//! writer command per copy (a plain send of the forwarder) or per target (a
//! merged FORWARD entry), all queued before the answer is awaited.
//!
//! A forward is exactly-once per target through the writer's dedupe: every
//! copy's `client_msg_id` is derived from the request's id, the target and
//! the source seq, and a merged entry's from the request's id and the
//! target. A forward that failed half-way is completed by its retry.

use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use futures::FutureExt as _;
use hutong_protocol::v1::{self, Message, MessageKind};
use hutong_protocol::Payload;

use super::handlers::{Session, Step};
use crate::error::ServiceError;
use crate::live::outbound::Lane;
use crate::storage::Store;
use crate::writer::{Command, MAX_CLIENT_MSG_ID_LEN};

/// Most messages one forward takes.
pub const MAX_FORWARD_MESSAGES: usize = 100;
/// Most conversations one forward goes to.
pub const MAX_FORWARD_TARGETS: usize = 20;

/// The checks of a forward that need no state (run before anything is read).
pub fn check_forward(r: &v1::ForwardMessages) -> Result<(), ServiceError> {
    if r.seqs.is_empty() || r.to_conversation_ids.is_empty() {
        return Err(ServiceError::BadRequest("a forward needs messages and a conversation to go to".into()));
    }
    if r.seqs.len() > MAX_FORWARD_MESSAGES {
        return Err(ServiceError::TooLarge(format!(
            "a forward takes at most {MAX_FORWARD_MESSAGES} messages"
        )));
    }
    if r.to_conversation_ids.len() > MAX_FORWARD_TARGETS {
        return Err(ServiceError::TooLarge(format!(
            "a forward goes to at most {MAX_FORWARD_TARGETS} conversations"
        )));
    }
    if r.client_msg_id.is_empty() || r.client_msg_id.len() > MAX_CLIENT_MSG_ID_LEN {
        return Err(ServiceError::BadRequest(format!(
            "client_msg_id must have 1 to {MAX_CLIENT_MSG_ID_LEN} characters"
        )));
    }
    Ok(())
}

/// The id of one stored copy: the same for a retry of the same request,
/// distinct for every target and source (`seq` 0: the merged entry).
fn derived_id(client_msg_id: &str, target: u64, seq: u64) -> String {
    use sha2::Digest as _;
    let mut h = sha2::Sha256::new();
    h.update(client_msg_id.as_bytes());
    h.update(target.to_be_bytes());
    h.update(seq.to_be_bytes());
    let digest = h.finalize();
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("fwd-{hex}")
}

/// One source message as forwarded: the entry, with a text's newest version.
struct Source {
    message: Message,
    text: String,
}

/// What the read pool found: the sources in seq order, and for a merged
/// forward its record.
struct Read {
    sources: Vec<Source>,
    record: Option<v1::ForwardRecord>,
}

/// Reads and checks the sources: the caller is (or was) a member of the
/// source conversation and may see every seq, each a TEXT or FILE message not
/// recalled; the caller is an active member of every target.
fn read_sources(
    store: &dyn Store,
    user: u64,
    r: &v1::ForwardMessages,
    seqs: &[u64],
) -> Result<Read, ServiceError> {
    let from = r.from_conversation_id;
    let m = store.membership(from, user)?.ok_or(ServiceError::NotMember)?;
    let ceiling = if m.active { u64::MAX } else { m.until_seq.unwrap_or(0) };
    let mut sources = Vec::with_capacity(seqs.len());
    for &seq in seqs {
        if seq > ceiling {
            return Err(ServiceError::Forbidden("you may not read this message".into()));
        }
        let message = store.message_at(from, seq)?.ok_or(ServiceError::NotFound("message"))?;
        if message.recalled {
            return Err(ServiceError::BadRequest("a recalled message cannot be forwarded".into()));
        }
        let text = if message.kind == MessageKind::Text as i32 {
            store.newest_edit(from, seq)?.unwrap_or_else(|| message.text.clone())
        } else if message.kind == MessageKind::File as i32 {
            message.text.clone()
        } else {
            return Err(ServiceError::BadRequest("only text and file messages can be forwarded".into()));
        };
        sources.push(Source { message, text });
    }
    for &target in &r.to_conversation_ids {
        match store.membership(target, user)? {
            Some(m) if m.active => {}
            _ => return Err(ServiceError::NotMember),
        }
    }
    let record = if r.merged { Some(record(store, from, &sources)?) } else { None };
    Ok(Read { sources, record })
}

/// The merged record: each item with its sender's name, and what its title
/// is worded from.
fn record(store: &dyn Store, from: u64, sources: &[Source]) -> Result<v1::ForwardRecord, ServiceError> {
    let conversation = store.conversation(from)?.ok_or(ServiceError::NotFound("conversation"))?;
    let mut names: HashMap<u64, String> = HashMap::new();
    let mut items = Vec::with_capacity(sources.len());
    let mut title_names: Vec<String> = Vec::new();
    for s in sources {
        let id = s.message.sender_id;
        let name = match names.entry(id) {
            std::collections::hash_map::Entry::Occupied(e) => e.get().clone(),
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(store.user_by_id(id)?.map(|u| u.display_name).unwrap_or_default()).clone()
            }
        };
        if title_names.len() < 2 && !title_names.contains(&name) {
            title_names.push(name.clone());
        }
        items.push(v1::ForwardItem {
            sender_id: id,
            sender_name: name,
            sent_at_ms: s.message.sent_at_ms,
            kind: s.message.kind,
            text: s.text.clone(),
            attachment: s.message.attachment.clone(),
        });
    }
    let from_group = conversation.kind == v1::ConversationKind::Group as i32;
    if from_group {
        title_names = vec![conversation.name];
    }
    Ok(v1::ForwardRecord { from_group, title_names, items })
}

/// Reads the sources, queues every copy (in target order, then seq order)
/// and answers with the stored entries once all are committed.
pub async fn forward(s: &Session, r: v1::ForwardMessages) -> Result<Step, ServiceError> {
    let user = s.user_id;
    let mut seqs = r.seqs.clone();
    seqs.sort_unstable();
    seqs.dedup();
    let mut targets: Vec<u64> = Vec::with_capacity(r.to_conversation_ids.len());
    for &t in &r.to_conversation_ids {
        if !targets.contains(&t) {
            targets.push(t);
        }
    }
    let read = {
        let (r, seqs) = (r.clone(), seqs.clone());
        s.shared.db.read(move |store| read_sources(store, user, &r, &seqs)).await?
    };
    // Folder manifests are read before queueing, as for a send.
    let mut folders = Vec::with_capacity(read.sources.len());
    for src in &read.sources {
        folders.push(match &src.message.attachment {
            Some(a) if a.kind == v1::AttachmentKind::AttachmentFolder as i32 => {
                Some(crate::files::folder_contents(&s.files(), a).await?)
            }
            _ => None,
        });
    }
    // A forward's copies fail or succeed on their own: a failed one does
    // not hold back this connection's later sends.
    let ordered = Arc::new(AtomicBool::new(false));
    let mut pending = Vec::new();
    for &target in &targets {
        let mut commands = Vec::new();
        if let Some(record) = &read.record {
            commands.push(Command::ForwardMerged {
                sender: user,
                conversation_id: target,
                client_msg_id: derived_id(&r.client_msg_id, target, 0),
                record: record.clone(),
                folders: folders.clone(),
            });
        } else {
            for (src, folder) in read.sources.iter().zip(&folders) {
                let mut msg = v1::SendMessage {
                    conversation_id: target,
                    client_msg_id: derived_id(&r.client_msg_id, target, src.message.seq),
                    ..Default::default()
                };
                match &src.message.attachment {
                    Some(a) => msg.attachment = Some(a.clone()),
                    None => msg.text = src.text.clone(),
                }
                commands.push(Command::Send {
                    sender: user,
                    msg,
                    ordered: ordered.clone(),
                    folder: folder.clone(),
                });
            }
        }
        for cmd in commands {
            pending.push(s.shared.writer.enqueue_fanned(cmd, Some(s.conn_id)).await?);
        }
    }
    Ok(Step::Pending(
        async move {
            let mut messages = Vec::with_capacity(pending.len());
            for rx in pending {
                let committed = rx.await.map_err(|_| ServiceError::ShuttingDown)??;
                messages.extend(committed.message);
            }
            Ok(Some((Lane::Control, Payload::ForwardResult(v1::ForwardResult { messages }))))
        }
        .boxed(),
    ))
}
