//! Notices an application sends (OA, ERP: "submit your expense report by
//! Friday, sign here"): the request as the integration API takes it, turned
//! into the notices domain's own send from the application's bot account
//! with [`Rights::application`]; the per-recipient table of its own notices
//! with each person's account, name and department; reminders and
//! withdrawal. Departments are expanded with their sub-departments when
//! the notice is sent (`notices.rs`), so someone who joins later does not
//! get it.
//!
//! With an Idempotency-Key the notice's `client_id` is derived from the
//! application and the key, so the notices domain's own dedupe sends it
//! once even when two requests with one key race, or when the server
//! stopped between the send and keeping the answer.

use std::collections::HashMap;
use std::sync::Arc;

use hutong_protocol::v1::{self, NoticePriority};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::apps::messages::{resolve, Recipients};
use crate::error::ServiceError;
use crate::notices::Rights;
use crate::storage::Store;
use crate::Shared;

/// Who a notice goes to: any mix of the lists.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NoticeRecipients {
    #[serde(default)]
    pub user_ids: Vec<u64>,
    #[serde(default)]
    pub accounts: Vec<String>,
    #[serde(default)]
    pub employee_nos: Vec<String>,
    /// Everyone in these departments and the ones below them, when it is sent.
    #[serde(default)]
    pub department_ids: Vec<u64>,
    /// Every enabled person (applications' bots aside).
    #[serde(default)]
    pub everyone: bool,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    #[default]
    Normal,
    Important,
    /// Pushed ahead of other traffic.
    Urgent,
}

impl Priority {
    fn wire(self) -> NoticePriority {
        match self {
            Priority::Normal => NoticePriority::NoticeNormal,
            Priority::Important => NoticePriority::NoticeImportant,
            Priority::Urgent => NoticePriority::NoticeUrgent,
        }
    }

    fn of_wire(p: i32) -> Priority {
        match NoticePriority::try_from(p) {
            Ok(NoticePriority::NoticeImportant) => Priority::Important,
            Ok(NoticePriority::NoticeUrgent) => Priority::Urgent,
            _ => Priority::Normal,
        }
    }
}

/// A deadline: RFC 3339 (`2026-12-11T18:00:00+08:00`) or ms since the epoch.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(untagged)]
pub enum Deadline {
    Ms(i64),
    Rfc3339(String),
}

/// A notice to send.
#[derive(Clone, Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NoticeRequest {
    /// One line, 1 to 200 characters.
    pub title: String,
    /// A Markdown subset (never rendered as HTML), at most 64 KiB.
    #[serde(default)]
    pub body: String,
    #[serde(default)]
    pub priority: Priority,
    /// Each recipient is asked to sign it off (签收).
    #[serde(default)]
    pub sign_required: bool,
    /// Only with `sign_required`: then those who have not signed are
    /// reminded once more and their managers get a summary.
    #[serde(default)]
    pub deadline: Option<Deadline>,
    pub to: NoticeRecipients,
    /// An interactive notice's choices (at most 4, 1 to 20 characters each).
    #[serde(default)]
    pub buttons: Vec<String>,
}

/// What a send did.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct NoticeSentAnswer {
    pub notice_id: u64,
    /// The people it reached (departments expanded, the bot left out).
    pub recipients: u32,
}

fn client_id(app_id: u64, key: Option<&str>) -> String {
    match key {
        Some(key) => {
            let mut h = Sha256::new();
            h.update(b"notice");
            h.update(app_id.to_be_bytes());
            h.update(key.as_bytes());
            format!("api-{}", &hex::encode(h.finalize())[..40])
        }
        None => {
            let mut random = [0u8; 16];
            rand::rng().fill_bytes(&mut random);
            format!("api-{}", hex::encode(random))
        }
    }
}

