//! Notices (公告/通知) with sign-off receipts: sending to people,
//! departments (with their sub-departments), groups or everyone; each
//! recipient's delivered, read and signed state; withdrawal; reminders; and
//! at a notice's deadline one more reminder to those who have not signed and
//! a summary to each of their managers.
//!
//! The recipients are fixed when a notice is sent, one row each
//! (`storage::NoticesStore`), so the sender's table and the status API read
//! the same rows. Writes go through the writer (`WriteQueue`); pushes follow
//! the commit from a task of their own, so a sender who disconnects at once
//! still reaches everyone online. Urgent notices are pushed on the control
//! lane, ahead of other traffic (a sync in progress included). A recipient
//! who was offline gets everything by `NoticeSync`, which walks their rows'
//! change counter.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use hutong_protocol::v1::{self, NoticeAction, NoticePriority};
use hutong_protocol::{encode_envelope, Envelope, Payload};
use tokio_util::sync::CancellationToken;

use crate::error::ServiceError;
use crate::live::outbound::Lane;
use crate::storage::notices::{Addressee, Changed, Mark, NewNotice};
use crate::storage::now_ms;
use crate::Shared;

/// The answer to one request: `None` when nothing is sent back.
pub type Reply = Result<Option<(Lane, Payload)>, ServiceError>;

pub const MAX_TITLE_CHARS: usize = 200;
pub const MAX_BODY_BYTES: usize = 64 * 1024;
pub const MAX_BUTTONS: usize = 4;
pub const MAX_BUTTON_CHARS: usize = 20;
pub const MAX_COMMENT_CHARS: usize = 500;
/// Most people one notice may reach (departments and everyone expanded).
pub const MAX_RECIPIENTS: usize = 100_000;
/// Most ids one request may name (people, departments, groups, notices).
pub const MAX_IDS: usize = 10_000;
const MAX_SYNC: u32 = 500;
const MAX_STATUS_PAGE: u32 = 1_000;
const MAX_SENT_PAGE: u32 = 200;

/// Who asks, as the notice requests need it.
pub struct Session {
    pub shared: Arc<Shared>,
    pub user_id: u64,
    /// The device name of the session, recorded with a signature.
    pub device: Arc<str>,
    pub conn_id: u64,
}

/// What a sender may do beyond notices to people and groups they know.
#[derive(Debug, Clone, Copy)]
pub struct Rights {
    /// Departments and everyone as targets.
    pub departments: bool,
    pub urgent: bool,
    /// People named must be ones the sender may know of (`directory::knowable`).
    pub only_knowable: bool,
}

impl Rights {
    /// Administrators and publishers may address departments and everyone
    /// and send urgent notices; everyone else addresses people and groups.
    pub async fn of_person(shared: &Shared, user: u64) -> Result<Rights, ServiceError> {
        let roles = shared.db.read(move |st| crate::directory::person(st, user).map(|p| p.roles)).await?;
        let wide = roles.iter().any(|r| r == "admin" || r == "publisher");
        Ok(Rights { departments: wide, urgent: wide, only_knowable: !wide })
    }

    /// An application with the scope to send notices.
    pub fn application() -> Rights {
        Rights { departments: true, urgent: true, only_knowable: false }
    }
}

pub async fn route(s: Session, payload: Payload) -> Reply {
    let reply = |p| Ok(Some((Lane::Live, p)));
    match payload {
        Payload::SendNotice(r) => {
            let rights = Rights::of_person(&s.shared, s.user_id).await?;
            reply(Payload::NoticeSent(send(&s.shared, s.user_id, r, rights).await?))
        }
        Payload::NoticeSync(r) => {
            let limit = if r.limit == 0 { MAX_SYNC } else { r.limit.min(MAX_SYNC) };
            let user = s.user_id;
            let mut notices =
                s.shared.db.read(move |st| st.notices_for(user, r.since_version, limit + 1)).await?;
            let more = notices.len() > limit as usize;
            notices.truncate(limit as usize);
            let version = notices.last().map_or(r.since_version, |n| n.version);
            Ok(Some((Lane::Bulk, Payload::NoticeBatch(v1::NoticeBatch { notices, version, more }))))
        }
        Payload::MarkNotice(r) => mark(&s, r).await,
        Payload::WithdrawNotice(r) => {
            withdraw(&s.shared, s.user_id, r.notice_id).await?;
            reply(Payload::Done(v1::Done {}))
        }
        Payload::RemindNotice(r) => {
            let reminded = remind(&s.shared, s.user_id, r.notice_id).await?;
            reply(Payload::NoticeReminded(v1::NoticeReminded { reminded: reminded as u32 }))
        }
        Payload::GetNoticeStatus(r) => reply(Payload::NoticeStatus(status(&s.shared, s.user_id, r).await?)),
        Payload::ListSentNotices(r) => {
            let limit = if r.limit == 0 { 50 } else { r.limit.min(MAX_SENT_PAGE) };
            let user = s.user_id;
            let notices = s
                .shared
                .db
                .read(move |st| {
                    st.sent_notices(user, r.before_id, limit)?
                        .into_iter()
                        .map(|n| {
                            Ok(v1::SentNotice { counts: Some(st.notice_counts(n.id)?), notice: Some(n) })
                        })
                        .collect::<Result<Vec<_>, ServiceError>>()
                })
                .await?;
            reply(Payload::SentNotices(v1::SentNotices { notices }))
        }
        _ => Err(ServiceError::BadRequest("not a notice request".into())),
    }
}

