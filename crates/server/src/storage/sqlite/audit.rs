//! The audit side's rows in SQLite (`audit_log`, the archive over
//! `messages` with the FTS5 trigram index `message_text`, the retention
//! settings, `dedupe_keys`).

use rusqlite::{params, Connection, OptionalExtension};

use super::{like_escape, set_setting, setting};
use crate::error::ServiceError;
use crate::storage::audit::{
    ArchiveFilter, ArchivedFile, ArchivedMessage, AuditEntry, AuditRow, AuditStore, Retention,
    RetentionVictim,
};

fn archived_file(bytes: Option<Vec<u8>>) -> Option<ArchivedFile> {
    use prost::Message as _;
    let a = hutong_protocol::v1::Attachment::decode(&bytes?[..]).ok()?;
    let kind = match hutong_protocol::v1::AttachmentKind::try_from(a.kind) {
        Ok(hutong_protocol::v1::AttachmentKind::AttachmentImage) => "image",
        Ok(hutong_protocol::v1::AttachmentKind::AttachmentFolder) => "folder",
        _ => "file",
    };
    Some(ArchivedFile { kind, file_id: hex::encode(&a.file_id), size: a.size, file_count: a.file_count })
}

impl AuditStore for Connection {
    fn audit_head(&self) -> Result<Option<(u64, String)>, ServiceError> {
        Ok(self
            .query_row("SELECT id, hash FROM audit_log ORDER BY id DESC LIMIT 1", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .optional()?)
    }

    fn append_audit(&self, e: &AuditRow) -> Result<(), ServiceError> {
        self.execute(
            "INSERT INTO audit_log (id, at, actor_id, actor_account, action, target, detail, prev_hash, hash)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            params![
                e.id,
                e.at,
                e.actor_id,
                e.actor_account,
                e.action,
                e.target,
                e.detail,
                e.prev_hash,
                e.hash
            ],
        )?;
        Ok(())
    }

    fn audit_entries(&self, offset: u64, limit: u64) -> Result<(Vec<AuditEntry>, u64), ServiceError> {
        let total: u64 = self.query_row("SELECT count(*) FROM audit_log", [], |r| r.get(0))?;
        let mut stmt = self.prepare_cached(
            "SELECT id, at, actor_id, actor_account, action, target, detail FROM audit_log ORDER BY id DESC LIMIT ?1 OFFSET ?2",
        )?;
        let rows = stmt.query_map(params![limit, offset], |r| {
            let detail: String = r.get(6)?;
            Ok(AuditEntry {
                id: r.get(0)?,
                at_ms: r.get(1)?,
                actor_id: r.get(2)?,
                actor_account: r.get(3)?,
                action: r.get(4)?,
                target: r.get(5)?,
                detail: serde_json::from_str(&detail).unwrap_or(serde_json::Value::String(detail)),
            })
        })?;
        Ok((rows.collect::<Result<_, _>>()?, total))
    }

