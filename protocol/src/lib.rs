//! The Hutong wire contract shared by the server and every client.
//!
//! This crate owns three things: the protobuf messages (generated at build time
//! from `proto/hutong.proto`), the framing used on TCP and WebSocket, and the
//! helpers that turn envelopes into bytes and back with a size limit. It knows
//! nothing of sockets or storage.

pub mod files;
pub mod frame;
pub mod time;

/// Generated protobuf types of package `hutong.v1`.
#[allow(clippy::all, missing_docs)]
pub mod v1 {
    include!(concat!(env!("OUT_DIR"), "/hutong.v1.rs"));
}

pub use frame::{
    decode_envelope, decode_frame, encode_envelope, FrameCodec, FrameError, MAX_BULK_FRAME_LEN, MAX_FRAME_LEN,
};
pub use v1::envelope::Payload;
pub use v1::{Envelope, ErrorCode};

/// The protocol version this build speaks. A peer with another major version
/// is refused in `Hello` with `UNSUPPORTED_VERSION`.
pub const PROTOCOL_VERSION: u32 = 1;

/// Longest message text accepted, in bytes (UTF-8).
pub const MAX_TEXT_LEN: usize = 64 * 1024;

impl Envelope {
    /// A request or push carrying `payload`, numbered `id`.
    pub fn new(id: u64, payload: Payload) -> Self {
        Envelope { id, response_to: 0, payload: Some(payload) }
    }

    /// The answer to request `response_to`.
    pub fn reply(response_to: u64, payload: Payload) -> Self {
        Envelope { id: 0, response_to, payload: Some(payload) }
    }

    /// An error frame answering `response_to` (0 for a connection-level error).
    pub fn error(response_to: u64, code: ErrorCode, message: impl Into<String>) -> Self {
        Self::reply(
            response_to,
            Payload::Error(v1::Error { code: code as i32, message: message.into(), retry_after_ms: 0 }),
        )
    }
}

impl std::fmt::Display for v1::Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let code = ErrorCode::try_from(self.code).unwrap_or(ErrorCode::Unspecified);
        write!(f, "{} ({})", self.message, code.as_str_name())
    }
}
