//! The commands the UI calls. Each is a thin call into the client core; the
//! session check happens here (no client, no access), limits and rules in
//! the core and on the server.

use std::path::{Path, PathBuf};
use std::time::Duration;

use hutong_client::{
    Client, ClientOptions, Credential, Profile, SendOptions, ServerAddr, TransferDirection, TransferState,
};
use tauri::{AppHandle, State};

use crate::state::{lock, AppState, Session, DEVICE};
use crate::views::*;
use crate::{desktop, events};

const SIGN_IN_TIMEOUT: Duration = Duration::from_secs(20);
const MAX_QUERY_CHARS: usize = 200;

fn client(state: &AppState) -> CmdResult<Client> {
    state.client().ok_or_else(|| AppError::new("NOT_SIGNED_IN", "not signed in"))
}

fn parse_server(server: &str) -> CmdResult<ServerAddr> {
    Ok(server.trim().parse::<ServerAddr>()?)
}

pub fn session_state_of(state: &AppState) -> SessionState {
    let session = lock(&state.session);
    let (server, account, client) = match session.as_ref() {
        Some(s) => (Some(s.server.clone()), Some(s.account.clone()), Some(s.client.clone())),
        None => (None, None, None),
    };
    drop(session);
    let user_id = client.as_ref().map(Client::user_id).unwrap_or(0);
    let display_name = client.as_ref().and_then(|c| c.display_name(user_id).ok().flatten());
    let status = client
        .as_ref()
        .map(|c| events::status_json(&c.status().borrow()))
        .unwrap_or_else(|| serde_json::json!({ "state": "offline", "code": "NOT_SIGNED_IN", "reason": "" }));
    SessionState {
        signed_in: client.is_some(),
        server,
        account,
        user_id,
        display_name,
        status,
        system_locale: state.system_locale.clone(),
        settings: state.settings(),
        default_server: std::env::var("HUTONG_SERVER")
            .ok()
            .filter(|s| !s.is_empty())
            .or_else(|| state.last_server()),
        default_download_dir: state.default_download_dir.to_string_lossy().into_owned(),
    }
}

/// Starts the client of a remembered or new sign-in and its event forwarder.
pub fn start_session(
    app: &AppHandle,
    state: &AppState,
    profile: &Profile,
    credential: Credential,
) -> CmdResult<Client> {
    let server = parse_server(&profile.server)?;
    let mut options =
        ClientOptions::new(server, &profile.account, state.account_dir(&profile.account).join("cache.db"));
    options.device = profile.device.clone();
    options.pinned_fingerprint = profile.fingerprint.clone();
    options.insecure_plaintext = profile.insecure_plaintext;
    let client = Client::start(options, credential)?;
    let forwarder = events::spawn_forwarder(app.clone(), client.clone());
    let old = lock(&state.session).replace(Session {
        client: client.clone(),
        server: profile.server.clone(),
        account: profile.account.clone(),
        forwarder,
    });
    if let Some(old) = old {
        old.forwarder.abort();
        old.client.shutdown();
    }
    Ok(client)
}

fn end_session(state: &AppState) -> Option<Client> {
    let old = lock(&state.session).take()?;
    old.forwarder.abort();
    old.client.shutdown();
    Some(old.client)
}

#[tauri::command]
pub fn session_state(state: State<'_, AppState>) -> SessionState {
    session_state_of(&state)
}

#[tauri::command]
pub async fn probe_server(state: State<'_, AppState>, server: String) -> CmdResult<ServerProbe> {
    let addr = parse_server(&server)?;
    let connected = hutong_client::transport::connect(&addr, None).await?;
    Ok(ServerProbe {
        known: state.known_fingerprint(&addr.to_string()),
        server: addr.to_string(),
        fingerprint: connected.fingerprint,
    })
}

#[tauri::command]
pub async fn sign_in(
    app: AppHandle,
    state: State<'_, AppState>,
    server: String,
    account: String,
    password: String,
    fingerprint: Option<String>,
    insecure_plaintext: Option<bool>,
) -> CmdResult<SessionState> {
    let addr = parse_server(&server)?;
    // A tcp:// or ws:// address only with the sign-in screen's explicit
    // "insecure (unencrypted) connection" choice.
    let insecure_plaintext = insecure_plaintext.unwrap_or(false) && addr.is_plaintext();
    addr.check_secure(insecure_plaintext)?;
    let account = account.trim().to_owned();
    if account.is_empty() || password.is_empty() {
        return Err(AppError::new("BAD_REQUEST", "enter the account and the password"));
    }
    end_session(&state);
    let mut profile = Profile {
        server: addr.to_string(),
        account: account.clone(),
        device: DEVICE.into(),
        fingerprint: fingerprint.clone(),
        token: String::new(),
        insecure_plaintext,
    };
    let client = start_session(&app, &state, &profile, Credential::Password(password))?;
    let outcome = tokio::time::timeout(SIGN_IN_TIMEOUT, client.wait_online()).await;
    let failure = match outcome {
        // The server's refusal (a connection cap) when that was why, never "unreachable".
        Err(_) => Some(
            client.last_error().filter(|e| e.remote_code().is_some()).map(AppError::from).unwrap_or_else(
                || {
                    AppError::new(
                        "NETWORK",
                        format!("{addr} did not answer within {} s", SIGN_IN_TIMEOUT.as_secs()),
                    )
                },
            ),
        ),
        Ok(Err(e)) => Some(e.into()),
        Ok(Ok(())) => None,
    };
    if let Some(e) = failure {
        end_session(&state);
        return Err(e);
    }
    profile.token =
        client.token().ok_or_else(|| AppError::new("PROTOCOL", "the server issued no session token"))?;
    profile.fingerprint = fingerprint.or_else(|| client.fingerprint());
    if let Some(fp) = &profile.fingerprint {
        state.remember_fingerprint(&profile.server, fp).map_err(|e| AppError::new("CACHE", e.to_string()))?;
    }
    profile.save(&state.home)?;
    let _ = state.remember_server(&profile.server);
    Ok(session_state_of(&state))
}

