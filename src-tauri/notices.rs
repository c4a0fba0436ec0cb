//! The notices commands (公告/通知 with sign-off): my notices from the
//! client core's cache, signing and choosing, sending, the sender's
//! per-recipient table with names and departments, reminding, withdrawing,
//! and the table's export to CSV. Every rule (who may send what, limits)
//! lives in the client core and on the server; this file only shapes views.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use hutong_client::notices::{priority_from_name, priority_name, CachedNotice, NoticeDraft};
use hutong_client::Client;
use hutong_protocol::v1;
use serde::{Deserialize, Serialize};
use tauri::{AppHandle, State};

use crate::state::AppState;
use crate::views::{AppError, CmdResult, Names};

fn client(state: &AppState) -> CmdResult<Client> {
    state.client().ok_or_else(|| AppError::new("NOT_SIGNED_IN", "not signed in"))
}

/// A notice addressed to me, with its sender's name.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NoticeView {
    #[serde(flatten)]
    pub notice: CachedNotice,
    pub sender_name: String,
}

/// A notice's content as its sender sees it (no recipient's state).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NoticeContentView {
    pub id: u64,
    pub title: String,
    pub body: String,
    pub priority: &'static str,
    pub sign_required: bool,
    pub deadline_ms: i64,
    pub sent_at_ms: i64,
    pub withdrawn_at_ms: i64,
    pub buttons: Vec<String>,
}

impl From<&v1::Notice> for NoticeContentView {
    fn from(n: &v1::Notice) -> Self {
        NoticeContentView {
            id: n.id,
            title: n.title.clone(),
            body: n.body.clone(),
            priority: priority_name(n.priority),
            sign_required: n.sign_required,
            deadline_ms: n.deadline_ms,
            sent_at_ms: n.sent_at_ms,
            withdrawn_at_ms: n.withdrawn_at_ms,
            buttons: n.buttons.clone(),
        }
    }
}

#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CountsView {
    pub recipients: u32,
    pub delivered: u32,
    pub read: u32,
    pub signed: u32,
}

