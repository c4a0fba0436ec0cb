//! A refused login says why: the client core, and the CLI over it, report
//! the server's answer (a lockout with the time left, an expired session, a
//! connection cap...) instead of reconnecting until "could not reach the
//! server". Against the real server where it can produce the answer, and
//! against a scripted server for every error code.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Output;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{SinkExt as _, StreamExt as _};
use hutong_client::{Client, ClientOptions, Credential, Status};
use hutong_protocol::v1;
use hutong_protocol::{decode_envelope, encode_envelope, Envelope, ErrorCode, FrameCodec, Payload};
use hutong_tests::*;
use tokio_util::codec::Framed;

async fn hutong(home: &Path, profile: &str, password: &str, args: &[&str]) -> (Output, Duration) {
    let started = Instant::now();
    let out = tokio::process::Command::new(cli_binary())
        .env("HUTONG_HOME", home)
        .env("HUTONG_PASSWORD", password)
        .args(["--profile", profile, "--timeout", "15"])
        .args(args)
        .output()
        .await
        .expect("run hutong");
    (out, started.elapsed())
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn check(o: &Output, code: i32) {
    assert_eq!(
        o.status.code(),
        Some(code),
        "stdout: {}\nstderr: {}",
        String::from_utf8_lossy(&o.stdout),
        stderr(o)
    );
}

/// Five wrong passwords lock the account: the sixth attempt, with the right
/// password, is told so with the time left, at once (not after the 15 s
/// timeout) and not as an unreachable server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_reports_a_lockout_with_the_time_left_at_once() {
    let server = TestServer::start_with(|c| c.tcp_tls = true).await;
    server.add_users(&["alice"]);
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let addr = server.addr().to_string();
    let login = ["login", "--server", addr.as_str(), "--account", "alice"];

    for _ in 0..5 {
        let (out, _) = hutong(h, "guess", "wrong-password", &login).await;
        check(&out, 3);
        assert!(stderr(&out).contains("BAD_CREDENTIALS"), "{}", stderr(&out));
    }
    let (out, took) = hutong(h, "right", PASSWORD, &login).await;
    let text = stderr(&out);
    check(&out, 3);
    assert!(text.contains("RATE_LIMITED"), "{text}");
    assert!(text.contains("try again in 5 min") || text.contains("try again in 4 min"), "{text}");
    assert!(!text.contains("could not reach") && !text.contains("cannot reach"), "{text}");
    assert!(took < Duration::from_secs(5), "the lockout took {took:?} to report");
}

/// Someone guessing a person's password does not sign out that person's
/// devices: a CLI signed in before the guessing still logs in with its
/// session token while the account is locked for passwords.
/// (The server must not count token logins against the password lockout.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_in_cli_is_not_locked_out_by_password_guessing() {
    let server = TestServer::start_with(|c| c.tcp_tls = true).await;
    server.add_users(&["alice"]);
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let addr = server.addr().to_string();
    let login = ["login", "--server", addr.as_str(), "--account", "alice"];
    check(&hutong(h, "laptop", PASSWORD, &login).await.0, 0);

    for _ in 0..5 {
        check(&hutong(h, "guess", "wrong-password", &login).await.0, 3);
    }
    // The lockout is in force for passwords...
    let (out, _) = hutong(h, "right", PASSWORD, &login).await;
    assert!(stderr(&out).contains("RATE_LIMITED"), "{}", stderr(&out));
    // ...but not for the session of the signed-in device.
    let (out, took) = hutong(h, "laptop", PASSWORD, &["ls"]).await;
    check(&out, 0);
    assert!(!stderr(&out).contains("working offline"), "{}", stderr(&out));
    assert!(took < Duration::from_secs(10), "{took:?}");
}

/// A scripted server: answers every hello, then answers every login with
/// the error `code` (and `retry_after_ms`), counting the logins.
struct Refuser {
    addr: SocketAddr,
    logins: Arc<AtomicU32>,
    task: tokio::task::JoinHandle<()>,
}