    fn audit_rows(&self) -> Result<Vec<AuditRow>, ServiceError> {
        let mut stmt = self.prepare(
            "SELECT id, at, actor_id, actor_account, action, target, detail, prev_hash, hash FROM audit_log ORDER BY id",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(AuditRow {
                id: r.get(0)?,
                at: r.get(1)?,
                actor_id: r.get(2)?,
                actor_account: r.get(3)?,
                action: r.get(4)?,
                target: r.get(5)?,
                detail: r.get(6)?,
                prev_hash: r.get(7)?,
                hash: r.get(8)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn search_archive(
        &self,
        q: &ArchiveFilter,
        each: &mut dyn FnMut(ArchivedMessage) -> Result<(), ServiceError>,
    ) -> Result<(), ServiceError> {
        let mut clauses = vec!["1 = 1".to_owned()];
        let mut args: Vec<rusqlite::types::Value> = Vec::new();
        let mut fts: Option<String> = None;
        if let Some(text) = q.keyword.as_deref() {
            if text.chars().count() >= 3 {
                // A phrase query: the words in this order, as a substring. The
                // index drives the query (see `source` below).
                fts = Some(format!("\"{}\"", text.replace('"', "\"\"")));
            } else {
                clauses.push("m.kind IN (0, 3) AND m.text LIKE ? ESCAPE '\\'".into());
                args.push(format!("%{}%", like_escape(text)).into());
            }
        }
        if let Some(id) = q.person {
            clauses.push("(m.sender_id = ? OR m.conversation_id IN (SELECT conversation_id FROM members WHERE user_id = ?))".into());
            args.push((id as i64).into());
            args.push((id as i64).into());
        }
        if let Some(c) = q.conversation_id {
            clauses.push("m.conversation_id = ?".into());
            args.push((c as i64).into());
        }
        if let Some(from) = q.from_ms {
            clauses.push("m.sent_at >= ?".into());
            args.push(from.into());
        }
        if let Some(to) = q.to_ms {
            clauses.push("m.sent_at < ?".into());
            args.push(to.into());
        }
        // With a keyword of three or more characters, start from the index's
        // matches and look each message up by its key; otherwise scan messages.
        let source = match &fts {
            Some(_) => {
                "(SELECT rowid AS r FROM message_text WHERE message_text MATCH ?) f
                 JOIN messages m ON m.conversation_id = (f.r >> 32) AND m.seq = (f.r & 4294967295)"
            }
            None => "messages m",
        };
        if let Some(phrase) = fts {
            args.insert(0, phrase.into());
        }
        let sql = format!(
            "SELECT m.conversation_id, c.kind, c.name, m.seq, m.sender_id, coalesce(u.account, ''), coalesce(u.display_name, ''),
                    m.sent_at, m.kind, m.text, m.recalled, m.attachment
             FROM {source} JOIN conversations c ON c.id = m.conversation_id LEFT JOIN users u ON u.id = m.sender_id
             WHERE {} ORDER BY m.sent_at DESC, m.conversation_id, m.seq DESC LIMIT {} OFFSET {}",
            clauses.join(" AND "),
            q.limit,
            q.offset
        );
        let mut stmt = self.prepare(&sql)?;
        let mut rows = stmt.query(rusqlite::params_from_iter(args.iter()))?;
        while let Some(r) = rows.next()? {
            let kind: i32 = r.get(8)?;
            let ckind: i32 = r.get(1)?;
            each(ArchivedMessage {
                conversation_id: r.get(0)?,
                conversation_kind: if ckind == 1 { "group" } else { "direct" },
                conversation_name: r.get(2)?,
                seq: r.get(3)?,
                sender_id: r.get(4)?,
                sender_account: r.get(5)?,
                sender_name: r.get(6)?,
                sent_at_ms: r.get(7)?,
                kind: match kind {
                    0 => "text",
                    2 => "recall",
                    4 => "edit",
                    5 => "reaction",
                    6 => "pin",
                    7 => "forward",
                    3 => "file",
                    _ => "system",
                },
                text: r.get(9)?,
                recalled: r.get(10)?,
                file: archived_file(r.get(11)?),
            })?;
        }
        Ok(())
    }

    fn retention_rules(&self) -> Result<Retention, ServiceError> {
        Ok(Retention {
            direct_days: setting(self, "retention_direct_days")?.parse().unwrap_or(0),
            group_days: setting(self, "retention_group_days")?.parse().unwrap_or(0),
        })
    }

    fn set_retention_rules(&self, rules: &Retention) -> Result<(), ServiceError> {
        set_setting(self, "retention_direct_days", &rules.direct_days.to_string())?;
        set_setting(self, "retention_group_days", &rules.group_days.to_string())?;
        Ok(())
    }

    fn retention_victims(&self, kind: i32, cutoff_ms: i64) -> Result<Vec<RetentionVictim>, ServiceError> {
        let mut stmt = self.prepare(
            "SELECT m.conversation_id, max(m.seq), count(*) FROM messages m JOIN conversations c ON c.id = m.conversation_id
             WHERE c.kind = ?1 AND m.sent_at < ?2 GROUP BY m.conversation_id",
        )?;
        let rows = stmt.query_map(params![kind, cutoff_ms], |r| {
            Ok(RetentionVictim { conversation_id: r.get(0)?, up_to: r.get(1)?, count: r.get(2)? })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn remove_messages(&self, conversation: u64, up_to: u64, now: i64) -> Result<(), ServiceError> {
        self.execute(
            "DELETE FROM message_text WHERE rowid BETWEEN (?1 << 32) AND ((?1 << 32) | ?2)",
            params![conversation, up_to],
        )?;
        // Sends only (TEXT, FILE: the kinds in messages_dedupe); what a
        // retry's answer and its content check need.
        self.execute(
            "INSERT OR REPLACE INTO dedupe_keys (sender_id, client_msg_id, conversation_id, seq, sent_at, content_hash, removed_at)
             SELECT sender_id, client_msg_id, conversation_id, seq, sent_at, content_hash, ?3 FROM messages
             WHERE conversation_id = ?1 AND seq <= ?2 AND kind IN (0, 3)",
            params![conversation, up_to, now],
        )?;
        self.execute(
            "DELETE FROM messages WHERE conversation_id = ?1 AND seq <= ?2",
            params![conversation, up_to],
        )?;
        // Their files go with the next collection, once nothing else refers to them.
        self.execute(
            "DELETE FROM file_refs WHERE conversation_id = ?1 AND seq <= ?2",
            params![conversation, up_to],
        )?;
        self.execute(
            "UPDATE conversations SET first_seq = max(first_seq, ?2 + 1) WHERE id = ?1",
            params![conversation, up_to],
        )?;
        Ok(())
    }

    fn forget_dedupe_keys(&self, before_ms: i64) -> Result<(), ServiceError> {
        self.execute("DELETE FROM dedupe_keys WHERE removed_at < ?1", [before_ms])?;
        Ok(())
    }
}
