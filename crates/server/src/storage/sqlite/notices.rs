//! The notices' rows in SQLite (`notices`, `notice_recipients`). Every change
//! to a recipient row takes the next value of the `notice_version` setting,
//! so `(user_id, version)` orders a recipient's changes.

use hutong_protocol::v1;
use rusqlite::{params, params_from_iter, Connection, OptionalExtension as _};

use super::{set_setting, setting};
use crate::error::ServiceError;
use crate::storage::notices::{Addressee, Changed, NewNotice, NoticeHead, NoticesStore};

/// Enabled people, applications' accounts left out.
const PEOPLE: &str = "u.disabled = 0 AND u.deleted = 0 AND (',' || u.roles || ',') NOT LIKE '%,bot,%'";

const NOTICE_COLUMNS: &str = "n.id, n.sender_id, n.title, n.body, n.priority, n.sign_required, n.deadline_ms,
    n.sent_at, n.withdrawn_at, n.buttons, n.summary_of, n.unsigned_users";

const RECIPIENT_COLUMNS: &str =
    "r.delivered_at, r.read_at, r.signed_at, r.signed_device, r.reminded_at, r.version, r.chosen, r.comment";

fn json_list<T: serde::de::DeserializeOwned>(s: &str) -> Vec<T> {
    serde_json::from_str(s).unwrap_or_default()
}

/// A notice's content from `NOTICE_COLUMNS` at column 0. A withdrawn notice
/// keeps only its title.
fn notice_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<v1::Notice> {
    let withdrawn_at_ms: i64 = r.get(8)?;
    let withdrawn = withdrawn_at_ms != 0;
    Ok(v1::Notice {
        id: r.get(0)?,
        sender_id: r.get(1)?,
        title: r.get(2)?,
        body: if withdrawn { String::new() } else { r.get(3)? },
        priority: r.get(4)?,
        sign_required: r.get(5)?,
        deadline_ms: r.get(6)?,
        sent_at_ms: r.get(7)?,
        withdrawn_at_ms,
        buttons: if withdrawn { Vec::new() } else { json_list(&r.get::<_, String>(9)?) },
        summary_of: r.get(10)?,
        unsigned_users: json_list(&r.get::<_, String>(11)?),
        ..Default::default()
    })
}

/// A notice with the recipient's state (`RECIPIENT_COLUMNS` after `NOTICE_COLUMNS`).
fn recipient_notice_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<v1::Notice> {
    let mut n = notice_from_row(r)?;
    n.delivered_at_ms = r.get(12)?;
    n.read_at_ms = r.get(13)?;
    n.signed_at_ms = r.get(14)?;
    n.signed_device = r.get(15)?;
    n.reminded_at_ms = r.get(16)?;
    n.version = r.get(17)?;
    n.chosen = r.get(18)?;
    n.comment = r.get(19)?;
    Ok(n)
}

const RECIPIENT_ROW: &str =
    "user_id, department_id, delivered_at, read_at, signed_at, signed_device, chosen, comment, reminded_at";

fn recipient_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<v1::NoticeRecipient> {
    Ok(v1::NoticeRecipient {
        user_id: r.get(0)?,
        department_id: r.get::<_, Option<u64>>(1)?.unwrap_or(0),
        delivered_at_ms: r.get(2)?,
        read_at_ms: r.get(3)?,
        signed_at_ms: r.get(4)?,
        signed_device: r.get(5)?,
        chosen: r.get(6)?,
        comment: r.get(7)?,
        reminded_at_ms: r.get(8)?,
    })
}

fn head_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<NoticeHead> {
    Ok(NoticeHead {
        id: r.get(0)?,
        sender_id: r.get(1)?,
        content_hash: r.get(2)?,
        sign_required: r.get(3)?,
        withdrawn: r.get::<_, i64>(4)? != 0,
        deadline_ms: r.get(5)?,
        buttons: json_list(&r.get::<_, String>(6)?),
        summary_of: r.get(7)?,
    })
}

const HEAD_COLUMNS: &str =
    "id, sender_id, content_hash, sign_required, withdrawn_at, deadline_ms, buttons, summary_of";

/// Takes `n` values of the change counter; returns the first.
fn take_versions(conn: &Connection, n: u64) -> rusqlite::Result<u64> {
    let last: u64 = setting(conn, "notice_version")?.parse().unwrap_or(0);
    set_setting(conn, "notice_version", &(last + n).to_string())?;
    Ok(last + 1)
}

