//! What the UI receives: camelCase views of the client core's types, with
//! the names people see resolved from the cache. The TypeScript side of this
//! contract is `ui/desktop/src/lib/types.ts`.

use std::collections::HashMap;
use std::path::Path;

use base64::Engine as _;
use hutong_client::{
    Attachment, AttachmentKind, CachedMessage, Client, ClientError, ConversationSummary, DirectoryPerson,
    OutboxEntry, Transfer, TransferDirection, TransferState,
};
use serde::{Deserialize, Serialize};

/// What every failed command answers: a stable code and a sentence.
#[derive(Debug, Serialize)]
pub struct AppError {
    pub code: String,
    pub message: String,
    /// The wait the server asked for (a lockout, a connection cap), 0 if none:
    /// the UI says the time left in the person's language.
    #[serde(rename = "retryAfterMs", skip_serializing_if = "is_zero")]
    pub retry_after_ms: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl AppError {
    pub fn new(code: &str, message: impl Into<String>) -> Self {
        AppError { code: code.to_owned(), message: message.into(), retry_after_ms: 0 }
    }
}

impl From<ClientError> for AppError {
    fn from(e: ClientError) -> Self {
        let retry_after_ms = e.retry_after().map_or(0, |d| d.as_millis() as u64);
        AppError { code: e.code().to_owned(), message: e.explain(), retry_after_ms }
    }
}

pub type CmdResult<T> = Result<T, AppError>;

/// Wraps untrusted text (a name, a file name, a message) for plain-text
/// places (notifications, native dialogs) in FIRST STRONG ISOLATE … POP
/// DIRECTIONAL ISOLATE, so a right-to-left override inside it cannot
/// reorder what follows (`invoice` + U+202E + `fdp.exe` stays one unit).
/// A stray PDI in the text that would close the wrapper early is dropped,
/// and isolates the text leaves open are closed inside it.
pub fn isolate(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    out.push('\u{2068}');
    let mut open = 0usize;
    for c in text.chars() {
        match c {
            '\u{2066}'..='\u{2068}' => open += 1,
            '\u{2069}' if open == 0 => continue,
            '\u{2069}' => open -= 1,
            _ => {}
        }
        out.push(c);
    }
    out.extend(std::iter::repeat_n('\u{2069}', open + 1));
    out
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct Settings {
    pub locale: String,
    pub theme: String,
    pub enter_sends: bool,
    pub notifications: bool,
    pub sound: bool,
    pub autostart: bool,
    pub start_minimized: bool,
    /// Where downloads go; empty: the system's download folder + `Hutong`.
    pub download_dir: String,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            locale: "auto".into(),
            theme: "system".into(),
            enter_sends: true,
            notifications: true,
            sound: true,
            autostart: false,
            start_minimized: false,
            download_dir: String::new(),
        }
    }
}

impl Settings {
    pub fn validate(&self) -> CmdResult<()> {
        if !["auto", "zh-CN", "en"].contains(&self.locale.as_str()) {
            return Err(AppError::new("BAD_REQUEST", format!("unknown language {:?}", self.locale)));
        }
        if !["system", "light", "dark"].contains(&self.theme.as_str()) {
            return Err(AppError::new("BAD_REQUEST", format!("unknown theme {:?}", self.theme)));
        }
        if !self.download_dir.is_empty() {
            let dir = Path::new(&self.download_dir);
            if !dir.is_absolute() || self.download_dir.trim() != self.download_dir {
                return Err(AppError::new(
                    "BAD_DOWNLOAD_DIR",
                    format!("the download folder must be a full path, not {:?}", self.download_dir),
                ));
            }
            if dir.exists() && !dir.is_dir() {
                return Err(AppError::new(
                    "BAD_DOWNLOAD_DIR",
                    format!("{} is a file, not a folder", dir.display()),
                ));
            }
        }
        Ok(())
    }

