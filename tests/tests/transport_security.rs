//! Transport security, tried as someone on the same network would: HTTPS by
//! default with the native port's certificate, no credentials in clear text
//! on any default listener, `wss://` pinned like `tls://`, plain addresses
//! only by explicit choice, a certificate that changes within a session
//! refused, and the limits on connections that have not logged in (per
//! address, the login deadline, the frame size) and on HTTP (header
//! deadline, connection cap, body size, security headers).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{SinkExt as _, StreamExt as _};
use hutong_client::{Client, ClientOptions, Credential, ServerAddr, Status};
use hutong_protocol::v1::{self, Hello, Ping};
use hutong_protocol::{encode_envelope, Envelope, ErrorCode, Payload, PROTOCOL_VERSION};
use hutong_tests::*;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

const T: Duration = Duration::from_secs(20);

/// A server as shipped: TLS on the native port, HTTPS on the HTTP port.
async fn secure_server(adjust: impl FnOnce(&mut hutong_server::Config)) -> TestServer {
    TestServer::start_with(|c| {
        c.tcp_tls = true;
        c.http_insecure_plaintext = false;
        adjust(c);
    })
    .await
}

fn fingerprint_of(server: &TestServer) -> String {
    hutong_server::tls::load_or_create(server.dir.path()).unwrap().fingerprint
}

// ------------------------------------------------------------ a TLS client

