//! Messages an application sends: its recipients resolved from the
//! directory (departments expanded with their sub-departments at send
//! time), and one direct message from its bot account to each, through
//! the one writer like any send (people offline get it by sync).
//!
//! With an Idempotency-Key each message's `client_msg_id` is derived from
//! the application, the key and the recipient, so the writer's dedupe
//! stores it once even when two requests with one key race, or when the
//! server stopped between the sends and keeping the answer.

use std::collections::BTreeSet;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use hutong_protocol::v1;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::ServiceError;
use crate::storage::apps::PersonKey;
use crate::storage::Store;
use crate::writer::{Command, Writer};

/// People one request may reach, departments expanded.
pub const MAX_RECIPIENTS: usize = 5_000;
/// Entries of each list of a request.
const MAX_LISTED: usize = 1_000;

/// Who a message goes to: any mix of the lists.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Recipients {
    #[serde(default)]
    pub user_ids: Vec<u64>,
    #[serde(default)]
    pub accounts: Vec<String>,
    #[serde(default)]
    pub employee_nos: Vec<String>,
    /// Everyone active in these departments and the ones below them.
    #[serde(default)]
    pub department_ids: Vec<u64>,
}

/// One message sent (or found already sent by an earlier request).
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct Sent {
    pub user_id: u64,
    pub conversation_id: u64,
    pub seq: u64,
}

fn unknown(what: &str, names: Vec<String>) -> ServiceError {
    let shown: Vec<String> = names.iter().take(5).cloned().collect();
    let more = if names.len() > 5 { format!(" and {} more", names.len() - 5) } else { String::new() };
    ServiceError::BadRequest(format!("unknown {what}: {}{more}; nothing was sent", shown.join(", ")))
}

/// The people `to` names, each once, ascending; refuses unknown, deleted
/// or disabled people and bots, and more than [`MAX_RECIPIENTS`].
pub fn resolve(store: &dyn Store, to: &Recipients) -> Result<Vec<u64>, ServiceError> {
    let listed = to.user_ids.len() + to.accounts.len() + to.employee_nos.len() + to.department_ids.len();
    if listed == 0 {
        return Err(ServiceError::BadRequest("name at least one recipient".into()));
    }
    if [to.user_ids.len(), to.accounts.len(), to.employee_nos.len(), to.department_ids.len()]
        .iter()
        .any(|n| *n > MAX_LISTED)
    {
        return Err(ServiceError::TooLarge(format!("at most {MAX_LISTED} entries in each recipient list")));
    }
    let mut people = BTreeSet::new();
    let mut missing = Vec::new();
    for id in &to.user_ids {
        match store.person(*id)? {
            Some(p) if p.status == "active" && !p.roles.iter().any(|r| r == "bot") => {
                people.insert(p.id);
            }
            _ => missing.push(id.to_string()),
        }
    }
    if !missing.is_empty() {
        return Err(unknown("user ids", missing));
    }
    for (key, names, what) in [
        (PersonKey::Account, &to.accounts, "accounts"),
        (PersonKey::EmployeeNo, &to.employee_nos, "employee numbers"),
    ] {
        for name in names {
            let found = if name.is_empty() || name.len() > 128 {
                Vec::new()
            } else {
                store.people_by(key, name, 2)?
            };
            let active: Vec<u64> = found
                .into_iter()
                .filter(|id| matches!(store.person(*id), Ok(Some(p)) if p.status == "active"))
                .collect();
            match active.as_slice() {
                [id] => {
                    people.insert(*id);
                }
                _ => missing.push(name.clone()),
            }
        }
        if !missing.is_empty() {
            return Err(unknown(what, std::mem::take(&mut missing)));
        }
    }
    for d in &to.department_ids {
        if store.department_exists(*d).is_err() {
            missing.push(d.to_string());
            continue;
        }
        let filter = crate::storage::directory::PeopleFilter {
            status: "active",
            departments: Some(store.department_subtree(*d)?),
            text: None,
            offset: 0,
            limit: (MAX_RECIPIENTS + 1) as u64,
        };
        let (members, _) = store.search_people(&filter)?;
        people.extend(members.into_iter().filter(|p| !p.roles.iter().any(|r| r == "bot")).map(|p| p.id));
        if people.len() > MAX_RECIPIENTS {
            break;
        }
    }
    if !missing.is_empty() {
        return Err(unknown("department ids", missing));
    }
    if people.len() > MAX_RECIPIENTS {
        return Err(ServiceError::TooLarge(format!("a message reaches at most {MAX_RECIPIENTS} people")));
    }
    Ok(people.into_iter().collect())
}

fn client_msg_id(app_id: u64, key: Option<&str>, user: u64, random: &str) -> String {
    match key {
        Some(key) => {
            let mut h = Sha256::new();
            h.update(app_id.to_be_bytes());
            h.update(user.to_be_bytes());
            h.update(key.as_bytes());
            format!("api-{}", &hex::encode(h.finalize())[..40])
        }
        None => format!("api-{random}-{user}"),
    }
}

/// Sends `text` from the bot `bot` of application `app_id` to each of
/// `people` in a direct conversation; answers after every send committed.
pub async fn send_text(
    writer: &Writer,
    app_id: u64,
    bot: u64,
    people: &[u64],
    text: &str,
    idempotency_key: Option<&str>,
) -> Result<Vec<Sent>, ServiceError> {
    let probe = v1::SendMessage { client_msg_id: "x".into(), text: text.to_owned(), ..Default::default() };
    crate::writer::check_send(&probe)?;
    let mut opened = Vec::with_capacity(people.len());
    for &peer in people {
        opened.push(writer.enqueue(Command::OpenDirect { user: bot, peer }).await?);
    }
    let mut conversations = Vec::with_capacity(people.len());
    for rx in opened {
        conversations.push(rx.await.map_err(|_| ServiceError::ShuttingDown)??.conversation_id);
    }
    let mut random = [0u8; 12];
    rand::rng().fill_bytes(&mut random);
    let random = hex::encode(random);
    let ordered = Arc::new(AtomicBool::new(false));
    let mut sends = Vec::with_capacity(people.len());
    for (&user, &conversation_id) in people.iter().zip(&conversations) {
        let msg = v1::SendMessage {
            conversation_id,
            client_msg_id: client_msg_id(app_id, idempotency_key, user, &random),
            text: text.to_owned(),
            ..Default::default()
        };
        let cmd = Command::Send { sender: bot, msg, ordered: ordered.clone(), folder: None };
        sends.push((user, writer.enqueue_fanned(cmd, None).await?));
    }
    let mut sent = Vec::with_capacity(sends.len());
    for (user_id, rx) in sends {
        let committed = rx.await.map_err(|_| ServiceError::ShuttingDown)??;
        let seq = committed.message.as_ref().map(|m| m.seq).unwrap_or_default();
        sent.push(Sent { user_id, conversation_id: committed.conversation_id, seq });
    }
    Ok(sent)
}