impl From<Option<&v1::NoticeCounts>> for CountsView {
    fn from(c: Option<&v1::NoticeCounts>) -> Self {
        c.map_or_else(CountsView::default, |c| CountsView {
            recipients: c.recipients,
            delivered: c.delivered,
            read: c.read,
            signed: c.signed,
        })
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SentNoticeView {
    pub notice: NoticeContentView,
    pub counts: CountsView,
}

/// One recipient's row, with the names people read.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RecipientView {
    pub user_id: u64,
    pub name: String,
    pub department_id: u64,
    pub department_name: String,
    pub delivered_at_ms: i64,
    pub read_at_ms: i64,
    pub signed_at_ms: i64,
    pub signed_device: String,
    pub chosen: String,
    pub comment: String,
    pub reminded_at_ms: i64,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NoticeStatusView {
    pub notice: Option<NoticeContentView>,
    pub counts: CountsView,
    pub recipients: Vec<RecipientView>,
    /// 0: no more pages.
    pub next_after_user_id: u64,
}

/// What the composer offers: the server refuses the rest anyway, this only
/// keeps options off the screen that would be refused.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NoticeRights {
    /// Departments and everyone as targets, and urgent notices.
    pub wide: bool,
}

/// A notice to send, as the composer fills it in.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NoticeDraftInput {
    pub title: String,
    pub body: String,
    pub priority: String,
    pub sign_required: bool,
    #[serde(default)]
    pub deadline_ms: i64,
    #[serde(default)]
    pub user_ids: Vec<u64>,
    #[serde(default)]
    pub department_ids: Vec<u64>,
    #[serde(default)]
    pub group_ids: Vec<u64>,
    #[serde(default)]
    pub everyone: bool,
    #[serde(default)]
    pub buttons: Vec<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NoticeSentView {
    pub notice_id: u64,
    pub recipients: u32,
}

fn filter_of(name: &str) -> CmdResult<v1::NoticeFilter> {
    match name {
        "all" => Ok(v1::NoticeFilter::NoticeAll),
        "notRead" => Ok(v1::NoticeFilter::NoticeNotRead),
        "notSigned" => Ok(v1::NoticeFilter::NoticeNotSigned),
        other => Err(AppError::new("BAD_REQUEST", format!("unknown filter {other:?}"))),
    }
}

async fn notice_views(client: &Client, notices: Vec<CachedNotice>) -> Vec<NoticeView> {
    let mut names = Names::new(client);
    names.prefetch(notices.iter().map(|n| n.sender_id).collect::<Vec<_>>()).await;
    notices
        .into_iter()
        .map(|n| NoticeView {
            sender_name: if n.sender_id == 0 { String::new() } else { names.get(n.sender_id) },
            notice: n,
        })
        .collect()
}

/// Names people and departments of a table's page (department names from
/// the cached directory; a department the cache lacks shows as `#id`).
async fn recipient_views(client: &Client, rows: &[v1::NoticeRecipient]) -> Vec<RecipientView> {
    let mut names = Names::new(client);
    names.prefetch(rows.iter().map(|r| r.user_id).collect::<Vec<_>>()).await;
    let mut departments: HashMap<u64, String> = HashMap::new();
    rows.iter()
        .map(|r| {
            let department_name = match r.department_id {
                0 => String::new(),
                id => departments
                    .entry(id)
                    .or_insert_with(|| {
                        client
                            .directory_department(id)
                            .ok()
                            .flatten()
                            .map_or_else(|| format!("#{id}"), |d| d.name)
                    })
                    .clone(),
            };
            RecipientView {
                user_id: r.user_id,
                name: names.get(r.user_id),
                department_id: r.department_id,
                department_name,
                delivered_at_ms: r.delivered_at_ms,
                read_at_ms: r.read_at_ms,
                signed_at_ms: r.signed_at_ms,
                signed_device: r.signed_device.clone(),
                chosen: r.chosen.clone(),
                comment: r.comment.clone(),
                reminded_at_ms: r.reminded_at_ms,
            }
        })
        .collect()
}

/// My notices: awaiting my signature first, then the rest, newest first.
#[tauri::command]
pub async fn notices(state: State<'_, AppState>) -> CmdResult<Vec<NoticeView>> {
    let client = client(&state)?;
    let list = client.notices()?;
    Ok(notice_views(&client, list).await)
}

/// One of my notices with its sender's name (a person arriving from a notification).
#[tauri::command]
pub async fn notice(state: State<'_, AppState>, id: u64) -> CmdResult<Option<NoticeView>> {
    let client = client(&state)?;
    let Some(n) = client.notice(id)? else { return Ok(None) };
    Ok(notice_views(&client, vec![n]).await.pop())
}

#[tauri::command]
pub fn unread_notices(state: State<'_, AppState>) -> CmdResult<u64> {
    Ok(client(&state)?.unread_notices()?)
}

/// Marks notices read (opened); the tray's total follows.
#[tauri::command]
pub async fn read_notices(app: AppHandle, state: State<'_, AppState>, ids: Vec<u64>) -> CmdResult<()> {
    let client = client(&state)?;
    client.read_notices(&ids).await?;
    crate::desktop::refresh_unread(&app, &client);
    Ok(())
}

/// Signs a notice (签收); the server records the time and this device.
#[tauri::command]
pub async fn sign_notice(app: AppHandle, state: State<'_, AppState>, id: u64) -> CmdResult<NoticeView> {
    let client = client(&state)?;
    let n = client.sign_notice(id).await?;
    crate::desktop::refresh_unread(&app, &client);
    notice_views(&client, vec![n]).await.pop().ok_or_else(|| AppError::new("INTERNAL", "no notice"))
}

/// Chooses one of an interactive notice's buttons.
#[tauri::command]
pub async fn choose_notice(
    app: AppHandle,
    state: State<'_, AppState>,
    id: u64,
    button: String,
    comment: String,
) -> CmdResult<NoticeView> {
    let client = client(&state)?;
    let n = client.choose_notice(id, &button, &comment).await?;
    crate::desktop::refresh_unread(&app, &client);
    notice_views(&client, vec![n]).await.pop().ok_or_else(|| AppError::new("INTERNAL", "no notice"))
}

/// What the composer may offer me (from my roles in the cached directory).
#[tauri::command]
pub fn notice_rights(state: State<'_, AppState>) -> CmdResult<NoticeRights> {
    let client = client(&state)?;
    let me = client.directory_person_by_id(client.user_id())?;
    let wide = me.is_some_and(|p| p.roles.iter().any(|r| r == "admin" || r == "publisher"));
    Ok(NoticeRights { wide })
}

#[tauri::command]
pub async fn send_notice(state: State<'_, AppState>, draft: NoticeDraftInput) -> CmdResult<NoticeSentView> {
    let client = client(&state)?;
    let priority = priority_from_name(&draft.priority)
        .ok_or_else(|| AppError::new("BAD_REQUEST", format!("unknown priority {:?}", draft.priority)))?;
    let sent = client
        .send_notice(NoticeDraft {
            title: draft.title,
            body: draft.body,
            priority,
            sign_required: draft.sign_required,
            deadline_ms: draft.deadline_ms,
            users: draft.user_ids,
            departments: draft.department_ids,
            groups: draft.group_ids,
            everyone: draft.everyone,
            buttons: draft.buttons,
        })
        .await?;
    Ok(NoticeSentView { notice_id: sent.notice_id, recipients: sent.recipients })
}

/// Notices I sent, newest first, with their counts.
#[tauri::command]
pub async fn sent_notices(
    state: State<'_, AppState>,
    before_id: u64,
    limit: u32,
) -> CmdResult<Vec<SentNoticeView>> {
    let client = client(&state)?;
    let sent = client.sent_notices(before_id, limit).await?;
    Ok(sent
        .iter()
        .filter_map(|s| {
            let notice = s.notice.as_ref()?;
            Some(SentNoticeView { notice: notice.into(), counts: s.counts.as_ref().into() })
        })
        .collect())
}

/// One page of a notice's per-recipient table (its sender or an administrator).
#[tauri::command]
pub async fn notice_status(
    state: State<'_, AppState>,
    id: u64,
    filter: String,
    after_user_id: u64,
    limit: u32,
) -> CmdResult<NoticeStatusView> {
    let client = client(&state)?;
    let status = client.notice_status(id, filter_of(&filter)?, after_user_id, limit).await?;
    Ok(NoticeStatusView {
        notice: status.notice.as_ref().map(Into::into),
        counts: status.counts.as_ref().into(),
        recipients: recipient_views(&client, &status.recipients).await,
        next_after_user_id: status.next_after_user_id,
    })
}

/// Reminds everyone who has not signed; returns how many.
#[tauri::command]
pub async fn remind_notice(state: State<'_, AppState>, id: u64) -> CmdResult<u32> {
    Ok(client(&state)?.remind_notice(id).await?)
}

#[tauri::command]
pub async fn withdraw_notice(state: State<'_, AppState>, id: u64) -> CmdResult<()> {
    client(&state)?.withdraw_notice(id).await?;
    Ok(())
}

/// Writes a notice's whole table (every page, with `filter`) as CSV into
/// the download folder, or into a folder the person picks when `choose`;
/// returns the file's path (null: the picker was cancelled). Times are
/// written in the person's time zone, `utc_offset_minutes` east of UTC.
#[tauri::command]
pub async fn export_notice_csv(
    app: AppHandle,
    state: State<'_, AppState>,
    id: u64,
    filter: String,
    choose: bool,
    utc_offset_minutes: i32,
) -> CmdResult<Option<String>> {
    let client = client(&state)?;
    let zh = state.settings().chinese(&state.system_locale);
    let dir = if choose {
        let title = if zh { "选择导出到的文件夹" } else { "Choose where to save the table" };
        match crate::commands::pick(&app, title, zh, true, true, Some(state.download_dir())).await {
            Some(picked) => match picked.into_iter().next() {
                Some(dir) => dir,
                None => return Ok(None),
            },
            None => return Ok(None),
        }
    } else {
        state.download_dir()
    };
    let status = client.notice_status_all(id, filter_of(&filter)?).await?;
    let rows = recipient_views(&client, &status.recipients).await;
    let title = status.notice.as_ref().map(|n| n.title.clone()).unwrap_or_default();
    let csv = table_csv(&rows, zh, i64::from(utc_offset_minutes));
    let path =
        tauri::async_runtime::spawn_blocking(move || write_new(&dir, &file_stem(&title, id), csv.as_bytes()))
            .await
            .map_err(|e| AppError::new("INTERNAL", e.to_string()))?
            .map_err(|e| AppError::new("WRITE_FAILED", format!("could not write the table: {e}")))?;
    Ok(Some(path.to_string_lossy().into_owned()))
}

/// Opens a link of a notice's body in the system browser: http, https and
/// mailto only (a `javascript:` or `file:` link never opens).
#[tauri::command]
pub fn open_link(url: String) -> CmdResult<()> {
    if !safe_link(&url) {
        return Err(AppError::new("FORBIDDEN", "only http, https and mailto links open"));
    }
    tauri_plugin_opener::open_url(&url, None::<&str>).map_err(|e| AppError::new("OPEN_FAILED", e.to_string()))
}

fn safe_link(url: &str) -> bool {
    let lower = url.trim_start().to_ascii_lowercase();
    (lower.starts_with("https://") || lower.starts_with("http://") || lower.starts_with("mailto:"))
        && !url.chars().any(char::is_control)
}

/// A file name from a notice's title: characters no file system takes, and
/// leading dots, replaced; at most 60 characters.
fn file_stem(title: &str, id: u64) -> String {
    let clean: String = title
        .chars()
        .map(|c| {
            if matches!(c, '/' | '\\' | ':' | '*' | '?' | '"' | '<' | '>' | '|') || c.is_control() {
                '_'
            } else {
                c
            }
        })
        .take(60)
        .collect();
    let clean = clean.trim().trim_start_matches('.').trim();
    if clean.is_empty() {
        format!("notice-{id}")
    } else {
        format!("{clean}-{id}")
    }
}

/// Writes `bytes` to `dir/stem.csv`, or `stem (2).csv`… when taken: an
/// earlier export is never overwritten. The file appears whole or not at all.
fn write_new(dir: &Path, stem: &str, bytes: &[u8]) -> std::io::Result<PathBuf> {
    use std::io::Write as _;
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(".{stem}.csv.part"));
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    for n in 1..1000 {
        let path =
            if n == 1 { dir.join(format!("{stem}.csv")) } else { dir.join(format!("{stem} ({n}).csv")) };
        if path.exists() {
            continue;
        }
        // hard_link fails if the name was taken meanwhile, unlike rename.
        match std::fs::hard_link(&tmp, &path) {
            Ok(()) => {
                let _ = std::fs::remove_file(&tmp);
                return Ok(path);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(_) => {
                // A file system without hard links: a checked rename.
                if path.exists() {
                    continue;
                }
                std::fs::rename(&tmp, &path)?;
                return Ok(path);
            }
        }
    }
    let _ = std::fs::remove_file(&tmp);
    Err(std::io::Error::other("too many exports of this notice in that folder"))
}

/// One CSV cell: a cell a spreadsheet would read as a formula (it starts
/// with `=`, `+`, `-`, `@`, a tab or a carriage return) gets a leading `'`;
/// then quoted when it holds a comma, a quote or a line break.
pub fn csv_cell(text: &str) -> String {
    let mut cell = String::with_capacity(text.len() + 3);
    if text.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        cell.push('\'');
    }
    cell.push_str(text);
    if cell.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", cell.replace('"', "\"\""))
    } else {
        cell
    }
}