#[tauri::command]
pub async fn change_password(
    server: String,
    account: String,
    old_password: String,
    new_password: String,
    fingerprint: Option<String>,
    insecure_plaintext: Option<bool>,
) -> CmdResult<()> {
    let addr = parse_server(&server)?;
    if new_password.chars().count() < 8 {
        return Err(AppError::new("BAD_REQUEST", "the new password needs at least 8 characters"));
    }
    hutong_client::change_password(
        &addr,
        fingerprint.as_deref(),
        insecure_plaintext.unwrap_or(false),
        account.trim(),
        &old_password,
        &new_password,
    )
    .await?;
    Ok(())
}

#[tauri::command]
pub async fn sign_out(app: AppHandle, state: State<'_, AppState>) -> CmdResult<()> {
    // What was picked for one person is not sendable by the next.
    state.grants.clear();
    if let Some(client) = state.client() {
        // Best effort: the session ends on the server when it is reachable.
        let _ = tokio::time::timeout(Duration::from_secs(3), client.logout()).await;
    }
    end_session(&state);
    Profile::remove(&state.home)?;
    desktop::set_unread(&app, 0);
    Ok(())
}

#[tauri::command]
pub async fn conversations(state: State<'_, AppState>) -> CmdResult<Vec<ConversationView>> {
    let client = client(&state)?;
    let me = client.user_id();
    let list = client.conversations()?;
    let mut names = Names::new(&client);
    names.prefetch(list.iter().flat_map(|c| c.members.iter().copied().chain([c.last_sender_id]))).await;
    Ok(list.iter().map(|c| names.conversation(c, me)).collect())
}

#[tauri::command]
pub async fn history(
    state: State<'_, AppState>,
    conversation_id: u64,
    before_seq: Option<u64>,
    limit: usize,
) -> CmdResult<Vec<MessageView>> {
    let client = client(&state)?;
    let page = client.history(conversation_id, before_seq, limit).await?;
    let mut names = Names::new(&client);
    names.prefetch(page.iter().flat_map(people_of)).await;
    Ok(page.iter().map(|m| names.message(m)).collect())
}

/// This conversation's messages not yet on the server: file messages still
/// uploading (from their transfers), then the outbox.
#[tauri::command]
pub fn outbox(state: State<'_, AppState>, conversation_id: u64) -> CmdResult<Vec<MessageView>> {
    let client = client(&state)?;
    let me = client.user_id();
    let now = hutong_client::cache::now_ms();
    let mut names = Names::new(&client);
    let entries = client.outbox(Some(conversation_id))?;
    let mut uploads: Vec<_> = client
        .transfers()?
        .into_iter()
        .filter(|t| {
            t.direction == TransferDirection::Upload
                && t.conversation_id == conversation_id
                && !matches!(t.state, TransferState::Done | TransferState::Cancelled)
                && !entries.iter().any(|e| e.client_msg_id == t.client_msg_id)
        })
        .collect();
    uploads.sort_by_key(|t| t.created_at_ms);
    let mut out: Vec<MessageView> = uploads.iter().map(|t| names.uploading(t, me)).collect();
    out.extend(entries.iter().map(|e| names.pending(e, me, now)));
    Ok(out)
}

#[tauri::command]
pub async fn read_state(state: State<'_, AppState>, conversation_id: u64) -> CmdResult<Vec<MemberRead>> {
    let client = client(&state)?;
    let me = client.user_id();
    let cursors = client.member_cursors(conversation_id)?;
    let mut names = Names::new(&client);
    names.prefetch(cursors.iter().map(|c| c.0)).await;
    Ok(cursors
        .into_iter()
        .filter(|c| c.0 != me)
        .map(|(user_id, _, read_seq)| MemberRead { user_id, name: names.get(user_id), read_seq })
        .collect())
}

/// Who has read message `seq` and who has not, asked of the server when the
/// person opens the list (the cached cursors give only the count).
#[tauri::command]
pub async fn read_list(
    state: State<'_, AppState>,
    conversation_id: u64,
    seq: u64,
) -> CmdResult<ReadListView> {
    let client = client(&state)?;
    let list = client.read_list(conversation_id, seq).await?;
    let mut names = Names::new(&client);
    names.prefetch(list.read_user_ids.iter().chain(&list.unread_user_ids).copied()).await;
    let mut people = |ids: &[u64]| -> Vec<Reader> {
        ids.iter().map(|&user_id| Reader { user_id, name: names.get(user_id) }).collect()
    };
    let read = people(&list.read_user_ids);
    let unread = people(&list.unread_user_ids);
    Ok(ReadListView { conversation_id: list.conversation_id, seq: list.seq, read, unread })
}

