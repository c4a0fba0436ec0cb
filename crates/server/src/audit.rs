//! The audit side of the server: the append-only log of administrator and
//! auditor actions, hash-chained with a key kept in the data directory so
//! that an edited, inserted or deleted entry is detected (`verify`); search
//! and export of the message archive; and the retention rules.

use std::path::{Path, PathBuf};

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::error::ServiceError;
use crate::storage::audit::{ArchiveFilter, AuditRow};
pub use crate::storage::audit::{ArchivedFile, ArchivedMessage, AuditEntry, Retention};
use crate::storage::{now_ms, Store};

const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The chain's key and the file that remembers the newest entry (so that
/// removing the last entries is detected too).
#[derive(Clone)]
pub struct AuditKey {
    key: Vec<u8>,
    head_path: PathBuf,
}

impl AuditKey {
    /// Loads `audit.key` from the data directory, making it on first use.
    pub fn load_or_create(data_dir: &Path) -> anyhow::Result<AuditKey> {
        let path = data_dir.join("audit.key");
        if !path.exists() {
            use rand::RngCore as _;
            let mut key = [0u8; 32];
            rand::rng().fill_bytes(&mut key);
            // Another process may be making it at this moment: one key wins, whole.
            crate::util::create_private_once(&path, hex::encode(key).as_bytes())?;
        }
        let key = hex::decode(std::fs::read_to_string(&path)?.trim())?;
        Ok(AuditKey { key, head_path: data_dir.join("audit.head") })
    }

    fn mac(&self, prev: &str, e: &EntryFields<'_>) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("any key length");
        for part in [
            prev,
            &e.id.to_string(),
            &e.at.to_string(),
            &e.actor_id.map(|a| a.to_string()).unwrap_or_default(),
            e.actor_account,
            e.action,
            e.target,
            e.detail,
        ] {
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part.as_bytes());
        }
        hex::encode(mac.finalize().into_bytes())
    }

    /// The head file's own MAC, so a forged head (one naming an entry the
    /// server never vouched for) is told from a real one.
    fn head_mac(&self, id: u64, hash: &str) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("any key length");
        mac.update(b"hutong/audit-head/v1\0");
        mac.update(&id.to_be_bytes());
        mac.update(hash.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    /// The head file's `(id, hash)` if it is there and authentic; `Err` with
    /// what is wrong otherwise, `Ok(None)` when there is none.
    fn read_head(&self) -> Result<Option<(u64, String)>, &'static str> {
        let Ok(text) = std::fs::read_to_string(&self.head_path) else { return Ok(None) };
        let mut parts = text.split_whitespace();
        let (Some(id), Some(hash), Some(mac), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err("is not in the form the server writes");
        };
        let id: u64 = id.parse().map_err(|_| "is not in the form the server writes")?;
        // Compared as MACs (constant time), not as strings.
        let mut check = Hmac::<Sha256>::new_from_slice(&self.key).expect("any key length");
        check.update(b"hutong/audit-head/v1\0");
        check.update(&id.to_be_bytes());
        check.update(hash.as_bytes());
        let mac = hex::decode(mac).map_err(|_| "is not in the form the server writes")?;
        check.verify_slice(&mac).map_err(|_| "was not written by this server (its MAC does not match)")?;
        Ok(Some((id, hash.to_owned())))
    }

    /// Records the newest entry after the transaction that wrote it committed.
    pub fn write_head(&self, store: &dyn Store) -> anyhow::Result<()> {
        let head = store.audit_head()?;
        if let Some((id, hash)) = head {
            let tmp = self.head_path.with_extension("tmp");
            let mac = self.head_mac(id, &hash);
            std::fs::write(&tmp, format!("{id} {hash} {mac}\n"))?;
            std::fs::rename(tmp, &self.head_path)?;
        }
        Ok(())
    }
}

