//! Events of integration-API applications: recorded in `app_events` (in
//! the caller's transaction: [`record`] takes the store, so any domain can
//! call it, the notices' sign-offs and button clicks too), POSTed to the
//! application's callback URL by [`deliver`], retried with exponential
//! back-off for a day, and readable by the application itself
//! (`GET /api/v1/events`, long polling) and by administrators (the
//! deliveries with their state, attempts and last error). Delivered and
//! failed events are forgotten after a week.
//!
//! A delivery is `POST <callback_url>` with the event as JSON and the
//! headers `X-Hutong-Timestamp` (ms) and `X-Hutong-Signature:
//! sha256=<hex HMAC-SHA256(signing secret, timestamp + "." + body)>`; any
//! 2xx answer delivers it. Callback URLs are reached over plain HTTP only
//! for now (the server has no root certificates to check an HTTPS peer).

use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, Mac};
use serde_json::json;
use sha2::Sha256;
use tokio_util::sync::CancellationToken;

use crate::error::ServiceError;
pub use crate::storage::apps::AppEvent;
use crate::storage::Store;

/// How long an event is retried before it is marked failed.
pub const RETRY_FOR_MS: i64 = 24 * 3600 * 1000;
/// The first retry's delay; each next one doubles, up to [`MAX_DELAY_MS`].
pub const FIRST_DELAY_MS: i64 = 1000;
const MAX_DELAY_MS: i64 = 3600 * 1000;
/// A callback that does not answer within this is a failed attempt.
const CALLBACK_TIMEOUT: Duration = Duration::from_secs(10);
/// Events delivered per round.
const BATCH: u32 = 32;
/// How long delivered and failed events are kept (for the console and for
/// pulls that fell behind); pending ones are kept until they are neither.
pub const KEEP_MS: i64 = 7 * 24 * 3600 * 1000;
/// How often old events are forgotten.
const FORGET_EVERY: Duration = Duration::from_secs(3600);

/// Kind of the event "a person sent a message to the application's bot".
pub const MESSAGE_RECEIVED: &str = "message.received";

/// Kind of the event "a recipient signed off one of the application's notices".
pub const NOTICE_SIGNED: &str = "notice.signed";
/// Kind of the event "a recipient chose a button of one of the application's notices".
pub const NOTICE_CHOSEN: &str = "notice.chosen";

/// Records an event of application `app_id` in the caller's transaction;
/// `data` is its JSON. Deliveries start within a second of the commit.
pub fn record(
    store: &dyn Store,
    app_id: u64,
    kind: &str,
    data: &serde_json::Value,
) -> Result<u64, ServiceError> {
    store.insert_event(app_id, kind, &data.to_string(), crate::storage::now_ms())
}

/// Records a `message.received` event if `to` is an application's bot.
pub fn message_to_bot(
    store: &dyn Store,
    to: u64,
    message: &hutong_protocol::v1::Message,
) -> Result<Option<u64>, ServiceError> {
    let Some(app_id) = store.app_of_bot(to)? else {
        return Ok(None);
    };
    let data = json!({
        "conversation_id": message.conversation_id,
        "seq": message.seq,
        "sender_id": message.sender_id,
        "text": message.text,
        "sent_at_ms": message.sent_at_ms,
    });
    record(store, app_id, MESSAGE_RECEIVED, &data).map(Some)
}

/// Records `notice.signed` (or `notice.chosen`) when the notice whose
/// recipient row changed was sent by an application's bot; whether it did.
/// Reads and deliveries are no events: the status table has them.
pub fn notice_marked(
    store: &dyn Store,
    action: hutong_protocol::v1::NoticeAction,
    changed: &crate::storage::notices::Changed,
) -> Result<bool, ServiceError> {
    use hutong_protocol::v1::NoticeAction;
    let kind = match action {
        NoticeAction::NoticeSign => NOTICE_SIGNED,
        NoticeAction::NoticeChoose => NOTICE_CHOSEN,
        NoticeAction::NoticeDelivered | NoticeAction::NoticeRead => return Ok(false),
    };
    let Some(app_id) = store.app_of_bot(changed.sender_id)? else {
        return Ok(false);
    };
    let r = &changed.recipient;
    let (account, name) = store.person(r.user_id)?.map(|p| (p.account, p.display_name)).unwrap_or_default();
    let mut data = json!({
        "notice_id": changed.notice_id,
        "user_id": r.user_id,
        "account": account,
        "name": name,
        "department_id": r.department_id,
    });
    if kind == NOTICE_SIGNED {
        data["signed_at_ms"] = json!(r.signed_at_ms);
        data["device"] = json!(r.signed_device);
    } else {
        data["chosen"] = json!(r.chosen);
        data["comment"] = json!(r.comment);
    }
    record(store, app_id, kind, &data)?;
    Ok(true)
}