#[tauri::command]
pub fn send_text(
    state: State<'_, AppState>,
    conversation_id: u64,
    text: String,
    mentions: Vec<u64>,
    reply_to_seq: u64,
) -> CmdResult<MessageView> {
    let client = client(&state)?;
    let options = SendOptions { mentions, reply_to_seq, urgent: false };
    let id = client.send_text(conversation_id, &text, options)?;
    let me = client.user_id();
    let mut names = Names::new(&client);
    if let Some(entry) = client.outbox(Some(conversation_id))?.into_iter().find(|e| e.client_msg_id == id) {
        return Ok(names.pending(&entry, me, hutong_client::cache::now_ms()));
    }
    // Not in the outbox any more: the acknowledgement came before this
    // look-up, so the stored message is the answer (never "vanished").
    match client.send_outcome(&id)? {
        hutong_client::SendOutcome::Sent { conversation_id, seq } => client
            .cached_message(conversation_id, seq)?
            .map(|m| names.message(&m))
            .ok_or_else(|| AppError::new("CACHE", "the sent message is not in the cache")),
        hutong_client::SendOutcome::Failed { code, message } => Err(AppError::new(&code, message)),
        hutong_client::SendOutcome::Waiting => {
            Err(AppError::new("CACHE", "the message is neither queued nor stored"))
        }
    }
}

#[tauri::command]
pub fn retry(state: State<'_, AppState>, client_msg_id: String) -> CmdResult<()> {
    client(&state)?.retry(&client_msg_id)?;
    Ok(())
}

#[tauri::command]
pub fn mark_read(
    app: AppHandle,
    state: State<'_, AppState>,
    conversation_id: u64,
    seq: u64,
) -> CmdResult<()> {
    let client = client(&state)?;
    client.mark_read(conversation_id, seq)?;
    desktop::refresh_unread(&app, &client);
    Ok(())
}

#[tauri::command]
pub async fn recall(state: State<'_, AppState>, conversation_id: u64, seq: u64) -> CmdResult<()> {
    client(&state)?.recall(conversation_id, seq).await?;
    Ok(())
}

/// Saves a new version of one of my text messages (within the server's
/// edit window; the server keeps every version for auditors).
#[tauri::command]
pub async fn edit_message(
    state: State<'_, AppState>,
    conversation_id: u64,
    seq: u64,
    text: String,
) -> CmdResult<()> {
    client(&state)?.edit(conversation_id, seq, &text).await?;
    Ok(())
}

/// Pins (or, with `unpin`, unpins) a message for every member.
#[tauri::command]
pub async fn pin_message(
    state: State<'_, AppState>,
    conversation_id: u64,
    seq: u64,
    unpin: bool,
) -> CmdResult<()> {
    client(&state)?.pin(conversation_id, seq, unpin).await?;
    Ok(())
}

/// The messages pinned in a conversation, most recently pinned first.
#[tauri::command]
pub async fn pins(state: State<'_, AppState>, conversation_id: u64) -> CmdResult<Vec<PinView>> {
    let client = client(&state)?;
    let pins = client.pins(conversation_id)?;
    let mut names = Names::new(&client);
    let people: Vec<u64> = pins
        .iter()
        .flat_map(|p| [Some(p.pinned_by), p.message.as_ref().map(|m| m.sender_id)])
        .flatten()
        .collect();
    names.prefetch(people).await;
    Ok(pins
        .iter()
        .map(|p| {
            let (sender_name, kind, text) = match &p.message {
                Some(m) => (
                    names.get(m.sender_id),
                    m.kind,
                    m.attachment.as_ref().map_or_else(|| m.text.clone(), |a| a.name.clone()),
                ),
                None => (String::new(), "", String::new()),
            };
            PinView { seq: p.seq, pinned_by_name: names.get(p.pinned_by), sender_name, kind, text }
        })
        .collect())
}

/// Forwards messages of one conversation to others, one by one or merged
/// into one record per target; returns the stored messages.
#[tauri::command]
pub async fn forward_messages(
    state: State<'_, AppState>,
    conversation_id: u64,
    seqs: Vec<u64>,
    targets: Vec<u64>,
    merged: bool,
) -> CmdResult<Vec<MessageView>> {
    let client = client(&state)?;
    let stored = client.forward(conversation_id, &seqs, &targets, merged).await?;
    let mut names = Names::new(&client);
    names.prefetch(stored.iter().flat_map(people_of).collect::<Vec<_>>()).await;
    Ok(stored.iter().map(|m| names.message(m)).collect())
}

/// Sends one text to people and departments as my direct message to each.
#[tauri::command]
pub async fn mass_send(
    state: State<'_, AppState>,
    text: String,
    user_ids: Vec<u64>,
    department_ids: Vec<u64>,
) -> CmdResult<MassSendView> {
    let client = client(&state)?;
    let status = client.mass_send(&text, &user_ids, &department_ids).await?;
    Ok(mass_send_view(&client, status).await)
}

