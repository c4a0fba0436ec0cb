//! Messaging's rows in SQLite (`conversations`, `members`, `messages`,
//! `dedupe_keys`, the keyword index's queue): the reads outside the writer
//! and the writer's reads and writes, with the row mapping they share.

use hutong_protocol::v1::{self, Member, Message, MessageKind};
use rusqlite::{params, Connection, OptionalExtension};

use crate::error::ServiceError;
use crate::storage::messages::{
    ConversationRow, EarlierSend, MemberRow, Membership, MessagesRead, MessagesWrite, RecallTarget,
};

pub const MESSAGE_COLUMNS: &str = "conversation_id, seq, sender_id, client_msg_id, sent_at, kind, text, mentions, reply_to_seq, recalled, system, target_seq, priority, attachment, reaction_removed, unpinned, forward, markdown";

/// Maps a `messages` row (selected with [`MESSAGE_COLUMNS`]) to the wire type.
/// A recalled message keeps its text in the archive but never sends it.
pub fn message_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Message> {
    use prost::Message as _;
    let recalled: bool = row.get(9)?;
    let mentions: String = row.get(7)?;
    let system: Option<Vec<u8>> = row.get(10)?;
    let attachment: Option<Vec<u8>> = if recalled { None } else { row.get(13)? };
    let forward: Option<Vec<u8>> = if recalled { None } else { row.get(16)? };
    Ok(Message {
        conversation_id: row.get(0)?,
        seq: row.get(1)?,
        sender_id: row.get(2)?,
        client_msg_id: row.get(3)?,
        sent_at_ms: row.get(4)?,
        kind: row.get(5)?,
        text: if recalled { String::new() } else { row.get(6)? },
        mentions: decode_ids(&mentions),
        reply_to_seq: row.get(8)?,
        recalled,
        system: system.and_then(|b| v1::SystemEvent::decode(&b[..]).ok()),
        target_seq: row.get(11)?,
        priority: row.get(12)?,
        attachment: attachment.and_then(|b| v1::Attachment::decode(&b[..]).ok()),
        reaction_removed: row.get(14)?,
        unpinned: row.get(15)?,
        forward: forward.and_then(|b| v1::ForwardRecord::decode(&b[..]).ok()),
        markdown: row.get(17)?,
    })
}

pub fn encode_ids(ids: &[u64]) -> String {
    ids.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(",")
}

pub fn decode_ids(s: &str) -> Vec<u64> {
    s.split(',').filter_map(|p| p.parse().ok()).collect()
}

impl MessagesRead for Connection {
    fn share_a_conversation(&self, a: u64, b: u64) -> Result<bool, ServiceError> {
        Ok(self
            .prepare_cached(
                "SELECT 1 FROM members x JOIN members y ON y.conversation_id = x.conversation_id AND y.user_id = ?2
                 WHERE x.user_id = ?1 LIMIT 1",
            )?
            .exists(params![a, b])?)
    }

    fn message_at(&self, conversation_id: u64, seq: u64) -> Result<Option<Message>, ServiceError> {
        let sql = format!("SELECT {MESSAGE_COLUMNS} FROM messages WHERE conversation_id = ?1 AND seq = ?2");
        Ok(self
            .prepare_cached(&sql)?
            .query_row(params![conversation_id, seq], message_from_row)
            .optional()?)
    }

    fn sends_with_id_prefix(&self, sender: u64, prefix: &str) -> Result<Vec<Message>, ServiceError> {
        // A range on messages_dedupe (sender_id, client_msg_id) over kinds 0 and 3.
        let end = format!("{prefix}\u{10FFFF}");
        let sql = format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages WHERE sender_id = ?1 AND client_msg_id >= ?2 AND client_msg_id < ?3 AND kind IN (0, 3) ORDER BY client_msg_id"
        );
        let rows = self
            .prepare_cached(&sql)?
            .query_map(params![sender, prefix, end], message_from_row)?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    fn newest_edit(&self, conversation_id: u64, seq: u64) -> Result<Option<String>, ServiceError> {
        Ok(self
            .prepare_cached(
                "SELECT text FROM messages WHERE conversation_id = ?1 AND target_seq = ?2 AND kind = 4 ORDER BY seq DESC LIMIT 1",
            )?
            .query_row(params![conversation_id, seq], |r| r.get(0))
            .optional()?)
    }

