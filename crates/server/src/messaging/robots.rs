//! Group robots: incoming webhooks a group's owner creates over the native
//! protocol (`AddRobot`, `ListRobots`, `RemoveRobot`), and the posts
//! scripts make to their URLs (`post`, called by `api.rs` for
//! `POST /api/v1/hooks/<token>`).
//!
//! A robot is an account of its own (role `bot`, no password, in no
//! department) added to the group as a member, so its posts are ordinary
//! sends through the writer: fanned out, synced, archived. Only hashes of
//! the URL tokens are stored; the signing secret is stored as is (the
//! server checks HMACs with it). A URL stops working when its robot is
//! removed, when the robot is no longer a member, or when the person who
//! created it is no longer a member of the group.

use std::net::IpAddr;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use hmac::{Hmac, Mac};
use hutong_protocol::v1::{self, ConversationKind, MemberRole};
use hutong_protocol::Payload;
use rand::RngCore;
use sha2::{Digest, Sha256};

use super::handlers::{Reply, Session};
use crate::error::ServiceError;
use crate::live::outbound::Lane;
use crate::storage::apps::RobotRow;
use crate::storage::Store;
use crate::util::Cidr;
use crate::writer::Command;

const MAX_NAME_CHARS: usize = 64;
const MAX_CIDRS: usize = 32;
/// Robots one group may have at once.
const MAX_ROBOTS_PER_GROUP: usize = 10;
/// How far a signed post's timestamp may be from the server's clock.
pub const SIGNATURE_WINDOW_MS: i64 = 3600 * 1000;

fn random_hex<const N: usize>() -> String {
    let mut b = [0u8; N];
    rand::rng().fill_bytes(&mut b);
    hex::encode(b)
}

fn token_hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

fn to_wire(r: &RobotRow) -> v1::Robot {
    v1::Robot {
        id: r.id,
        conversation_id: r.conversation_id,
        name: r.name.clone(),
        user_id: r.bot_user_id,
        signed: r.signing_secret.is_some(),
        allowed_cidrs: r.allowed_cidrs.clone(),
        created_at_ms: r.created_at,
    }
}

/// Refuses unless `user` is the owner of group `conversation_id`.
fn require_owner(store: &dyn Store, conversation_id: u64, user: u64) -> Result<(), ServiceError> {
    if store.conversation_kind(conversation_id)? != Some(ConversationKind::Group as i32) {
        return Err(ServiceError::Forbidden("robots belong to groups".into()));
    }
    match store.membership(conversation_id, user)? {
        Some(m) if m.active && m.role == MemberRole::Owner as i32 => Ok(()),
        _ => Err(ServiceError::Forbidden("only the group's owner manages its robots".into())),
    }
}