/// Who has a mass-send's message and who has read it.
#[tauri::command]
pub async fn mass_send_status(state: State<'_, AppState>, id: String) -> CmdResult<MassSendView> {
    let client = client(&state)?;
    let status = client.mass_send_status(&id).await?;
    Ok(mass_send_view(&client, status).await)
}

async fn mass_send_view(client: &Client, status: hutong_protocol::v1::MassSendStatus) -> MassSendView {
    let mut names = Names::new(client);
    names.prefetch(status.recipients.iter().map(|r| r.user_id).collect::<Vec<_>>()).await;
    MassSendView {
        id: status.client_msg_id,
        recipients: status
            .recipients
            .iter()
            .map(|r| MassRecipientView {
                user_id: r.user_id,
                name: names.get(r.user_id),
                conversation_id: r.conversation_id,
                delivered: r.delivered,
                read: r.read,
            })
            .collect(),
    }
}

/// Adds (or, with `remove`, takes back) my emoji reaction to a message.
#[tauri::command]
pub async fn react(
    state: State<'_, AppState>,
    conversation_id: u64,
    seq: u64,
    emoji: String,
    remove: bool,
) -> CmdResult<()> {
    client(&state)?.react(conversation_id, seq, &emoji, remove).await?;
    Ok(())
}

#[tauri::command]
pub fn typing(state: State<'_, AppState>, conversation_id: u64) -> CmdResult<()> {
    client(&state)?.typing(conversation_id);
    Ok(())
}

#[tauri::command]
pub fn set_pinned(state: State<'_, AppState>, conversation_id: u64, pinned: bool) -> CmdResult<()> {
    client(&state)?.set_pinned(conversation_id, pinned)?;
    Ok(())
}

#[tauri::command]
pub fn set_muted(
    app: AppHandle,
    state: State<'_, AppState>,
    conversation_id: u64,
    muted: bool,
) -> CmdResult<()> {
    let client = client(&state)?;
    client.set_muted(conversation_id, muted)?;
    desktop::refresh_unread(&app, &client);
    Ok(())
}

#[tauri::command]
pub fn set_focus(state: State<'_, AppState>, conversation_id: Option<u64>) {
    *lock(&state.focus) = conversation_id;
}

#[tauri::command]
pub async fn directory_children(state: State<'_, AppState>, parent_id: u64) -> CmdResult<serde_json::Value> {
    let client = client(&state)?;
    let (departments, people) = client.directory_children(parent_id)?;
    let mut departments_view = Vec::with_capacity(departments.len());
    for d in departments {
        departments_view.push(DepartmentView {
            member_count: client.department_member_count(d.id)?,
            id: d.id,
            parent_id: d.parent_id,
            name: d.name,
        });
    }
    let ids: Vec<u64> = people.iter().map(|p| p.id).collect();
    if !ids.is_empty() {
        let _ = client.subscribe_presence(&ids).await;
    }
    let mut names = Names::new(&client);
    let people: Vec<PersonView> =
        people.iter().filter(|p| !p.disabled).map(|p| names.person(p, state.presence_of(p.id))).collect();
    Ok(serde_json::json!({ "departments": departments_view, "people": people }))
}

#[tauri::command]
pub async fn person(state: State<'_, AppState>, user_id: u64) -> CmdResult<Option<PersonView>> {
    let client = client(&state)?;
    let _ = client.subscribe_presence(&[user_id]).await;
    let mut names = Names::new(&client);
    Ok(client.directory_person_by_id(user_id)?.map(|p| names.person(&p, state.presence_of(user_id))))
}

#[tauri::command]
pub async fn search(state: State<'_, AppState>, query: String) -> CmdResult<SearchResults> {
    let client = client(&state)?;
    let q: String = query.trim().chars().take(MAX_QUERY_CHARS).collect();
    if q.is_empty() {
        return Ok(SearchResults { people: vec![], conversations: vec![], messages: vec![] });
    }
    let me = client.user_id();
    let mut names = Names::new(&client);
    let people =
        client.search_directory(&q, 20)?.iter().map(|p| names.person(p, state.presence_of(p.id))).collect();
    let needle = q.to_lowercase();
    let all: Vec<ConversationView> =
        client.conversations()?.iter().map(|c| names.conversation(c, me)).collect();
    let conversations =
        all.iter().filter(|c| c.name.to_lowercase().contains(&needle)).take(20).cloned().collect();
    let messages = client
        .search_messages(&q, 50)?
        .iter()
        .map(|m| SearchMessage {
            conversation_name: all
                .iter()
                .find(|c| c.id == m.conversation_id)
                .map(|c| c.name.clone())
                .unwrap_or_else(|| format!("#{}", m.conversation_id)),
            message: names.message(m),
        })
        .collect();
    Ok(SearchResults { people, conversations, messages })
}

#[tauri::command]
pub async fn open_direct(state: State<'_, AppState>, user_id: u64) -> CmdResult<u64> {
    Ok(client(&state)?.open_direct(user_id).await?.id)
}