/// The table as CSV: UTF-8 with a byte order mark (so Excel reads Chinese
/// right), CRLF line ends, a header in the person's language.
pub fn table_csv(rows: &[RecipientView], chinese: bool, utc_offset_minutes: i64) -> String {
    let header: [&str; 9] = if chinese {
        ["姓名", "部门", "送达时间", "阅读时间", "签收时间", "签收设备", "选择", "留言", "最近提醒"]
    } else {
        [
            "Name",
            "Department",
            "Delivered",
            "Read",
            "Signed",
            "Signed on",
            "Choice",
            "Comment",
            "Last reminded",
        ]
    };
    let mut out = String::from("\u{feff}");
    let line = |cells: &[&str], out: &mut String| {
        let cells: Vec<String> = cells.iter().map(|c| csv_cell(c)).collect();
        out.push_str(&cells.join(","));
        out.push_str("\r\n");
    };
    line(&header, &mut out);
    let time = |ms: i64| if ms <= 0 { String::new() } else { local_time(ms, utc_offset_minutes) };
    for r in rows {
        let cells = [
            r.name.clone(),
            r.department_name.clone(),
            time(r.delivered_at_ms),
            time(r.read_at_ms),
            time(r.signed_at_ms),
            r.signed_device.clone(),
            r.chosen.clone(),
            r.comment.clone(),
            time(r.reminded_at_ms),
        ];
        line(&cells.iter().map(String::as_str).collect::<Vec<_>>(), &mut out);
    }
    out
}

