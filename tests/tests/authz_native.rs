//! The authorization matrix of the native protocol: every payload a client
//! can put in an `Envelope`, sent by every kind of caller, with the answer
//! each must get. `expected` matches the payload `oneof` exhaustively, so a
//! new message type does not build until its row is written here, and
//! `every_payload_has_a_sample` fails when a row has no request to send.
//!
//! Callers: nobody logged in; staff outside the conversation; a member; its
//! owner; a directory administrator and an auditor (neither a member: roles
//! of the directory give no rights inside conversations); a disabled and a
//! deleted person (their tokens from before no longer log in, so they are
//! answered as nobody); a person whose session token went unused past its
//! lifetime (its login is answered `SESSION_EXPIRED`, then as nobody).

use std::collections::BTreeSet;

use hutong_protocol::files::{chunk_proof, manifest_of, CheckedManifest};
use hutong_protocol::v1::{self, MemberRole};
use hutong_protocol::{ErrorCode, Payload};
use hutong_tests::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Caller {
    Anonymous,
    Staff,
    Member,
    Owner,
    Admin,
    Auditor,
    Disabled,
    Deleted,
    /// A session token past its lifetime: its login fails with
    /// `SESSION_EXPIRED` and every request is answered as for `Anonymous`.
    ExpiredToken,
}

const RUN: [Caller; 9] = [
    Caller::Anonymous,
    Caller::Staff,
    Caller::Member,
    Caller::Owner,
    Caller::Admin,
    Caller::Auditor,
    Caller::Disabled,
    Caller::Deleted,
    Caller::ExpiredToken,
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// Any answer that is not an error.
    Answered,
    Refused(ErrorCode),
}

use Outcome::{Answered, Refused};

/// Which connection a request goes on once logged in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lane {
    Chat,
    Bulk,
}

/// What the fixture made: ids the samples name.
struct Fixture {
    group: u64,
    text_seq: u64,
    file: CheckedManifest,
    /// A notice from the owner to the member, awaiting sign-off.
    notice: u64,
    ids: Ids,
}

struct Ids {
    owner: u64,
    member: u64,
    extra: u64,
}

/// Position of each payload in the oneof; exhaustive, so a new one must be
/// listed (and `COUNT` raised).
fn index(p: &Payload) -> usize {
    match p {
        Payload::Hello(_) => 0,
        Payload::HelloOk(_) => 1,
        Payload::Error(_) => 2,
        Payload::Ping(_) => 3,
        Payload::Pong(_) => 4,
        Payload::Login(_) => 5,
        Payload::LoginOk(_) => 6,
        Payload::Logout(_) => 7,
        Payload::Done(_) => 8,
        Payload::Disconnect(_) => 9,
        Payload::SendMessage(_) => 10,
        Payload::SendAck(_) => 11,
        Payload::Message(_) => 12,
        Payload::Recall(_) => 13,
        Payload::Sync(_) => 14,
        Payload::SyncResponse(_) => 15,
        Payload::FetchMessages(_) => 16,
        Payload::MessageBatch(_) => 17,
        Payload::UpdateCursor(_) => 18,
        Payload::Cursor(_) => 19,
        Payload::SubscribePresence(_) => 20,
        Payload::Presence(_) => 21,
        Payload::SetPresence(_) => 22,
        Payload::Typing(_) => 23,
        Payload::Cursors(_) => 24,
        Payload::OpenDirect(_) => 25,
        Payload::CreateGroup(_) => 26,
        Payload::RenameGroup(_) => 27,
        Payload::AddMembers(_) => 28,
        Payload::RemoveMember(_) => 29,
        Payload::LeaveGroup(_) => 30,
        Payload::SetMemberRole(_) => 31,
        Payload::Conversation(_) => 32,
        Payload::LookupUsers(_) => 33,
        Payload::UserList(_) => 34,
        Payload::DirectorySync(_) => 35,
        Payload::DirectoryDelta(_) => 36,
        Payload::ChangePassword(_) => 37,
        Payload::PrepareUpload(_) => 38,
        Payload::UploadPlan(_) => 39,
        Payload::PutChunk(_) => 40,
        Payload::ChunkStored(_) => 41,
        Payload::CommitUpload(_) => 42,
        Payload::UploadCommitted(_) => 43,
        Payload::GetFile(_) => 44,
        Payload::FileManifest(_) => 45,
        Payload::GetChunk(_) => 46,
        Payload::ChunkData(_) => 47,
        Payload::ProveChunks(_) => 48,
        Payload::ChunksProven(_) => 49,
        Payload::GetReadList(_) => 50,
        Payload::ReadList(_) => 51,
        Payload::EditMessage(_) => 52,
        Payload::React(_) => 53,
        Payload::PinMessage(_) => 54,
        Payload::ForwardMessages(_) => 55,
        Payload::ForwardResult(_) => 56,
        Payload::MassSend(_) => 57,
        Payload::MassSendStatus(_) => 58,
        Payload::GetMassSendStatus(_) => 59,
        Payload::AddRobot(_) => 60,
        Payload::RobotAdded(_) => 61,
        Payload::ListRobots(_) => 62,
        Payload::RobotList(_) => 63,
        Payload::RemoveRobot(_) => 64,
        Payload::SendNotice(_) => 65,
        Payload::NoticeSent(_) => 66,
        Payload::Notice(_) => 67,
        Payload::NoticeSync(_) => 68,
        Payload::NoticeBatch(_) => 69,
        Payload::MarkNotice(_) => 70,
        Payload::WithdrawNotice(_) => 71,
        Payload::RemindNotice(_) => 72,
        Payload::NoticeReminded(_) => 73,
        Payload::GetNoticeStatus(_) => 74,
        Payload::NoticeStatus(_) => 75,
        Payload::ListSentNotices(_) => 76,
        Payload::SentNotices(_) => 77,
        Payload::NoticeProgress(_) => 78,
    }
}