#[tauri::command]
pub async fn create_group(state: State<'_, AppState>, name: String, member_ids: Vec<u64>) -> CmdResult<u64> {
    Ok(client(&state)?.create_group(name.trim(), &member_ids).await?.id)
}

#[tauri::command]
pub async fn rename_group(state: State<'_, AppState>, conversation_id: u64, name: String) -> CmdResult<()> {
    client(&state)?.rename_group(conversation_id, name.trim()).await?;
    Ok(())
}

#[tauri::command]
pub async fn add_members(
    state: State<'_, AppState>,
    conversation_id: u64,
    user_ids: Vec<u64>,
) -> CmdResult<()> {
    client(&state)?.add_members(conversation_id, &user_ids).await?;
    Ok(())
}

#[tauri::command]
pub async fn remove_member(state: State<'_, AppState>, conversation_id: u64, user_id: u64) -> CmdResult<()> {
    client(&state)?.remove_member(conversation_id, user_id).await?;
    Ok(())
}

#[tauri::command]
pub async fn leave_group(state: State<'_, AppState>, conversation_id: u64) -> CmdResult<()> {
    client(&state)?.leave_group(conversation_id).await?;
    Ok(())
}

#[tauri::command]
pub fn settings(state: State<'_, AppState>) -> Settings {
    state.settings()
}

#[tauri::command]
pub fn save_settings(app: AppHandle, state: State<'_, AppState>, settings: Settings) -> CmdResult<Settings> {
    settings.validate()?;
    let before = state.settings();
    keeps_download_dir(&before, &settings)?;
    if before.autostart != settings.autostart {
        desktop::set_autostart(&app, settings.autostart)?;
    }
    state.save_settings(&settings).map_err(|e| AppError::new("CACHE", e.to_string()))?;
    if before.locale != settings.locale {
        desktop::relabel_tray(&app, &settings, &state.system_locale);
    }
    Ok(settings)
}

/// The web view may keep the download folder or go back to the default
/// (empty), never name another: a folder is chosen in the native picker
/// ([`pick_download_dir`]), so script in the page cannot send downloads
/// (and files that run when opened) to a folder of its choosing.
fn keeps_download_dir(before: &Settings, after: &Settings) -> CmdResult<()> {
    if after.download_dir == before.download_dir || after.download_dir.is_empty() {
        return Ok(());
    }
    Err(AppError::new("FORBIDDEN", "the download folder is chosen with the folder picker"))
}

/// Opens the native folder picker and makes the chosen folder the download
/// folder. The new settings, or null when the person cancelled.
#[tauri::command]
pub async fn pick_download_dir(app: AppHandle, state: State<'_, AppState>) -> CmdResult<Option<Settings>> {
    let zh = state.settings().chinese(&state.system_locale);
    let title = if zh { "选择下载文件夹" } else { "Choose the download folder" };
    let Some(picked) = pick(&app, title, zh, true, true, Some(state.download_dir())).await else {
        return Ok(None);
    };
    let Some(dir) = picked.into_iter().next() else { return Ok(None) };
    let mut settings = state.settings();
    settings.download_dir = dir.to_string_lossy().into_owned();
    settings.validate()?;
    state.save_settings(&settings).map_err(|e| AppError::new("CACHE", e.to_string()))?;
    Ok(Some(settings))
}

/// The first screen is drawn: report the start-up time once.
#[tauri::command]
pub fn ui_ready(state: State<'_, AppState>) {
    let mut ready = lock(&state.ready);
    if *ready {
        return;
    }
    *ready = true;
    let elapsed = state.started.elapsed();
    // A plain line on stdout for the start-up benchmark. Stdout may be closed
    // (a launcher's, a WebDriver's), which `println!` would turn into a panic.
    use std::io::Write as _;
    let _ = writeln!(std::io::stdout(), "hutong-desktop: ui ready in {} ms", elapsed.as_millis());
}

/// Sends files and folders (a drop, a picker): each path a directory is sent
/// as a folder, anything else as a file. Every path is tried; the first
/// failure is the answer when one failed.
#[tauri::command]
pub async fn send_paths(
    state: State<'_, AppState>,
    conversation_id: u64,
    paths: Vec<String>,
) -> CmdResult<Vec<TransferView>> {
    let client = client(&state)?;
    if paths.is_empty() {
        return Ok(Vec::new());
    }
    // Only what the person picked or dropped here: never a path the web view names.
    let paths = state.grants.check(&paths)?;
    // Walking a folder and reading a file's size may take a while on a slow disk.
    tauri::async_runtime::spawn_blocking(move || {
        let mut sent = Vec::new();
        let mut failure = None;
        for path in paths {
            let result = if path.is_dir() {
                client.send_folder(conversation_id, &path)
            } else {
                client.send_file(conversation_id, &path)
            };
            match result {
                Ok(t) => sent.push(TransferView::from(&t)),
                Err(e) => {
                    tracing::warn!("sending {}: {e}", path.display());
                    failure.get_or_insert(AppError::from(e));
                }
            }
        }
        match failure {
            Some(e) => Err(e),
            None => Ok(sent),
        }
    })
    .await
    .map_err(|e| AppError::new("INTERNAL", e.to_string()))?
}