pub async fn add_robot(s: Session, r: v1::AddRobot) -> Reply {
    let name = r.name.trim().to_owned();
    if name.is_empty() || name.chars().count() > MAX_NAME_CHARS || name.chars().any(char::is_control) {
        return Err(ServiceError::BadRequest(format!(
            "a robot needs a name of 1 to {MAX_NAME_CHARS} characters"
        )));
    }
    if r.allowed_cidrs.len() > MAX_CIDRS {
        return Err(ServiceError::BadRequest(format!("at most {MAX_CIDRS} address blocks")));
    }
    for c in &r.allowed_cidrs {
        Cidr::parse(c)?;
    }
    let (user, conversation_id) = (s.user_id, r.conversation_id);
    s.shared
        .db
        .read(move |conn| {
            require_owner(conn, conversation_id, user)?;
            if conn.robots(conversation_id)?.len() >= MAX_ROBOTS_PER_GROUP {
                return Err(ServiceError::Conflict(format!(
                    "a group has at most {MAX_ROBOTS_PER_GROUP} robots"
                )));
            }
            Ok(())
        })
        .await?;
    let token = random_hex::<32>();
    let secret = r.signed.then(|| format!("SEC{}", random_hex::<32>()));
    let hash = token_hash(&token);
    let (robot_name, robot_secret, cidrs) = (name.clone(), secret.clone(), r.allowed_cidrs.clone());
    let account_suffix = random_hex::<6>();
    let write = Box::new(move |st: &dyn Store| {
        let now = crate::storage::now_ms();
        let version = st.next_dir_version()?;
        let bot = st.insert_bot_user(&format!("robot_{account_suffix}"), &robot_name, version, now)?;
        st.insert_robot(conversation_id, &robot_name, bot, user, &hash, robot_secret.as_deref(), &cidrs, now)
    });
    let robot_id = s.shared.writes.submit(write).await?;
    let robot = s
        .shared
        .db
        .read(move |conn| {
            conn.robots(conversation_id)?
                .into_iter()
                .find(|r| r.id == robot_id)
                .ok_or(ServiceError::Internal("the new robot is not there".into()))
        })
        .await?;
    // The robot joins as a member: everyone sees who posts.
    let join = Command::AddMembers { user, conversation_id, user_ids: vec![robot.bot_user_id] };
    s.shared.writer.enqueue_fanned(join, None).await?.await.map_err(|_| ServiceError::ShuttingDown)??;
    directory_changed(&s);
    let url = format!("{}/api/v1/hooks/{token}", s.shared.config.public_base_url());
    let added =
        v1::RobotAdded { robot: Some(to_wire(&robot)), url, signing_secret: secret.unwrap_or_default() };
    Ok(Some((Lane::Live, Payload::RobotAdded(added))))
}

/// Tells every online client that the directory changed (a robot's
/// account is new), so each learns its name.
fn directory_changed(s: &Session) {
    let notice = hutong_protocol::Envelope::new(0, Payload::DirectoryDelta(Default::default()));
    s.shared.hub.push_all(Lane::Live, &hutong_protocol::encode_envelope(&notice));
}

async fn robot_list(s: &Session, conversation_id: u64) -> Reply {
    let robots = s.shared.db.read(move |conn| conn.robots(conversation_id)).await?;
    let list = v1::RobotList { robots: robots.iter().map(to_wire).collect() };
    Ok(Some((Lane::Live, Payload::RobotList(list))))
}

pub async fn list_robots(s: Session, r: v1::ListRobots) -> Reply {
    let (user, conversation_id) = (s.user_id, r.conversation_id);
    s.shared.db.read(move |conn| require_owner(conn, conversation_id, user)).await?;
    robot_list(&s, conversation_id).await
}

pub async fn remove_robot(s: Session, r: v1::RemoveRobot) -> Reply {
    let (user, conversation_id, robot_id) = (s.user_id, r.conversation_id, r.robot_id);
    s.shared.db.read(move |conn| require_owner(conn, conversation_id, user)).await?;
    let write = Box::new(move |st: &dyn Store| {
        st.remove_robot(conversation_id, robot_id, crate::storage::now_ms())?
            .ok_or(ServiceError::NotFound("robot"))
    });
    let bot = s.shared.writes.submit(write).await?;
    let leave = Command::RemoveMember { user, conversation_id, target: bot };
    if let Err(e) =
        s.shared.writer.enqueue_fanned(leave, None).await?.await.map_err(|_| ServiceError::ShuttingDown)?
    {
        // Removed already (say, by hand): its URL is disabled all the same.
        tracing::debug!(error = %e, "robot account not removed from the group");
    }
    robot_list(&s, conversation_id).await
}

/// What a script posts.
pub struct Post {
    pub text: String,
    pub markdown: bool,
}

/// The signature query parameters of a post.
pub struct Signature {
    pub timestamp_ms: i64,
    pub sign: String,
}