const COUNT: usize = 79;

/// The answer `caller` must get for `p`, and the connection it goes on.
fn expected(caller: Caller, p: &Payload) -> (Outcome, Lane) {
    use Caller::*;
    let logged_in = matches!(caller, Staff | Member | Owner | Admin | Auditor);
    let in_group = matches!(caller, Member | Owner);
    let before_login = Refused(ErrorCode::NotAuthenticated);
    // Rights inside the conversation: members, the owner for management.
    let member_only = if in_group { Answered } else { Refused(ErrorCode::Forbidden) };
    let owner_only = if caller == Owner { Answered } else { Refused(ErrorCode::Forbidden) };
    let anyone = Answered;
    let outcome = match p {
        // Set-up: a second Hello is out of place; Ping is always answered.
        Payload::Hello(_) => {
            if logged_in {
                Refused(ErrorCode::BadRequest)
            } else {
                before_login
            }
        }
        Payload::Ping(_) => Answered,
        // The samples log in with a wrong password.
        Payload::Login(_) => {
            if logged_in {
                Refused(ErrorCode::BadRequest)
            } else {
                Refused(ErrorCode::BadCredentials)
            }
        }
        // Allowed before login only (the answer to PASSWORD_CHANGE_REQUIRED); wrong old password here.
        Payload::ChangePassword(_) => {
            if logged_in {
                Refused(ErrorCode::BadRequest)
            } else {
                Refused(ErrorCode::BadCredentials)
            }
        }
        // Frames only the server sends.
        Payload::HelloOk(_)
        | Payload::Error(_)
        | Payload::Pong(_)
        | Payload::LoginOk(_)
        | Payload::Done(_)
        | Payload::Disconnect(_)
        | Payload::SendAck(_)
        | Payload::Message(_)
        | Payload::SyncResponse(_)
        | Payload::MessageBatch(_)
        | Payload::Cursor(_)
        | Payload::Presence(_)
        | Payload::Cursors(_)
        | Payload::Conversation(_)
        | Payload::UserList(_)
        | Payload::ReadList(_)
        | Payload::ForwardResult(_)
        | Payload::MassSendStatus(_)
        | Payload::DirectoryDelta(_)
        | Payload::UploadPlan(_)
        | Payload::ChunkStored(_)
        | Payload::UploadCommitted(_)
        | Payload::FileManifest(_)
        | Payload::ChunkData(_)
        | Payload::ChunksProven(_)
        | Payload::RobotAdded(_)
        | Payload::RobotList(_)
        | Payload::NoticeSent(_)
        | Payload::Notice(_)
        | Payload::NoticeBatch(_)
        | Payload::NoticeReminded(_)
        | Payload::NoticeStatus(_)
        | Payload::SentNotices(_)
        | Payload::NoticeProgress(_) => {
            if logged_in {
                Refused(ErrorCode::BadRequest)
            } else {
                before_login
            }
        }
        _ if !logged_in => before_login,
        Payload::Logout(_) => anyone,
        Payload::SendMessage(_) => member_only,
        // The owner's own message; a member may recall only their own.
        Payload::Recall(_) => owner_only,
        // Likewise an edit: only the sender of a text message may edit it.
        Payload::EditMessage(_) => owner_only,
        // Any member may react to a message of the group.
        Payload::React(_) => member_only,
        // Any member may pin a message of the group.
        Payload::PinMessage(_) => member_only,
        // Forwarding takes reading the source and membership of the target (here both the group).
        Payload::ForwardMessages(_) => member_only,
        // Anyone may mass-send to people they may know of, and ask after their own.
        Payload::MassSend(_) => anyone,
        Payload::GetMassSendStatus(_) => anyone,
        Payload::Sync(_) => anyone,
        Payload::FetchMessages(_) => member_only,
        Payload::GetReadList(_) => member_only,
        Payload::UpdateCursor(_) => member_only,
        Payload::SubscribePresence(_) => anyone,
        Payload::SetPresence(_) => anyone,
        Payload::Typing(_) => member_only,
        Payload::OpenDirect(_) => anyone,
        Payload::CreateGroup(_) => anyone,
        // Any member may name the group and bring people in.
        Payload::RenameGroup(_) => member_only,
        Payload::AddMembers(_) => member_only,
        // Removing others takes the group's owner (or an admin of it).
        Payload::RemoveMember(_) => owner_only,
        // Members leave (an owner hands the group to the senior remaining member).
        Payload::LeaveGroup(_) => member_only,
        Payload::SetMemberRole(_) => owner_only,
        // Group robots: the owner only (the sample removes a robot the group does not have).
        Payload::AddRobot(_) | Payload::ListRobots(_) => owner_only,
        Payload::RemoveRobot(_) => {
            if caller == Owner {
                Refused(ErrorCode::NotFound)
            } else {
                Refused(ErrorCode::Forbidden)
            }
        }
        // Notices: to a group its members may address; staff address
        // people and groups, not departments (see the notices test).
        Payload::SendNotice(_) => {
            if in_group {
                Answered
            } else {
                Refused(ErrorCode::NotFound)
            }
        }
        Payload::NoticeSync(_) | Payload::ListSentNotices(_) => anyone,
        // Signing: only a recipient (the member); to anyone else the notice does not exist.
        Payload::MarkNotice(_) => {
            if caller == Member {
                Answered
            } else {
                Refused(ErrorCode::NotFound)
            }
        }
        // The table, reminders and withdrawal: its sender and administrators.
        Payload::GetNoticeStatus(_) | Payload::RemindNotice(_) | Payload::WithdrawNotice(_) => {
            if matches!(caller, Owner | Admin) {
                Answered
            } else {
                Refused(ErrorCode::NotFound)
            }
        }
        Payload::LookupUsers(_) => anyone,
        Payload::DirectorySync(_) => anyone,
        Payload::PrepareUpload(_) => anyone,
        // A chunk nobody announced.
        Payload::PutChunk(_) => Refused(ErrorCode::Forbidden),
        // A file id nobody announced; a challenge nobody was given.
        Payload::CommitUpload(_) | Payload::ProveChunks(_) => Refused(ErrorCode::Conflict),
        // A file in the group: whether it exists is nobody else's business.
        Payload::GetFile(_) | Payload::GetChunk(_) => {
            if in_group {
                Answered
            } else {
                Refused(ErrorCode::NotFound)
            }
        }
    };
    let lane = match p {
        Payload::PutChunk(_) | Payload::GetChunk(_) => Lane::Bulk,
        _ => Lane::Chat,
    };
    (outcome, lane)
}