/// Sends the image on the clipboard as a PNG file (`NO_IMAGE` when it holds none).
#[tauri::command]
pub async fn paste_image(state: State<'_, AppState>, conversation_id: u64) -> CmdResult<TransferView> {
    let client = client(&state)?;
    let dir = state.tmp_dir();
    tauri::async_runtime::spawn_blocking(move || {
        let path = clipboard_image_to_png(&dir)?;
        Ok(TransferView::from(&client.send_file(conversation_id, &path)?))
    })
    .await
    .map_err(|e| AppError::new("INTERNAL", e.to_string()))?
}

fn clipboard_image_to_png(dir: &Path) -> CmdResult<PathBuf> {
    let image = arboard::Clipboard::new().and_then(|mut c| c.get_image()).map_err(|e| match e {
        arboard::Error::ContentNotAvailable => AppError::new("NO_IMAGE", "the clipboard holds no image"),
        e => AppError::new("CLIPBOARD", format!("the clipboard could not be read: {e}")),
    })?;
    let (width, height) = (u32::try_from(image.width), u32::try_from(image.height));
    let rgba = match (width, height) {
        (Ok(w), Ok(h)) => image::RgbaImage::from_raw(w, h, image.bytes.into_owned()),
        _ => None,
    }
    .ok_or_else(|| AppError::new("NO_IMAGE", "the clipboard's image is malformed"))?;
    std::fs::create_dir_all(dir).map_err(|e| AppError::new("CACHE", e.to_string()))?;
    let name = format!("image-{}.png", timestamp(std::time::SystemTime::now()));
    let mut path = dir.join(&name);
    let mut n = 1;
    while path.exists() {
        path = dir.join(format!("image-{}-{n}.png", timestamp(std::time::SystemTime::now())));
        n += 1;
    }
    rgba.save_with_format(&path, image::ImageFormat::Png)
        .map_err(|e| AppError::new("CACHE", format!("the pasted image could not be stored: {e}")))?;
    Ok(path)
}

/// `YYYYMMDD-HHMMSS` (UTC) for names of pasted images.
fn timestamp(at: std::time::SystemTime) -> String {
    let secs = at.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let (year, month, day, h, m, s) = civil(secs as i64);
    format!("{year:04}{month:02}{day:02}-{h:02}{m:02}{s:02}")
}

/// Year, month, day, hour, minute, second of `secs` since 1970-01-01 (UTC),
/// by Howard Hinnant's civil-from-days algorithm.
pub fn civil(secs: i64) -> (i64, i64, i64, i64, i64, i64) {
    let (days, rest) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day, rest / 3600, rest / 60 % 60, rest % 60)
}

/// Downloads a file or folder message into the download folder.
#[tauri::command]
pub async fn fetch_attachment(
    state: State<'_, AppState>,
    conversation_id: u64,
    seq: u64,
) -> CmdResult<TransferView> {
    let client = client(&state)?;
    let dir = state.download_dir();
    tauri::async_runtime::spawn_blocking(move || {
        std::fs::create_dir_all(&dir).map_err(|e| {
            AppError::new("BAD_DOWNLOAD_DIR", format!("cannot create {}: {e}", dir.display()))
        })?;
        Ok(TransferView::from(&client.fetch(conversation_id, seq, &dir)?))
    })
    .await
    .map_err(|e| AppError::new("INTERNAL", e.to_string()))?
}

/// Downloads the file of item `index` of a merged forward into the
/// download folder, as `fetch_attachment` does a message's.
#[tauri::command]
pub async fn fetch_forwarded(
    state: State<'_, AppState>,
    conversation_id: u64,
    seq: u64,
    index: usize,
) -> CmdResult<TransferView> {
    let client = client(&state)?;
    let dir = state.download_dir();
    tauri::async_runtime::spawn_blocking(move || {
        std::fs::create_dir_all(&dir).map_err(|e| {
            AppError::new("BAD_DOWNLOAD_DIR", format!("cannot create {}: {e}", dir.display()))
        })?;
        Ok(TransferView::from(&client.fetch_forwarded(conversation_id, seq, index, &dir)?))
    })
    .await
    .map_err(|e| AppError::new("INTERNAL", e.to_string()))?
}

/// Every transfer the client knows, newest first.
#[tauri::command]
pub fn transfers(state: State<'_, AppState>) -> CmdResult<Vec<TransferView>> {
    Ok(client(&state)?.transfers()?.iter().map(TransferView::from).collect())
}

#[tauri::command]
pub fn pause_transfer(state: State<'_, AppState>, id: String) -> CmdResult<()> {
    client(&state)?.pause_transfer(&id)?;
    Ok(())
}

#[tauri::command]
pub fn resume_transfer(state: State<'_, AppState>, id: String) -> CmdResult<()> {
    client(&state)?.resume_transfer(&id)?;
    Ok(())
}

#[tauri::command]
pub fn cancel_transfer(state: State<'_, AppState>, id: String) -> CmdResult<()> {
    client(&state)?.cancel_transfer(&id)?;
    Ok(())
}

