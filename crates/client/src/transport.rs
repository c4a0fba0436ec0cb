//! Opening a framed connection to a server: TLS (`tls://`) or WebSocket over
//! TLS (`wss://`), both with the server's certificate pinned by its SHA-256
//! fingerprint (trust on first use), or, only when the person chose an
//! insecure connection explicitly, plain TCP (`tcp://`) or WebSocket
//! (`ws://`). Everything above this module sees only a stream and a sink of
//! frame bodies.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::{Sink, SinkExt as _, Stream, StreamExt as _};
use hutong_protocol::FrameCodec;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use sha2::{Digest, Sha256};
use tokio::net::TcpStream;
use tokio_util::codec::Framed;

use crate::error::ClientError;

pub type FrameSink = Pin<Box<dyn Sink<Bytes, Error = ClientError> + Send>>;
pub type FrameStream = Pin<Box<dyn Stream<Item = Result<Bytes, ClientError>> + Send>>;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the server is: `tls://host:7300` (default), `wss://host:7380/ws`,
/// or the unencrypted `tcp://host:7300` and `ws://host:7380/ws`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerAddr {
    Tls { host: String, port: u16 },
    Tcp { host: String, port: u16 },
    WebSocket { url: String },
}

impl std::str::FromStr for ServerAddr {
    type Err = ClientError;

    fn from_str(s: &str) -> Result<Self, ClientError> {
        let bad = || ClientError::InvalidAddress(s.to_owned());
        if s.starts_with("ws://") || s.starts_with("wss://") {
            return Ok(ServerAddr::WebSocket { url: s.to_owned() });
        }
        let (scheme, rest) = match s.split_once("://") {
            Some((scheme, rest)) => (scheme, rest),
            None => ("tls", s),
        };
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, p)) => (h.trim_matches(['[', ']']).to_owned(), p.parse().map_err(|_| bad())?),
            None => (rest.to_owned(), 7300),
        };
        if host.is_empty() {
            return Err(bad());
        }
        match scheme {
            "tls" => Ok(ServerAddr::Tls { host, port }),
            "tcp" => Ok(ServerAddr::Tcp { host, port }),
            _ => Err(bad()),
        }
    }
}

impl ServerAddr {
    /// Whether this address carries passwords and messages unencrypted.
    pub fn is_plaintext(&self) -> bool {
        match self {
            ServerAddr::Tls { .. } => false,
            ServerAddr::Tcp { .. } => true,
            ServerAddr::WebSocket { url } => !url.starts_with("wss://"),
        }
    }

    /// Refuses an unencrypted address unless the person chose an insecure
    /// connection explicitly (`allow_plaintext`).
    pub fn check_secure(&self, allow_plaintext: bool) -> Result<(), ClientError> {
        if self.is_plaintext() && !allow_plaintext {
            return Err(ClientError::InsecureAddress(self.to_string()));
        }
        Ok(())
    }
}

impl std::fmt::Display for ServerAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ServerAddr::Tls { host, port } => write!(f, "tls://{host}:{port}"),
            ServerAddr::Tcp { host, port } => write!(f, "tcp://{host}:{port}"),
            ServerAddr::WebSocket { url } => write!(f, "{url}"),
        }
    }
}

/// SHA-256 of a certificate, uppercase hex pairs joined by ':' (as the server prints it).
pub fn fingerprint(cert_der: &[u8]) -> String {
    Sha256::digest(cert_der).iter().map(|b| format!("{b:02X}")).collect::<Vec<_>>().join(":")
}