/// One request of each kind, state-changing ones last (each caller runs on
/// a server of its own).
fn samples(f: &Fixture) -> Vec<Payload> {
    let g = f.group;
    let stranger = manifest_of(b"announced by nobody");
    vec![
        Payload::Hello(v1::Hello {
            protocol_version: hutong_protocol::PROTOCOL_VERSION,
            client_name: "m".into(),
        }),
        Payload::HelloOk(v1::HelloOk::default()),
        Payload::Error(v1::Error::default()),
        Payload::Ping(v1::Ping { nonce: 1 }),
        Payload::Pong(v1::Pong { nonce: 1 }),
        Payload::Login(v1::Login {
            account: "owner".into(),
            secret: Some(v1::login::Secret::Password("wrong-password".into())),
            device: "m".into(),
            bulk: false,
        }),
        Payload::LoginOk(v1::LoginOk::default()),
        Payload::Done(v1::Done {}),
        Payload::Disconnect(v1::Disconnect::default()),
        Payload::SendMessage(v1::SendMessage {
            conversation_id: g,
            client_msg_id: "0190a0b0-0000-7000-8000-0000000000aa".into(),
            text: "matrix".into(),
            ..Default::default()
        }),
        Payload::SendAck(v1::SendAck::default()),
        Payload::Message(v1::Message::default()),
        Payload::Sync(v1::SyncRequest::default()),
        Payload::SyncResponse(v1::SyncResponse::default()),
        Payload::FetchMessages(v1::FetchMessages { conversation_id: g, limit: 10, ..Default::default() }),
        Payload::MessageBatch(v1::MessageBatch::default()),
        Payload::UpdateCursor(v1::UpdateCursor { conversation_id: g, delivered_seq: 1, read_seq: 1 }),
        Payload::Cursor(v1::Cursor::default()),
        Payload::SubscribePresence(v1::SubscribePresence { user_ids: vec![f.ids.owner, f.ids.member] }),
        Payload::Presence(v1::Presence::default()),
        Payload::SetPresence(v1::SetPresence { status: v1::PresenceStatus::Away as i32 }),
        Payload::Typing(v1::Typing { conversation_id: g, user_id: 0 }),
        Payload::Cursors(v1::CursorBatch::default()),
        Payload::OpenDirect(v1::OpenDirect { user_id: f.ids.extra }),
        Payload::CreateGroup(v1::CreateGroup { name: "new".into(), member_ids: vec![f.ids.extra] }),
        Payload::Conversation(v1::ConversationState::default()),
        Payload::LookupUsers(v1::LookupUsers { user_ids: vec![f.ids.owner], ..Default::default() }),
        Payload::UserList(v1::UserList::default()),
        Payload::GetReadList(v1::GetReadList { conversation_id: g, seq: f.text_seq }),
        Payload::ReadList(v1::ReadList::default()),
        Payload::ListRobots(v1::ListRobots { conversation_id: g }),
        Payload::RobotAdded(v1::RobotAdded::default()),
        Payload::RobotList(v1::RobotList::default()),
        Payload::RemoveRobot(v1::RemoveRobot { conversation_id: g, robot_id: 999_999 }),
        Payload::DirectorySync(v1::DirectorySync::default()),
        Payload::DirectoryDelta(v1::DirectoryDelta::default()),
        Payload::ChangePassword(v1::ChangePassword {
            account: "owner".into(),
            old_password: "wrong-password".into(),
            new_password: "another-password-2".into(),
        }),
        Payload::PrepareUpload(v1::PrepareUpload { files: vec![manifest_of(b"matrix upload").to_wire()] }),
        Payload::UploadPlan(v1::UploadPlan::default()),
        Payload::PutChunk(v1::PutChunk {
            hash: stranger.chunks[0].to_vec(),
            data: b"announced by nobody".to_vec().into(),
        }),
        Payload::ChunkStored(v1::ChunkStored::default()),
        Payload::CommitUpload(v1::CommitUpload { file_ids: vec![stranger.id.to_vec()] }),
        Payload::UploadCommitted(v1::UploadCommitted::default()),
        Payload::ProveChunks(v1::ProveChunks {
            challenge: vec![7; 32],
            proofs: vec![v1::ChunkProof {
                hash: f.file.chunks[0].to_vec(),
                proof: chunk_proof(&[7; 32], b"guess").to_vec(),
            }],
        }),
        Payload::ChunksProven(v1::ChunksProven::default()),
        Payload::GetFile(v1::GetFile { id: f.file.id.to_vec() }),
        Payload::FileManifest(v1::FileManifest::default()),
        Payload::GetChunk(v1::GetChunk { file_id: f.file.id.to_vec(), index: 0 }),
        Payload::ChunkData(v1::ChunkData::default()),
        // State changes, in an order that keeps each one meaningful.
        // The edit before the recall: a recalled message cannot be edited.
        Payload::EditMessage(v1::EditMessage {
            conversation_id: g,
            seq: f.text_seq,
            text: "edited".into(),
            client_msg_id: String::new(),
        }),
        // The reaction before the recall too: a recalled message takes none.
        Payload::React(v1::React {
            conversation_id: g, seq: f.text_seq, emoji: "👍".into(), remove: false
        }),
        // The pin before the recall too: a recalled message cannot be pinned.
        Payload::PinMessage(v1::PinMessage { conversation_id: g, seq: f.text_seq, unpin: false }),
        // The forward before the recall too: a recalled message is not forwarded.
        Payload::ForwardMessages(v1::ForwardMessages {
            from_conversation_id: g,
            seqs: vec![f.text_seq],
            to_conversation_ids: vec![g],
            merged: true,
            client_msg_id: "matrix-forward".into(),
        }),
        Payload::ForwardResult(v1::ForwardResult::default()),
        Payload::MassSend(v1::MassSend {
            text: "matrix {name}".into(),
            user_ids: vec![f.ids.owner, f.ids.member],
            client_msg_id: "matrix-mass".into(),
            ..Default::default()
        }),
        Payload::MassSendStatus(v1::MassSendStatus::default()),
        Payload::GetMassSendStatus(v1::GetMassSendStatus { client_msg_id: "matrix-mass".into() }),
        Payload::SendNotice(v1::SendNotice {
            client_id: "matrix-notice".into(),
            title: "matrix".into(),
            body: "to the group".into(),
            sign_required: true,
            targets: Some(v1::NoticeTargets { groups: vec![g], ..Default::default() }),
            ..Default::default()
        }),
        Payload::NoticeSent(v1::NoticeSent::default()),
        Payload::Notice(v1::Notice::default()),
        Payload::NoticeSync(v1::NoticeSync::default()),
        Payload::NoticeBatch(v1::NoticeBatch::default()),
        Payload::GetNoticeStatus(v1::GetNoticeStatus { notice_id: f.notice, ..Default::default() }),
        Payload::NoticeStatus(v1::NoticeStatus::default()),
        Payload::ListSentNotices(v1::ListSentNotices::default()),
        Payload::SentNotices(v1::SentNotices::default()),
        Payload::NoticeProgress(v1::NoticeProgress::default()),
        // Signed before the reminder and the withdrawal (a withdrawn notice is not signed).
        Payload::MarkNotice(v1::MarkNotice {
            notice_ids: vec![f.notice],
            action: v1::NoticeAction::NoticeSign as i32,
            ..Default::default()
        }),
        Payload::RemindNotice(v1::RemindNotice { notice_id: f.notice }),
        Payload::NoticeReminded(v1::NoticeReminded::default()),
        Payload::WithdrawNotice(v1::WithdrawNotice { notice_id: f.notice }),
        Payload::Recall(v1::Recall { conversation_id: g, seq: f.text_seq }),
        Payload::RenameGroup(v1::RenameGroup { conversation_id: g, name: "renamed".into() }),
        Payload::AddMembers(v1::AddMembers { conversation_id: g, user_ids: vec![f.ids.extra] }),
        Payload::AddRobot(v1::AddRobot { conversation_id: g, name: "matrix".into(), ..Default::default() }),
        Payload::SetMemberRole(v1::SetMemberRole {
            conversation_id: g,
            user_id: f.ids.member,
            role: MemberRole::Member as i32,
        }),
        Payload::RemoveMember(v1::RemoveMember { conversation_id: g, user_id: f.ids.extra }),
        Payload::LeaveGroup(v1::LeaveGroup { conversation_id: g }),
        Payload::Logout(v1::Logout {}),
    ]
}

