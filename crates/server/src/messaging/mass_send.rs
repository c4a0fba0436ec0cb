//! Mass-send (群发): one message to many people, each getting it as a direct
//! message of the sender. The recipients (people named, and the active
//! people of the departments named with their sub-departments) are read on
//! the read pool; then the writer opens every direct conversation and stores
//! every copy, each an ordinary send with an id derived from the request's,
//! so a retry stores nothing new. The status is read from the direct
//! conversations' cursors: no table of its own.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use futures::FutureExt as _;
use hutong_protocol::v1;
use hutong_protocol::Payload;

use super::handlers::{Session, Step};
use crate::error::ServiceError;
use crate::live::outbound::Lane;
use crate::storage::directory::PeopleFilter;
use crate::storage::Store;
use crate::writer::{Command, MAX_CLIENT_MSG_ID_LEN};

/// Most people one mass-send reaches.
pub const MAX_MASS_SEND_RECIPIENTS: usize = 10_000;

/// The checks that need no state.
pub fn check_mass_send(r: &v1::MassSend) -> Result<(), ServiceError> {
    if r.text.trim().is_empty() == r.attachment.is_none() {
        return Err(ServiceError::BadRequest("a mass-send carries a text or a file".into()));
    }
    if r.user_ids.is_empty() && r.department_ids.is_empty() {
        return Err(ServiceError::BadRequest("a mass-send needs people or departments".into()));
    }
    if r.user_ids.len() > MAX_MASS_SEND_RECIPIENTS || r.department_ids.len() > 1_000 {
        return Err(ServiceError::TooLarge(format!(
            "a mass-send reaches at most {MAX_MASS_SEND_RECIPIENTS} people"
        )));
    }
    if r.client_msg_id.is_empty() || r.client_msg_id.len() > MAX_CLIENT_MSG_ID_LEN {
        return Err(ServiceError::BadRequest(format!(
            "client_msg_id must have 1 to {MAX_CLIENT_MSG_ID_LEN} characters"
        )));
    }
    Ok(())
}

/// The id prefix every copy of one mass-send shares.
fn prefix(sender: u64, client_msg_id: &str) -> String {
    use sha2::Digest as _;
    let mut h = sha2::Sha256::new();
    h.update(sender.to_be_bytes());
    h.update(client_msg_id.as_bytes());
    let digest = h.finalize();
    let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    format!("mass-{hex}-")
}

/// One recipient and what the placeholders become for them.
struct Recipient {
    id: u64,
    name: String,
    department: String,
}

/// Everyone the mass-send reaches, by id (the sender left out).
fn recipients(store: &dyn Store, sender: u64, r: &v1::MassSend) -> Result<Vec<Recipient>, ServiceError> {
    let visibility = crate::directory::Visibility::for_viewer(store, sender)?;
    let mut ids: Vec<u64> = r.user_ids.clone();
    for &d in &r.department_ids {
        store.department_exists(d)?;
        if !visibility.department(d) {
            return Err(ServiceError::NotFound("department"));
        }
        let filter = PeopleFilter {
            status: "active",
            departments: Some(store.department_subtree(d)?),
            text: None,
            offset: 0,
            limit: MAX_MASS_SEND_RECIPIENTS as u64 + 1,
        };
        ids.extend(store.search_people(&filter)?.0.into_iter().map(|p| p.id));
    }
    let mut seen = HashSet::new();
    ids.retain(|&id| id != sender && seen.insert(id));
    if ids.len() > MAX_MASS_SEND_RECIPIENTS {
        return Err(ServiceError::TooLarge(format!(
            "a mass-send reaches at most {MAX_MASS_SEND_RECIPIENTS} people"
        )));
    }
    let knowable = crate::directory::knowable(store, sender, &ids)?;
    // Someone named but not knowable is refused as an unknown id would be;
    // a department's hidden people are left out.
    if r.user_ids.iter().any(|id| *id != sender && !knowable.contains(id)) {
        return Err(ServiceError::NotFound("user"));
    }
    let departments: HashMap<u64, String> =
        store.departments(None)?.into_iter().map(|d| (d.id, d.name)).collect();
    let mut out = Vec::with_capacity(ids.len());
    for id in ids.into_iter().filter(|id| knowable.contains(id)) {
        let Some(p) = store.person(id)? else { continue };
        let department =
            p.primary_department_id.and_then(|d| departments.get(&d).cloned()).unwrap_or_default();
        out.push(Recipient { id, name: p.display_name, department });
    }
    Ok(out)
}