/// The UI may only open what a finished transfer wrote or read: never an
/// arbitrary path it names.
fn finished_transfer_path(state: &AppState, path: &str) -> CmdResult<PathBuf> {
    let client = client(state)?;
    let wanted = Path::new(path);
    client
        .transfers()?
        .into_iter()
        .find(|t| t.state == TransferState::Done && t.local_path == wanted)
        .map(|t| t.local_path)
        .ok_or_else(|| AppError::new("FORBIDDEN", "only finished downloads and uploads can be opened"))
}

/// Opens a finished transfer's file or folder with the system's default
/// program. A program, script, installer or shortcut (which opening would
/// run) is opened only when the person has confirmed it (`confirmed`);
/// otherwise the answer is `RUNS_WHEN_OPENED` and the UI asks.
#[tauri::command]
pub async fn open_path(app: AppHandle, state: State<'_, AppState>, path: String) -> CmdResult<bool> {
    let path = finished_transfer_path(&state, &path)?;
    if !path.exists() {
        return Err(AppError::new("NOT_FOUND", format!("{} is no longer there", path.display())));
    }
    if runs_when_opened(&path) && !confirm_run(&app, &state, &path).await {
        return Ok(false);
    }
    tauri_plugin_opener::open_path(&path, None::<&str>)
        .map_err(|e| AppError::new("OPEN_FAILED", e.to_string()))?;
    Ok(true)
}

/// Asks in a native dialog (the web view cannot answer it) whether to open
/// a file that runs when opened. Cancel is the default answer.
async fn confirm_run(app: &AppHandle, state: &AppState, path: &Path) -> bool {
    let zh = state.settings().chinese(&state.system_locale);
    let name = crate::views::isolate(&path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default());
    let (title, text, open, cancel) = if zh {
        (
            "打开程序？",
            format!("“{name}”是程序或脚本，打开它会在这台电脑上运行它。仅在信任发送者时打开。"),
            "仍然打开",
            "取消",
        )
    } else {
        (
            "Open a program?",
            format!("“{name}” is a program or script: opening it runs it on this computer. Open it only if you trust the sender."),
            "Open anyway",
            "Cancel",
        )
    };
    ask(app, title, &text, open, cancel).await
}

#[cfg(target_os = "linux")]
async fn ask(app: &AppHandle, title: &str, text: &str, proceed: &str, cancel: &str) -> bool {
    crate::linux_dialogs::confirm(app, title, text, proceed, cancel).await
}

#[cfg(not(target_os = "linux"))]
async fn ask(app: &AppHandle, title: &str, text: &str, proceed: &str, cancel: &str) -> bool {
    use tauri::Manager as _;
    use tauri_plugin_dialog::{DialogExt as _, MessageDialogButtons, MessageDialogKind};
    let (tx, rx) = tokio::sync::oneshot::channel();
    let mut dialog = app
        .dialog()
        .message(text)
        .title(title)
        .kind(MessageDialogKind::Warning)
        .buttons(MessageDialogButtons::OkCancelCustom(proceed.into(), cancel.into()));
    if let Some(window) = app.get_webview_window("main") {
        dialog = dialog.parent(&window);
    }
    dialog.show(move |ok| {
        let _ = tx.send(ok);
    });
    rx.await.unwrap_or(false)
}

/// Endings of files that the system runs, installs or follows when they are
/// opened (Windows, macOS and Linux alike: a file received on one may be
/// opened on another).
const RUNNABLE: &[&str] = &[
    // Windows programs, installers, scripts and shortcuts.
    "exe",
    "com",
    "scr",
    "pif",
    "msi",
    "msp",
    "msix",
    "appx",
    "appxbundle",
    "bat",
    "cmd",
    "ps1",
    "psm1",
    "vbs",
    "vbe",
    "js",
    "jse",
    "wsf",
    "wsh",
    "hta",
    "cpl",
    "msc",
    "lnk",
    "url",
    "reg",
    "inf",
    "application",
    "gadget",
    "scf",
    "jar",
    "dll",
    "chm",
    "settingcontent-ms",
    // macOS.
    "app",
    "command",
    "tool",
    "pkg",
    "mpkg",
    "dmg",
    "scpt",
    "workflow",
    "terminal",
    "action",
    "osx",
    // Linux and Unix.
    "desktop",
    "sh",
    "bash",
    "zsh",
    "csh",
    "ksh",
    "run",
    "bin",
    "appimage",
    "deb",
    "rpm",
    "flatpakref",
    "snap",
    "py",
    "pl",
    "rb",
];

/// Whether opening `path` would run something: a file or folder (a macOS
/// `.app` is one) whose ending is in [`RUNNABLE`], or, on Unix, a file
/// anyone may execute.
fn runs_when_opened(path: &Path) -> bool {
    let runnable = path
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| RUNNABLE.iter().any(|r| r.eq_ignore_ascii_case(e)));
    if runnable {
        return true;
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        if let Ok(meta) = std::fs::metadata(path) {
            return meta.is_file() && meta.permissions().mode() & 0o111 != 0;
        }
    }
    false
}

#[tauri::command]
pub fn reveal_path(state: State<'_, AppState>, path: String) -> CmdResult<()> {
    let path = finished_transfer_path(&state, &path)?;
    if !path.exists() {
        return Err(AppError::new("NOT_FOUND", format!("{} is no longer there", path.display())));
    }
    tauri_plugin_opener::reveal_item_in_dir(&path).map_err(|e| AppError::new("OPEN_FAILED", e.to_string()))
}