/// The JSON an event is delivered and pulled as.
pub fn body(e: &AppEvent) -> serde_json::Value {
    let data: serde_json::Value = serde_json::from_str(&e.data).unwrap_or(serde_json::Value::Null);
    json!({ "id": e.id, "kind": e.kind, "created_at_ms": e.created_at, "data": data })
}

/// `sha256=<hex HMAC-SHA256(secret, timestamp + "." + body)>`.
pub fn signature(secret: &str, timestamp_ms: i64, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key");
    mac.update(format!("{timestamp_ms}.{body}").as_bytes());
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// The delay before attempt `attempts + 1`, after `attempts` failed ones.
pub fn delay_after(attempts: u32) -> i64 {
    FIRST_DELAY_MS.saturating_mul(1 << attempts.saturating_sub(1).min(20)).min(MAX_DELAY_MS)
}

/// Delivers due events until `shutdown`: a round every second, or sooner
/// when `wake` is notified.
pub async fn deliver(
    db: crate::storage::Db,
    writes: Arc<dyn crate::storage::WriteQueue>,
    wake: Arc<tokio::sync::Notify>,
    shutdown: CancellationToken,
) {
    let http = match reqwest::Client::builder().timeout(CALLBACK_TIMEOUT).build() {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "no HTTP client: events are not delivered (they can be pulled)");
            return;
        }
    };
    let mut last_forget: Option<tokio::time::Instant> = None;
    loop {
        if last_forget.is_none_or(|at| at.elapsed() >= FORGET_EVERY) {
            last_forget = Some(tokio::time::Instant::now());
            let before = crate::storage::now_ms() - KEEP_MS;
            let forget = Box::new(move |st: &dyn Store| st.forget_old_events(before).map(|n| n as u64));
            if let Err(e) = writes.submit(forget).await {
                tracing::warn!(error = %e, "old events not forgotten");
            }
        }
        let due = db.read(|conn| conn.due_events(crate::storage::now_ms(), BATCH)).await;
        match due {
            Ok(due) => {
                for d in due {
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        () = attempt(&http, &writes, d) => {}
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "reading due events failed"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = wake.notified() => {}
        }
    }
}

async fn attempt(
    http: &reqwest::Client,
    writes: &Arc<dyn crate::storage::WriteQueue>,
    d: crate::storage::apps::DueEvent,
) {
    let body = body(&d.event).to_string();
    let timestamp = crate::storage::now_ms();
    let outcome = http
        .post(&d.callback_url)
        .header("content-type", "application/json")
        .header("x-hutong-timestamp", timestamp.to_string())
        .header("x-hutong-signature", signature(&d.signing_secret, timestamp, &body))
        .body(body)
        .send()
        .await;
    let error = match outcome {
        Ok(resp) if resp.status().is_success() => String::new(),
        Ok(resp) => format!("HTTP {}", resp.status().as_u16()),
        // Without the URL: it may hold a token of the application's.
        Err(e) => format!("{}", e.without_url()),
    };
    let now = crate::storage::now_ms();
    let (delivered, next) = if error.is_empty() {
        (Some(now), None)
    } else {
        let next = now + delay_after(d.event.attempts + 1);
        (None, (next - d.event.created_at < RETRY_FOR_MS).then_some(next))
    };
    let id = d.event.id;
    let write = Box::new(move |st: &dyn Store| st.record_attempt(id, delivered, &error, next).map(|()| 0));
    if let Err(e) = writes.submit(write).await {
        tracing::warn!(error = %e, event = id, "delivery attempt not recorded");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn back_off_doubles_up_to_an_hour() {
        assert_eq!([1, 2, 3, 4].map(delay_after), [1000, 2000, 4000, 8000]);
        assert_eq!(delay_after(40), MAX_DELAY_MS);
    }

    #[test]
    fn signature_of_timestamp_and_body() {
        // echo -n '1700000000000.{"a":1}' | openssl dgst -sha256 -hmac secret
        let sig = signature("secret", 1_700_000_000_000, "{\"a\":1}");
        assert!(sig.starts_with("sha256=") && sig.len() == 7 + 64, "{sig}");
        assert_ne!(sig, signature("secret", 1_700_000_000_001, "{\"a\":1}"));
    }
}