/// `text` with `{name}` and `{department}` replaced for one person.
fn personal(text: &str, r: &Recipient) -> String {
    text.replace("{name}", &r.name).replace("{department}", &r.department)
}

/// Each recipient's copy and whether they have it and have read it.
fn status(store: &dyn Store, sender: u64, client_msg_id: &str) -> Result<v1::MassSendStatus, ServiceError> {
    let prefix = prefix(sender, client_msg_id);
    let mut by_user = BTreeMap::new();
    for m in store.sends_with_id_prefix(sender, &prefix)? {
        let Some(user) = m.client_msg_id[prefix.len()..].parse::<u64>().ok() else { continue };
        let (_, delivered, read) = store.cursors(m.conversation_id, user)?;
        by_user.insert(
            user,
            v1::MassSendRecipient {
                user_id: user,
                conversation_id: m.conversation_id,
                seq: m.seq,
                delivered: delivered >= m.seq,
                read: read >= m.seq,
            },
        );
    }
    Ok(v1::MassSendStatus {
        client_msg_id: client_msg_id.to_owned(),
        recipients: by_user.into_values().collect(),
    })
}

pub async fn mass_send(s: &Session, r: v1::MassSend) -> Result<Step, ServiceError> {
    let sender = s.user_id;
    let people = {
        let r = r.clone();
        s.shared.db.read(move |store| recipients(store, sender, &r)).await?
    };
    let folder = match &r.attachment {
        Some(a) if a.kind == v1::AttachmentKind::AttachmentFolder as i32 => {
            Some(crate::files::folder_contents(&s.files(), a).await?)
        }
        _ => None,
    };
    // Every direct conversation first (pipelined in the writer), then every copy.
    let mut opened = Vec::with_capacity(people.len());
    for p in &people {
        opened.push(
            s.shared.writer.enqueue_fanned(Command::OpenDirect { user: sender, peer: p.id }, None).await?,
        );
    }
    let mut conversations = Vec::with_capacity(people.len());
    for rx in opened {
        conversations.push(rx.await.map_err(|_| ServiceError::ShuttingDown)??.conversation_id);
    }
    let prefix = prefix(sender, &r.client_msg_id);
    let ordered = Arc::new(AtomicBool::new(false));
    let mut sent = Vec::with_capacity(people.len());
    for (p, &conversation_id) in people.iter().zip(&conversations) {
        let msg = v1::SendMessage {
            conversation_id,
            client_msg_id: format!("{prefix}{}", p.id),
            text: if r.attachment.is_some() { String::new() } else { personal(&r.text, p) },
            attachment: r.attachment.clone(),
            ..Default::default()
        };
        crate::writer::check_send(&msg)?;
        let cmd = Command::Send { sender, msg, ordered: ordered.clone(), folder: folder.clone() };
        // This connection gets the copies pushed too: the answer carries only the status.
        sent.push(s.shared.writer.enqueue_fanned(cmd, None).await?);
    }
    let shared = s.shared.clone();
    Ok(Step::Pending(
        async move {
            for rx in sent {
                rx.await.map_err(|_| ServiceError::ShuttingDown)??;
            }
            let id = r.client_msg_id;
            let status = shared.db.read(move |store| status(store, sender, &id)).await?;
            Ok(Some((Lane::Control, Payload::MassSendStatus(status))))
        }
        .boxed(),
    ))
}

pub async fn get_status(s: Session, r: v1::GetMassSendStatus) -> super::handlers::Reply {
    let sender = s.user_id;
    let status = s.shared.db.read(move |store| status(store, sender, &r.client_msg_id)).await?;
    Ok(Some((Lane::Control, Payload::MassSendStatus(status))))
}