struct EntryFields<'a> {
    id: u64,
    at: i64,
    actor_id: Option<u64>,
    actor_account: &'a str,
    action: &'a str,
    target: &'a str,
    detail: &'a str,
}

/// Who did something: a person, or the server itself (retention).
#[derive(Debug, Clone)]
pub struct Actor {
    pub id: Option<u64>,
    pub account: String,
}

impl Actor {
    pub fn server() -> Actor {
        Actor { id: None, account: "server".into() }
    }
}

/// Appends one entry, inside the caller's transaction, so an action and its
/// record commit together.
pub fn record(
    store: &dyn Store,
    key: &AuditKey,
    actor: &Actor,
    action: &str,
    target: &str,
    detail: serde_json::Value,
) -> Result<u64, ServiceError> {
    let (prev_id, prev) = store.audit_head()?.unwrap_or((0, GENESIS.to_owned()));
    let detail = detail.to_string();
    let fields = EntryFields {
        id: prev_id + 1,
        at: now_ms(),
        actor_id: actor.id,
        actor_account: &actor.account,
        action,
        target,
        detail: &detail,
    };
    let hash = key.mac(&prev, &fields);
    store.append_audit(&AuditRow {
        id: fields.id,
        at: fields.at,
        actor_id: actor.id,
        actor_account: actor.account.clone(),
        action: action.to_owned(),
        target: target.to_owned(),
        detail: detail.clone(),
        prev_hash: prev,
        hash,
    })?;
    Ok(fields.id)
}

pub fn entries(store: &dyn Store, offset: u64, limit: u64) -> Result<(Vec<AuditEntry>, u64), ServiceError> {
    store.audit_entries(offset, limit.clamp(1, 1000))
}

/// Walks the chain and names every entry that was edited, inserted or
/// deleted. An empty list means the log is intact.
pub fn verify(store: &dyn Store, key: &AuditKey) -> anyhow::Result<(u64, Vec<String>)> {
    let rows = store.audit_rows()?;
    let mut problems = Vec::new();
    // The newest entry the chain vouches for, and entries that failed their check since.
    let (mut good_id, mut good_hash) = (0u64, GENESIS.to_owned());
    let mut suspects: Vec<&AuditRow> = Vec::new();
    for row in &rows {
        let fields = EntryFields {
            id: row.id,
            at: row.at,
            actor_id: row.actor_id,
            actor_account: &row.actor_account,
            action: &row.action,
            target: &row.target,
            detail: &row.detail,
        };
        if key.mac(&row.prev_hash, &fields) != row.hash {
            suspects.push(row);
            continue;
        }
        // A sound entry: how does it link to what came before?
        if row.prev_hash == good_hash {
            for s in suspects.drain(..) {
                problems.push(format!("entry {}: inserted (not written by the server)", s.id));
            }
        } else if let Some(pos) = suspects.iter().position(|s| s.hash == row.prev_hash) {
            for (i, s) in suspects.drain(..).enumerate() {
                if i == pos {
                    problems.push(format!("entry {}: edited (its content no longer matches its hash)", s.id));
                } else {
                    problems.push(format!("entry {}: inserted (not written by the server)", s.id));
                }
            }
        } else {
            for s in suspects.drain(..) {
                problems.push(format!("entry {}: inserted or edited", s.id));
            }
            problems.push(format!(
                "entries deleted between entry {good_id} and entry {} (the chain is broken there)",
                row.id
            ));
        }
        good_id = row.id;
        good_hash = row.hash.clone();
    }
    // The file written after every commit vouches for the newest entry. A
    // log with entries and no head, or a head the key did not make, is
    // reported: without it, removing the newest entries would go unseen.
    let head = match key.read_head() {
        Ok(Some(head)) => Some(head),
        Ok(None) => {
            if !rows.is_empty() {
                problems.push(
                    "the audit head (audit.head) is missing: removal of the newest entries cannot be ruled out"
                        .to_owned(),
                );
            }
            None
        }
        Err(why) => {
            problems.push(format!(
                "the audit head (audit.head) {why}: removal of the newest entries cannot be ruled out"
            ));
            None
        }
    };
    for s in suspects.drain(..) {
        let edited_last = head.as_ref().is_some_and(|(id, hash)| *id == s.id && *hash == s.hash);
        problems.push(if edited_last {
            format!("entry {}: edited (its content no longer matches its hash)", s.id)
        } else {
            format!("entry {}: inserted (not written by the server)", s.id)
        });
    }
    if let Some((head_id, head_hash)) = head {
        let present = rows.iter().any(|r| r.id == head_id && r.hash == head_hash);
        if !present && head_id > good_id {
            problems.push(format!("entries after entry {good_id} up to entry {head_id} were deleted"));
        }
    }
    Ok((rows.len() as u64, problems))
}