    /// Chinese unless the person chose English or the system speaks something else.
    pub fn chinese(&self, system_locale: &str) -> bool {
        match self.locale.as_str() {
            "zh-CN" => true,
            "en" => false,
            _ => system_locale.to_ascii_lowercase().starts_with("zh"),
        }
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionState {
    pub signed_in: bool,
    pub server: Option<String>,
    pub account: Option<String>,
    pub user_id: u64,
    pub display_name: Option<String>,
    pub status: serde_json::Value,
    pub system_locale: String,
    pub settings: Settings,
    /// The server address to offer on the sign-in screen (`HUTONG_SERVER`,
    /// set by the run script), else the last one used.
    pub default_server: Option<String>,
    /// Where downloads go while `settings.downloadDir` is empty.
    pub default_download_dir: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServerProbe {
    pub server: String,
    pub fingerprint: Option<String>,
    pub known: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConversationView {
    pub id: u64,
    pub kind: &'static str,
    pub name: String,
    pub peer_id: Option<u64>,
    pub last_seq: u64,
    pub unread: u64,
    pub active: bool,
    pub members: Vec<u64>,
    pub last_text: Option<String>,
    pub last_sender_name: Option<String>,
    pub last_at_ms: Option<i64>,
    pub pinned: bool,
    pub muted: bool,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageView {
    pub conversation_id: u64,
    pub seq: u64,
    pub sender_id: u64,
    pub sender_name: String,
    pub client_msg_id: String,
    pub sent_at_ms: i64,
    pub kind: &'static str,
    pub text: String,
    pub mentions: Vec<u64>,
    pub reply_to_seq: u64,
    pub recalled: bool,
    pub system: Option<String>,
    /// For system entries: the event as data with people's names, which
    /// the UI describes in the reader's language.
    pub event: Option<EventView>,
    /// For a recall or edit entry: the seq of the message it recalls or edits.
    pub target_seq: u64,
    /// The text was edited: `text` is its newest version.
    pub edited: bool,
    /// Emoji reactions, ordered by first use.
    pub reactions: Vec<ReactionView>,
    /// For a pin entry (kind "pin"): it unpins `target_seq` instead.
    pub unpinned: bool,
    /// For a merged forward (kind "forward"): its record.
    pub forward: Option<ForwardView>,
    pub state: &'static str,
    pub error: Option<String>,
    /// For a file message (kind "file"): what it carries.
    pub attachment: Option<AttachmentView>,
}

/// A merged forward's record: the UI words its title from `title_names`
/// (the group's name when `from_group`, else the people who wrote).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ForwardView {
    pub from_group: bool,
    pub title_names: Vec<String>,
    pub items: Vec<ForwardItemView>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ForwardItemView {
    pub sender_name: String,
    pub sent_at_ms: i64,
    pub kind: &'static str,
    pub text: String,
    pub attachment: Option<AttachmentView>,
}

/// A mass-send (群发) and who has it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MassSendView {
    pub id: String,
    pub recipients: Vec<MassRecipientView>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MassRecipientView {
    pub user_id: u64,
    pub name: String,
    pub conversation_id: u64,
    pub delivered: bool,
    pub read: bool,
}

/// A message pinned in a conversation, for the pinned bar.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PinView {
    pub seq: u64,
    pub pinned_by_name: String,
    /// Empty until the pinned message is in the cache.
    pub sender_name: String,
    /// "text", "file", or "" until the message is in the cache.
    pub kind: &'static str,
    /// The text, or the file's name.
    pub text: String,
}

/// One emoji on a message: how many reacted with it, whether I did, and who.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReactionView {
    pub emoji: String,
    pub count: usize,
    pub mine: bool,
    pub names: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AttachmentView {
    pub kind: AttachmentKind,
    pub file_id: String,
    pub name: String,
    pub size: u64,
    pub mime: String,
    pub file_count: u32,
    pub width: u32,
    pub height: u32,
    /// `data:image/jpeg;base64,...`, or null when there is none.
    pub thumbnail: Option<String>,
}

impl From<&Attachment> for AttachmentView {
    fn from(a: &Attachment) -> Self {
        AttachmentView {
            kind: a.kind,
            file_id: a.file_id.clone(),
            name: a.name.clone(),
            size: a.size,
            mime: a.mime.clone(),
            file_count: a.file_count,
            width: a.width,
            height: a.height,
            thumbnail: (!a.thumbnail.is_empty()).then(|| {
                format!(
                    "data:image/jpeg;base64,{}",
                    base64::engine::general_purpose::STANDARD.encode(&a.thumbnail)
                )
            }),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TransferView {
    pub id: String,
    pub direction: TransferDirection,
    pub state: TransferState,
    pub conversation_id: u64,
    pub seq: u64,
    pub client_msg_id: String,
    pub kind: AttachmentKind,
    pub name: String,
    pub local_path: String,
    pub total_bytes: u64,
    pub done_bytes: u64,
    pub wire_bytes: u64,
    pub error: Option<String>,
    pub error_code: Option<String>,
    pub created_at_ms: i64,
}

impl From<&Transfer> for TransferView {
    fn from(t: &Transfer) -> Self {
        TransferView {
            id: t.id.clone(),
            direction: t.direction,
            state: t.state,
            conversation_id: t.conversation_id,
            seq: t.seq,
            client_msg_id: t.client_msg_id.clone(),
            kind: t.kind,
            name: t.name.clone(),
            local_path: t.local_path.to_string_lossy().into_owned(),
            total_bytes: t.total_bytes,
            done_bytes: t.done_bytes,
            wire_bytes: t.wire_bytes,
            error: t.error.clone(),
            error_code: t.error_code.clone(),
            created_at_ms: t.created_at_ms,
        }
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SearchMessage {
    #[serde(flatten)]
    pub message: MessageView,
    pub conversation_name: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MemberRead {
    pub user_id: u64,
    pub name: String,
    pub read_seq: u64,
}

/// One person in a message's read list.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Reader {
    pub user_id: u64,
    pub name: String,
}

/// Who of a group's current members has read one message and who has not,
/// as the server answers it (the sender in neither list), each by name.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReadListView {
    pub conversation_id: u64,
    pub seq: u64,
    pub read: Vec<Reader>,
    pub unread: Vec<Reader>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DepartmentView {
    pub id: u64,
    pub parent_id: u64,
    pub name: String,
    pub member_count: u64,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PersonView {
    pub user_id: u64,
    pub account: String,
    pub display_name: String,
    pub title: String,
    pub department_id: u64,
    pub department_name: String,
    pub phone: String,
    pub email: String,
    pub presence: &'static str,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SearchResults {
    pub people: Vec<PersonView>,
    pub conversations: Vec<ConversationView>,
    pub messages: Vec<SearchMessage>,
}

/// A person named in a system event.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PersonRef {
    pub id: u64,
    pub name: String,
}

/// A group's event: kind (`group_created`, `members_added`,
/// `member_removed`, `member_left`, `renamed`, `role_changed`), who did it,
/// to whom, the group's name and the role given.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EventView {
    pub kind: &'static str,
    pub actor: PersonRef,
    pub users: Vec<PersonRef>,
    pub name: String,
    pub role: &'static str,
}

/// Everyone a message names: its sender and, for a system entry, the
/// people of its event (whose names the view needs).
pub fn people_of(m: &CachedMessage) -> Vec<u64> {
    let mut ids = vec![m.sender_id];
    if let Some(e) = &m.event {
        ids.push(e.actor_id);
        ids.extend(&e.user_ids);
    }
    for r in &m.reactions {
        ids.extend(&r.user_ids);
    }
    ids
}

/// Resolves user ids to the names people see, asking the cache once per id.
pub struct Names<'a> {
    client: &'a Client,
    known: HashMap<u64, String>,
}

impl<'a> Names<'a> {
    pub fn new(client: &'a Client) -> Self {
        Names { client, known: HashMap::new() }
    }

    /// Fetches names the cache does not have from the server (when online).
    pub async fn prefetch(&mut self, ids: impl IntoIterator<Item = u64>) {
        let mut missing: Vec<u64> = Vec::new();
        for id in ids {
            if id != 0 && !self.known.contains_key(&id) && !missing.contains(&id) {
                match self.client.display_name(id) {
                    Ok(Some(name)) => {
                        self.known.insert(id, name);
                    }
                    _ => missing.push(id),
                }
            }
        }
        if !missing.is_empty() {
            let _ = self.client.names(&missing).await;
        }
    }

    pub fn get(&mut self, id: u64) -> String {
        if let Some(n) = self.known.get(&id) {
            return n.clone();
        }
        let name = self.client.display_name(id).ok().flatten().unwrap_or_else(|| format!("#{id}"));
        self.known.insert(id, name.clone());
        name
    }

    pub fn message(&mut self, m: &CachedMessage) -> MessageView {
        MessageView {
            conversation_id: m.conversation_id,
            seq: m.seq,
            sender_id: m.sender_id,
            sender_name: if m.sender_id == 0 { String::new() } else { self.get(m.sender_id) },
            client_msg_id: m.client_msg_id.clone(),
            sent_at_ms: m.sent_at_ms,
            kind: m.kind,
            text: m.text.clone(),
            mentions: m.mentions.clone(),
            reply_to_seq: m.reply_to_seq,
            recalled: m.recalled,
            system: m.system.clone(),
            event: m.event.as_ref().map(|e| EventView {
                kind: e.kind,
                actor: PersonRef { id: e.actor_id, name: self.get(e.actor_id) },
                users: e.user_ids.iter().map(|&id| PersonRef { id, name: self.get(id) }).collect(),
                name: e.name.clone(),
                role: e.role,
            }),
            target_seq: m.target_seq,
            edited: m.edited,
            reactions: m
                .reactions
                .iter()
                .map(|r| ReactionView {
                    emoji: r.emoji.clone(),
                    count: r.user_ids.len(),
                    mine: r.user_ids.contains(&self.client.user_id()),
                    names: r.user_ids.iter().map(|&id| self.get(id)).collect(),
                })
                .collect(),
            unpinned: m.unpinned,
            forward: m.forward.as_ref().map(|f| ForwardView {
                from_group: f.from_group,
                title_names: f.title_names.clone(),
                items: f
                    .items
                    .iter()
                    .map(|i| ForwardItemView {
                        sender_name: i.sender_name.clone(),
                        sent_at_ms: i.sent_at_ms,
                        kind: i.kind,
                        text: i.text.clone(),
                        attachment: i.attachment.as_ref().map(AttachmentView::from),
                    })
                    .collect(),
            }),
            state: "sent",
            error: None,
            attachment: m.attachment.as_ref().map(AttachmentView::from),
        }
    }

    pub fn pending(&mut self, e: &OutboxEntry, me: u64, now_ms: i64) -> MessageView {
        MessageView {
            conversation_id: e.conversation_id,
            seq: 0,
            sender_id: me,
            sender_name: self.get(me),
            client_msg_id: e.client_msg_id.clone(),
            sent_at_ms: now_ms,
            kind: if e.attachment.is_some() { "file" } else { "text" },
            text: e.text.clone(),
            mentions: e.mentions.clone(),
            reply_to_seq: e.reply_to_seq,
            recalled: false,
            system: None,
            event: None,
            target_seq: 0,
            edited: false,
            reactions: Vec::new(),
            unpinned: false,
            forward: None,
            state: if e.state == "failed" { "failed" } else { "sending" },
            error: e.error.clone(),
            attachment: e.attachment.as_ref().map(AttachmentView::from),
        }
    }

    /// A file message whose upload has not finished: it reaches the outbox
    /// only afterwards, and until then the chat shows it from its transfer.
    pub fn uploading(&mut self, t: &Transfer, me: u64) -> MessageView {
        MessageView {
            conversation_id: t.conversation_id,
            seq: 0,
            sender_id: me,
            sender_name: self.get(me),
            client_msg_id: t.client_msg_id.clone(),
            sent_at_ms: t.created_at_ms,
            kind: "file",
            text: t.name.clone(),
            mentions: Vec::new(),
            reply_to_seq: 0,
            recalled: false,
            system: None,
            event: None,
            target_seq: 0,
            edited: false,
            reactions: Vec::new(),
            unpinned: false,
            forward: None,
            // The transfer's own state (paused, failed) is shown by the file card.
            state: "sending",
            error: None,
            attachment: Some(AttachmentView {
                kind: t.kind,
                file_id: String::new(),
                name: t.name.clone(),
                size: t.total_bytes,
                mime: String::new(),
                file_count: 0,
                width: 0,
                height: 0,
                thumbnail: None,
            }),
        }
    }

    pub fn conversation(&mut self, c: &ConversationSummary, me: u64) -> ConversationView {
        let peer_id = (c.kind == "direct")
            .then(|| c.members.iter().copied().find(|&m| m != me).or(c.members.first().copied()))
            .flatten();
        let name = match peer_id {
            Some(peer) => self.get(peer),
            None if c.name.is_empty() => format!("#{}", c.id),
            None => c.name.clone(),
        };
        ConversationView {
            id: c.id,
            kind: c.kind,
            name,
            peer_id,
            last_seq: c.last_seq,
            unread: c.unread,
            active: c.active,
            members: c.members.clone(),
            last_text: c.last_text.clone(),
            last_sender_name: (c.last_sender_id != 0).then(|| self.get(c.last_sender_id)),
            last_at_ms: (c.last_at_ms != 0).then_some(c.last_at_ms),
            pinned: c.pinned,
            muted: c.muted,
        }
    }

    pub fn person(&mut self, p: &DirectoryPerson, presence: &'static str) -> PersonView {
        let department_name = self
            .client
            .directory_department(p.primary_department_id)
            .ok()
            .flatten()
            .map(|d| d.name)
            .unwrap_or_default();
        PersonView {
            user_id: p.id,
            account: p.account.clone(),
            display_name: if p.display_name.is_empty() { p.account.clone() } else { p.display_name.clone() },
            title: p.title.clone(),
            department_id: p.primary_department_id,
            department_name,
            phone: p.phone.clone(),
            email: p.email.clone(),
            presence,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn untrusted_text_is_isolated_for_plain_text_places() {
        assert_eq!(isolate("invoice\u{202e}fdp.exe"), "\u{2068}invoice\u{202e}fdp.exe\u{2069}");
        // A stray PDI cannot close the wrapper early; an isolate left open is closed inside it.
        assert_eq!(isolate("a\u{2069}b"), "\u{2068}ab\u{2069}");
        assert_eq!(isolate("\u{2067}x"), "\u{2068}\u{2067}x\u{2069}\u{2069}");
        assert_eq!(isolate("\u{2066}x\u{2069}y"), "\u{2068}\u{2066}x\u{2069}y\u{2069}");
        assert_eq!(isolate(""), "\u{2068}\u{2069}");
    }

    #[test]
    fn attachments_reach_the_ui_in_camel_case_with_a_data_url_thumbnail() {
        let mut a = Attachment {
            kind: AttachmentKind::Image,
            file_id: "ab".repeat(32),
            name: "截图.png".into(),
            size: 1234,
            mime: "image/png".into(),
            file_count: 0,
            width: 1600,
            height: 900,
            thumbnail: vec![0xff, 0xd8, 0xff],
        };
        let json = serde_json::to_value(AttachmentView::from(&a)).unwrap();
        assert_eq!(json["kind"], "image");
        assert_eq!(json["fileId"], "ab".repeat(32));
        assert_eq!(json["fileCount"], 0);
        assert_eq!(json["thumbnail"], "data:image/jpeg;base64,/9j/");
        a.thumbnail.clear();
        assert!(serde_json::to_value(AttachmentView::from(&a)).unwrap()["thumbnail"].is_null());
    }
}