fn one_line(s: &str) -> bool {
    !s.chars().any(|c| c.is_control())
}

/// The limits of a send, checked before anything is read.
pub fn check(r: &v1::SendNotice) -> Result<(), ServiceError> {
    let bad = |m: &str| Err(ServiceError::BadRequest(m.into()));
    if r.client_id.is_empty() || r.client_id.len() > 64 {
        return bad("client_id must be 1 to 64 bytes");
    }
    let title = r.title.trim();
    if title.is_empty() || !one_line(title) {
        return bad("a notice needs a title of one line");
    }
    if title.chars().count() > MAX_TITLE_CHARS {
        return Err(ServiceError::TooLarge(format!("a title has at most {MAX_TITLE_CHARS} characters")));
    }
    if r.body.len() > MAX_BODY_BYTES {
        return Err(ServiceError::TooLarge(format!(
            "a notice's text has at most {} KiB",
            MAX_BODY_BYTES / 1024
        )));
    }
    if r.body.contains('\0') {
        return bad("the text holds a NUL character");
    }
    if NoticePriority::try_from(r.priority).is_err() {
        return bad("unknown priority");
    }
    if r.deadline_ms != 0 {
        if !r.sign_required {
            return bad("a deadline needs sign-off");
        }
        if r.deadline_ms <= now_ms() {
            return bad("the deadline has passed");
        }
    }
    if r.buttons.len() > MAX_BUTTONS {
        return bad("at most 4 buttons");
    }
    for b in &r.buttons {
        let n = b.trim().chars().count();
        if n == 0 || n > MAX_BUTTON_CHARS || !one_line(b) {
            return bad("a button's label is one line of 1 to 20 characters");
        }
    }
    let t = r.targets.clone().unwrap_or_default();
    if t.users.len() + t.departments.len() + t.groups.len() > MAX_IDS {
        return Err(ServiceError::TooLarge(format!("at most {MAX_IDS} targets")));
    }
    if t.users.is_empty() && t.departments.is_empty() && t.groups.is_empty() && !t.everyone {
        return bad("a notice needs someone to send it to");
    }
    Ok(())
}

fn content_hash(r: &v1::SendNotice) -> Vec<u8> {
    use prost::Message as _;
    use sha2::Digest as _;
    let content = v1::SendNotice { client_id: String::new(), ..r.clone() };
    sha2::Sha256::digest(content.encode_to_vec()).to_vec()
}