/// `YYYY-MM-DD HH:MM:SS` at `utc_offset_minutes` east of UTC.
fn local_time(ms: i64, utc_offset_minutes: i64) -> String {
    let secs = ms.div_euclid(1000) + utc_offset_minutes * 60;
    let (year, month, day, h, m, s) = crate::commands::civil(secs);
    format!("{year:04}-{month:02}-{day:02} {h:02}:{m:02}:{s:02}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(name: &str, comment: &str) -> RecipientView {
        RecipientView {
            user_id: 7,
            name: name.into(),
            department_id: 3,
            department_name: "财务部".into(),
            delivered_at_ms: 1_735_689_599_000,
            read_at_ms: 0,
            signed_at_ms: 0,
            signed_device: String::new(),
            chosen: String::new(),
            comment: comment.into(),
            reminded_at_ms: 0,
        }
    }

    #[test]
    fn cells_a_spreadsheet_would_run_are_neutralised() {
        assert_eq!(csv_cell("=HYPERLINK(\"http://x\")"), "\"'=HYPERLINK(\"\"http://x\"\")\"");
        assert_eq!(csv_cell("+1"), "'+1");
        assert_eq!(csv_cell("-2+3"), "'-2+3");
        assert_eq!(csv_cell("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(csv_cell("\tcmd"), "'\tcmd");
        assert_eq!(csv_cell("\rcmd"), "\"'\rcmd\"");
        assert_eq!(csv_cell("张伟"), "张伟");
        assert_eq!(csv_cell("a,b"), "\"a,b\"");
        assert_eq!(csv_cell("line\nbreak"), "\"line\nbreak\"");
        assert_eq!(csv_cell("a=b"), "a=b", "only a leading sign counts");
    }

    #[test]
    fn the_table_is_utf8_with_a_bom_and_a_header_in_the_persons_language() {
        let csv = table_csv(&[row("=cmd|' /C calc'!A0", "收到, 谢谢")], true, 8 * 60);
        assert!(csv.starts_with("\u{feff}姓名,部门,送达时间"));
        let lines: Vec<&str> = csv.trim_end().split("\r\n").collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[1], "'=cmd|' /C calc'!A0,财务部,2025-01-01 07:59:59,,,,,\"收到, 谢谢\",");
        let en = table_csv(&[], false, 0);
        assert_eq!(
            en,
            "\u{feff}Name,Department,Delivered,Read,Signed,Signed on,Choice,Comment,Last reminded\r\n"
        );
    }

    #[test]
    fn exports_never_overwrite_and_names_are_safe() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(file_stem("../季度 报告: 2026/Q4?", 9), "_季度 报告_ 2026_Q4_-9");
        assert_eq!(file_stem("...", 9), "notice-9");
        let a = write_new(dir.path(), "t-1", b"one").unwrap();
        let b = write_new(dir.path(), "t-1", b"two").unwrap();
        assert_eq!(a.file_name().unwrap(), "t-1.csv");
        assert_eq!(b.file_name().unwrap(), "t-1 (2).csv");
        assert_eq!(std::fs::read(&a).unwrap(), b"one");
        assert_eq!(std::fs::read(&b).unwrap(), b"two");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2, "no partial file is left");
    }

    #[test]
    fn only_web_and_mail_links_open() {
        assert!(safe_link("https://oa.example.com/a?b=1"));
        assert!(safe_link("mailto:hr@example.com"));
        assert!(!safe_link("javascript:alert(1)"));
        assert!(!safe_link(" JavaScript:alert(1)"));
        assert!(!safe_link("file:///etc/passwd"));
        assert!(!safe_link("https://x\n.example"));
        assert_eq!(filter_of("notSigned").unwrap(), v1::NoticeFilter::NoticeNotSigned);
        assert_eq!(filter_of("x").unwrap_err().code, "BAD_REQUEST");
    }
}
