//! Notices addressed to me, kept in the cache (content and my state), and
//! the requests about notices: send, sign, choose, withdraw, remind, the
//! per-recipient table. Pushes and `NoticeSync` both land in
//! [`Cache::apply_notices`], which is idempotent: content is replaced, my
//! own state only moves forward, so any order of arrival gives the same row.

use hutong_protocol::v1::{self, NoticeAction, NoticePriority};
use hutong_protocol::Payload;
use rusqlite::{params, OptionalExtension as _};
use serde::Serialize;

use crate::cache::Cache;
use crate::error::ClientError;
use crate::Client;

/// A notice as the UI sees it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CachedNotice {
    pub id: u64,
    pub sender_id: u64,
    pub title: String,
    /// Markdown (a safe subset; never rendered as HTML).
    pub body: String,
    /// "normal", "important" or "urgent".
    pub priority: &'static str,
    pub sign_required: bool,
    pub deadline_ms: i64,
    pub sent_at_ms: i64,
    pub withdrawn_at_ms: i64,
    pub delivered_at_ms: i64,
    pub read_at_ms: i64,
    pub signed_at_ms: i64,
    pub signed_device: String,
    pub reminded_at_ms: i64,
    pub buttons: Vec<String>,
    pub chosen: String,
    pub comment: String,
    /// A manager's summary: the notice it is about (0 otherwise) and who in
    /// their team has not signed it.
    pub summary_of: u64,
    pub unsigned_users: Vec<u64>,
}

/// One recipient's row of a notice's table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RecipientState {
    pub user_id: u64,
    /// Their department when the notice was sent (0: none).
    pub department_id: u64,
    pub delivered_at_ms: i64,
    pub read_at_ms: i64,
    pub signed_at_ms: i64,
    pub signed_device: String,
    pub chosen: String,
    pub comment: String,
    pub reminded_at_ms: i64,
}

impl From<&v1::NoticeRecipient> for RecipientState {
    fn from(r: &v1::NoticeRecipient) -> Self {
        RecipientState {
            user_id: r.user_id,
            department_id: r.department_id,
            delivered_at_ms: r.delivered_at_ms,
            read_at_ms: r.read_at_ms,
            signed_at_ms: r.signed_at_ms,
            signed_device: r.signed_device.clone(),
            chosen: r.chosen.clone(),
            comment: r.comment.clone(),
            reminded_at_ms: r.reminded_at_ms,
        }
    }
}

pub fn priority_name(p: i32) -> &'static str {
    match NoticePriority::try_from(p) {
        Ok(NoticePriority::NoticeImportant) => "important",
        Ok(NoticePriority::NoticeUrgent) => "urgent",
        _ => "normal",
    }
}

pub fn priority_from_name(name: &str) -> Option<NoticePriority> {
    match name {
        "normal" => Some(NoticePriority::NoticeNormal),
        "important" => Some(NoticePriority::NoticeImportant),
        "urgent" => Some(NoticePriority::NoticeUrgent),
        _ => None,
    }
}

impl CachedNotice {
    /// Needs my signature and has none (and was not withdrawn).
    pub fn awaiting_signature(&self) -> bool {
        self.sign_required && self.signed_at_ms == 0 && self.withdrawn_at_ms == 0
    }
}

const COLUMNS: &str = "id, sender_id, title, body, priority, sign_required, deadline_ms, sent_at, withdrawn_at,
    delivered_at, read_at, signed_at, signed_device, reminded_at, buttons, chosen, comment, summary_of, unsigned_users";

fn from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<CachedNotice> {
    Ok(CachedNotice {
        id: r.get(0)?,
        sender_id: r.get(1)?,
        title: r.get(2)?,
        body: r.get(3)?,
        priority: priority_name(r.get(4)?),
        sign_required: r.get(5)?,
        deadline_ms: r.get(6)?,
        sent_at_ms: r.get(7)?,
        withdrawn_at_ms: r.get(8)?,
        delivered_at_ms: r.get(9)?,
        read_at_ms: r.get(10)?,
        signed_at_ms: r.get(11)?,
        signed_device: r.get(12)?,
        reminded_at_ms: r.get(13)?,
        buttons: serde_json::from_str(&r.get::<_, String>(14)?).unwrap_or_default(),
        chosen: r.get(15)?,
        comment: r.get(16)?,
        summary_of: r.get(17)?,
        unsigned_users: serde_json::from_str(&r.get::<_, String>(18)?).unwrap_or_default(),
    })
}