/// Accepts exactly the pinned certificate, or on first use any certificate,
/// remembering what it saw.
#[derive(Debug)]
struct PinningVerifier {
    expected: Option<String>,
    seen: Arc<Mutex<Option<String>>>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ServerCertVerifier for PinningVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let actual = fingerprint(end_entity);
        *self.seen.lock().unwrap_or_else(|e| e.into_inner()) = Some(actual.clone());
        match &self.expected {
            Some(expected) if !expected.eq_ignore_ascii_case(&actual) => {
                Err(rustls::Error::General("certificate fingerprint changed".into()))
            }
            _ => Ok(ServerCertVerified::assertion()),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// A connected transport and, for TLS, the fingerprint the server presented.
pub struct Connected {
    pub sink: FrameSink,
    pub stream: FrameStream,
    pub fingerprint: Option<String>,
}

fn framed<IO>(io: IO, codec: FrameCodec) -> (FrameSink, FrameStream)
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + 'static,
{
    let (sink, stream) = Framed::new(io, codec).split();
    let sink = sink.sink_map_err(|e| ClientError::Transport(e.to_string()));
    let stream =
        stream.map(|r| r.map(bytes::BytesMut::freeze).map_err(|e| ClientError::Transport(e.to_string())));
    (Box::pin(sink), Box::pin(stream))
}

pub async fn connect(addr: &ServerAddr, pinned: Option<&str>) -> Result<Connected, ClientError> {
    connect_with(addr, pinned, FrameCodec::default).await
}

/// A connection for file data: frames up to `MAX_BULK_FRAME_LEN`.
pub async fn connect_bulk(addr: &ServerAddr, pinned: Option<&str>) -> Result<Connected, ClientError> {
    connect_with(addr, pinned, FrameCodec::bulk).await
}

async fn connect_with(
    addr: &ServerAddr,
    pinned: Option<&str>,
    codec: fn() -> FrameCodec,
) -> Result<Connected, ClientError> {
    let timeout =
        |e: tokio::time::error::Elapsed| ClientError::Transport(format!("connecting timed out: {e}"));
    match addr {
        ServerAddr::Tcp { host, port } => {
            let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect((host.as_str(), *port)))
                .await
                .map_err(timeout)?
                .map_err(|e| ClientError::Transport(format!("cannot reach {addr}: {e}")))?;
            let _ = tcp.set_nodelay(true);
            let (sink, stream) = framed(tcp, codec());
            Ok(Connected { sink, stream, fingerprint: None })
        }
        ServerAddr::Tls { host, port } => {
            let (tls, actual) = tls_connect(addr, host, *port, pinned).await?;
            let (sink, stream) = framed(tls, codec());
            Ok(Connected { sink, stream, fingerprint: Some(actual) })
        }
        ServerAddr::WebSocket { url } => {
            use tokio_tungstenite::tungstenite::http::Uri;
            let uri: Uri = url.parse().map_err(|_| ClientError::InvalidAddress(url.clone()))?;
            let host = uri.host().ok_or_else(|| ClientError::InvalidAddress(url.clone()))?;
            let host = host.trim_matches(['[', ']']).to_owned();
            if url.starts_with("wss://") {
                let port = uri.port_u16().unwrap_or(443);
                let (tls, actual) = tls_connect(addr, &host, port, pinned).await?;
                let (ws, _) =
                    tokio::time::timeout(CONNECT_TIMEOUT, tokio_tungstenite::client_async(url.as_str(), tls))
                        .await
                        .map_err(timeout)?
                        .map_err(|e| ClientError::Transport(format!("cannot open {url}: {e}")))?;
                let (sink, stream) = websocket(ws);
                Ok(Connected { sink, stream, fingerprint: Some(actual) })
            } else {
                let port = uri.port_u16().unwrap_or(80);
                let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect((host.as_str(), port)))
                    .await
                    .map_err(timeout)?
                    .map_err(|e| ClientError::Transport(format!("cannot reach {addr}: {e}")))?;
                let _ = tcp.set_nodelay(true);
                let (ws, _) =
                    tokio::time::timeout(CONNECT_TIMEOUT, tokio_tungstenite::client_async(url.as_str(), tcp))
                        .await
                        .map_err(timeout)?
                        .map_err(|e| ClientError::Transport(format!("cannot open {url}: {e}")))?;
                let (sink, stream) = websocket(ws);
                Ok(Connected { sink, stream, fingerprint: None })
            }
        }
    }
}

/// The TLS client configuration that accepts exactly the certificate whose
/// fingerprint is `pinned` (any certificate when `None`), and where the
/// fingerprint the server presented is written once a handshake saw it.
#[allow(clippy::type_complexity)]
pub fn pinning_tls_config(
    pinned: Option<&str>,
) -> Result<(Arc<rustls::ClientConfig>, Arc<Mutex<Option<String>>>), ClientError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let seen = Arc::new(Mutex::new(None));
    let verifier = PinningVerifier {
        expected: pinned.map(str::to_owned),
        seen: seen.clone(),
        provider: provider.clone(),
    };
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ClientError::Transport(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    Ok((Arc::new(config), seen))
}

