//! What reaches the writer: logins never starve it (no batch of sends fails
//! while people log in), and a send over the limits is refused before it is
//! queued. Both read the writer's process-wide counters, so the tests of
//! this file run one at a time (`SERIAL`) and no other test lives here.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use hutong_protocol::v1::{self, login::Secret, Login};
use hutong_protocol::{Envelope, ErrorCode, Payload, MAX_TEXT_LEN};
use hutong_server::writer::{MAX_MENTIONS, STATS};
use hutong_tests::*;

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const T: Duration = Duration::from_secs(60);

/// One login on a new connection; the answer's payload.
async fn login_once(server: &TestServer, account: &str, device: &str, secret: Secret) -> Payload {
    let mut raw = RawConn::connect(server.tcp).await;
    raw.hello().await;
    let login = Login { account: account.into(), secret: Some(secret), device: device.into(), bulk: false };
    raw.call(2, Payload::Login(login)).await
}

/// Four people send 100 messages each, a window of 16 in flight, while eight
/// others log in again and again (with a password and with a token, so both
/// new sessions and `last_seen_at` are written). No send may fail and no
/// batch may fail to commit.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn logins_never_fail_a_batch_of_sends() {
    let _serial = SERIAL.lock().await;
    let server = TestServer::start_with(|c| {
        // Failed logins are not part of this test; keep the throttle out of the way.
        c.login_failures_per_account = 1000;
        c.login_failures_per_address = 100_000;
    })
    .await;
    let senders = ["s0", "s1", "s2", "s3"];
    let loggers: Vec<String> = (0..8).map(|i| format!("l{i}")).collect();
    let mut names: Vec<&str> = senders.to_vec();
    names.extend(loggers.iter().map(String::as_str));
    names.push("peer");
    let ids = server.add_users(&names);
    let peer = *ids.last().unwrap();
    let failed_before = STATS.failed_batches.load(Ordering::Relaxed);

    // Tokens for the token logins, one device each.
    let mut tokens = Vec::new();
    for name in &loggers {
        match login_once(&server, name, "tok", Secret::Password(PASSWORD.into())).await {
            Payload::LoginOk(ok) => tokens.push(ok.token),
            other => panic!("login failed: {other:?}"),
        }
    }

    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut storm = Vec::new();
    for (name, token) in loggers.iter().cloned().zip(tokens) {
        let (server_tcp, done) = (server.tcp, done.clone());
        storm.push(tokio::spawn(async move {
            let server_addr = server_tcp;
            let mut logins = 0u64;
            while !done.load(Ordering::Relaxed) {
                let password = logins.is_multiple_of(4);
                let (device, secret) = if password {
                    ("pw", Secret::Password(PASSWORD.into()))
                } else {
                    ("tok", Secret::Token(token.clone()))
                };
                let mut raw = RawConn::connect(server_addr).await;
                raw.hello().await;
                let login =
                    Login { account: name.clone(), secret: Some(secret), device: device.into(), bulk: false };
                match raw.call(2, Payload::Login(login)).await {
                    Payload::LoginOk(_) => logins += 1,
                    other => panic!("{name}: login failed: {other:?}"),
                }
            }
            logins
        }));
    }

    let started = Instant::now();
    let mut sending = Vec::new();
    for name in senders {
        let mut raw = raw_logged_in(&server, name).await;
        sending.push(tokio::spawn(async move {
            let direct = match raw.call(3, Payload::OpenDirect(v1::OpenDirect { user_id: peer })).await {
                Payload::Conversation(c) => c.id,
                other => panic!("{name}: no conversation: {other:?}"),
            };
            const N: u64 = 100;
            const WINDOW: u64 = 16;
            let (mut sent, mut acked) = (0, 0);
            while acked < N {
                while sent < N && sent - acked < WINDOW {
                    let msg = v1::SendMessage {
                        conversation_id: direct,
                        client_msg_id: format!("{name}-{sent}"),
                        text: format!("message {sent}"),
                        ..Default::default()
                    };
                    raw.send(Envelope::new(100 + sent, Payload::SendMessage(msg))).await;
                    sent += 1;
                }
                let env = raw
                    .recv()
                    .await
                    .unwrap_or_else(|| panic!("{name}: connection closed after {acked} acks"));
                match env.payload {
                    Some(Payload::SendAck(_)) => acked += 1,
                    Some(Payload::Error(e)) => panic!("{name}: a send failed: {e:?}"),
                    _ => {}
                }
            }
            acked
        }));
    }
    for s in sending {
        assert_eq!(within(T, s).await.unwrap(), 100);
    }
    let elapsed = started.elapsed();
    done.store(true, Ordering::Relaxed);
    let mut logins = 0;
    for s in storm {
        logins += within(T, s).await.unwrap();
    }
    println!("400 sends in {elapsed:?} while {logins} logins ran");
    assert!(logins >= 8, "the logins ran alongside the sends: {logins}");
    assert_eq!(STATS.failed_batches.load(Ordering::Relaxed) - failed_before, 0, "a batch failed to commit");
    server.stop().await;
}

/// Oversize text and too many mentions are refused with TOO_LARGE before the
/// send is queued: the writer's count of sends does not move for them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sends_over_the_limits_never_reach_the_writer() {
    let _serial = SERIAL.lock().await;
    let server = TestServer::start().await;
    let ids = server.add_users(&["alice", "bob"]);
    let mut alice = raw_logged_in(&server, "alice").await;
    let direct = match alice.call(3, Payload::OpenDirect(v1::OpenDirect { user_id: ids[1] })).await {
        Payload::Conversation(c) => c.id,
        other => panic!("no conversation: {other:?}"),
    };
    let base = v1::SendMessage {
        conversation_id: direct,
        client_msg_id: "0190a0b0-0000-7000-8000-00000000000a".into(),
        text: "fits".into(),
        ..Default::default()
    };
    let oversize = [
        ("text", v1::SendMessage { text: "x".repeat(MAX_TEXT_LEN + 1), ..base.clone() }),
        ("mentions", v1::SendMessage { mentions: (1..=MAX_MENTIONS as u64 + 1).collect(), ..base.clone() }),
    ];
    let sends_before = STATS.sends.load(Ordering::Relaxed);
    for (i, (what, msg)) in oversize.into_iter().enumerate() {
        match alice.call(10 + i as u64, Payload::SendMessage(msg)).await {
            Payload::Error(e) => assert_eq!(e.code, ErrorCode::TooLarge as i32, "{what}: {e:?}"),
            other => panic!("{what}: expected TOO_LARGE, got {other:?}"),
        }
    }
    assert_eq!(STATS.sends.load(Ordering::Relaxed), sends_before, "an oversize send reached the writer");
    // The counter does count sends that are queued: one that fits moves it by one.
    match alice.call(20, Payload::SendMessage(base)).await {
        Payload::SendAck(ack) => assert_eq!(ack.seq, 1, "the refused sends took no seq"),
        other => panic!("expected an ack, got {other:?}"),
    }
    assert_eq!(STATS.sends.load(Ordering::Relaxed), sends_before + 1);
    server.stop().await;
}