impl Cache {
    /// Stores notices from a push or a sync; returns them as now stored.
    pub fn apply_notices(&mut self, notices: &[v1::Notice]) -> Result<Vec<CachedNotice>, ClientError> {
        let tx = self.conn.transaction()?;
        let mut ids = Vec::with_capacity(notices.len());
        for n in notices {
            // A withdrawn notice keeps its title only; my state only moves forward.
            tx.execute(
                "INSERT INTO notices (id, sender_id, title, body, priority, sign_required, deadline_ms, sent_at,
                     withdrawn_at, delivered_at, read_at, signed_at, signed_device, reminded_at, buttons, chosen,
                     comment, summary_of, unsigned_users)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19)
                 ON CONFLICT (id) DO UPDATE SET
                     title = excluded.title,
                     body = CASE WHEN excluded.withdrawn_at > 0 OR notices.withdrawn_at > 0 THEN '' ELSE excluded.body END,
                     buttons = CASE WHEN excluded.withdrawn_at > 0 OR notices.withdrawn_at > 0 THEN '[]' ELSE excluded.buttons END,
                     withdrawn_at = max(notices.withdrawn_at, excluded.withdrawn_at),
                     delivered_at = CASE WHEN notices.delivered_at > 0 THEN notices.delivered_at ELSE excluded.delivered_at END,
                     read_at = CASE WHEN notices.read_at > 0 THEN notices.read_at ELSE excluded.read_at END,
                     signed_at = CASE WHEN notices.signed_at > 0 THEN notices.signed_at ELSE excluded.signed_at END,
                     signed_device = CASE WHEN notices.signed_at > 0 THEN notices.signed_device ELSE excluded.signed_device END,
                     reminded_at = max(notices.reminded_at, excluded.reminded_at),
                     chosen = CASE WHEN notices.chosen != '' THEN notices.chosen ELSE excluded.chosen END,
                     comment = CASE WHEN notices.chosen != '' THEN notices.comment ELSE excluded.comment END",
                params![
                    n.id,
                    n.sender_id,
                    n.title,
                    if n.withdrawn_at_ms > 0 { "" } else { n.body.as_str() },
                    n.priority,
                    n.sign_required,
                    n.deadline_ms,
                    n.sent_at_ms,
                    n.withdrawn_at_ms,
                    n.delivered_at_ms,
                    n.read_at_ms,
                    n.signed_at_ms,
                    n.signed_device,
                    n.reminded_at_ms,
                    serde_json::to_string(&n.buttons).unwrap_or_default(),
                    n.chosen,
                    n.comment,
                    n.summary_of,
                    serde_json::to_string(&n.unsigned_users).unwrap_or_default(),
                ],
            )?;
            if n.delivered_at_ms > 0 {
                tx.execute("UPDATE notices SET reported = 1 WHERE id = ?1", [n.id])?;
            }
            ids.push(n.id);
        }
        tx.commit()?;
        ids.iter().filter_map(|&id| self.notice(id).transpose()).collect()
    }

    pub fn notice(&self, id: u64) -> Result<Option<CachedNotice>, ClientError> {
        Ok(self
            .conn
            .query_row(&format!("SELECT {COLUMNS} FROM notices WHERE id = ?1"), [id], from_row)
            .optional()?)
    }

    /// My notices: those awaiting my signature first (by deadline, then
    /// newest), then the rest, newest first.
    pub fn notices(&self) -> Result<Vec<CachedNotice>, ClientError> {
        let mut stmt = self.conn.prepare(&format!(
            "SELECT {COLUMNS} FROM notices
             ORDER BY (sign_required = 1 AND signed_at = 0 AND withdrawn_at = 0) DESC,
                      CASE WHEN deadline_ms > 0 AND signed_at = 0 THEN deadline_ms ELSE 9223372036854775807 END,
                      sent_at DESC, id DESC"
        ))?;
        let rows = stmt.query_map([], from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Notices I have not opened (withdrawn ones aside).
    pub fn unread_notices(&self) -> Result<u64, ClientError> {
        Ok(self.conn.query_row(
            "SELECT count(*) FROM notices WHERE read_at = 0 AND withdrawn_at = 0",
            [],
            |r| r.get(0),
        )?)
    }

    pub fn notice_version(&self) -> Result<u64, ClientError> {
        Ok(self.meta("notice_version")?.and_then(|v| v.parse().ok()).unwrap_or(0))
    }

    pub fn set_notice_version(&self, v: u64) -> Result<(), ClientError> {
        self.set_meta("notice_version", &v.to_string())
    }

    /// Notices whose delivery the server has not heard of.
    pub fn unreported_notices(&self) -> Result<Vec<u64>, ClientError> {
        let mut stmt =
            self.conn.prepare("SELECT id FROM notices WHERE reported = 0 ORDER BY id LIMIT 500")?;
        let rows = stmt.query_map([], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn notices_reported(&self, ids: &[u64], at_ms: i64) -> Result<(), ClientError> {
        for id in ids {
            self.conn.execute(
                "UPDATE notices SET reported = 1, delivered_at = CASE delivered_at WHEN 0 THEN ?2 ELSE delivered_at END
                 WHERE id = ?1",
                params![id, at_ms],
            )?;
        }
        Ok(())
    }
}

/// A notice to send.
#[derive(Debug, Clone, Default)]
pub struct NoticeDraft {
    pub title: String,
    pub body: String,
    pub priority: NoticePriority,
    pub sign_required: bool,
    pub deadline_ms: i64,
    pub users: Vec<u64>,
    pub departments: Vec<u64>,
    pub groups: Vec<u64>,
    pub everyone: bool,
    pub buttons: Vec<String>,
}

impl Client {
    /// Sends a notice; answered once it is stored and on its way.
    pub async fn send_notice(&self, d: NoticeDraft) -> Result<v1::NoticeSent, ClientError> {
        let req = v1::SendNotice {
            client_id: uuid::Uuid::now_v7().to_string(),
            title: d.title,
            body: d.body,
            priority: d.priority as i32,
            sign_required: d.sign_required,
            deadline_ms: d.deadline_ms,
            targets: Some(v1::NoticeTargets {
                users: d.users,
                departments: d.departments,
                groups: d.groups,
                everyone: d.everyone,
            }),
            buttons: d.buttons,
        };
        match self.call(Payload::SendNotice(req)).await? {
            Payload::NoticeSent(s) => Ok(s),
            other => Err(ClientError::Protocol(format!("expected a sent notice, got {other:?}"))),
        }
    }

    /// My notices from the cache (awaiting my signature first).
    pub fn notices(&self) -> Result<Vec<CachedNotice>, ClientError> {
        self.inner.cache().notices()
    }

    pub fn notice(&self, id: u64) -> Result<Option<CachedNotice>, ClientError> {
        self.inner.cache().notice(id)
    }

    pub fn unread_notices(&self) -> Result<u64, ClientError> {
        self.inner.cache().unread_notices()
    }

    async fn mark_one(&self, req: v1::MarkNotice) -> Result<CachedNotice, ClientError> {
        match self.call(Payload::MarkNotice(req)).await? {
            Payload::Notice(n) => {
                let stored = self.inner.cache().apply_notices(&[n])?;
                let n = stored.into_iter().next().ok_or(ClientError::Protocol("no notice stored".into()))?;
                self.inner.emit(crate::Event::Notice(n.clone()));
                Ok(n)
            }
            other => Err(ClientError::Protocol(format!("expected a notice, got {other:?}"))),
        }
    }

    /// Marks notices read (opened).
    pub async fn read_notices(&self, ids: &[u64]) -> Result<(), ClientError> {
        let req = v1::MarkNotice {
            notice_ids: ids.to_vec(),
            action: NoticeAction::NoticeRead as i32,
            ..Default::default()
        };
        self.call(Payload::MarkNotice(req)).await?;
        let now = crate::cache::now_ms();
        let stored: Vec<v1::Notice> = ids
            .iter()
            .filter_map(|&id| self.inner.cache().notice(id).ok().flatten())
            .map(|n| v1::Notice { id: n.id, read_at_ms: now, delivered_at_ms: now, ..to_wire(&n) })
            .collect();
        for n in self.inner.cache().apply_notices(&stored)? {
            self.inner.emit(crate::Event::Notice(n));
        }
        Ok(())
    }

    /// Signs a notice (签收); the server records the time and this device.
    pub async fn sign_notice(&self, id: u64) -> Result<CachedNotice, ClientError> {
        self.mark_one(v1::MarkNotice {
            notice_ids: vec![id],
            action: NoticeAction::NoticeSign as i32,
            ..Default::default()
        })
        .await
    }

    /// Chooses one of an interactive notice's buttons.
    pub async fn choose_notice(
        &self,
        id: u64,
        button: &str,
        comment: &str,
    ) -> Result<CachedNotice, ClientError> {
        self.mark_one(v1::MarkNotice {
            notice_ids: vec![id],
            action: NoticeAction::NoticeChoose as i32,
            button: button.into(),
            comment: comment.into(),
        })
        .await
    }

    pub async fn withdraw_notice(&self, id: u64) -> Result<(), ClientError> {
        self.call(Payload::WithdrawNotice(v1::WithdrawNotice { notice_id: id })).await.map(drop)
    }

    /// Reminds everyone who has not signed; returns how many.
    pub async fn remind_notice(&self, id: u64) -> Result<u32, ClientError> {
        match self.call(Payload::RemindNotice(v1::RemindNotice { notice_id: id })).await? {
            Payload::NoticeReminded(r) => Ok(r.reminded),
            other => Err(ClientError::Protocol(format!("expected a reminder count, got {other:?}"))),
        }
    }

    /// One page of a notice's per-recipient table (sender or administrator).
    pub async fn notice_status(
        &self,
        id: u64,
        filter: v1::NoticeFilter,
        after_user_id: u64,
        limit: u32,
    ) -> Result<v1::NoticeStatus, ClientError> {
        let req = v1::GetNoticeStatus { notice_id: id, filter: filter as i32, after_user_id, limit };
        match self.call(Payload::GetNoticeStatus(req)).await? {
            Payload::NoticeStatus(s) => Ok(s),
            other => Err(ClientError::Protocol(format!("expected a notice's status, got {other:?}"))),
        }
    }

    /// The whole table, every page.
    pub async fn notice_status_all(
        &self,
        id: u64,
        filter: v1::NoticeFilter,
    ) -> Result<v1::NoticeStatus, ClientError> {
        let mut all = self.notice_status(id, filter, 0, 0).await?;
        let mut next = all.next_after_user_id;
        while next != 0 {
            let page = self.notice_status(id, filter, next, 0).await?;
            all.recipients.extend(page.recipients);
            next = page.next_after_user_id;
        }
        all.next_after_user_id = 0;
        Ok(all)
    }

    /// Notices I sent, newest first, with their counts.
    pub async fn sent_notices(&self, before_id: u64, limit: u32) -> Result<Vec<v1::SentNotice>, ClientError> {
        match self.call(Payload::ListSentNotices(v1::ListSentNotices { before_id, limit })).await? {
            Payload::SentNotices(s) => Ok(s.notices),
            other => Err(ClientError::Protocol(format!("expected sent notices, got {other:?}"))),
        }
    }
}

fn to_wire(n: &CachedNotice) -> v1::Notice {
    v1::Notice {
        id: n.id,
        sender_id: n.sender_id,
        title: n.title.clone(),
        body: n.body.clone(),
        priority: priority_from_name(n.priority).unwrap_or_default() as i32,
        sign_required: n.sign_required,
        deadline_ms: n.deadline_ms,
        sent_at_ms: n.sent_at_ms,
        withdrawn_at_ms: n.withdrawn_at_ms,
        delivered_at_ms: n.delivered_at_ms,
        read_at_ms: n.read_at_ms,
        signed_at_ms: n.signed_at_ms,
        signed_device: n.signed_device.clone(),
        reminded_at_ms: n.reminded_at_ms,
        buttons: n.buttons.clone(),
        chosen: n.chosen.clone(),
        comment: n.comment.clone(),
        summary_of: n.summary_of,
        unsigned_users: n.unsigned_users.clone(),
        version: 0,
    }
}