/// Connects to `host:port` and completes TLS, accepting only the pinned
/// certificate (any certificate when nothing is pinned yet); returns the
/// stream and the fingerprint the server presented.
async fn tls_connect(
    addr: &ServerAddr,
    host: &str,
    port: u16,
    pinned: Option<&str>,
) -> Result<(tokio_rustls::client::TlsStream<TcpStream>, String), ClientError> {
    let timeout =
        |e: tokio::time::error::Elapsed| ClientError::Transport(format!("connecting timed out: {e}"));
    let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect((host, port)))
        .await
        .map_err(timeout)?
        .map_err(|e| ClientError::Transport(format!("cannot reach {addr}: {e}")))?;
    let _ = tcp.set_nodelay(true);
    let (config, seen) = pinning_tls_config(pinned)?;
    let name = ServerName::try_from(host.to_owned())
        .unwrap_or_else(|_| ServerName::try_from("hutong").expect("valid name"));
    let connector = tokio_rustls::TlsConnector::from(config);
    let result =
        tokio::time::timeout(CONNECT_TIMEOUT, connector.connect(name, tcp)).await.map_err(timeout)?;
    let actual = seen.lock().unwrap_or_else(|e| e.into_inner()).clone();
    match (result, actual) {
        (Ok(tls), Some(actual)) => Ok((tls, actual)),
        (Ok(_), None) => Err(ClientError::Transport(format!("{addr} presented no certificate"))),
        (Err(_), Some(actual)) if pinned.is_some_and(|p| !p.eq_ignore_ascii_case(&actual)) => {
            Err(ClientError::FingerprintChanged { expected: pinned.unwrap_or_default().to_owned(), actual })
        }
        (Err(e), _) => Err(ClientError::Transport(format!("TLS handshake with {addr} failed: {e}"))),
    }
}

/// One binary WebSocket message is one frame; other messages are skipped and
/// a close ends the stream.
fn websocket<S>(ws: tokio_tungstenite::WebSocketStream<S>) -> (FrameSink, FrameStream)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    {
        {
            use tokio_tungstenite::tungstenite::Message as WsMessage;
            let (sink, stream) = ws.split();
            let sink = sink
                .sink_map_err(|e| ClientError::Transport(e.to_string()))
                .with(|b: Bytes| futures::future::ready(Ok::<_, ClientError>(WsMessage::Binary(b))));
            let stream = stream
                .take_while(|m| futures::future::ready(matches!(m, Ok(msg) if !msg.is_close())))
                .filter_map(|m| {
                    futures::future::ready(match m {
                        Ok(WsMessage::Binary(b)) => Some(Ok(b)),
                        Ok(_) => None,
                        Err(e) => Some(Err(ClientError::Transport(e.to_string()))),
                    })
                });
            (Box::pin(sink), Box::pin(stream))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plaintext_needs_an_explicit_choice() {
        for plain in ["tcp://h:1", "ws://h:1/ws"] {
            let addr: ServerAddr = plain.parse().unwrap();
            assert!(addr.is_plaintext());
            assert_eq!(addr.check_secure(false).unwrap_err().code(), "INSECURE_ADDRESS");
            addr.check_secure(true).unwrap();
        }
        for secure in ["tls://h:1", "h:1", "wss://h:1/ws"] {
            let addr: ServerAddr = secure.parse().unwrap();
            assert!(!addr.is_plaintext());
            addr.check_secure(false).unwrap();
        }
    }

    #[test]
    fn parses_addresses() {
        assert_eq!(
            "example:1".parse::<ServerAddr>().unwrap(),
            ServerAddr::Tls { host: "example".into(), port: 1 }
        );
        assert_eq!(
            "tcp://10.0.0.1:7300".parse::<ServerAddr>().unwrap(),
            ServerAddr::Tcp { host: "10.0.0.1".into(), port: 7300 }
        );
        assert_eq!(
            "chat.lan".parse::<ServerAddr>().unwrap(),
            ServerAddr::Tls { host: "chat.lan".into(), port: 7300 }
        );
        assert!(matches!("ws://h:1/ws".parse::<ServerAddr>().unwrap(), ServerAddr::WebSocket { .. }));
        assert!(matches!("wss://h:1/ws".parse::<ServerAddr>().unwrap(), ServerAddr::WebSocket { .. }));
        assert!("ftp://h:1".parse::<ServerAddr>().is_err());
        assert!("h:notaport".parse::<ServerAddr>().is_err());
    }
}