#[test]
fn every_payload_has_a_sample() {
    let f = Fixture {
        group: 1,
        text_seq: 1,
        file: manifest_of(b"x"),
        notice: 1,
        ids: Ids { owner: 1, member: 2, extra: 3 },
    };
    let covered: BTreeSet<usize> = samples(&f).iter().map(index).collect();
    let all: BTreeSet<usize> = (0..COUNT).collect();
    assert_eq!(
        covered,
        all,
        "payloads without a sample request: {:?}",
        all.difference(&covered).collect::<Vec<_>>()
    );
    assert_eq!(samples(&f).len(), COUNT, "one sample per payload");
}

const ACCOUNTS: [&str; 9] =
    ["owner", "member", "staff", "director", "auditor", "extra", "disabled", "deleted", "expired"];

/// A server with the fixture: a group of owner and member holding a text
/// and a file message; roles, and the disabled and deleted people's tokens
/// taken before they were disabled and deleted.
async fn fixture() -> (TestServer, Fixture, Vec<(String, String)>) {
    let server = TestServer::start().await;
    let ids = server.add_users(&ACCOUNTS);
    let db = server.db();
    db.execute("UPDATE users SET roles = 'admin' WHERE account = 'director'", []).unwrap();
    db.execute("UPDATE users SET roles = 'auditor' WHERE account = 'auditor'", []).unwrap();
    let mut tokens = Vec::new();
    for account in ACCOUNTS {
        let mut c = RawConn::connect(server.tcp).await;
        c.hello().await;
        match c.login(account, PASSWORD).await.payload {
            Some(Payload::LoginOk(ok)) => tokens.push((account.to_owned(), ok.token)),
            other => panic!("login of {account}: {other:?}"),
        }
    }
    let token = |a: &str| tokens.iter().find(|(n, _)| n == a).unwrap().1.clone();
    // The owner's group, a text and a file in it.
    let mut owner = RawConn::connect(server.tcp).await;
    owner.hello().await;
    assert!(matches!(owner.login_token("owner", &token("owner"), "raw", false).await, Payload::LoginOk(_)));
    let create = v1::CreateGroup { name: "matrix".into(), member_ids: vec![ids[1]] };
    let Payload::Conversation(g) = owner.call(10, Payload::CreateGroup(create)).await else { panic!() };
    let text = v1::SendMessage {
        conversation_id: g.id,
        client_msg_id: "0190a0b0-0000-7000-8000-000000000001".into(),
        text: "hello".into(),
        ..Default::default()
    };
    let Payload::SendAck(ack) = owner.call(11, Payload::SendMessage(text)).await else { panic!() };
    let data = b"a file in the group".to_vec();
    let file = manifest_of(&data);
    let Payload::UploadPlan(_) =
        owner.call(12, Payload::PrepareUpload(v1::PrepareUpload { files: vec![file.to_wire()] })).await
    else {
        panic!()
    };
    let mut bulk = RawConn::connect_bulk(server.tcp).await;
    bulk.hello().await;
    assert!(matches!(bulk.login_token("owner", &token("owner"), "raw", true).await, Payload::LoginOk(_)));
    let put = v1::PutChunk { hash: file.chunks[0].to_vec(), data: data.clone().into() };
    assert!(matches!(bulk.call(13, Payload::PutChunk(put)).await, Payload::ChunkStored(_)));
    let commit = v1::CommitUpload { file_ids: vec![file.id.to_vec()] };
    assert!(matches!(owner.call(14, Payload::CommitUpload(commit)).await, Payload::UploadCommitted(_)));
    let attachment = v1::Attachment {
        kind: v1::AttachmentKind::AttachmentFile as i32,
        file_id: file.id.to_vec(),
        name: "f.txt".into(),
        size: file.size,
        ..Default::default()
    };
    let msg = v1::SendMessage {
        conversation_id: g.id,
        client_msg_id: "0190a0b0-0000-7000-8000-000000000002".into(),
        text: "f.txt".into(),
        attachment: Some(attachment),
        ..Default::default()
    };
    assert!(matches!(owner.call(15, Payload::SendMessage(msg)).await, Payload::SendAck(_)));
    let notice = v1::SendNotice {
        client_id: "fixture-notice".into(),
        title: "sign this".into(),
        body: "please".into(),
        sign_required: true,
        targets: Some(v1::NoticeTargets { users: vec![ids[1]], ..Default::default() }),
        ..Default::default()
    };
    let Payload::NoticeSent(sent) = owner.call(16, Payload::SendNotice(notice)).await else { panic!() };
    db.execute("UPDATE users SET disabled = 1 WHERE account = 'disabled'", []).unwrap();
    db.execute("UPDATE users SET disabled = 1, deleted = 1 WHERE account = 'deleted'", []).unwrap();
    // Unused since the epoch: far past any session lifetime.
    db.execute(
        "UPDATE sessions SET last_seen_at = 0 WHERE user_id = (SELECT id FROM users WHERE account = 'expired')",
        [],
    )
    .unwrap();
    let fixture = Fixture {
        group: g.id,
        text_seq: ack.seq,
        file,
        notice: sent.notice_id,
        ids: Ids { owner: ids[0], member: ids[1], extra: ids[5] },
    };
    (server, fixture, tokens)
}