/// Resolves the targets into people (with their department now), the
/// sender left out.
fn recipients(
    st: &dyn crate::storage::Store,
    sender: u64,
    t: &v1::NoticeTargets,
    rights: Rights,
) -> Result<Vec<Addressee>, ServiceError> {
    if (t.everyone || !t.departments.is_empty()) && !rights.departments {
        return Err(ServiceError::Forbidden(
            "only administrators and publishers send notices to departments or everyone".into(),
        ));
    }
    let mut people: BTreeSet<u64> = BTreeSet::new();
    let mut found: Vec<Addressee> = Vec::new();
    if !t.users.is_empty() {
        let mut ids: Vec<u64> = t.users.clone();
        ids.sort_unstable();
        ids.dedup();
        if rights.only_knowable {
            let known = crate::directory::knowable(st, sender, &ids)?;
            if ids.iter().any(|id| !known.contains(id)) {
                return Err(ServiceError::NotFound("person"));
            }
        }
        let enabled = st.addressees(&ids)?;
        if enabled.len() != ids.len() {
            return Err(ServiceError::NotFound("person"));
        }
        found.extend(enabled);
    }
    for &g in &t.groups {
        let member = st.membership(g, sender)?;
        let kind = st.conversation_kind(g)?;
        if !member.is_some_and(|m| m.active) || kind != Some(v1::ConversationKind::Group as i32) {
            return Err(ServiceError::NotFound("group"));
        }
        found.extend(st.addressees(&st.active_members(g)?)?);
    }
    for &d in &t.departments {
        st.department_exists(d).map_err(|_| ServiceError::NotFound("department"))?;
    }
    found.extend(st.people_in_departments(&t.departments)?);
    if t.everyone {
        found.extend(st.everyone()?);
    }
    found.retain(|a| a.user_id != sender && people.insert(a.user_id));
    found.sort_unstable();
    if found.is_empty() {
        return Err(ServiceError::BadRequest("nobody to send the notice to".into()));
    }
    if found.len() > MAX_RECIPIENTS {
        return Err(ServiceError::TooLarge(format!("a notice reaches at most {MAX_RECIPIENTS} people")));
    }
    Ok(found)
}

/// Sends a notice as `sender` (a person, or an application's account).
/// A retry with the same `client_id` and content returns the first notice.
pub async fn send(
    shared: &Arc<Shared>,
    sender: u64,
    r: v1::SendNotice,
    rights: Rights,
) -> Result<v1::NoticeSent, ServiceError> {
    check(&r)?;
    if r.priority == NoticePriority::NoticeUrgent as i32 && !rights.urgent {
        return Err(ServiceError::Forbidden("only administrators and publishers send urgent notices".into()));
    }
    let hash = content_hash(&r);
    let earlier = {
        let (client_id, hash) = (r.client_id.clone(), hash.clone());
        move |st: &dyn crate::storage::Store| -> Result<Option<v1::NoticeSent>, ServiceError> {
            match st.notice_by_client_id(sender, &client_id)? {
                Some(h) if h.content_hash == hash => Ok(Some(v1::NoticeSent {
                    notice_id: h.id,
                    recipients: st.notice_counts(h.id)?.recipients,
                    duplicate: true,
                })),
                Some(_) => Err(ServiceError::Conflict("this client_id was used for another notice".into())),
                None => Ok(None),
            }
        }
    };
    let check_earlier = earlier.clone();
    if let Some(sent) = shared.db.read(move |st| check_earlier(st)).await? {
        return Ok(sent);
    }
    let targets = r.targets.clone().unwrap_or_default();
    let people = shared.db.read(move |st| recipients(st, sender, &targets, rights)).await?;
    let notice = NewNotice {
        sender_id: sender,
        client_id: r.client_id.clone(),
        content_hash: hash,
        title: r.title.trim().to_owned(),
        body: r.body.clone(),
        priority: r.priority,
        sign_required: r.sign_required,
        deadline_ms: r.deadline_ms,
        buttons: r.buttons.iter().map(|b| b.trim().to_owned()).collect(),
        targets: targets_json(r.targets.as_ref()),
        sent_at_ms: now_ms(),
        summary_of: 0,
        unsigned_users: Vec::new(),
    };
    let recipients: Arc<[Addressee]> = people.into();
    let duplicate = Arc::new(Mutex::new(None));
    let write = {
        let (notice, recipients, duplicate) = (notice.clone(), recipients.clone(), duplicate.clone());
        Box::new(move |st: &dyn crate::storage::Store| {
            // Two retries may race past the read above: the writer decides.
            if let Some(sent) = earlier(st)? {
                *duplicate.lock().unwrap_or_else(|e| e.into_inner()) = Some(sent);
                return Ok(0);
            }
            st.insert_notice(&notice, &recipients)
        })
    };
    let shared2 = shared.clone();
    // The commit and the pushes run as a task of their own: they happen
    // whatever becomes of the request's connection.
    let task = tokio::spawn(async move {
        let id = shared2.writes.submit(write).await?;
        if let Some(sent) = duplicate.lock().unwrap_or_else(|e| e.into_inner()).take() {
            return Ok(sent);
        }
        let users: Vec<u64> = recipients.iter().map(|a| a.user_id).collect();
        let content = v1::Notice {
            id,
            sender_id: sender,
            title: notice.title.clone(),
            body: notice.body.clone(),
            priority: notice.priority,
            sign_required: notice.sign_required,
            deadline_ms: notice.deadline_ms,
            sent_at_ms: notice.sent_at_ms,
            buttons: notice.buttons.clone(),
            ..Default::default()
        };
        push(&shared2, &users, content);
        if notice.deadline_ms != 0 {
            shared2.notices_changed.notify_one();
        }
        Ok(v1::NoticeSent { notice_id: id, recipients: users.len() as u32, duplicate: false })
    });
    task.await.map_err(|e| ServiceError::Internal(format!("sending a notice: {e}")))?
}

