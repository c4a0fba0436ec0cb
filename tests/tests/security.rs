//! Authentication, authorisation and bad input: login failures and
//! throttling, disabled accounts, session revocation, requests before login,
//! malformed and oversized frames, protocol version negotiation, TLS pinning.

use std::time::Duration;

use hutong_client::{ClientOptions, Credential, SendOptions, Status};
use hutong_protocol::v1::{self, login::Secret};
use hutong_protocol::{Envelope, ErrorCode, Payload, MAX_FRAME_LEN};
use hutong_tests::*;

const T: Duration = Duration::from_secs(20);

fn error_code(env: &Envelope) -> ErrorCode {
    match &env.payload {
        Some(Payload::Error(e)) => ErrorCode::try_from(e.code).unwrap(),
        Some(Payload::Disconnect(d)) => ErrorCode::try_from(d.code).unwrap(),
        other => panic!("expected an error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_passwords_are_refused_then_throttled() {
    let server = TestServer::start_with(|c| c.login_failures_per_account = 3).await;
    server.add_users(&["carol"]);
    let mut raw = RawConn::connect(server.tcp).await;
    raw.hello().await;
    // Unknown accounts and wrong passwords look the same.
    assert_eq!(error_code(&raw.login("nobody", "whatever-1").await), ErrorCode::BadCredentials);
    for _ in 0..3 {
        assert_eq!(error_code(&raw.login("carol", "wrong-password").await), ErrorCode::BadCredentials);
    }
    // Locked now, even with the right password.
    let locked = raw.login("carol", PASSWORD).await;
    assert_eq!(error_code(&locked), ErrorCode::RateLimited);
    match locked.payload {
        Some(Payload::Error(e)) => assert!(e.retry_after_ms > 0),
        _ => unreachable!(),
    }
    // Other accounts are not affected.
    server.add_users(&["dave"]);
    assert!(matches!(raw.login("dave", PASSWORD).await.payload, Some(Payload::LoginOk(_))));

    // The client core gives up at once on bad credentials and says why.
    let dir = tempfile::tempdir().unwrap();
    let mut options = ClientOptions::new(server.addr(), "dave", dir.path().join("c.db"));
    options.insecure_plaintext = true;
    options.backoff_min = Duration::from_millis(10);
    let client = hutong_client::Client::start(options, Credential::Password("not-it-at-all".into())).unwrap();
    let err = within(T, client.wait_online()).await.unwrap_err();
    assert_eq!(err.remote_code(), Some(ErrorCode::BadCredentials));
    assert!(matches!(&*client.status().borrow(), Status::Offline { code, .. } if code == "BAD_CREDENTIALS"));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_before_login_and_unknown_conversations_get_error_frames() {
    let server = TestServer::start().await;
    let ids = server.add_users(&["eve", "frank"]);
    let mut raw = RawConn::connect(server.tcp).await;
    raw.hello().await;
    let send = |id, conversation_id| {
        Envelope::new(
            id,
            Payload::SendMessage(v1::SendMessage {
                conversation_id,
                client_msg_id: format!("c{id}"),
                text: "x".into(),
                ..Default::default()
            }),
        )
    };
    raw.send(send(5, 1)).await;
    let answer = raw.recv().await.unwrap();
    assert_eq!(answer.response_to, 5);
    assert_eq!(error_code(&answer), ErrorCode::NotAuthenticated);
    assert!(matches!(raw.login("eve", PASSWORD).await.payload, Some(Payload::LoginOk(_))));
    raw.send(send(6, 999)).await;
    assert_eq!(error_code(&raw.recv().await.unwrap()), ErrorCode::NotFound);
    // A conversation eve does not belong to.
    let dir = tempfile::tempdir().unwrap();
    let frank = online_client(dir.path(), server.addr(), "frank", "d").await;
    let grace = server.add_users(&["grace"]);
    let private = frank.open_direct(grace[0]).await.unwrap();
    raw.send(send(7, private.id)).await;
    assert_eq!(error_code(&raw.recv().await.unwrap()), ErrorCode::Forbidden);
    raw.send(Envelope::new(
        8,
        Payload::FetchMessages(v1::FetchMessages {
            conversation_id: private.id,
            limit: 10,
            ..Default::default()
        }),
    ))
    .await;
    assert_eq!(error_code(&raw.recv().await.unwrap()), ErrorCode::Forbidden);
    // Empty and oversized text.
    let mut big = send(9, private.id);
    if let Some(Payload::SendMessage(m)) = &mut big.payload {
        m.conversation_id = frank.open_direct(ids[0]).await.unwrap().id;
        m.text = "字".repeat(hutong_protocol::MAX_TEXT_LEN);
    }
    raw.send(big).await;
    assert_eq!(error_code(&raw.recv().await.unwrap()), ErrorCode::TooLarge);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_oversized_frames_never_crash_the_server() {
    let server = TestServer::start().await;
    server.add_users(&["henry"]);
    // Garbage body: an error frame, and the connection stays usable.
    let mut raw = RawConn::connect(server.tcp).await;
    raw.hello().await;
    raw.send_bytes(&[0xff, 0xff, 0xff, 0xff, 0x0f, 0x01]).await;
    assert_eq!(error_code(&raw.recv().await.unwrap()), ErrorCode::BadRequest);
    assert!(matches!(raw.login("henry", PASSWORD).await.payload, Some(Payload::LoginOk(_))));

    // A length prefix over the limit: told why, then closed.
    let mut raw = RawConn::connect(server.tcp).await;
    raw.write_raw(&((MAX_FRAME_LEN as u32 + 1).to_be_bytes())).await;
    assert_eq!(error_code(&raw.recv().await.unwrap()), ErrorCode::TooLarge);
    assert!(raw.recv().await.is_none());

    // Something other than Hello first.
    let mut raw = RawConn::connect(server.tcp).await;
    raw.send(Envelope::new(1, Payload::Ping(v1::Ping { nonce: 1 }))).await;
    assert_eq!(error_code(&raw.recv().await.unwrap()), ErrorCode::BadRequest);

    // A frame with no payload, and a frame a client may not send.
    let mut raw = RawConn::connect(server.tcp).await;
    raw.hello().await;
    raw.login("henry", PASSWORD).await;
    raw.send(Envelope { id: 3, response_to: 0, payload: None }).await;
    assert_eq!(error_code(&raw.recv().await.unwrap()), ErrorCode::BadRequest);
    raw.send(Envelope::new(4, Payload::SendAck(v1::SendAck::default()))).await;
    assert_eq!(error_code(&raw.recv().await.unwrap()), ErrorCode::BadRequest);

    // The server is still fine.
    let dir = tempfile::tempdir().unwrap();
    online_client(dir.path(), server.addr(), "henry", "d").await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsupported_protocol_versions_are_refused_clearly() {
    let server = TestServer::start().await;
    let mut raw = RawConn::connect(server.tcp).await;
    raw.send(Envelope::new(
        1,
        Payload::Hello(v1::Hello { protocol_version: 99, client_name: "future".into() }),
    ))
    .await;
    let answer = raw.recv().await.unwrap();
    assert_eq!(error_code(&answer), ErrorCode::UnsupportedVersion);
    match answer.payload {
        Some(Payload::Disconnect(d)) => assert!(d.message.contains("version 99"), "{}", d.message),
        _ => unreachable!(),
    }
    assert!(raw.recv().await.is_none());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disabling_an_account_closes_its_sessions_and_blocks_login() {
    let server = TestServer::start().await;
    server.add_users(&["ivan"]);
    let dir = tempfile::tempdir().unwrap();
    let ivan = online_client(dir.path(), server.addr(), "ivan", "d").await;
    let mut status = ivan.status();
    // As `hutong-server user disable` does, from outside the server.
    hutong_server::accounts::set_disabled(&server.db(), "ivan", true).unwrap();
    // Nothing else happens meanwhile: the server finds the revocation by
    // itself, and the first thing the session hears of afterwards is its end.
    within(T, async {
        loop {
            if let Status::Offline { code, .. } = &*status.borrow_and_update() {
                assert_eq!(code, "ACCOUNT_DISABLED");
                return;
            }
            status.changed().await.unwrap();
        }
    })
    .await;
    let mut raw = RawConn::connect(server.tcp).await;
    raw.hello().await;
    assert_eq!(error_code(&raw.login("ivan", PASSWORD).await), ErrorCode::AccountDisabled);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_revokes_the_token() {
    let server = TestServer::start().await;
    server.add_users(&["judy"]);
    let dir = tempfile::tempdir().unwrap();
    let judy = online_client(dir.path(), server.addr(), "judy", "d").await;
    let token = judy.token().expect("token after password login");
    judy.logout().await.unwrap();
    let mut raw = RawConn::connect(server.tcp).await;
    raw.hello().await;
    let login = v1::Login {
        account: "judy".into(),
        secret: Some(Secret::Token(token)),
        device: "d".into(),
        bulk: false,
    };
    raw.send(Envelope::new(2, Payload::Login(login))).await;
    assert_eq!(error_code(&raw.recv().await.unwrap()), ErrorCode::SessionRevoked);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_are_closed_and_active_ones_kept() {
    const IDLE: Duration = Duration::from_millis(300);
    let server = TestServer::start_with(|c| {
        c.heartbeat_ms = 100;
        c.idle_timeout_ms = IDLE.as_millis() as u64;
    })
    .await;
    server.add_users(&["quiet", "busy"]);
    let mut quiet = RawConn::connect(server.tcp).await;
    quiet.hello().await;
    assert!(matches!(quiet.login("quiet", PASSWORD).await.payload, Some(Payload::LoginOk(_))));
    let mut busy = RawConn::connect(server.tcp).await;
    busy.hello().await;
    assert!(matches!(busy.login("busy", PASSWORD).await.payload, Some(Payload::LoginOk(_))));
    let started = tokio::time::Instant::now();
    // The busy one pings at the heartbeat rate for five idle timeouts; every
    // ping is answered, so the server never closed it.
    let pinger = tokio::spawn(async move {
        let mut beat = tokio::time::interval(Duration::from_millis(100));
        let mut pongs = 0u64;
        while started.elapsed() < 5 * IDLE {
            beat.tick().await;
            let nonce = 100 + pongs;
            busy.send(Envelope::new(nonce, Payload::Ping(v1::Ping { nonce }))).await;
            loop {
                match busy.recv().await {
                    Some(Envelope { payload: Some(Payload::Pong(p)), .. }) if p.nonce == nonce => break,
                    Some(Envelope { payload: Some(Payload::Disconnect(d)), .. }) => {
                        panic!("the pinging connection was closed after {:?}: {d:?}", started.elapsed())
                    }
                    Some(_) => {} // a push
                    None => panic!("the pinging connection was closed after {:?}", started.elapsed()),
                }
            }
            pongs += 1;
        }
        pongs
    });
    // Say nothing: the server closes with a reason.
    assert_eq!(error_code(&quiet.recv().await.unwrap()), ErrorCode::IdleTimeout);
    assert!(quiet.recv().await.is_none());
    let quiet_closed = started.elapsed();
    let pongs = pinger.await.expect("the pinging connection stays open");
    eprintln!("quiet connection closed after {quiet_closed:?}; the pinging one answered {pongs} pings");
    assert!(quiet_closed < 5 * IDLE, "the quiet one was closed while the busy one went on");
    assert!(started.elapsed() >= 5 * IDLE);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_fingerprint_is_pinned_and_a_changed_one_refused() {
    let server = TestServer::start_with(|c| c.tcp_tls = true).await;
    server.add_users(&["kate"]);
    let printed = hutong_server::tls::load_or_create(server.dir.path()).unwrap().fingerprint;
    let dir = tempfile::tempdir().unwrap();
    let kate = online_client(dir.path(), server.addr(), "kate", "d").await;
    assert_eq!(kate.fingerprint().as_deref(), Some(printed.as_str()), "client sees what the server printed");
    let conv = kate.open_direct(server.add_users(&["leo"])[0]).await.unwrap();
    kate.send_text(conv.id, "over TLS", SendOptions::default()).unwrap();
    until(&kate, T, "acked over TLS", || kate.outbox(None).unwrap().is_empty()).await;

    let mut options = ClientOptions::new(server.addr(), "kate", dir.path().join("other.db"));
    options.pinned_fingerprint = Some("00:".repeat(31) + "00");
    let impostor = hutong_client::Client::start(options, Credential::Password(PASSWORD.into())).unwrap();
    let err = within(T, impostor.wait_online()).await.unwrap_err();
    assert!(err.to_string().contains("certificate changed"), "{err}");
    assert!(
        matches!(&*impostor.status().borrow(), Status::Offline { code, .. } if code == "FINGERPRINT_CHANGED")
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_that_cannot_keep_up_is_disconnected_and_catches_up_by_sync() {
    let server = TestServer::start_with(|c| c.outbound_queue_frames = 16).await;
    let ids = server.add_users(&["fast", "slow"]);
    let dir = tempfile::tempdir().unwrap();
    let fast = online_client(dir.path(), server.addr(), "fast", "d").await;
    let conv = fast.open_direct(ids[1]).await.unwrap();
    // "slow" logs in and then stops reading.
    let mut slow = RawConn::connect(server.tcp).await;
    slow.hello().await;
    assert!(matches!(slow.login("slow", PASSWORD).await.payload, Some(Payload::LoginOk(_))));
    let big = "很".repeat(20_000); // 60 KB a message: kernel buffers fill quickly
    for _ in 0..400 {
        fast.send_text(conv.id, &big, SendOptions::default()).unwrap();
    }
    until(&fast, T, "all sent", || fast.outbox(None).unwrap().is_empty()).await;
    // Reading now: what was queued, then the reason.
    let mut reason = None;
    while let Some(env) = slow.recv().await {
        if let Some(Payload::Disconnect(d)) = env.payload {
            reason = Some(ErrorCode::try_from(d.code).unwrap());
        }
    }
    assert_eq!(reason, Some(ErrorCode::SlowConsumer));
    // A real client of the same account catches up by sync.
    let caught_up = online_client(dir.path(), server.addr(), "slow", "d2").await;
    until(&caught_up, T, "all 400 via sync", || caught_up.cached_messages(conv.id).unwrap().len() == 400)
        .await;
    server.stop().await;
}
