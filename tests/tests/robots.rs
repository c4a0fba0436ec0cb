//! Group robots end to end: the owner adds incoming webhooks over the
//! native protocol (client core), scripts post to their URLs over HTTP, and
//! members' client caches get the posts; refused posts leave nothing.

use std::time::Duration;

use base64::Engine as _;
use hmac::{Hmac, Mac};
use hutong_tests::*;
use reqwest::StatusCode;
use serde_json::{json, Value};
use sha2::Sha256;

const T: Duration = Duration::from_secs(30);

/// What a script does: POST a JSON body to a robot URL (its path on this
/// server), with an optional query.
async fn post(server: &TestServer, url: &str, query: &str, body: &Value) -> (StatusCode, Value) {
    let path = &url[url.find("/api/v1/hooks/").expect("a hook URL")..];
    let resp = reqwest::Client::new()
        .post(format!("http://{}{path}{query}", server.http))
        .json(body)
        .send()
        .await
        .expect("post");
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

fn sign(secret: &str, timestamp_ms: i64) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{timestamp_ms}\n{secret}").as_bytes());
    let sign = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    // As DingTalk's documentation does: URL-encoded.
    sign.replace('+', "%2B").replace('/', "%2F").replace('=', "%3D")
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

/// Texts of `conversation` in `client`'s cache sent by `sender`.
fn texts_from(client: &hutong_client::Client, conversation: u64, sender: u64) -> Vec<String> {
    client
        .cached_messages(conversation)
        .unwrap()
        .into_iter()
        .filter(|m| m.sender_id == sender && m.kind == "text")
        .map(|m| m.text)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_owner_adds_robots_and_scripts_post_into_the_group() {
    let server = TestServer::start_with(|c| c.public_url = "https://im.example.com:7380/".into()).await;
    let ids = server.add_users(&["alice", "bob"]);
    let dir = tempfile::tempdir().unwrap();
    let alice = online_client(dir.path(), server.addr(), "alice", "pc").await;
    let bob = online_client(dir.path(), server.addr(), "bob", "pc").await;
    let group = alice.create_group("构建通知", &[ids[1]]).await.unwrap().id;

    // Only the owner manages robots.
    let err = bob.add_robot(group, "mine", false, &[]).await.unwrap_err();
    assert_eq!(err.remote_code(), Some(hutong_protocol::ErrorCode::Forbidden), "{err:?}");
    assert!(bob.robots(group).await.is_err());
    let bad = alice.add_robot(group, "CI", false, &["10.0.0.0/33".into()]).await.unwrap_err();
    assert_eq!(bad.remote_code(), Some(hutong_protocol::ErrorCode::BadRequest));

    let plain = alice.add_robot(group, "CI", false, &[]).await.unwrap();
    assert!(plain.url.starts_with("https://im.example.com:7380/api/v1/hooks/"), "{}", plain.url);
    assert!(plain.signing_secret.is_empty());
    let signed = alice.add_robot(group, "监控", true, &[]).await.unwrap();
    assert!(signed.signing_secret.starts_with("SEC"));
    let fenced = alice.add_robot(group, "fenced", false, &["10.0.0.0/8".into()]).await.unwrap();
    let listed = alice.robots(group).await.unwrap();
    assert_eq!(listed.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(), ["CI", "监控", "fenced"]);
    let plain_bot = plain.robot.as_ref().unwrap().user_id;
    let signed_bot = signed.robot.as_ref().unwrap().user_id;
    // Only hashes of the URLs' tokens are stored.
    let token = plain.url.rsplit('/').next().unwrap().to_owned();
    let hash = <Sha256 as sha2::Digest>::digest(token.as_bytes()).to_vec();
    let db = server.db();
    let stored: i64 = db
        .query_row("SELECT COUNT(*) FROM group_robots WHERE token_hash = ?1", [&hash], |r| r.get(0))
        .unwrap();
    assert_eq!(stored, 1);
    let in_clear: i64 = db
        .query_row(
            "SELECT COUNT(*) FROM group_robots WHERE instr(hex(token_hash), upper(?1)) > 0",
            [&token],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(in_clear, 0);
    drop(db);

    // One curl: text, then Markdown.
    let (status, answer) =
        post(&server, &plain.url, "", &json!({ "msgtype": "text", "text": { "content": "构建 #42 通过" } }))
            .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let markdown = json!({ "msgtype": "markdown", "markdown": { "title": "发布", "text": "## 发布\n- **v1.2** 已上线" } });
    let (status, answer) = post(&server, &plain.url, "", &markdown).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let md_seq = answer["seq"].as_u64().unwrap();
    until(&bob, T, "bob has the robot's posts", || texts_from(&bob, group, plain_bot).len() >= 2).await;
    assert_eq!(texts_from(&bob, group, plain_bot), ["构建 #42 通过", "## 发布\n- **v1.2** 已上线"]);
    let is_markdown: bool = server
        .db()
        .query_row(
            "SELECT markdown FROM messages WHERE conversation_id = ?1 AND seq = ?2",
            [group, md_seq],
            |r| r.get(0),
        )
        .unwrap();
    assert!(is_markdown);

    // Signed: missing, wrong and stale signatures post nothing; a right one does.
    let text = |t: &str| json!({ "msgtype": "text", "text": { "content": t } });
    let ts = now_ms();
    for (query, what) in [
        (String::new(), "unsigned"),
        (format!("?timestamp={ts}&sign={}", sign("SECwrong", ts)), "wrong secret"),
        (
            format!(
                "?timestamp={}&sign={}",
                ts - 2 * 3600 * 1000,
                sign(&signed.signing_secret, ts - 2 * 3600 * 1000)
            ),
            "stale",
        ),
        (format!("?timestamp={}&sign={}", ts + 1, sign(&signed.signing_secret, ts)), "other timestamp"),
    ] {
        let (status, answer) = post(&server, &signed.url, &query, &text(what)).await;
        assert_eq!(
            (status, answer["code"].as_str()),
            (StatusCode::UNAUTHORIZED, Some("BAD_SIGNATURE")),
            "{what}"
        );
    }
    let (status, answer) = post(
        &server,
        &signed.url,
        &format!("?timestamp={ts}&sign={}", sign(&signed.signing_secret, ts)),
        &text("signed ok"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");

    // A wrong address, an unknown URL, a malformed body.
    let (status, answer) = post(&server, &fenced.url, "", &text("from outside")).await;
    assert_eq!((status, answer["code"].as_str()), (StatusCode::FORBIDDEN, Some("ADDRESS_NOT_ALLOWED")));
    let (status, _) = post(&server, "x/api/v1/hooks/0000", "", &text("nobody")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = post(&server, &plain.url, "", &json!({ "msgtype": "image" })).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // Removed: its URL posts nothing.
    let left = alice.remove_robot(group, plain.robot.as_ref().unwrap().id).await.unwrap();
    assert_eq!(left.len(), 2);
    let (status, _) = post(&server, &plain.url, "", &text("after removal")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // The owner leaves: the robots they made stop too.
    alice.leave_group(group).await.unwrap();
    let ts = now_ms();
    let (status, _) = post(
        &server,
        &signed.url,
        &format!("?timestamp={ts}&sign={}", sign(&signed.signing_secret, ts)),
        &text("orphan"),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Exactly the accepted posts are in the group, and in bob's cache.
    until(&bob, T, "bob has the signed post", || texts_from(&bob, group, signed_bot).len() == 1).await;
    assert_eq!(texts_from(&bob, group, signed_bot), ["signed ok"]);
    assert_eq!(texts_from(&bob, group, plain_bot).len(), 2);
    let robot_posts: i64 = server
        .db()
        .query_row(
            "SELECT COUNT(*) FROM messages WHERE conversation_id = ?1 AND kind = 0
             AND sender_id IN (SELECT bot_user_id FROM group_robots)",
            [group],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(robot_posts, 3);
    server.stop().await;
}