impl Refuser {
    async fn start(code: ErrorCode, retry_after_ms: u64, accept_after: Option<u32>) -> Refuser {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let logins = Arc::new(AtomicU32::new(0));
        let counter = logins.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((socket, _)) = listener.accept().await else { return };
                let counter = counter.clone();
                tokio::spawn(async move {
                    let mut framed = Framed::new(socket, FrameCodec::default());
                    while let Some(Ok(body)) = framed.next().await {
                        let env = decode_envelope(&body).expect("client frames decode");
                        let answer = match env.payload {
                            Some(Payload::Hello(_)) => Payload::HelloOk(v1::HelloOk {
                                protocol_version: hutong_protocol::PROTOCOL_VERSION,
                                server_version: "scripted".into(),
                                heartbeat_ms: 30_000,
                            }),
                            Some(Payload::Login(_)) => {
                                let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
                                if accept_after.is_some_and(|after| n > after) {
                                    Payload::LoginOk(v1::LoginOk {
                                        user_id: 7,
                                        token: "t".into(),
                                        display_name: "Alice".into(),
                                        session_id: 1,
                                    })
                                } else {
                                    Payload::Error(v1::Error {
                                        code: code as i32,
                                        message: format!("scripted {}", code.as_str_name()),
                                        retry_after_ms,
                                    })
                                }
                            }
                            // Online: let the session's requests wait; the test is done by then.
                            _ => continue,
                        };
                        if framed.send(encode_envelope(&Envelope::reply(env.id, answer))).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        Refuser { addr, logins, task }
    }

    fn client(&self, dir: &Path) -> Client {
        let server = format!("tcp://{}", self.addr).parse().unwrap();
        let mut options = ClientOptions::new(server, "alice", dir.join("cache.db"));
        options.insecure_plaintext = true;
        options.backoff_min = Duration::from_millis(10);
        options.backoff_max = Duration::from_millis(50);
        Client::start(options, Credential::Password(PASSWORD.into())).unwrap()
    }
}

impl Drop for Refuser {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Every code the server may answer a login with: the client either gives
/// up at once with that code and sentence (only the person can fix it) or
/// retries showing that code, never a network fault.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_login_refusal_is_reported_with_its_code() {
    let dir = tempfile::tempdir().unwrap();
    let give_up = [
        ErrorCode::BadCredentials,
        ErrorCode::AccountDisabled,
        ErrorCode::RateLimited,
        ErrorCode::SessionRevoked,
        ErrorCode::SessionExpired,
        ErrorCode::PasswordChangeRequired,
        ErrorCode::UnsupportedVersion,
        // A login refused as a request cannot succeed when repeated.
        ErrorCode::BadRequest,
        ErrorCode::NotFound,
        ErrorCode::Forbidden,
        ErrorCode::TooLarge,
        ErrorCode::RecallWindowPassed,
        ErrorCode::Conflict,
        ErrorCode::QuotaExceeded,
        ErrorCode::UnsafePath,
    ];
    for n in 1..64 {
        let Ok(code) = ErrorCode::try_from(n) else { continue };
        let refuser = Refuser::start(code, 250, None).await;
        let client = refuser.client(&dir.path().join(code.as_str_name()));
        let mut status = client.status();
        let seen = within(Duration::from_secs(10), async {
            loop {
                let now = status.borrow_and_update().clone();
                match now {
                    Status::Offline { .. } | Status::Reconnecting { .. } => return now,
                    _ => status.changed().await.unwrap(),
                }
            }
        })
        .await;
        match seen {
            Status::Offline { code: shown, reason } => {
                assert_eq!(shown, code.as_str_name());
                assert!(give_up.contains(&code), "{code:?} gave up: {reason}");
                let e = within(Duration::from_secs(1), client.wait_online()).await.unwrap_err();
                assert_eq!(e.remote_code(), Some(code));
                // It stopped: one login, no more.
                assert_eq!(refuser.logins.load(Ordering::SeqCst), 1, "{code:?}");
            }
            Status::Reconnecting { code: shown, in_ms, .. } => {
                assert_eq!(shown, code.as_str_name());
                assert!(!give_up.contains(&code), "{code:?} retried");
                // Never sooner than the server asked.
                assert!(in_ms >= 250, "{code:?} retried after {in_ms} ms");
                assert_eq!(client.last_error().and_then(|e| e.remote_code()), Some(code));
            }
            other => unreachable!("{other:?}"),
        }
        client.shutdown();
    }
}

/// A connection cap is waited out, as long as the server asks, and then
/// the client logs in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_connections_waits_as_asked_then_connects() {
    let dir = tempfile::tempdir().unwrap();
    let refuser = Refuser::start(ErrorCode::TooManyConnections, 400, Some(1)).await;
    let started = Instant::now();
    let client = refuser.client(dir.path());
    within(Duration::from_secs(10), client.wait_online()).await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(400), "{:?}", started.elapsed());
    assert_eq!(refuser.logins.load(Ordering::SeqCst), 2);
    client.shutdown();
}

/// The CLI with a saved session the server says has expired: a clear
/// sentence and exit 3, at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_says_an_expired_session_needs_the_password() {
    let refuser = Refuser::start(ErrorCode::SessionExpired, 0, None).await;
    let home = tempfile::tempdir().unwrap();
    let profile = hutong_client::Profile {
        server: format!("tcp://{}", refuser.addr),
        account: "alice".into(),
        device: "laptop".into(),
        fingerprint: None,
        token: "an-old-token".into(),
        insecure_plaintext: true,
    };
    profile.save(&home.path().join("profiles").join("p")).unwrap();
    let (out, took) = hutong(home.path(), "p", PASSWORD, &["ls"]).await;
    check(&out, 3);
    let text = stderr(&out);
    assert!(text.contains("sign in with the password again") && text.contains("SESSION_EXPIRED"), "{text}");
    assert!(took < Duration::from_secs(5), "{took:?}");

    // A cap longer than the CLI's patience: said at once, as the server's answer.
    let refuser = Refuser::start(ErrorCode::TooManyConnections, 60_000, None).await;
    let profile = hutong_client::Profile { server: format!("tcp://{}", refuser.addr), ..profile };
    profile.save(&home.path().join("profiles").join("q")).unwrap();
    let (out, took) = hutong(home.path(), "q", PASSWORD, &["logout"]).await;
    let text = stderr(&out);
    check(&out, 3);
    assert!(text.contains("TOO_MANY_CONNECTIONS") && text.contains("try again in 1 min"), "{text}");
    assert!(took < Duration::from_secs(5), "{took:?}");
}
