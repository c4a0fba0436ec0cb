//! The commands the UI calls. Each is a thin call into the client core; the
//! session check happens here (no client, no access), limits and rules in
//! the core and on the server.

use std::time::Duration;

use hutong_client::{Client, ClientOptions, Credential, Profile, SendOptions, ServerAddr};
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
) -> CmdResult<SessionState> {
    let addr = parse_server(&server)?;
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
    };
    let client = start_session(&app, &state, &profile, Credential::Password(password))?;
    let outcome = tokio::time::timeout(SIGN_IN_TIMEOUT, client.wait_online()).await;
    let failure = match outcome {
        Err(_) => Some(AppError::new(
            "NETWORK",
            format!("{addr} did not answer within {} s", SIGN_IN_TIMEOUT.as_secs()),
        )),
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
) -> CmdResult<()> {
    let addr = parse_server(&server)?;
    if new_password.chars().count() < 8 {
        return Err(AppError::new("BAD_REQUEST", "the new password needs at least 8 characters"));
    }
    hutong_client::change_password(
        &addr,
        fingerprint.as_deref(),
        account.trim(),
        &old_password,
        &new_password,
    )
    .await?;
    Ok(())
}

#[tauri::command]
pub async fn sign_out(app: AppHandle, state: State<'_, AppState>) -> CmdResult<()> {
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
    names.prefetch(page.iter().map(|m| m.sender_id)).await;
    Ok(page.iter().map(|m| names.message(m)).collect())
}

#[tauri::command]
pub fn outbox(state: State<'_, AppState>, conversation_id: u64) -> CmdResult<Vec<MessageView>> {
    let client = client(&state)?;
    let me = client.user_id();
    let now = hutong_client::cache::now_ms();
    let mut names = Names::new(&client);
    Ok(client.outbox(Some(conversation_id))?.iter().map(|e| names.pending(e, me, now)).collect())
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
    let entry = client
        .outbox(Some(conversation_id))?
        .into_iter()
        .find(|e| e.client_msg_id == id)
        .ok_or_else(|| AppError::new("CACHE", "the message vanished from the outbox"))?;
    Ok(Names::new(&client).pending(&entry, me, hutong_client::cache::now_ms()))
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
    if before.autostart != settings.autostart {
        desktop::set_autostart(&app, settings.autostart)?;
    }
    state.save_settings(&settings).map_err(|e| AppError::new("CACHE", e.to_string()))?;
    if before.locale != settings.locale {
        desktop::relabel_tray(&app, &settings, &state.system_locale);
    }
    Ok(settings)
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