fn targets_json(t: Option<&v1::NoticeTargets>) -> String {
    let t = t.cloned().unwrap_or_default();
    serde_json::json!({
        "users": t.users, "departments": t.departments, "groups": t.groups, "everyone": t.everyone,
    })
    .to_string()
}

/// Pushes a notice to whoever of `users` is online: urgent ones on the
/// control lane, ahead of everything else queued for them.
fn push(shared: &Shared, users: &[u64], notice: v1::Notice) {
    let lane =
        if notice.priority == NoticePriority::NoticeUrgent as i32 { Lane::Control } else { Lane::Live };
    let frame = encode_envelope(&Envelope::new(0, Payload::Notice(notice)));
    shared.hub.push(users, lane, &frame, None);
}

/// Pushes each changed row to its notice's sender.
fn push_progress(shared: &Shared, changed: &[Changed]) {
    for c in changed {
        let progress = v1::NoticeProgress { notice_id: c.notice_id, recipient: Some(c.recipient.clone()) };
        let frame = encode_envelope(&Envelope::new(0, Payload::NoticeProgress(progress)));
        shared.hub.push_user(c.sender_id, Lane::Live, &frame, &[]);
    }
}

async fn mark(s: &Session, r: v1::MarkNotice) -> Reply {
    let action =
        NoticeAction::try_from(r.action).map_err(|_| ServiceError::BadRequest("unknown action".into()))?;
    if r.notice_ids.is_empty() || r.notice_ids.len() > MAX_SYNC as usize {
        return Err(ServiceError::BadRequest("name 1 to 500 notices".into()));
    }
    if r.comment.chars().count() > MAX_COMMENT_CHARS || !one_line(&r.comment) {
        return Err(ServiceError::BadRequest("a comment is one line of at most 500 characters".into()));
    }
    let user = s.user_id;
    let first = r.notice_ids[0];
    let single = matches!(action, NoticeAction::NoticeSign | NoticeAction::NoticeChoose);
    if single {
        if r.notice_ids.len() != 1 {
            return Err(ServiceError::BadRequest("sign or choose one notice at a time".into()));
        }
        let id = r.notice_ids[0];
        let mine = s.shared.db.read(move |st| Ok((st.notice_for(user, id)?, st.notice_head(id)?))).await?;
        let (Some(_), Some(head)) = mine else { return Err(ServiceError::NotFound("notice")) };
        if head.withdrawn {
            return Err(ServiceError::Forbidden("the notice was withdrawn".into()));
        }
        if action == NoticeAction::NoticeSign && !head.sign_required {
            return Err(ServiceError::BadRequest("this notice needs no sign-off".into()));
        }
        if action == NoticeAction::NoticeChoose && !head.buttons.contains(&r.button) {
            return Err(ServiceError::BadRequest("not one of the notice's buttons".into()));
        }
    }
    let changed = Arc::new(Mutex::new(Vec::new()));
    let evented = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let write = {
        let (changed, evented, device) = (changed.clone(), evented.clone(), s.device.to_string());
        Box::new(move |st: &dyn crate::storage::Store| {
            let mark =
                Mark { action, device: &device, button: &r.button, comment: &r.comment, now_ms: now_ms() };
            let rows = st.mark_notices(user, &r.notice_ids, &mark)?;
            // A sign-off of an application's notice is its event, in the
            // same transaction: recorded exactly when the row changed.
            for c in &rows {
                if crate::events::notice_marked(st, action, c)? {
                    evented.store(true, std::sync::atomic::Ordering::Relaxed);
                }
            }
            let n = rows.len() as u64;
            *changed.lock().unwrap_or_else(|e| e.into_inner()) = rows;
            Ok(n)
        })
    };
    s.shared.writes.submit(write).await?;
    if evented.load(std::sync::atomic::Ordering::Relaxed) {
        s.shared.events_recorded.notify_waiters();
    }
    let changed = std::mem::take(&mut *changed.lock().unwrap_or_else(|e| e.into_inner()));
    push_progress(&s.shared, &changed);
    if !single {
        return Ok(Some((Lane::Live, Payload::Done(v1::Done {}))));
    }
    // The row as it is now (also when it had been signed already).
    let notice = s.shared.db.read(move |st| st.notice_for(user, first)).await?;
    let Some(n) = notice else { return Err(ServiceError::NotFound("notice")) };
    if !changed.is_empty() {
        // The person's other devices learn of it at once.
        let frame = encode_envelope(&Envelope::new(0, Payload::Notice(n.clone())));
        s.shared.hub.push_user(user, Lane::Live, &frame, &[s.conn_id]);
    }
    Ok(Some((Lane::Live, Payload::Notice(n))))
}