/// Gives each listed recipient row of `id` a new version.
fn touch(conn: &Connection, id: u64, users: &[u64]) -> rusqlite::Result<()> {
    let mut v = take_versions(conn, users.len() as u64)?;
    let mut stmt = conn
        .prepare_cached("UPDATE notice_recipients SET version = ?3 WHERE notice_id = ?1 AND user_id = ?2")?;
    for u in users {
        stmt.execute(params![id, u, v])?;
        v += 1;
    }
    Ok(())
}

fn addressees(conn: &Connection, sql: &str, args: &[u64]) -> Result<Vec<Addressee>, ServiceError> {
    let mut stmt = conn.prepare(sql)?;
    let rows = stmt.query_map(params_from_iter(args), |r| {
        Ok(Addressee { user_id: r.get(0)?, department_id: r.get::<_, Option<u64>>(1)?.unwrap_or(0) })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

fn placeholders(n: usize) -> String {
    vec!["?"; n].join(",")
}

impl NoticesStore for Connection {
    fn notice_by_client_id(&self, sender: u64, client_id: &str) -> Result<Option<NoticeHead>, ServiceError> {
        Ok(self
            .prepare_cached(&format!(
                "SELECT {HEAD_COLUMNS} FROM notices WHERE sender_id = ?1 AND client_id = ?2"
            ))?
            .query_row(params![sender, client_id], head_from_row)
            .optional()?)
    }

    fn notice_head(&self, id: u64) -> Result<Option<NoticeHead>, ServiceError> {
        Ok(self
            .prepare_cached(&format!("SELECT {HEAD_COLUMNS} FROM notices WHERE id = ?1"))?
            .query_row([id], head_from_row)
            .optional()?)
    }

    fn insert_notice(&self, n: &NewNotice, recipients: &[Addressee]) -> Result<u64, ServiceError> {
        self.prepare_cached(
            "INSERT INTO notices (sender_id, client_id, content_hash, title, body, priority, sign_required,
                 deadline_ms, buttons, targets, sent_at, summary_of, unsigned_users)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
        )?
        .execute(params![
            n.sender_id,
            n.client_id,
            n.content_hash,
            n.title,
            n.body,
            n.priority,
            n.sign_required,
            n.deadline_ms,
            serde_json::to_string(&n.buttons).unwrap_or_default(),
            n.targets,
            n.sent_at_ms,
            n.summary_of,
            serde_json::to_string(&n.unsigned_users).unwrap_or_default(),
        ])?;
        let id = self.last_insert_rowid() as u64;
        let mut v = take_versions(self, recipients.len() as u64)?;
        let mut stmt = self.prepare_cached(
            "INSERT INTO notice_recipients (notice_id, user_id, department_id, version) VALUES (?1, ?2, ?3, ?4)",
        )?;
        for a in recipients {
            let dept = (a.department_id != 0).then_some(a.department_id);
            stmt.execute(params![id, a.user_id, dept, v])?;
            v += 1;
        }
        Ok(id)
    }

    fn people_in_departments(&self, departments: &[u64]) -> Result<Vec<Addressee>, ServiceError> {
        if departments.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!(
            "WITH RECURSIVE t(id) AS (
                 SELECT id FROM departments WHERE id IN ({}) AND deleted = 0
                 UNION SELECT d.id FROM departments d JOIN t ON d.parent_id = t.id WHERE d.deleted = 0)
             SELECT u.id, u.primary_department_id FROM users u
             WHERE {PEOPLE} AND (u.primary_department_id IN (SELECT id FROM t)
                 OR u.id IN (SELECT ud.user_id FROM user_departments ud WHERE ud.department_id IN (SELECT id FROM t)))
             ORDER BY u.id",
            placeholders(departments.len())
        );
        addressees(self, &sql, departments)
    }

    fn everyone(&self) -> Result<Vec<Addressee>, ServiceError> {
        addressees(
            self,
            &format!("SELECT u.id, u.primary_department_id FROM users u WHERE {PEOPLE} ORDER BY u.id"),
            &[],
        )
    }

    fn addressees(&self, users: &[u64]) -> Result<Vec<Addressee>, ServiceError> {
        if users.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT u.id, u.primary_department_id FROM users u WHERE u.id IN ({}) AND u.disabled = 0 AND u.deleted = 0
             ORDER BY u.id",
            placeholders(users.len())
        );
        addressees(self, &sql, users)
    }

    fn notices_for(&self, user: u64, since: u64, limit: u32) -> Result<Vec<v1::Notice>, ServiceError> {
        let mut stmt = self.prepare_cached(&format!(
            "SELECT {NOTICE_COLUMNS}, {RECIPIENT_COLUMNS} FROM notice_recipients r JOIN notices n ON n.id = r.notice_id
             WHERE r.user_id = ?1 AND r.version > ?2 ORDER BY r.version LIMIT ?3"
        ))?;
        let rows = stmt.query_map(params![user, since, limit], recipient_notice_from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn notice_for(&self, user: u64, id: u64) -> Result<Option<v1::Notice>, ServiceError> {
        Ok(self
            .prepare_cached(&format!(
                "SELECT {NOTICE_COLUMNS}, {RECIPIENT_COLUMNS} FROM notice_recipients r JOIN notices n ON n.id = r.notice_id
                 WHERE r.user_id = ?1 AND r.notice_id = ?2"
            ))?
            .query_row(params![user, id], recipient_notice_from_row)
            .optional()?)
    }

    fn notice_content(&self, id: u64) -> Result<Option<v1::Notice>, ServiceError> {
        Ok(self
            .prepare_cached(&format!("SELECT {NOTICE_COLUMNS} FROM notices n WHERE n.id = ?1"))?
            .query_row([id], notice_from_row)
            .optional()?)
    }

    fn mark_notices(
        &self,
        user: u64,
        ids: &[u64],
        action: v1::NoticeAction,
        device: &str,
        button: &str,
        comment: &str,
        now_ms: i64,
    ) -> Result<Vec<Changed>, ServiceError> {
        use v1::NoticeAction as A;
        // Only what moves a row forward changes it: a repeated report, or a
        // report about a withdrawn notice, changes nothing.
        let update = match action {
            A::NoticeDelivered => {
                "UPDATE notice_recipients SET delivered_at = ?3
                 WHERE notice_id = ?1 AND user_id = ?2 AND delivered_at = 0"
            }
            A::NoticeRead => {
                "UPDATE notice_recipients SET read_at = ?3,
                 delivered_at = CASE delivered_at WHEN 0 THEN ?3 ELSE delivered_at END
                 WHERE notice_id = ?1 AND user_id = ?2 AND read_at = 0"
            }
            A::NoticeSign => {
                "UPDATE notice_recipients SET signed_at = ?3, signed_device = ?4,
                 read_at = CASE read_at WHEN 0 THEN ?3 ELSE read_at END,
                 delivered_at = CASE delivered_at WHEN 0 THEN ?3 ELSE delivered_at END
                 WHERE notice_id = ?1 AND user_id = ?2 AND signed_at = 0"
            }
            A::NoticeChoose => {
                "UPDATE notice_recipients SET chosen = ?5, comment = ?6,
                 read_at = CASE read_at WHEN 0 THEN ?3 ELSE read_at END,
                 delivered_at = CASE delivered_at WHEN 0 THEN ?3 ELSE delivered_at END
                 WHERE notice_id = ?1 AND user_id = ?2 AND chosen = ''"
            }
        };
        let mut changed_ids = Vec::new();
        {
            let mut live = self.prepare_cached("SELECT withdrawn_at FROM notices WHERE id = ?1")?;
            let mut stmt = self.prepare_cached(update)?;
            for &id in ids {
                let withdrawn: Option<i64> = live.query_row([id], |r| r.get(0)).optional()?;
                if withdrawn != Some(0) {
                    continue;
                }
                // Each statement names only the first of these it needs.
                let all: [&dyn rusqlite::ToSql; 6] = [&id, &user, &now_ms, &device, &button, &comment];
                let used = stmt.parameter_count();
                if stmt.execute(&all[..used])? > 0 {
                    changed_ids.push(id);
                }
            }
        }
        let mut out = Vec::with_capacity(changed_ids.len());
        for id in changed_ids {
            touch(self, id, &[user])?;
            let sender_id: u64 =
                self.query_row("SELECT sender_id FROM notices WHERE id = ?1", [id], |r| r.get(0))?;
            let recipient = self
                .prepare_cached(&format!(
                    "SELECT {RECIPIENT_ROW} FROM notice_recipients WHERE notice_id = ?1 AND user_id = ?2"
                ))?
                .query_row(params![id, user], recipient_from_row)?;
            out.push(Changed { notice_id: id, sender_id, recipient });
        }
        Ok(out)
    }

    fn withdraw_notice(&self, id: u64, now_ms: i64) -> Result<Vec<u64>, ServiceError> {
        let n = self.execute(
            "UPDATE notices SET withdrawn_at = ?2 WHERE id = ?1 AND withdrawn_at = 0",
            params![id, now_ms],
        )?;
        if n == 0 {
            return Ok(Vec::new());
        }
        let users: Vec<u64> = self
            .prepare_cached("SELECT user_id FROM notice_recipients WHERE notice_id = ?1 ORDER BY user_id")?
            .query_map([id], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        touch(self, id, &users)?;
        Ok(users)
    }

    fn remind_unsigned(&self, id: u64, now_ms: i64) -> Result<Vec<u64>, ServiceError> {
        let users: Vec<u64> = self
            .prepare_cached(
                "SELECT user_id FROM notice_recipients WHERE notice_id = ?1 AND signed_at = 0 ORDER BY user_id",
            )?
            .query_map([id], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        self.execute(
            "UPDATE notice_recipients SET reminded_at = ?2 WHERE notice_id = ?1 AND signed_at = 0",
            params![id, now_ms],
        )?;
        touch(self, id, &users)?;
        Ok(users)
    }

    fn notice_counts(&self, id: u64) -> Result<v1::NoticeCounts, ServiceError> {
        Ok(self
            .prepare_cached(
                "SELECT count(*), coalesce(sum(delivered_at > 0), 0), coalesce(sum(read_at > 0), 0),
                        coalesce(sum(signed_at > 0), 0)
                 FROM notice_recipients WHERE notice_id = ?1",
            )?
            .query_row([id], |r| {
                Ok(v1::NoticeCounts {
                    recipients: r.get(0)?,
                    delivered: r.get(1)?,
                    read: r.get(2)?,
                    signed: r.get(3)?,
                })
            })?)
    }

    fn notice_recipients(
        &self,
        id: u64,
        filter: v1::NoticeFilter,
        after_user: u64,
        limit: u32,
    ) -> Result<Vec<v1::NoticeRecipient>, ServiceError> {
        let cond = match filter {
            v1::NoticeFilter::NoticeAll => "",
            v1::NoticeFilter::NoticeNotRead => "AND read_at = 0",
            v1::NoticeFilter::NoticeNotSigned => "AND signed_at = 0",
        };
        let mut stmt = self.prepare_cached(&format!(
            "SELECT {RECIPIENT_ROW} FROM notice_recipients WHERE notice_id = ?1 AND user_id > ?2 {cond}
             ORDER BY user_id LIMIT ?3"
        ))?;
        let rows = stmt.query_map(params![id, after_user, limit], recipient_from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn sent_notices(&self, sender: u64, before_id: u64, limit: u32) -> Result<Vec<v1::Notice>, ServiceError> {
        let before = if before_id == 0 { i64::MAX as u64 } else { before_id };
        let mut stmt = self.prepare_cached(&format!(
            "SELECT {NOTICE_COLUMNS} FROM notices n WHERE n.sender_id = ?1 AND n.id < ?2 AND n.summary_of = 0
             ORDER BY n.id DESC LIMIT ?3"
        ))?;
        let rows = stmt.query_map(params![sender, before, limit], notice_from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn due_notices(&self, now_ms: i64) -> Result<Vec<u64>, ServiceError> {
        let mut stmt = self.prepare_cached(
            "SELECT id FROM notices WHERE deadline_ms > 0 AND deadline_done = 0 AND deadline_ms <= ?1 ORDER BY deadline_ms",
        )?;
        let rows = stmt.query_map([now_ms], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn next_deadline(&self) -> Result<Option<i64>, ServiceError> {
        Ok(self
            .prepare_cached(
                "SELECT min(deadline_ms) FROM notices WHERE deadline_ms > 0 AND deadline_done = 0",
            )?
            .query_row([], |r| r.get(0))?)
    }

    fn finish_deadline(&self, id: u64) -> Result<(), ServiceError> {
        self.execute("UPDATE notices SET deadline_done = 1 WHERE id = ?1", [id])?;
        Ok(())
    }

    fn managers_of(&self, users: &[u64]) -> Result<Vec<(u64, u64)>, ServiceError> {
        let mut out = Vec::new();
        let mut stmt = self.prepare_cached(
            "SELECT u.manager_id FROM users u JOIN users m ON m.id = u.manager_id
             WHERE u.id = ?1 AND m.disabled = 0 AND m.deleted = 0",
        )?;
        for &u in users {
            if let Some(Some(m)) = stmt.query_row([u], |r| r.get::<_, Option<u64>>(0)).optional()? {
                out.push((u, m));
            }
        }
        Ok(out)
    }
}
