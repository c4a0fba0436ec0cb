//! The bench's own minimal client of the native protocol: length-prefixed
//! frames over plain TCP through `hutong-protocol`'s codec, with the hello and
//! login handshake and a request helper. It deliberately bypasses the client
//! core (no cache, no outbox, no reconnects) so the numbers measure the
//! server and the wire, not client bookkeeping.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use anyhow::{bail, Context as _};
use futures::{SinkExt as _, StreamExt as _};
use hutong_protocol::v1::{self, login::Secret};
use hutong_protocol::{decode_envelope, encode_envelope, Envelope, FrameCodec, Payload};
use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpSocket, TcpStream};
use tokio_util::codec::Framed;

/// How long any single set-up request may take before the bench gives up.
pub const SETUP_TIMEOUT: Duration = Duration::from_secs(30);

/// The device name every bench login uses. A token is tied to its device,
/// and several connections may share one (account, device) session, so one
/// password login per account is enough for any number of connections.
pub const DEVICE: &str = "bench";

/// TLS for every bench connection, when the bench was asked for it
/// (`--tls`): set once at start, before any connection.
static TLS: OnceLock<tokio_rustls::TlsConnector> = OnceLock::new();

/// Makes every later connection (and every server the bench starts) use TLS,
/// accepting the certificate the server presents (its own, made at start).
pub fn use_tls() -> anyhow::Result<()> {
    let (config, _) = hutong_client::transport::pinning_tls_config(None)?;
    let _ = TLS.set(tokio_rustls::TlsConnector::from(config));
    Ok(())
}

/// Whether the bench speaks TLS.
pub fn tls() -> bool {
    TLS.get().is_some()
}

/// A bench connection's byte stream: plain TCP, or TLS over it.
pub enum Stream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// One open connection and the numbering of its requests.
pub struct Conn {
    pub framed: Framed<Stream, FrameCodec>,
    next_id: u64,
}

impl Conn {
    /// Connects to `addr`, from `source` when given (to spread many
    /// connections over several loopback addresses).
    pub async fn connect(addr: SocketAddr, source: Option<IpAddr>) -> anyhow::Result<Conn> {
        let socket = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
        if let Some(ip) = source {
            socket.bind(SocketAddr::new(ip, 0)).with_context(|| format!("binding to {ip}"))?;
        }
        let stream = socket.connect(addr).await.with_context(|| format!("connecting to {addr}"))?;
        // Latency is the point of the exercise: never let Nagle hold a frame back.
        stream.set_nodelay(true)?;
        let stream = match TLS.get() {
            Some(tls) => {
                let name = rustls::pki_types::ServerName::try_from("hutong").expect("a valid name");
                Stream::Tls(Box::new(tls.connect(name, stream).await.context("the TLS handshake")?))
            }
            None => Stream::Plain(stream),
        };
        // A small first read buffer keeps thousands of idle bench connections cheap.
        Ok(Conn { framed: Framed::with_capacity(stream, FrameCodec::default(), 512), next_id: 1 })
    }

    /// A fresh, non-zero request id.
    pub fn next_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// Buffers one request without flushing; returns its id.
    pub async fn feed(&mut self, payload: Payload) -> anyhow::Result<u64> {
        let id = self.next_id();
        self.framed.feed(encode_envelope(&Envelope::new(id, payload))).await?;
        Ok(id)
    }

    /// Sends one request now; returns its id.
    pub async fn send(&mut self, payload: Payload) -> anyhow::Result<u64> {
        let id = self.feed(payload).await?;
        self.framed.flush().await?;
        Ok(id)
    }

    /// The next frame from the server; an error when the connection ended.
    pub async fn recv(&mut self) -> anyhow::Result<Envelope> {
        match self.framed.next().await {
            Some(Ok(body)) => Ok(decode_envelope(&body)?),
            Some(Err(e)) => Err(e.into()),
            None => bail!("the server closed the connection"),
        }
    }

    /// Sends a request and waits for its answer, skipping pushes that arrive
    /// meanwhile. An `Error` answer or a `Disconnect` becomes an `Err`.
    pub async fn call(&mut self, payload: Payload) -> anyhow::Result<Payload> {
        let id = self.send(payload).await?;
        tokio::time::timeout(SETUP_TIMEOUT, async {
            loop {
                let env = self.recv().await?;
                match env.payload {
                    Some(Payload::Disconnect(d)) => bail!("disconnected: {} (code {})", d.message, d.code),
                    Some(Payload::Error(e)) if env.response_to == id || env.response_to == 0 => {
                        bail!("server error: {e}")
                    }
                    Some(p) if env.response_to == id => return Ok(p),
                    _ => continue,
                }
            }
        })
        .await
        .context("no answer within the set-up timeout")?
    }

    pub async fn hello(&mut self) -> anyhow::Result<v1::HelloOk> {
        let hello = v1::Hello {
            protocol_version: hutong_protocol::PROTOCOL_VERSION,
            client_name: "hutong-bench".into(),
        };
        match self.call(Payload::Hello(hello)).await? {
            Payload::HelloOk(ok) => Ok(ok),
            other => bail!("expected HelloOk, got {other:?}"),
        }
    }

    pub async fn login(&mut self, account: &str, secret: Secret) -> anyhow::Result<v1::LoginOk> {
        let login =
            v1::Login { account: account.into(), secret: Some(secret), device: DEVICE.into(), bulk: false };
        match self.call(Payload::Login(login)).await.with_context(|| format!("logging in as {account}"))? {
            Payload::LoginOk(ok) => Ok(ok),
            other => bail!("expected LoginOk, got {other:?}"),
        }
    }

    /// Connect, hello and log in, in one step.
    pub async fn open(
        addr: SocketAddr,
        source: Option<IpAddr>,
        account: &str,
        secret: Secret,
    ) -> anyhow::Result<(Conn, v1::LoginOk)> {
        let mut conn = Conn::connect(addr, source).await?;
        conn.hello().await?;
        let ok = conn.login(account, secret).await?;
        Ok((conn, ok))
    }
}