/// Accepts any certificate and remembers its fingerprint (the test compares it).
#[derive(Debug)]
struct Recording {
    seen: Arc<Mutex<Option<String>>>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ServerCertVerifier for Recording {
    fn verify_server_cert(
        &self,
        cert: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        *self.seen.lock().unwrap() = Some(hutong_client::transport::fingerprint(cert));
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(m, c, d, &self.provider.signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(m, c, d, &self.provider.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// Sends `request` over TLS to `addr`; returns the whole answer (the request
/// asks the server to close) and the certificate's fingerprint.
async fn https(addr: SocketAddr, request: &[u8]) -> (String, String) {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let seen = Arc::new(Mutex::new(None));
    let verifier = Recording { seen: seen.clone(), provider: provider.clone() };
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    let tcp = TcpStream::connect(addr).await.unwrap();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let mut tls = within(T, connector.connect(ServerName::try_from("hutong").unwrap(), tcp)).await.unwrap();
    tls.write_all(request).await.unwrap();
    let mut answer = Vec::new();
    let _ = within(T, tls.read_to_end(&mut answer)).await;
    let fp = seen.lock().unwrap().clone().expect("a certificate");
    (String::from_utf8_lossy(&answer).into_owned(), fp)
}

fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: hutong\r\nConnection: close\r\n\r\n").into_bytes()
}

fn post_json(path: &str, body: &str) -> Vec<u8> {
    format!(
        "POST {path} HTTP/1.1\r\nHost: hutong\r\nConnection: close\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

// ------------------------------------------------------------------ HTTPS

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_http_listener_speaks_https_with_the_native_ports_certificate() {
    let server = secure_server(|_| {}).await;
    let (answer, fp) = https(server.http, &get("/health")).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("\"tls\":true"), "{answer}");
    assert_eq!(
        fp,
        fingerprint_of(&server),
        "the HTTPS certificate is the one clients pin on the native port"
    );

    // Plain HTTP to the same port gets no HTTP answer.
    let mut plain = TcpStream::connect(server.http).await.unwrap();
    plain.write_all(&get("/health")).await.unwrap();
    let mut answer = Vec::new();
    let _ = within(T, plain.read_to_end(&mut answer)).await;
    assert!(!String::from_utf8_lossy(&answer).contains("200 OK"), "plain HTTP was served");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_only_when_configured_and_health_says_so() {
    let server = TestServer::start().await; // the test config turns plain HTTP on
    let (code, body) = health(server.http).await;
    assert_eq!(code, 200);
    assert_eq!(body["tls"], false, "the console learns that Hutong does not encrypt: {body}");
    server.stop().await;
}

// ---------------------------------------------------------- client schemes

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wss_is_pinned_like_tls() {
    let server = secure_server(|_| {}).await;
    server.add_users(&["amy"]);
    let dir = tempfile::tempdir().unwrap();
    let wss: ServerAddr = format!("wss://{}/ws", server.http).parse().unwrap();
    let options = ClientOptions::new(wss.clone(), "amy", dir.path().join("a.db"));
    assert!(!options.insecure_plaintext);
    let amy = Client::start(options, Credential::Password(PASSWORD.into())).unwrap();
    within(T, amy.wait_online()).await.unwrap();
    assert_eq!(amy.fingerprint(), Some(fingerprint_of(&server)));
    amy.shutdown();

    let mut options = ClientOptions::new(wss, "amy", dir.path().join("b.db"));
    options.pinned_fingerprint = Some("00:".repeat(31) + "00");
    let impostor = Client::start(options, Credential::Password(PASSWORD.into())).unwrap();
    let err = within(T, impostor.wait_online()).await.unwrap_err();
    assert_eq!(err.code(), "FINGERPRINT_CHANGED", "{err}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_addresses_need_the_explicit_insecure_choice() {
    let server = TestServer::start().await;
    server.add_users(&["bea"]);
    let dir = tempfile::tempdir().unwrap();
    for plain in [format!("tcp://{}", server.tcp), format!("ws://{}/ws", server.http)] {
        let addr: ServerAddr = plain.parse().unwrap();
        let options = ClientOptions::new(addr.clone(), "bea", dir.path().join("x.db"));
        let err = Client::start(options, Credential::Password(PASSWORD.into())).err().expect("refused");
        assert_eq!(err.code(), "INSECURE_ADDRESS", "{plain}: {err}");
        let err = hutong_client::change_password(&addr, None, false, "bea", PASSWORD, "another-pass-1")
            .await
            .unwrap_err();
        assert_eq!(err.code(), "INSECURE_ADDRESS");
    }

    // The CLI refuses too, and its error names the flag; with it, it logs in.
    let home = tempfile::tempdir().unwrap();
    let tcp = format!("tcp://{}", server.tcp);
    let run = |extra: &'static [&'static str]| {
        let mut cmd = tokio::process::Command::new(cli_binary());
        cmd.env("HUTONG_HOME", home.path()).env("HUTONG_PASSWORD", PASSWORD);
        cmd.args(["login", "--server", &tcp, "--account", "bea"]).args(extra);
        cmd.output()
    };
    let out = within(T, run(&[])).await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a plain login without the flag succeeded");
    assert!(stderr.contains("--insecure-plaintext"), "the error names the flag: {stderr}");
    let out = within(T, run(&["--insecure-plaintext"])).await.unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_that_changes_between_reconnects_of_one_session_is_refused() {
    let server = secure_server(|_| {}).await;
    server.add_users(&["cai"]);
    let data = server.dir.path().to_owned();
    let dir = tempfile::tempdir().unwrap();
    // First login: nothing pinned yet.
    let mut options = ClientOptions::new(server.addr(), "cai", dir.path().join("c.db"));
    options.backoff_min = Duration::from_millis(20);
    options.backoff_max = Duration::from_millis(200);
    let cai = Client::start(options, Credential::Password(PASSWORD.into())).unwrap();
    within(T, cai.wait_online()).await.unwrap();
    let first = cai.fingerprint().expect("a fingerprint");

    // The same ports and data, but a new identity: someone else's server.
    let stopped = server.stop_keeping_data().await;
    std::fs::remove_file(data.join("tls-cert.der")).unwrap();
    std::fs::remove_file(data.join("tls-key.der")).unwrap();
    let changed = hutong_server::tls::load_or_create(&data).unwrap().fingerprint;
    assert_ne!(first, changed);
    let server = stopped.start_again().await;

    let mut status = cai.status();
    let offline = within(T, async {
        loop {
            if let Status::Offline { code, reason } = &*status.borrow_and_update() {
                return (code.clone(), reason.clone());
            }
            status.changed().await.unwrap();
        }
    })
    .await;
    assert_eq!(offline.0, "FINGERPRINT_CHANGED", "{offline:?}");
    assert!(offline.1.contains("certificate changed"), "a clear error: {offline:?}");
    server.stop().await;
}

// ------------------------------------------------------------ before login

fn hello(id: u64) -> Envelope {
    Envelope::new(id, Payload::Hello(Hello { protocol_version: PROTOCOL_VERSION, client_name: "raw".into() }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unauthenticated_socket_that_keeps_pinging_is_closed_at_the_login_deadline() {
    let server = TestServer::start_with(|c| c.login_timeout_ms = 1_000).await;
    let started = Instant::now();
    let mut raw = RawConn::connect(server.tcp).await;
    raw.hello().await;
    let mut nonce = 0;
    let reason = loop {
        nonce += 1;
        raw.send(Envelope::new(0, Payload::Ping(Ping { nonce }))).await;
        let got = tokio::time::timeout(Duration::from_millis(100), raw.recv()).await;
        match got {
            Ok(Some(Envelope { payload: Some(Payload::Disconnect(d)), .. })) => break d,
            Ok(None) => panic!("closed without a reason"),
            _ => {}
        }
        assert!(started.elapsed() < Duration::from_secs(5), "pings kept an unauthenticated socket open");
    };
    let took = started.elapsed();
    assert_eq!(reason.code, ErrorCode::IdleTimeout as i32, "{reason:?}");
    assert!(took >= Duration::from_millis(950), "closed before the deadline: {took:?}");
    assert!(raw.recv().await.is_none(), "the connection is closed");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_frame_before_login_is_refused_on_tcp_and_websocket() {
    let server = TestServer::start().await;
    // 20 KiB: fine after login, too large before.
    let big = vec![0u8; 20 * 1024];

    let mut raw = RawConn::connect(server.tcp).await;
    raw.hello().await;
    raw.send_bytes(&big).await;
    match raw.recv().await.and_then(|e| e.payload) {
        Some(Payload::Disconnect(d)) => assert_eq!(d.code, ErrorCode::TooLarge as i32, "{d:?}"),
        other => panic!("expected TOO_LARGE, got {other:?}"),
    }

    use tokio_tungstenite::tungstenite::Message;
    let url = format!("ws://{}/ws", server.http);
    let (mut ws, _) = tokio_tungstenite::connect_async(url.as_str()).await.unwrap();
    ws.send(Message::Binary(encode_envelope(&hello(1)))).await.unwrap();
    ws.send(Message::Binary(big.into())).await.unwrap();
    let mut codes = Vec::new();
    while let Ok(Some(Ok(Message::Binary(b)))) = tokio::time::timeout(T, ws.next()).await {
        if let Ok(env) = hutong_protocol::decode_envelope(&b) {
            codes.push(env.payload);
        }
    }
    assert!(
        codes
            .iter()
            .any(|p| matches!(p, Some(Payload::Disconnect(d)) if d.code == ErrorCode::TooLarge as i32)),
        "{codes:?}"
    );

    // A message far over the limit is not buffered whole: the connection
    // ends once the pre-login budget is spent.
    let (mut ws, _) = tokio_tungstenite::connect_async(url.as_str()).await.unwrap();
    ws.send(Message::Binary(encode_envelope(&hello(1)))).await.unwrap();
    let _ = ws.send(Message::Binary(vec![7u8; 900 * 1024].into())).await;
    let mut answers = Vec::new();
    let ended = tokio::time::timeout(T, async {
        while let Some(Ok(m)) = ws.next().await {
            if let Message::Binary(b) = m {
                answers.push(hutong_protocol::decode_envelope(&b).ok().and_then(|e| e.payload));
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the connection stayed open");
    assert!(
        !answers
            .iter()
            .any(|p| matches!(p, Some(Payload::Error(e)) if e.code == ErrorCode::BadRequest as i32)),
        "the oversized message was read and decoded: {answers:?}"
    );
    server.stop().await;
}

/// The first answer a fresh raw connection gets to its Hello.
async fn hello_answer(addr: SocketAddr) -> Option<Payload> {
    let mut raw = RawConn::connect(addr).await;
    raw.send(hello(1)).await;
    raw.recv().await.and_then(|e| e.payload)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_that_have_not_logged_in_are_limited_per_address() {
    let server = TestServer::start_with(|c| c.unauthenticated_per_address = 2).await;
    server.add_users(&["dai"]);
    let mut first = RawConn::connect(server.tcp).await;
    first.hello().await;
    let mut second = RawConn::connect(server.tcp).await;
    second.hello().await;
    match hello_answer(server.tcp).await {
        Some(Payload::Error(e)) => {
            assert_eq!(e.code, ErrorCode::TooManyConnections as i32, "{e:?}");
            assert!(e.retry_after_ms > 0, "says when to try again: {e:?}");
        }
        other => panic!("a third unauthenticated connection was served: {other:?}"),
    }
    // A WebSocket session counts the same.
    use tokio_tungstenite::tungstenite::Message;
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/ws", server.http)).await.unwrap();
    ws.send(Message::Binary(encode_envelope(&hello(1)))).await.unwrap();
    match within(T, ws.next()).await {
        Some(Ok(Message::Binary(b))) => {
            let env = hutong_protocol::decode_envelope(&b).unwrap();
            assert!(
                matches!(env.payload, Some(Payload::Error(ref e)) if e.code == ErrorCode::TooManyConnections as i32),
                "{env:?}"
            );
        }
        other => panic!("{other:?}"),
    }
    // Once one of them logs in, its place is free.
    assert!(matches!(first.login("dai", PASSWORD).await.payload, Some(Payload::LoginOk(_))));
    assert!(matches!(hello_answer(server.tcp).await, Some(Payload::HelloOk(_))));
    drop(second);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_connections_are_rate_limited_per_address_with_the_time_to_wait() {
    let server = TestServer::start_with(|c| c.connections_per_address_per_minute = 3).await;
    for _ in 0..3 {
        assert!(matches!(hello_answer(server.tcp).await, Some(Payload::HelloOk(_))));
    }
    match hello_answer(server.tcp).await {
        Some(Payload::Error(e)) => {
            assert_eq!(e.code, ErrorCode::TooManyConnections as i32, "{e:?}");
            // One connection every 20 s at 3 a minute.
            assert!(e.retry_after_ms > 10_000 && e.retry_after_ms <= 20_000, "{e:?}");
        }
        other => panic!("a fourth connection within the minute was served: {other:?}"),
    }
    server.stop().await;
}

// ------------------------------------------------------------------- HTTP

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_trickling_request_headers_is_cut_off_at_the_deadline() {
    let server = TestServer::start_with(|c| c.http_header_timeout_ms = 500).await;
    let started = Instant::now();
    let mut slow = TcpStream::connect(server.http).await.unwrap();
    slow.write_all(b"GET /health HTTP/1.1\r\nHost: hutong\r\n").await.unwrap();
    let closed = loop {
        // One header line every 100 ms, never the blank line ending them.
        tokio::time::sleep(Duration::from_millis(100)).await;
        if slow.write_all(b"X-Slow: 1\r\n").await.is_err() {
            break started.elapsed();
        }
        let mut buf = [0u8; 512];
        if let Ok(Ok(n)) = tokio::time::timeout(Duration::from_millis(1), slow.read(&mut buf)).await {
            let _ = n; // an answer (408) or the end of the stream: the server gave up on it
            break started.elapsed();
        }
        assert!(started.elapsed() < Duration::from_secs(5), "a trickling client kept its connection");
    };
    assert!(closed >= Duration::from_millis(400), "closed too early: {closed:?}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_connections_over_the_cap_are_closed() {
    let server = TestServer::start_with(|c| c.http_max_connections = 2).await;
    let one = TcpStream::connect(server.http).await.unwrap();
    let two = TcpStream::connect(server.http).await.unwrap();
    // Wait until the server holds both (a /health on one of them answers).
    let mut two = two;
    two.write_all(b"GET /health HTTP/1.1\r\nHost: hutong\r\n\r\n").await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = within(T, two.read(&mut buf)).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));

    let mut three = TcpStream::connect(server.http).await.unwrap();
    let _ = three.write_all(&get("/health")).await;
    let mut answer = Vec::new();
    let _ = within(T, three.read_to_end(&mut answer)).await;
    assert!(answer.is_empty(), "a third connection was served: {}", String::from_utf8_lossy(&answer));

    drop(one);
    drop(two);
    let addr = server.http;
    poll_until_async(
        T,
        "a connection served once the others closed",
        || async move {
            let Ok(mut again) = TcpStream::connect(addr).await else { return String::new() };
            let _ = again.write_all(&get("/health")).await;
            let mut answer = Vec::new();
            let _ = again.read_to_end(&mut answer).await;
            String::from_utf8_lossy(&answer).into_owned()
        },
        |answer| answer.starts_with("HTTP/1.1 200"),
    )
    .await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_body_to_an_unauthenticated_route_gets_413() {
    let server = TestServer::start().await;
    let password = "x".repeat(64 * 1024);
    let body = serde_json::json!({ "account": "admin", "password": password });
    let answer = reqwest::Client::new()
        .post(format!("http://{}/api/admin/v1/login", server.http))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status().as_u16(), 413);
    // An ordinary login body is well within the limit.
    let small = serde_json::json!({ "account": "admin", "password": "wrong-password" });
    let answer = reqwest::Client::new()
        .post(format!("http://{}/api/admin/v1/login", server.http))
        .json(&small)
        .send()
        .await
        .unwrap();
    assert_ne!(answer.status().as_u16(), 413);
    server.stop().await;
}

fn check_headers(what: &str, headers: &reqwest::header::HeaderMap) {
    let csp = headers.get("content-security-policy").map(|v| v.to_str().unwrap().to_owned());
    assert!(
        csp.as_deref().is_some_and(|c| c.contains("frame-ancestors 'none'")),
        "{what}: CSP without frame-ancestors 'none': {csp:?}"
    );
    assert_eq!(headers.get("x-content-type-options").map(|v| v.to_str().unwrap()), Some("nosniff"), "{what}");
    assert_eq!(headers.get("referrer-policy").map(|v| v.to_str().unwrap()), Some("no-referrer"), "{what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_http_response_carries_the_security_headers() {
    let server = TestServer::start().await;
    let http = reqwest::Client::new();
    let mut requests: Vec<(reqwest::Method, String)> = hutong_server::admin::routes()
        .into_iter()
        .map(|(method, path)| {
            let path = path.replace("{id}", "1").replace("{*path}", "x");
            (reqwest::Method::from_bytes(method.as_str().as_bytes()).unwrap(), format!("/api/admin/v1{path}"))
        })
        .collect();
    for path in ["/health", "/ws", "/admin", "/admin/", "/admin/people", "/admin/missing.js", "/nowhere"] {
        requests.push((reqwest::Method::GET, path.into()));
    }
    assert!(requests.len() > 20, "the route table was walked");
    for (method, path) in requests {
        let answer =
            http.request(method.clone(), format!("http://{}{path}", server.http)).send().await.unwrap();
        check_headers(&format!("{method} {path} ({})", answer.status()), answer.headers());
    }
    // The WebSocket handshake's answer too.
    let (_, answer) = tokio_tungstenite::connect_async(format!("ws://{}/ws", server.http)).await.unwrap();
    let headers = answer.headers();
    assert!(headers
        .get("content-security-policy")
        .is_some_and(|v| v.to_str().unwrap().contains("frame-ancestors")));
    assert_eq!(headers.get("x-content-type-options").unwrap(), "nosniff");
    server.stop().await;

    // And over HTTPS, the default.
    let server = secure_server(|_| {}).await;
    let (answer, _) = https(server.http, &get("/admin/")).await;
    let lower = answer.to_ascii_lowercase();
    assert!(
        lower.contains("content-security-policy:") && lower.contains("frame-ancestors 'none'"),
        "{answer}"
    );
    assert!(
        lower.contains("x-content-type-options: nosniff") && lower.contains("referrer-policy: no-referrer")
    );
    server.stop().await;
}

// ------------------------------------------------- no credentials in clear

/// A man in the middle that relays bytes both ways and keeps a copy.
struct Tap {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<u8>>>,
}

impl Tap {
    async fn start(target: SocketAddr) -> Tap {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(target).await else { continue };
                let (cr, cw) = client.into_split();
                let (sr, sw) = server.into_split();
                tokio::spawn(relay(cr, sw, log.clone()));
                tokio::spawn(relay(sr, cw, log.clone()));
            }
        });
        Tap { addr, seen }
    }

    fn contains(&self, needle: &str) -> bool {
        let seen = self.seen.lock().unwrap();
        !needle.is_empty() && seen.windows(needle.len()).any(|w| w == needle.as_bytes())
    }

    fn bytes(&self) -> usize {
        self.seen.lock().unwrap().len()
    }
}

async fn relay(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    log: Arc<Mutex<Vec<u8>>>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                log.lock().unwrap().extend_from_slice(&buf[..n]);
                if to.write_all(&buf[..n]).await.is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_credentials_cross_any_default_listener_in_clear_text() {
    let server = secure_server(|_| {}).await;
    const SECRET: &str = "correct-horse-battery-9";
    {
        let conn = server.db();
        hutong_server::accounts::add_user(&conn, "eve", "Eve", SECRET, false).unwrap();
    }
    let dir = tempfile::tempdir().unwrap();

    // The native port, as the client core connects by default (tls://).
    let tap = Tap::start(server.tcp).await;
    let addr: ServerAddr = format!("{}", tap.addr).parse().unwrap();
    let mut options = ClientOptions::new(addr, "eve", dir.path().join("n.db"));
    options.device = "native".into();
    let native = Client::start(options, Credential::Password(SECRET.into())).unwrap();
    within(T, native.wait_online()).await.unwrap();
    let token = native.token().expect("a session token");
    native.shutdown();
    assert!(tap.bytes() > 1000, "the tap saw the traffic");
    assert!(!tap.contains(SECRET) && !tap.contains(&token), "native port leaks");

    // The WebSocket over HTTPS (wss://).
    let tap = Tap::start(server.http).await;
    let addr: ServerAddr = format!("wss://{}/ws", tap.addr).parse().unwrap();
    let mut options = ClientOptions::new(addr, "eve", dir.path().join("w.db"));
    options.device = "web".into();
    let web = Client::start(options, Credential::Password(SECRET.into())).unwrap();
    within(T, web.wait_online()).await.unwrap();
    let token = web.token().expect("a session token");
    web.shutdown();
    assert!(tap.bytes() > 1000, "the tap saw the traffic");
    assert!(!tap.contains(SECRET) && !tap.contains(&token), "the WebSocket leaks");

    // The console's login on the HTTP port (HTTPS).
    let tap = Tap::start(server.http).await;
    let body = serde_json::json!({ "account": "admin", "password": "admin-password-1" }).to_string();
    let (answer, _) = https(tap.addr, &post_json("/api/admin/v1/login", &body)).await;
    assert!(answer.starts_with("HTTP/1.1"), "{answer}");
    let console_token = answer
        .split("\"token\":\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_default()
        .to_owned();
    assert!(tap.bytes() > 500, "the tap saw the traffic");
    assert!(!tap.contains("admin-password-1"), "the console login leaks the password");
    assert!(console_token.is_empty() || !tap.contains(&console_token), "the console token leaks");
    assert!(!tap.contains("/api/admin/v1/login"), "the request line is visible");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_login_pings_keep_the_connection_past_the_login_deadline() {
    // After login the idle timeout applies, and pings do extend it.
    let server = TestServer::start_with(|c| {
        c.login_timeout_ms = 300;
        c.heartbeat_ms = 100;
        c.idle_timeout_ms = 5_000;
    })
    .await;
    server.add_users(&["fay"]);
    let mut raw = RawConn::connect(server.tcp).await;
    raw.hello().await;
    assert!(matches!(raw.login("fay", PASSWORD).await.payload, Some(Payload::LoginOk(_))));
    let started = Instant::now();
    let mut nonce = 0;
    while started.elapsed() < Duration::from_millis(900) {
        nonce += 1;
        match raw.call(100 + nonce, Payload::Ping(v1::Ping { nonce })).await {
            Payload::Pong(p) => assert_eq!(p.nonce, nonce),
            other => panic!("expected Pong, got {other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server.stop().await;
}