/// The native picker: files (several) or folders (several). Null when
/// cancelled. What the person picks may then be sent ([`send_paths`]).
#[tauri::command]
pub async fn pick_paths(
    app: AppHandle,
    state: State<'_, AppState>,
    folders: bool,
    single: bool,
) -> CmdResult<Option<Vec<String>>> {
    let zh = state.settings().chinese(&state.system_locale);
    let title = match (zh, folders) {
        (true, false) => "选择要发送的文件",
        (true, true) => "选择要发送的文件夹",
        (false, false) => "Choose files to send",
        (false, true) => "Choose folders to send",
    };
    let picked = pick(&app, title, zh, folders, single, None).await;
    if let Some(paths) = &picked {
        state.grants.grant(paths.iter().cloned());
    }
    Ok(picked.map(|ps| ps.into_iter().map(|p| p.to_string_lossy().into_owned()).collect()))
}

/// The native chooser titled `title` (in the person's language, `zh`; it
/// names what the choice is for), opening in `start` if given.
#[cfg(target_os = "linux")]
pub(crate) async fn pick(
    app: &AppHandle,
    title: &str,
    zh: bool,
    folders: bool,
    single: bool,
    start: Option<PathBuf>,
) -> Option<Vec<PathBuf>> {
    crate::linux_dialogs::pick(app, title, zh, folders, single, start).await
}

#[cfg(not(target_os = "linux"))]
pub(crate) async fn pick(
    app: &AppHandle,
    title: &str,
    _zh: bool,
    folders: bool,
    single: bool,
    start: Option<PathBuf>,
) -> Option<Vec<PathBuf>> {
    use tauri::Manager as _;
    use tauri_plugin_dialog::DialogExt as _;
    let (tx, rx) = tokio::sync::oneshot::channel();
    let mut dialog = app.dialog().file().set_title(title);
    if let Some(start) = start {
        dialog = dialog.set_directory(start);
    }
    if let Some(window) = app.get_webview_window("main") {
        dialog = dialog.set_parent(&window);
    }
    let reply = move |paths: Option<Vec<tauri_plugin_dialog::FilePath>>| {
        let paths = paths.map(|ps| ps.into_iter().filter_map(|p| p.into_path().ok()).collect());
        let _ = tx.send(paths);
    };
    match (folders, single) {
        (true, true) => dialog.pick_folder(move |p| reply(p.map(|p| vec![p]))),
        (true, false) => dialog.pick_folders(reply),
        (false, true) => dialog.pick_file(move |p| reply(p.map(|p| vec![p]))),
        (false, false) => dialog.pick_files(reply),
    }
    rx.await.unwrap_or(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_web_view_cannot_name_a_download_folder() {
        let before = Settings { download_dir: "/home/me/下载".into(), ..Settings::default() };
        let same = before.clone();
        assert!(keeps_download_dir(&before, &same).is_ok());
        let reset = Settings { download_dir: String::new(), ..before.clone() };
        assert!(keeps_download_dir(&before, &reset).is_ok());
        let other = Settings { download_dir: "/home/me/.config/autostart".into(), ..before.clone() };
        assert_eq!(keeps_download_dir(&before, &other).unwrap_err().code, "FORBIDDEN");
        let from_default = Settings::default();
        assert_eq!(keeps_download_dir(&from_default, &other).unwrap_err().code, "FORBIDDEN");
    }

    #[test]
    fn programs_scripts_and_installers_run_when_opened_documents_do_not() {
        let dir = tempfile::tempdir().unwrap();
        let file = |name: &str| {
            let p = dir.path().join(name);
            std::fs::write(&p, b"x").unwrap();
            p
        };
        for name in [
            "setup.exe",
            "RUN.BAT",
            "报告.pdf.exe",
            "start.sh",
            "tool.AppImage",
            "x.desktop",
            "a.lnk",
            "i.msi",
        ] {
            assert!(runs_when_opened(&file(name)), "{name}");
        }
        for name in ["报告.pdf", "photo.JPG", "notes.txt", "archive.zip", "exe", "sheet.xlsx", "no-ending"]
        {
            assert!(!runs_when_opened(&file(name)), "{name}");
        }
        // A macOS application is a folder.
        let app = dir.path().join("Installer.app");
        std::fs::create_dir(&app).unwrap();
        assert!(runs_when_opened(&app));
        let folder = dir.path().join("项目资料");
        std::fs::create_dir(&folder).unwrap();
        assert!(!runs_when_opened(&folder), "a plain folder opens in the file manager");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let plain = file("plain");
            std::fs::set_permissions(&plain, std::fs::Permissions::from_mode(0o755)).unwrap();
            assert!(runs_when_opened(&plain), "an executable file without an ending");
        }
    }

    #[test]
    fn pasted_images_are_named_by_their_utc_time() {
        let at = |secs| std::time::UNIX_EPOCH + Duration::from_secs(secs);
        assert_eq!(timestamp(at(0)), "19700101-000000");
        assert_eq!(timestamp(at(951_782_400 + 3_661)), "20000229-010101");
        assert_eq!(timestamp(at(1_735_689_599)), "20241231-235959");
    }
}