fn deadline_ms(d: Option<&Deadline>) -> Result<i64, ServiceError> {
    match d {
        None => Ok(0),
        Some(Deadline::Ms(ms)) if *ms > 0 => Ok(*ms),
        Some(Deadline::Ms(_)) => {
            Err(ServiceError::BadRequest("a deadline in ms is a positive number".into()))
        }
        Some(Deadline::Rfc3339(s)) => hutong_protocol::time::parse_rfc3339_ms(s).ok_or_else(|| {
            ServiceError::BadRequest("the deadline is RFC 3339 (2026-12-11T18:00:00+08:00) or ms".into())
        }),
    }
}

/// Turns the request into the notices domain's: people named by id,
/// account or employee number resolved now (unknown ones refused, nothing
/// sent), departments checked and left to the domain to expand.
fn wire_request(
    store: &dyn Store,
    app_id: u64,
    r: &NoticeRequest,
    key: Option<&str>,
) -> Result<v1::SendNotice, ServiceError> {
    let to = &r.to;
    let people = Recipients {
        user_ids: to.user_ids.clone(),
        accounts: to.accounts.clone(),
        employee_nos: to.employee_nos.clone(),
        department_ids: Vec::new(),
    };
    let users = if people == Recipients::default() { Vec::new() } else { resolve(store, &people)? };
    let unknown: Vec<String> = to
        .department_ids
        .iter()
        .filter(|d| store.department_exists(**d).is_err())
        .map(u64::to_string)
        .collect();
    if !unknown.is_empty() {
        return Err(ServiceError::BadRequest(format!(
            "unknown department ids: {}; nothing was sent",
            unknown.join(", ")
        )));
    }
    Ok(v1::SendNotice {
        client_id: client_id(app_id, key),
        title: r.title.clone(),
        body: r.body.clone(),
        priority: r.priority.wire() as i32,
        sign_required: r.sign_required,
        deadline_ms: deadline_ms(r.deadline.as_ref())?,
        targets: Some(v1::NoticeTargets {
            users,
            departments: to.department_ids.clone(),
            groups: Vec::new(),
            everyone: to.everyone,
        }),
        buttons: r.buttons.clone(),
    })
}

/// Sends `r` from the bot `bot` of application `app_id`; answered after
/// the commit. A repeat with the same key (and request) finds the first notice.
pub async fn send(
    shared: &Arc<Shared>,
    app_id: u64,
    bot: u64,
    r: NoticeRequest,
    key: Option<&str>,
) -> Result<NoticeSentAnswer, ServiceError> {
    let key = key.map(str::to_owned);
    let req = shared.db.read(move |st| wire_request(st, app_id, &r, key.as_deref())).await?;
    let sent = crate::notices::send(shared, bot, req, Rights::application()).await?;
    Ok(NoticeSentAnswer { notice_id: sent.notice_id, recipients: sent.recipients })
}

/// The notice `id`, when the application with bot `bot` sent it; else
/// NOT_FOUND, the same as for a notice that does not exist.
pub async fn own(
    shared: &Arc<Shared>,
    bot: u64,
    id: u64,
) -> Result<crate::storage::notices::NoticeHead, ServiceError> {
    match shared.db.read(move |st| st.notice_head(id)).await? {
        Some(h) if h.sender_id == bot && h.summary_of == 0 => Ok(h),
        _ => Err(ServiceError::NotFound("notice")),
    }
}

/// Which recipients a status page lists.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Filter {
    #[default]
    All,
    NotRead,
    NotSigned,
}

/// The notice as its sender sees it (no recipient's state).
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct NoticeSummary {
    pub id: u64,
    pub title: String,
    pub priority: Priority,
    pub sign_required: bool,
    /// ms since the epoch; null: none.
    pub deadline_ms: Option<i64>,
    pub sent_at_ms: i64,
    /// null: not withdrawn.
    pub withdrawn_at_ms: Option<i64>,
    pub buttons: Vec<String>,
}

#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct Counts {
    pub recipients: u32,
    pub delivered: u32,
    pub read: u32,
    pub signed: u32,
}