/// The notice, when `user` sent it or is an administrator.
async fn own_notice(
    shared: &Shared,
    user: u64,
    id: u64,
) -> Result<crate::storage::notices::NoticeHead, ServiceError> {
    let (head, roles) = shared
        .db
        .read(move |st| Ok((st.notice_head(id)?, crate::directory::person(st, user).map(|p| p.roles)?)))
        .await?;
    match head {
        Some(h) if h.summary_of == 0 && (h.sender_id == user || roles.iter().any(|r| r == "admin")) => Ok(h),
        _ => Err(ServiceError::NotFound("notice")),
    }
}

/// Withdraws a notice; its recipients then see it withdrawn.
pub async fn withdraw(shared: &Arc<Shared>, user: u64, id: u64) -> Result<(), ServiceError> {
    own_notice(shared, user, id).await?;
    withdraw_as(shared, id).await
}

/// Withdraws notice `id` (the caller checked the right to).
pub async fn withdraw_as(shared: &Arc<Shared>, id: u64) -> Result<(), ServiceError> {
    let users = Arc::new(Mutex::new(Vec::new()));
    let at = now_ms();
    let write = {
        let users = users.clone();
        Box::new(move |st: &dyn crate::storage::Store| {
            let u = st.withdraw_notice(id, at)?;
            let n = u.len() as u64;
            *users.lock().unwrap_or_else(|e| e.into_inner()) = u;
            Ok(n)
        })
    };
    shared.writes.submit(write).await?;
    let users = std::mem::take(&mut *users.lock().unwrap_or_else(|e| e.into_inner()));
    if let Some(n) = shared.db.read(move |st| st.notice_content(id)).await? {
        push(shared, &users, n);
    }
    Ok(())
}

/// Reminds the recipients who have not signed; returns how many.
pub async fn remind(shared: &Arc<Shared>, user: u64, id: u64) -> Result<usize, ServiceError> {
    let head = own_notice(shared, user, id).await?;
    if !head.sign_required || head.withdrawn {
        return Err(ServiceError::BadRequest("only a notice awaiting sign-off is reminded".into()));
    }
    remind_as(shared, id).await
}

/// Reminds the unsigned recipients of notice `id` (the caller checked the right to).
pub async fn remind_as(shared: &Arc<Shared>, id: u64) -> Result<usize, ServiceError> {
    let users = Arc::new(Mutex::new(Vec::new()));
    let at = now_ms();
    let write = {
        let users = users.clone();
        Box::new(move |st: &dyn crate::storage::Store| {
            let u = st.remind_unsigned(id, at)?;
            let n = u.len() as u64;
            *users.lock().unwrap_or_else(|e| e.into_inner()) = u;
            Ok(n)
        })
    };
    shared.writes.submit(write).await?;
    let users = std::mem::take(&mut *users.lock().unwrap_or_else(|e| e.into_inner()));
    if let Some(mut n) = shared.db.read(move |st| st.notice_content(id)).await? {
        n.reminded_at_ms = at;
        push(shared, &users, n);
    }
    Ok(users.len())
}

/// The per-recipient table, for the sender or an administrator.
pub async fn status(
    shared: &Arc<Shared>,
    user: u64,
    r: v1::GetNoticeStatus,
) -> Result<v1::NoticeStatus, ServiceError> {
    own_notice(shared, user, r.notice_id).await?;
    status_of(shared, r).await
}