fn outcome_of(p: &Payload) -> Outcome {
    match p {
        Payload::Error(e) => Refused(ErrorCode::try_from(e.code).unwrap_or(ErrorCode::Unspecified)),
        _ => Answered,
    }
}

/// A fresh connection of `caller` (logged in with its token when it has
/// one that works), on `lane`.
async fn connection(server: &TestServer, caller: Caller, tokens: &[(String, String)], lane: Lane) -> RawConn {
    let account = match caller {
        Caller::Anonymous => None,
        Caller::Staff => Some("staff"),
        Caller::Member => Some("member"),
        Caller::Owner => Some("owner"),
        Caller::Admin => Some("director"),
        Caller::Auditor => Some("auditor"),
        Caller::Disabled => Some("disabled"),
        Caller::Deleted => Some("deleted"),
        Caller::ExpiredToken => Some("expired"),
    };
    let mut c = match lane {
        Lane::Chat => RawConn::connect(server.tcp).await,
        Lane::Bulk => RawConn::connect_bulk(server.tcp).await,
    };
    c.hello().await;
    if let Some(account) = account {
        let token = &tokens.iter().find(|(n, _)| n == account).unwrap().1;
        let answer = c.login_token(account, token, "raw", lane == Lane::Bulk).await;
        let works = matches!(caller, Caller::Disabled | Caller::Deleted | Caller::ExpiredToken);
        assert_eq!(matches!(answer, Payload::LoginOk(_)), !works, "{caller:?}'s token login: {answer:?}");
    }
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_type_for_every_kind_of_caller() {
    let mut wrong = Vec::new();
    let mut checked = 0;
    for caller in RUN {
        let (server, f, tokens) = fixture().await;
        if caller == Caller::ExpiredToken {
            // The first use of the expired token says so (and ends its session).
            let mut c = RawConn::connect(server.tcp).await;
            c.hello().await;
            let token = &tokens.iter().find(|(n, _)| n == "expired").unwrap().1;
            match c.login_token("expired", token, "raw", false).await {
                Payload::Error(e) => assert_eq!(e.code, ErrorCode::SessionExpired as i32, "{e:?}"),
                other => panic!("an expired token logged in: {other:?}"),
            }
        }
        for (i, p) in samples(&f).into_iter().enumerate() {
            let (want, lane) = expected(caller, &p);
            let mut c = connection(&server, caller, &tokens, lane).await;
            let got = outcome_of(&c.call(1000 + i as u64, p.clone()).await);
            checked += 1;
            if got != want {
                wrong.push(format!("{caller:?} {:?}: expected {want:?}, got {got:?}", index(&p)));
            }
        }
        server.stop().await;
    }
    assert!(wrong.is_empty(), "{} of {checked} answers differ:\n{}", wrong.len(), wrong.join("\n"));
    assert_eq!(checked, RUN.len() * COUNT);
}