    fn membership(&self, conversation_id: u64, user_id: u64) -> Result<Option<Membership>, ServiceError> {
        Ok(self
            .prepare_cached(
                "SELECT active, until_seq, role FROM members WHERE conversation_id = ?1 AND user_id = ?2",
            )?
            .query_row(params![conversation_id, user_id], |r| {
                Ok(Membership { active: r.get(0)?, until_seq: r.get(1)?, role: r.get(2)? })
            })
            .optional()?)
    }

    fn messages_after(
        &self,
        conversation_id: u64,
        after: u64,
        ceiling: u64,
        limit: u32,
    ) -> Result<Vec<Message>, ServiceError> {
        let sql = format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages WHERE conversation_id = ?1 AND seq > ?2 AND seq <= ?3 ORDER BY seq LIMIT ?4"
        );
        let mut stmt = self.prepare_cached(&sql)?;
        let rows = stmt.query_map(params![conversation_id, after, ceiling, limit], message_from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn messages_before(
        &self,
        conversation_id: u64,
        before: u64,
        ceiling: u64,
        limit: u32,
    ) -> Result<Vec<Message>, ServiceError> {
        let sql = format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages WHERE conversation_id = ?1 AND seq < ?2 AND seq <= ?3 ORDER BY seq DESC LIMIT ?4"
        );
        let mut stmt = self.prepare_cached(&sql)?;
        let rows = stmt.query_map(params![conversation_id, before, ceiling, limit], message_from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn conversation(&self, conversation_id: u64) -> Result<Option<ConversationRow>, ServiceError> {
        Ok(self
            .prepare_cached(
                "SELECT kind, name, last_seq, version, first_seq FROM conversations WHERE id = ?1",
            )?
            .query_row([conversation_id], |r| {
                Ok(ConversationRow {
                    kind: r.get(0)?,
                    name: r.get(1)?,
                    last_seq: r.get(2)?,
                    version: r.get(3)?,
                    first_seq: r.get(4)?,
                })
            })
            .optional()?)
    }

    fn member_rows(&self, conversation_id: u64) -> Result<Vec<MemberRow>, ServiceError> {
        let mut stmt = self.prepare_cached(
            "SELECT user_id, role, delivered_seq, read_seq, active, until_seq, version FROM members WHERE conversation_id = ?1",
        )?;
        let rows = stmt.query_map([conversation_id], |r| {
            Ok(MemberRow {
                member: Member {
                    user_id: r.get(0)?,
                    role: r.get(1)?,
                    delivered_seq: r.get(2)?,
                    read_seq: r.get(3)?,
                },
                active: r.get(4)?,
                until_seq: r.get(5)?,
                version: r.get(6)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn active_members(&self, conversation_id: u64) -> Result<Vec<u64>, ServiceError> {
        let mut stmt =
            self.prepare_cached("SELECT user_id FROM members WHERE conversation_id = ?1 AND active = 1")?;
        let rows = stmt.query_map([conversation_id], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn sync_keys(
        &self,
        user_id: u64,
        since: u64,
        since_id: u64,
        limit: u32,
    ) -> Result<Vec<(u64, u64)>, ServiceError> {
        // The outer filter is the key comparison; the inner one only keeps the
        // walk over the membership index from computing keys that cannot qualify.
        let mut stmt = self.prepare_cached(
            "SELECT id, v FROM (
                SELECT c.id AS id, CASE WHEN m.active THEN max(m.version, c.version) ELSE m.version END AS v
                FROM members m JOIN conversations c ON c.id = m.conversation_id
                WHERE m.user_id = ?1 AND (m.version >= ?2 OR (m.active AND c.version >= ?2)))
             WHERE v > ?2 OR (v = ?2 AND id > ?3)
             ORDER BY v, id LIMIT ?4",
        )?;
        let rows = stmt.query_map(params![user_id, since, since_id, limit], |r| {
            Ok((r.get::<_, u64>(0)?, r.get::<_, u64>(1)?))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn user_by_account(&self, account: &str) -> Result<Option<v1::User>, ServiceError> {
        Ok(self
            .prepare_cached("SELECT id, account, display_name, disabled FROM users WHERE account = ?1")?
            .query_row([account], user_from_row)
            .optional()?)
    }

    fn user_by_id(&self, id: u64) -> Result<Option<v1::User>, ServiceError> {
        Ok(self
            .prepare_cached("SELECT id, account, display_name, disabled FROM users WHERE id = ?1")?
            .query_row([id], user_from_row)
            .optional()?)
    }

    fn senders_between(
        &self,
        conversation_id: u64,
        from: u64,
        to: u64,
        reader: u64,
    ) -> Result<Vec<u64>, ServiceError> {
        let mut stmt = self.prepare_cached(
            "SELECT DISTINCT sender_id FROM messages
             WHERE conversation_id = ?1 AND seq > ?2 AND seq <= ?3 AND sender_id != ?4 AND kind IN (?5, ?6)",
        )?;
        let rows = stmt.query_map(
            params![conversation_id, from, to, reader, MessageKind::Text as i32, MessageKind::File as i32],
            |r| r.get::<_, u64>(0),
        )?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

fn user_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<v1::User> {
    Ok(v1::User { id: r.get(0)?, account: r.get(1)?, display_name: r.get(2)?, disabled: r.get(3)? })
}

impl MessagesWrite for Connection {
    fn append_entry(
        &self,
        entry: &Message,
        content_hash: Option<&[u8; 32]>,
        version: u64,
    ) -> Result<u64, ServiceError> {
        use prost::Message as _;
        let conversation_id = entry.conversation_id;
        let seq: u64 = self
            .prepare_cached(
                "UPDATE conversations SET last_seq = last_seq + 1, version = ?2 WHERE id = ?1 RETURNING last_seq",
            )?
            .query_row(params![conversation_id, version], |r| r.get(0))?;
        let system = entry.system.as_ref().map(|s| s.encode_to_vec());
        let attachment = entry.attachment.as_ref().map(|a| a.encode_to_vec());
        let inserted = self
            .prepare_cached(
                "INSERT INTO messages (conversation_id, seq, sender_id, client_msg_id, sent_at, kind, text, mentions, reply_to_seq, system, target_seq, priority, attachment, content_hash, reaction_removed, unpinned, forward, markdown)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18)",
            )?
            .execute(params![
                conversation_id,
                seq,
                entry.sender_id,
                entry.client_msg_id,
                entry.sent_at_ms,
                entry.kind,
                entry.text,
                encode_ids(&entry.mentions),
                entry.reply_to_seq,
                system,
                entry.target_seq,
                entry.priority,
                attachment,
                content_hash.map(|h| &h[..]),
                entry.reaction_removed,
                entry.unpinned,
                entry.forward.as_ref().map(|f| f.encode_to_vec()),
                entry.markdown
            ])?;
        // A send's id was checked against earlier sends first (see the
        // writer's `send`); other entries are outside the dedupe index, so
        // nothing can collide.
        if inserted != 1 {
            return Err(ServiceError::Internal("a log entry was not stored".into()));
        }
        if entry.kind == MessageKind::Text as i32 || entry.kind == MessageKind::File as i32 {
            // Indexed later, when the writer is idle (see `index_pending`).
            self.prepare_cached("INSERT INTO message_text_pending (conversation_id, seq) VALUES (?1, ?2)")?
                .execute(params![conversation_id, seq])?;
        }
        Ok(seq)
    }

    fn earlier_forward(&self, sender: u64, client_msg_id: &str) -> Result<Option<Message>, ServiceError> {
        // `kind = 7` repeats messages_forward_dedupe's condition, so the lookup uses it.
        let sql = format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages WHERE sender_id = ?1 AND client_msg_id = ?2 AND kind = 7"
        );
        Ok(self
            .prepare_cached(&sql)?
            .query_row(params![sender, client_msg_id], message_from_row)
            .optional()?)
    }

    fn earlier_send(&self, sender: u64, client_msg_id: &str) -> Result<Option<EarlierSend>, ServiceError> {
        // `kind IN (0, 3)` repeats messages_dedupe's condition, so the lookup uses it.
        let sql = format!(
            "SELECT {MESSAGE_COLUMNS}, content_hash FROM messages WHERE sender_id = ?1 AND client_msg_id = ?2 AND kind IN (0, 3)"
        );
        let stored = self
            .prepare_cached(&sql)?
            .query_row(params![sender, client_msg_id], |r| {
                Ok(EarlierSend::Stored {
                    message: message_from_row(r)?,
                    content_hash: r.get(18)?,
                    attachment: r.get(13)?,
                })
            })
            .optional()?;
        if stored.is_some() {
            return Ok(stored);
        }
        Ok(self
            .prepare_cached(
                "SELECT conversation_id, seq, sent_at, content_hash FROM dedupe_keys WHERE sender_id = ?1 AND client_msg_id = ?2",
            )?
            .query_row(params![sender, client_msg_id], |r| {
                Ok(EarlierSend::Removed {
                    message: Message {
                        conversation_id: r.get(0)?,
                        seq: r.get(1)?,
                        sent_at_ms: r.get(2)?,
                        sender_id: sender,
                        client_msg_id: client_msg_id.to_owned(),
                        ..Default::default()
                    },
                    content_hash: r.get(3)?,
                })
            })
            .optional()?)
    }

    fn max_version(&self) -> Result<u64, ServiceError> {
        Ok(self.query_row(
            "SELECT max((SELECT coalesce(max(version), 0) FROM conversations), (SELECT coalesce(max(version), 0) FROM members))",
            [],
            |r| r.get(0),
        )?)
    }

    fn conversation_kind(&self, conversation_id: u64) -> Result<Option<i32>, ServiceError> {
        Ok(self
            .prepare_cached("SELECT kind FROM conversations WHERE id = ?1")?
            .query_row([conversation_id], |r| r.get(0))
            .optional()?)
    }

    fn active_member_roles(&self, conversation_id: u64) -> Result<Vec<(u64, i32)>, ServiceError> {
        let mut stmt = self
            .prepare_cached("SELECT user_id, role FROM members WHERE conversation_id = ?1 AND active = 1")?;
        let rows = stmt.query_map([conversation_id], |r| Ok((r.get::<_, u64>(0)?, r.get::<_, i32>(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn user_disabled(&self, id: u64) -> Result<Option<bool>, ServiceError> {
        Ok(self
            .prepare_cached("SELECT disabled FROM users WHERE id = ?1")?
            .query_row([id], |r| r.get::<_, bool>(0))
            .optional()?)
    }

    fn set_conversation_version(&self, conversation_id: u64, version: u64) -> Result<(), ServiceError> {
        self.prepare_cached("UPDATE conversations SET version = ?2 WHERE id = ?1")?
            .execute(params![conversation_id, version])?;
        Ok(())
    }

    fn recall_target(&self, conversation_id: u64, seq: u64) -> Result<Option<RecallTarget>, ServiceError> {
        Ok(self
            .prepare_cached(
                "SELECT sender_id, sent_at, kind, recalled FROM messages WHERE conversation_id = ?1 AND seq = ?2",
            )?
            .query_row(params![conversation_id, seq], |r| {
                Ok(RecallTarget { sender_id: r.get(0)?, sent_at: r.get(1)?, kind: r.get(2)?, recalled: r.get(3)? })
            })
            .optional()?)
    }

    fn mark_recalled(&self, conversation_id: u64, seq: u64) -> Result<(), ServiceError> {
        self.prepare_cached("UPDATE messages SET recalled = 1 WHERE conversation_id = ?1 AND seq = ?2")?
            .execute(params![conversation_id, seq])?;
        Ok(())
    }

    fn upsert_member(
        &self,
        conversation_id: u64,
        user: u64,
        role: i32,
        version: u64,
    ) -> Result<(), ServiceError> {
        self.prepare_cached(
            "INSERT INTO members (conversation_id, user_id, role, active, until_seq, version) VALUES (?1, ?2, ?3, 1, NULL, ?4)
             ON CONFLICT (conversation_id, user_id) DO UPDATE SET role = ?3, active = 1, until_seq = NULL, version = ?4",
        )?
        .execute(params![conversation_id, user, role, version])?;
        Ok(())
    }

    fn direct_conversation(&self, key: &str) -> Result<Option<u64>, ServiceError> {
        Ok(self
            .prepare_cached("SELECT id FROM conversations WHERE direct_key = ?1")?
            .query_row([key], |r| r.get(0))
            .optional()?)
    }

    fn insert_conversation(
        &self,
        kind: i32,
        name: &str,
        direct_key: Option<&str>,
        version: u64,
        created_at: i64,
    ) -> Result<u64, ServiceError> {
        self.prepare_cached(
            "INSERT INTO conversations (kind, name, direct_key, last_seq, version, created_at) VALUES (?1, ?2, ?3, 0, ?4, ?5)",
        )?
        .execute(params![kind, name, direct_key, version, created_at])?;
        Ok(self.last_insert_rowid() as u64)
    }

    fn rename_conversation(&self, conversation_id: u64, name: &str) -> Result<(), ServiceError> {
        self.prepare_cached("UPDATE conversations SET name = ?2 WHERE id = ?1")?
            .execute(params![conversation_id, name])?;
        Ok(())
    }

    fn deactivate_member(
        &self,
        conversation_id: u64,
        user: u64,
        until_seq: u64,
        version: u64,
    ) -> Result<(), ServiceError> {
        self.prepare_cached(
            "UPDATE members SET active = 0, until_seq = ?3, version = ?4 WHERE conversation_id = ?1 AND user_id = ?2",
        )?
        .execute(params![conversation_id, user, until_seq, version])?;
        Ok(())
    }

    fn set_member_role(
        &self,
        conversation_id: u64,
        user: u64,
        role: i32,
        version: u64,
    ) -> Result<(), ServiceError> {
        self.prepare_cached(
            "UPDATE members SET role = ?3, version = ?4 WHERE conversation_id = ?1 AND user_id = ?2",
        )?
        .execute(params![conversation_id, user, role, version])?;
        Ok(())
    }

    fn cursors(&self, conversation_id: u64, user: u64) -> Result<(u64, u64, u64), ServiceError> {
        Ok(self
            .prepare_cached(
                "SELECT c.last_seq, m.delivered_seq, m.read_seq FROM conversations c JOIN members m ON m.conversation_id = c.id
                 WHERE c.id = ?1 AND m.user_id = ?2",
            )?
            .query_row(params![conversation_id, user], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?)
    }

    fn set_cursors(
        &self,
        conversation_id: u64,
        user: u64,
        delivered: u64,
        read: u64,
        version: u64,
    ) -> Result<(), ServiceError> {
        self.prepare_cached(
            "UPDATE members SET delivered_seq = ?3, read_seq = ?4, version = ?5 WHERE conversation_id = ?1 AND user_id = ?2",
        )?
        .execute(params![conversation_id, user, delivered, read, version])?;
        Ok(())
    }

    fn index_pending(&self, limit: usize) -> Result<usize, ServiceError> {
        let mut stmt = self.prepare_cached(
            "SELECT p.conversation_id, p.seq, m.text FROM message_text_pending p
             LEFT JOIN messages m ON m.conversation_id = p.conversation_id AND m.seq = p.seq LIMIT ?1",
        )?;
        let rows: Vec<(u64, u64, Option<String>)> = stmt
            .query_map([limit.min(i64::MAX as usize) as i64], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
            .collect::<Result<_, _>>()?;
        let mut insert =
            self.prepare_cached("INSERT INTO message_text (rowid, text) VALUES ((?1 << 32) | ?2, ?3)")?;
        let mut done =
            self.prepare_cached("DELETE FROM message_text_pending WHERE conversation_id = ?1 AND seq = ?2")?;
        for (conversation, seq, text) in &rows {
            // A message removed by retention before it was indexed has no text left.
            if let Some(text) = text {
                insert.execute(params![conversation, seq, text])?;
            }
            done.execute(params![conversation, seq])?;
        }
        Ok(rows.len())
    }
}