/// The per-recipient table of a notice (the caller checked the right to see it).
pub async fn status_of(
    shared: &Arc<Shared>,
    r: v1::GetNoticeStatus,
) -> Result<v1::NoticeStatus, ServiceError> {
    let filter = v1::NoticeFilter::try_from(r.filter)
        .map_err(|_| ServiceError::BadRequest("unknown filter".into()))?;
    let limit = if r.limit == 0 { MAX_STATUS_PAGE } else { r.limit.min(MAX_STATUS_PAGE) };
    shared
        .db
        .read(move |st| {
            let notice = st.notice_content(r.notice_id)?.ok_or(ServiceError::NotFound("notice"))?;
            let counts = st.notice_counts(r.notice_id)?;
            let mut recipients = st.notice_recipients(r.notice_id, filter, r.after_user_id, limit + 1)?;
            let more = recipients.len() > limit as usize;
            recipients.truncate(limit as usize);
            let next = if more { recipients.last().map_or(0, |x| x.user_id) } else { 0 };
            Ok(v1::NoticeStatus {
                notice: Some(notice),
                counts: Some(counts),
                recipients,
                next_after_user_id: next,
            })
        })
        .await
}

/// Handles deadlines as they come: one more reminder to everyone who has not
/// signed, and to each of their managers a summary naming their people.
pub async fn deadlines(shared: Arc<Shared>, stop: CancellationToken) {
    loop {
        let next = match shared.db.read(|st| st.next_deadline()).await {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(error = %e, "reading notice deadlines");
                None
            }
        };
        let wait = match next {
            Some(at) => std::time::Duration::from_millis((at - now_ms()).clamp(0, 60_000) as u64),
            None => std::time::Duration::from_secs(60),
        };
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = shared.notices_changed.notified() => continue,
            _ = tokio::time::sleep(wait) => {}
        }
        let due = match shared.db.read(|st| st.due_notices(now_ms())).await {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(error = %e, "reading due notices");
                continue;
            }
        };
        for id in due {
            if let Err(e) = deadline_passed(&shared, id).await {
                tracing::warn!(notice = id, error = %e, "handling a notice's deadline");
            }
        }
    }
}

#[derive(Default)]
struct DeadlineOutcome {
    reminded: Vec<u64>,
    /// (manager, summary notice)
    summaries: Vec<(u64, v1::Notice)>,
}

async fn deadline_passed(shared: &Arc<Shared>, id: u64) -> Result<(), ServiceError> {
    let outcome = Arc::new(Mutex::new(DeadlineOutcome::default()));
    let at = now_ms();
    let write = {
        let outcome = outcome.clone();
        Box::new(move |st: &dyn crate::storage::Store| {
            let mut out = DeadlineOutcome::default();
            let head = st.notice_head(id)?.ok_or(ServiceError::NotFound("notice"))?;
            if head.sign_required && !head.withdrawn {
                let content = st.notice_content(id)?.ok_or(ServiceError::NotFound("notice"))?;
                out.reminded = st.remind_unsigned(id, at)?;
                let mut teams: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
                for (person, manager) in st.managers_of(&out.reminded)? {
                    teams.entry(manager).or_default().push(person);
                }
                for (manager, unsigned) in teams {
                    let summary = NewNotice {
                        sender_id: head.sender_id,
                        client_id: format!("summary:{id}:{manager}"),
                        content_hash: Vec::new(),
                        title: content.title.clone(),
                        priority: NoticePriority::NoticeImportant as i32,
                        targets: serde_json::json!({ "users": [manager] }).to_string(),
                        sent_at_ms: at,
                        summary_of: id,
                        unsigned_users: unsigned.clone(),
                        ..Default::default()
                    };
                    let summary_id =
                        st.insert_notice(&summary, &[Addressee { user_id: manager, department_id: 0 }])?;
                    out.summaries.push((
                        manager,
                        v1::Notice {
                            id: summary_id,
                            sender_id: head.sender_id,
                            title: summary.title,
                            priority: summary.priority,
                            sent_at_ms: at,
                            summary_of: id,
                            unsigned_users: unsigned,
                            ..Default::default()
                        },
                    ));
                }
            }
            st.finish_deadline(id)?;
            *outcome.lock().unwrap_or_else(|e| e.into_inner()) = out;
            Ok(0)
        })
    };
    shared.writes.submit(write).await?;
    let out = std::mem::take(&mut *outcome.lock().unwrap_or_else(|e| e.into_inner()));
    if !out.reminded.is_empty() {
        if let Some(mut n) = shared.db.read(move |st| st.notice_content(id)).await? {
            n.reminded_at_ms = at;
            push(shared, &out.reminded, n);
        }
    }
    for (manager, summary) in out.summaries {
        push(shared, &[manager], summary);
    }
    Ok(())
}