// ------------------------------------------------------------------ message archive

#[derive(Debug, Default, Clone, serde::Deserialize)]
pub struct MessageQuery {
    pub q: Option<String>,
    pub person: Option<String>,
    pub conversation_id: Option<u64>,
    pub from_ms: Option<i64>,
    pub to_ms: Option<i64>,
    pub offset: Option<u64>,
    pub limit: Option<u64>,
    pub format: Option<String>,
}

/// Finds archived messages, newest first. Keywords of three or more
/// characters use the trigram index; shorter ones (one or two Chinese
/// characters) scan with LIKE within the other filters.
pub fn search_messages(
    store: &dyn Store,
    q: &MessageQuery,
    max: u64,
    mut each: impl FnMut(ArchivedMessage) -> Result<(), ServiceError>,
) -> Result<(), ServiceError> {
    let mut filter = ArchiveFilter {
        conversation_id: q.conversation_id,
        from_ms: q.from_ms,
        to_ms: q.to_ms,
        offset: q.offset.unwrap_or(0),
        limit: q.limit.unwrap_or(max).clamp(1, max),
        ..Default::default()
    };
    if let Some(text) = q.q.as_deref().map(str::trim).filter(|t| !t.is_empty()) {
        if text.chars().count() > 200 {
            return Err(ServiceError::BadRequest("a keyword has at most 200 characters".into()));
        }
        filter.keyword = Some(text.to_owned());
    }
    if let Some(account) = q.person.as_deref().map(str::trim).filter(|t| !t.is_empty()) {
        let Some(id) = store.user_id_by_account(account)? else {
            return Err(ServiceError::NotFound("person"));
        };
        filter.person = Some(id);
    }
    store.search_archive(&filter, &mut each)
}

/// One CSV line, quoting as RFC 4180 asks, formulas neutralised (`util::csv_cell`).
pub fn csv_line(m: &ArchivedMessage) -> String {
    let mut w = csv::WriterBuilder::new().has_headers(false).from_writer(Vec::new());
    let record = [
        m.conversation_id.to_string(),
        m.conversation_kind.to_owned(),
        m.conversation_name.clone(),
        m.seq.to_string(),
        m.sender_account.clone(),
        m.sender_name.clone(),
        m.sent_at_ms.to_string(),
        m.kind.to_owned(),
        m.text.clone(),
        m.recalled.to_string(),
    ];
    let _ = w.write_record(record.iter().map(|c| crate::util::csv_cell(c).into_owned()));
    String::from_utf8(w.into_inner().unwrap_or_default()).unwrap_or_default()
}

pub const CSV_HEADER: &str =
    "conversation_id,conversation_kind,conversation_name,seq,sender_account,sender_name,sent_at_ms,kind,text,recalled\n";

// ------------------------------------------------------------------ retention

pub fn retention(store: &dyn Store) -> Result<Retention, ServiceError> {
    store.retention_rules()
}

pub fn set_retention(store: &dyn Store, rules: &Retention) -> Result<(), ServiceError> {
    store.set_retention_rules(rules)
}