/// Why a post was refused.
#[derive(Debug)]
pub enum Refusal {
    /// No such robot, or removed, or no longer in its group.
    Gone,
    AddressNotAllowed,
    BadSignature(&'static str),
    Service(ServiceError),
}

impl From<ServiceError> for Refusal {
    fn from(e: ServiceError) -> Self {
        Refusal::Service(e)
    }
}

/// DingTalk's signature: base64(HMAC-SHA256(secret, "<timestamp>\n<secret>")).
fn signature_matches(secret: &str, sig: &Signature) -> bool {
    use base64::Engine as _;
    let Ok(offered) = base64::engine::general_purpose::STANDARD.decode(sig.sign.trim()) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
        return false;
    };
    mac.update(format!("{}\n{secret}", sig.timestamp_ms).as_bytes());
    mac.verify_slice(&offered).is_ok()
}

/// The robot a URL token names, checked: still there, `ip` allowed, the
/// signature right (when it has a secret). Answers it and whether it may
/// still post (its creator and itself are members).
pub async fn check(
    shared: &crate::Shared,
    token: &str,
    ip: Option<IpAddr>,
    signature: Option<Signature>,
) -> Result<RobotRow, Refusal> {
    if token.is_empty() || token.len() > 128 {
        return Err(Refusal::Gone);
    }
    let hash = token_hash(token);
    let robot = shared
        .db
        .read(move |conn| {
            let Some(robot) = conn.robot_by_token(&hash)? else {
                return Ok(None);
            };
            let active = |user| -> Result<bool, ServiceError> {
                Ok(conn.membership(robot.conversation_id, user)?.is_some_and(|m| m.active))
            };
            let usable = !robot.removed && active(robot.created_by)? && active(robot.bot_user_id)?;
            Ok(usable.then_some(robot))
        })
        .await?
        .ok_or(Refusal::Gone)?;
    if !robot.allowed_cidrs.is_empty()
        && !ip.is_some_and(|ip| crate::util::address_allowed(&robot.allowed_cidrs, ip))
    {
        return Err(Refusal::AddressNotAllowed);
    }
    if let Some(secret) = &robot.signing_secret {
        let sig = signature.ok_or(Refusal::BadSignature("this robot needs timestamp and sign"))?;
        if (crate::storage::now_ms() - sig.timestamp_ms).abs() > SIGNATURE_WINDOW_MS {
            return Err(Refusal::BadSignature("the timestamp is more than an hour away"));
        }
        if !signature_matches(secret, &sig) {
            return Err(Refusal::BadSignature("the signature is wrong"));
        }
    }
    Ok(robot)
}

/// Posts into the robot's group as the robot; answers the stored entry.
pub async fn post(shared: &crate::Shared, robot: &RobotRow, post: Post) -> Result<v1::Message, ServiceError> {
    let msg = v1::SendMessage {
        conversation_id: robot.conversation_id,
        client_msg_id: format!("robot-{}", random_hex::<16>()),
        text: post.text,
        markdown: post.markdown,
        ..Default::default()
    };
    crate::writer::check_send(&msg)?;
    let cmd = Command::Send {
        sender: robot.bot_user_id,
        msg,
        ordered: Arc::new(AtomicBool::new(false)),
        folder: None,
    };
    let committed =
        shared.writer.enqueue_fanned(cmd, None).await?.await.map_err(|_| ServiceError::ShuttingDown)??;
    committed.message.ok_or(ServiceError::Internal("a send without its entry".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dingtalk_signatures() {
        use base64::Engine as _;
        let secret = "SECabc";
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(b"1700000000000\nSECabc");
        let sign = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
        assert!(signature_matches(
            secret,
            &Signature { timestamp_ms: 1_700_000_000_000, sign: sign.clone() }
        ));
        assert!(!signature_matches(secret, &Signature { timestamp_ms: 1_700_000_000_001, sign }));
        assert!(!signature_matches(secret, &Signature { timestamp_ms: 1, sign: "!!".into() }));
    }
}
