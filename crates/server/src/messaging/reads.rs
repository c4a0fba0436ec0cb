//! Messaging's reads outside the writer (run on the read pool through the
//! storage traits): fetching messages a member may read, one conversation's
//! state as a member sees it, the conversation sync's pages, and user lookups.

use hutong_protocol::v1::{self, ConversationState, Message};

use crate::error::ServiceError;
use crate::storage::Store;

/// Messages a member may read: all of them while active, up to `until_seq` after leaving.
pub fn fetch_messages(
    store: &dyn Store,
    user_id: u64,
    req: &v1::FetchMessages,
    max_limit: u32,
) -> Result<v1::MessageBatch, ServiceError> {
    let m = store.membership(req.conversation_id, user_id)?.ok_or(ServiceError::NotMember)?;
    let ceiling = if m.active { u64::MAX >> 1 } else { m.until_seq.unwrap_or(0) };
    let limit = req.limit.clamp(1, max_limit);
    let mut messages: Vec<Message> = if req.before_seq > 0 {
        let mut v =
            within_budget(store.messages_before(req.conversation_id, req.before_seq, ceiling, limit)?);
        v.reverse();
        v
    } else {
        within_budget(store.messages_after(req.conversation_id, req.after_seq, ceiling, limit)?)
    };
    messages.retain(|m| m.seq <= ceiling);
    let last_seq =
        store.conversation(req.conversation_id)?.ok_or(ServiceError::NotFound("conversation"))?.last_seq;
    Ok(v1::MessageBatch { conversation_id: req.conversation_id, messages, last_seq: last_seq.min(ceiling) })
}

/// Who of the conversation's current members has read the message at
/// `req.seq` and who has not, from the members' read cursors: one pass over
/// the member rows, however large the group. The sender is in neither list.
pub fn read_list(
    store: &dyn Store,
    user_id: u64,
    req: &v1::GetReadList,
) -> Result<v1::ReadList, ServiceError> {
    let member = store.membership(req.conversation_id, user_id)?.filter(|m| m.active);
    member.ok_or(ServiceError::NotMember)?;
    let message = store
        .messages_after(req.conversation_id, req.seq.saturating_sub(1), req.seq, 1)?
        .into_iter()
        .find(|m| m.seq == req.seq)
        .ok_or(ServiceError::NotFound("message"))?;
    let mut list = v1::ReadList { conversation_id: req.conversation_id, seq: req.seq, ..Default::default() };
    for row in store.member_rows(req.conversation_id)? {
        let member = row.member;
        if !row.active || member.user_id == message.sender_id {
            continue;
        }
        if member.read_seq >= req.seq {
            list.read_user_ids.push(member.user_id);
        } else {
            list.unread_user_ids.push(member.user_id);
        }
    }
    Ok(list)
}

/// Bytes of payload one answer may carry, well under the frame limit.
const ANSWER_BUDGET: usize = hutong_protocol::MAX_FRAME_LEN / 2;

/// The longest prefix of `messages` that fits one answer (at least one message).
fn within_budget(mut messages: Vec<Message>) -> Vec<Message> {
    use prost::Message as _;
    let mut used = 0;
    let keep = messages
        .iter()
        .take_while(|m| {
            used += m.encoded_len() + 8;
            used <= ANSWER_BUDGET
        })
        .count();
    messages.truncate(keep.max(1));
    messages
}

/// One conversation as `user_id` sees it (members and their cursors included).
pub fn conversation_state(
    store: &dyn Store,
    conversation_id: u64,
    user_id: u64,
) -> Result<ConversationState, ServiceError> {
    let c = store.conversation(conversation_id)?.ok_or(ServiceError::NotFound("conversation"))?;
    let mut members = Vec::new();
    let mut me: Option<(bool, Option<u64>, u64)> = None;
    for row in store.member_rows(conversation_id)? {
        if row.member.user_id == user_id {
            me = Some((row.active, row.until_seq, row.version));
        }
        if row.active {
            members.push(row.member);
        }
    }
    let (active, until, mversion) = me.ok_or(ServiceError::NotMember)?;
    Ok(ConversationState {
        id: conversation_id,
        kind: c.kind,
        name: c.name,
        last_seq: if active { c.last_seq } else { until.unwrap_or(0).min(c.last_seq) },
        members: if active { members } else { Vec::new() },
        active,
        version: if active { c.version.max(mversion) } else { mversion },
        first_seq: c.first_seq,
    })
}

/// Most conversations one sync page holds.
pub const SYNC_PAGE_MAX: u32 = 500;

/// Conversations of `user_id` whose key (version, conversation id) comes
/// after `(since, since_id)`, in key order, paged.
///
/// The key is unique, so a page may end anywhere, even inside a run of
/// conversations with the same version (retention and migrations make such
/// runs), and the next page starts right after it. The answer's key is the
/// last conversation's (or the request's when nothing is newer).
pub fn sync(
    store: &dyn Store,
    user_id: u64,
    since: u64,
    since_id: u64,
    limit: u32,
) -> Result<v1::SyncResponse, ServiceError> {
    let limit = limit.clamp(1, SYNC_PAGE_MAX);
    let ids = store.sync_keys(user_id, since, since_id, limit + 1)?;
    let mut more = ids.len() > limit as usize;
    let mut key = (since, since_id);
    let mut conversations = Vec::new();
    let mut used = 0;
    for (id, v) in ids.into_iter().take(limit as usize) {
        if used > ANSWER_BUDGET {
            // The rest comes with the next request, from this key on.
            more = true;
            break;
        }
        let mut state = conversation_state(store, id, user_id)?;
        // The state is read after the listing; pin the reported version to the
        // listing's so paging never skips a change that happened in between.
        state.version = v;
        key = (v, id);
        used += prost::Message::encoded_len(&state);
        conversations.push(state);
    }
    Ok(v1::SyncResponse { conversations, version: key.0, more, conversation_id: key.1 })
}

pub fn lookup_users(store: &dyn Store, req: &v1::LookupUsers) -> Result<v1::UserList, ServiceError> {
    let mut users = Vec::new();
    for account in req.accounts.iter().take(1000) {
        users.extend(store.user_by_account(account)?);
    }
    for id in req.user_ids.iter().take(1000) {
        users.extend(store.user_by_id(*id)?);
    }
    Ok(v1::UserList { users })
}