/// How long the dedupe key of a send outlives its message once retention
/// removed it: a client that retries a send whose acknowledgement it never
/// got (offline for weeks, outbox kept) is answered with the original
/// instead of storing the message again. After this it would be stored anew.
pub const DEDUPE_KEEP_MS: i64 = 30 * 86_400_000;

/// What one retention run did.
#[derive(Debug, Default)]
pub struct RetentionApplied {
    /// Messages removed.
    pub removed: u64,
    /// Conversations that lost messages (their `first_seq` moved); only these
    /// need a new version.
    pub conversations: Vec<u64>,
}

/// Removes messages older than the rules allow (inside the caller's
/// transaction) and records what went in the audit log. The dedupe keys of
/// removed sends stay in `dedupe_keys` for [`DEDUPE_KEEP_MS`]; older ones go.
pub fn apply_retention(conn: &dyn Store, key: &AuditKey, now: i64) -> Result<RetentionApplied, ServiceError> {
    let rules = retention(conn)?;
    let mut applied = RetentionApplied::default();
    let mut detail = serde_json::Map::new();
    for (kind, days, name) in [(0, rules.direct_days, "direct"), (1, rules.group_days, "group")] {
        if days == 0 {
            continue;
        }
        let cutoff = now - i64::from(days) * 86_400_000;
        let victims = conn.retention_victims(kind, cutoff)?;
        let mut removed = 0;
        for v in &victims {
            conn.remove_messages(v.conversation_id, v.up_to, now)?;
            removed += v.count;
            applied.conversations.push(v.conversation_id);
        }
        if removed > 0 {
            detail.insert(
                name.into(),
                serde_json::json!({ "days": days, "messages": removed, "conversations": victims.len() }),
            );
        }
        applied.removed += removed;
    }
    conn.forget_dedupe_keys(now - DEDUPE_KEEP_MS)?;
    if applied.removed > 0 {
        record(
            conn,
            key,
            &Actor::server(),
            "retention.apply",
            "messages",
            serde_json::Value::Object(detail),
        )?;
    }
    Ok(applied)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::{params, Connection};

    fn setup() -> (tempfile::TempDir, Connection, AuditKey) {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("t.db");
        crate::storage::migrate(&db).unwrap();
        let conn = crate::storage::open_connection(&db).unwrap();
        let key = AuditKey::load_or_create(dir.path()).unwrap();
        (dir, conn, key)
    }

    /// Processes started at once on a new data directory (the server and
    /// `user add`, or several `user add`s) all get the same whole key.
    #[test]
    fn a_key_made_by_many_at_once_is_one_whole_key() {
        for _ in 0..20 {
            let dir = tempfile::tempdir().unwrap();
            let barrier = std::sync::Barrier::new(8);
            let keys: Vec<Vec<u8>> = std::thread::scope(|scope| {
                let handles: Vec<_> = (0..8)
                    .map(|_| {
                        scope.spawn(|| {
                            barrier.wait();
                            AuditKey::load_or_create(dir.path()).map(|k| k.key)
                        })
                    })
                    .collect();
                handles.into_iter().map(|h| h.join().unwrap().expect("no process fails")).collect()
            });
            assert_eq!(keys[0].len(), 32);
            assert!(keys.iter().all(|k| *k == keys[0]), "every process has the same key");
            let leftovers: Vec<_> = std::fs::read_dir(dir.path())
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            assert_eq!(leftovers, ["audit.key"], "no temporary file is left");
        }
    }

    fn write(conn: &Connection, key: &AuditKey, n: usize) {
        let actor = Actor { id: Some(1), account: "admin".into() };
        for i in 0..n {
            record(conn, key, &actor, "person.create", &format!("user{i}"), serde_json::json!({ "i": i }))
                .unwrap();
        }
        key.write_head(conn).unwrap();
    }

    #[test]
    fn dedupe_keys_are_kept_for_the_stated_time_after_removal() {
        let (_d, conn, key) = setup();
        let now = 100 * 86_400_000;
        conn.execute(
            "INSERT INTO dedupe_keys (sender_id, client_msg_id, conversation_id, seq, sent_at, content_hash, removed_at)
             VALUES (1, 'expired', 1, 1, 0, NULL, ?1), (1, 'kept', 1, 2, 0, NULL, ?2)",
            params![now - DEDUPE_KEEP_MS - 1, now - DEDUPE_KEEP_MS + 1],
        )
        .unwrap();
        apply_retention(&conn, &key, now).unwrap();
        let left: Vec<String> = conn
            .prepare("SELECT client_msg_id FROM dedupe_keys")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(left, ["kept"]);
    }

    #[test]
    fn intact_log_verifies() {
        let (_d, conn, key) = setup();
        write(&conn, &key, 5);
        assert_eq!(verify(&conn, &key).unwrap(), (5, vec![]));
    }

    #[test]
    fn edits_inserts_and_deletions_are_named() {
        let (_d, conn, key) = setup();
        write(&conn, &key, 8);
        conn.execute("UPDATE audit_log SET target = 'someone else' WHERE id = 3", []).unwrap();
        conn.execute("DELETE FROM audit_log WHERE id = 5", []).unwrap();
        conn.execute(
            "INSERT INTO audit_log (id, at, actor_id, actor_account, action, target, detail, prev_hash, hash)
             SELECT 100, at, actor_id, actor_account, 'person.delete', 'x', detail, hash, hash FROM audit_log WHERE id = 8",
            [],
        )
        .unwrap();
        let (_, problems) = verify(&conn, &key).unwrap();
        assert!(problems.iter().any(|p| p.starts_with("entry 3: edited")), "{problems:?}");
        assert!(problems.iter().any(|p| p.contains("deleted between entry 4 and entry 6")), "{problems:?}");
        assert!(problems.iter().any(|p| p.starts_with("entry 100: inserted")), "{problems:?}");
    }

    #[test]
    fn a_missing_or_forged_head_is_reported() {
        let (dir, conn, key) = setup();
        write(&conn, &key, 4);
        let head = dir.path().join("audit.head");
        // Deleting the newest entries and the head with them.
        conn.execute("DELETE FROM audit_log WHERE id >= 3", []).unwrap();
        std::fs::remove_file(&head).unwrap();
        let (_, problems) = verify(&conn, &key).unwrap();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("audit head (audit.head) is missing"), "{problems:?}");
        // A head written by someone without the key, naming the new last entry.
        let last: String =
            conn.query_row("SELECT hash FROM audit_log WHERE id = 2", [], |r| r.get(0)).unwrap();
        std::fs::write(&head, format!("2 {last} {}\n", "00".repeat(32))).unwrap();
        let (_, problems) = verify(&conn, &key).unwrap();
        assert!(problems.iter().any(|p| p.contains("was not written by this server")), "{problems:?}");
        // The old format without a MAC is not trusted either.
        std::fs::write(&head, format!("2 {last}\n")).unwrap();
        let (_, problems) = verify(&conn, &key).unwrap();
        assert!(problems.iter().any(|p| p.contains("not in the form")), "{problems:?}");
        // An empty log needs no head.
        conn.execute("DELETE FROM audit_log", []).unwrap();
        std::fs::remove_file(&head).unwrap();
        assert_eq!(verify(&conn, &key).unwrap().1, Vec::<String>::new());
    }

    #[test]
    fn removing_the_newest_entries_is_detected() {
        let (_d, conn, key) = setup();
        write(&conn, &key, 4);
        conn.execute("DELETE FROM audit_log WHERE id >= 3", []).unwrap();
        let (_, problems) = verify(&conn, &key).unwrap();
        assert_eq!(problems, vec!["entries after entry 2 up to entry 4 were deleted".to_owned()]);
    }
}