/// One recipient's row. Times are ms since the epoch; null: not (yet).
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct RecipientRow {
    pub user_id: u64,
    pub account: String,
    pub name: String,
    /// Their department when the notice was sent (null: none).
    pub department_id: Option<u64>,
    pub department: Option<String>,
    pub delivered_at_ms: Option<i64>,
    pub read_at_ms: Option<i64>,
    pub signed_at_ms: Option<i64>,
    /// The device they signed on.
    pub device: Option<String>,
    /// The button they chose, with their comment.
    pub chosen: Option<String>,
    pub comment: Option<String>,
    pub reminded_at_ms: Option<i64>,
}

/// A page of a notice's per-recipient table.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct NoticeStatusAnswer {
    pub notice: NoticeSummary,
    /// Over every recipient, whatever the filter.
    pub counts: Counts,
    /// Ascending by user id.
    pub recipients: Vec<RecipientRow>,
    /// Pass as `after` for the next page; null: no more.
    pub next_after: Option<u64>,
}

fn set(ms: i64) -> Option<i64> {
    (ms != 0).then_some(ms)
}

fn text(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_owned())
}

/// One page of the table of notice `id` (the caller checked it is theirs).
pub async fn status(
    shared: &Arc<Shared>,
    id: u64,
    filter: Filter,
    after: u64,
    limit: u32,
) -> Result<NoticeStatusAnswer, ServiceError> {
    let filter = match filter {
        Filter::All => v1::NoticeFilter::NoticeAll,
        Filter::NotRead => v1::NoticeFilter::NoticeNotRead,
        Filter::NotSigned => v1::NoticeFilter::NoticeNotSigned,
    };
    let req = v1::GetNoticeStatus { notice_id: id, filter: filter as i32, after_user_id: after, limit };
    let status = crate::notices::status_of(shared, req).await?;
    let rows = status.recipients;
    let people = shared
        .db
        .read(move |st| {
            let departments: HashMap<u64, String> =
                st.departments(None)?.into_iter().map(|d| (d.id, d.name)).collect();
            let mut out = Vec::with_capacity(rows.len());
            for r in rows {
                let (account, name) =
                    st.person(r.user_id)?.map(|p| (p.account, p.display_name)).unwrap_or_default();
                let department_id = (r.department_id != 0).then_some(r.department_id);
                out.push(RecipientRow {
                    user_id: r.user_id,
                    account,
                    name,
                    department_id,
                    department: department_id.and_then(|d| departments.get(&d).cloned()),
                    delivered_at_ms: set(r.delivered_at_ms),
                    read_at_ms: set(r.read_at_ms),
                    signed_at_ms: set(r.signed_at_ms),
                    device: text(&r.signed_device),
                    chosen: text(&r.chosen),
                    comment: text(&r.comment),
                    reminded_at_ms: set(r.reminded_at_ms),
                });
            }
            Ok(out)
        })
        .await?;
    let n = status.notice.unwrap_or_default();
    let c = status.counts.unwrap_or_default();
    Ok(NoticeStatusAnswer {
        notice: NoticeSummary {
            id: n.id,
            title: n.title,
            priority: Priority::of_wire(n.priority),
            sign_required: n.sign_required,
            deadline_ms: set(n.deadline_ms),
            sent_at_ms: n.sent_at_ms,
            withdrawn_at_ms: set(n.withdrawn_at_ms),
            buttons: n.buttons,
        },
        counts: Counts { recipients: c.recipients, delivered: c.delivered, read: c.read, signed: c.signed },
        recipients: people,
        next_after: (status.next_after_user_id != 0).then_some(status.next_after_user_id),
    })
}

/// Reminds those who have not signed the application's notice `id`; returns how many.
pub async fn remind(shared: &Arc<Shared>, bot: u64, id: u64) -> Result<usize, ServiceError> {
    let head = own(shared, bot, id).await?;
    if !head.sign_required || head.withdrawn {
        return Err(ServiceError::BadRequest("only a notice awaiting sign-off is reminded".into()));
    }
    crate::notices::remind_as(shared, id).await
}

/// Withdraws the application's notice `id` (again: nothing changes).
pub async fn withdraw(shared: &Arc<Shared>, bot: u64, id: u64) -> Result<(), ServiceError> {
    own(shared, bot, id).await?;
    crate::notices::withdraw_as(shared, id).await
}
