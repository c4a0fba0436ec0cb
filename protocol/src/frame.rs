//! Framing: a 4-byte big-endian length prefix on byte streams (TCP, TLS), one
//! binary message per frame on WebSocket. Both go through [`decode_envelope`]
//! so the size limit and the "never panic on garbage" rule live in one place.

use bytes::{Buf as _, BufMut as _, Bytes, BytesMut};
use prost::Message as _;
use tokio_util::codec::{Decoder, Encoder};

use crate::Envelope;

/// Largest frame either side accepts, in bytes. Bulk file data travels on
/// separate streams, so control and chat frames stay far below this.
pub const MAX_FRAME_LEN: usize = 1024 * 1024;

/// Largest frame on a bulk connection (`Login.bulk`): one file chunk and its
/// envelope.
pub const MAX_BULK_FRAME_LEN: usize = crate::files::CHUNK_SIZE as usize + 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("frame of {0} bytes exceeds the limit")]
    TooLarge(usize),
    #[error("malformed frame: {0}")]
    Malformed(#[from] prost::DecodeError),
    #[error("{0} are not supported")]
    Unsupported(&'static str),
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}

/// Decodes one frame body. Never panics, whatever the bytes.
pub fn decode_envelope(body: &[u8]) -> Result<Envelope, FrameError> {
    if body.len() > MAX_FRAME_LEN {
        return Err(FrameError::TooLarge(body.len()));
    }
    Ok(Envelope::decode(body)?)
}

/// Decodes one frame body of up to `max_len` bytes without copying its
/// `bytes` fields that are declared as `Bytes` (chunk data).
pub fn decode_frame(body: Bytes, max_len: usize) -> Result<Envelope, FrameError> {
    if body.len() > max_len {
        return Err(FrameError::TooLarge(body.len()));
    }
    Ok(Envelope::decode(body)?)
}

/// Encodes one frame body (without the length prefix).
pub fn encode_envelope(envelope: &Envelope) -> Bytes {
    let mut buf = BytesMut::with_capacity(envelope.encoded_len());
    envelope.encode(&mut buf).expect("BytesMut grows as needed");
    buf.freeze()
}

/// Length-prefixed codec for byte streams: a 4-byte big-endian length, then
/// the body. Decodes to raw bodies so that a malformed body can be answered
/// with an error frame instead of tearing the connection down; encodes
/// pre-encoded bodies so fan-out encodes once. A length over the limit is
/// refused as soon as the prefix arrives, before any body is buffered.
pub struct FrameCodec {
    max_len: usize,
}

impl Default for FrameCodec {
    fn default() -> Self {
        FrameCodec { max_len: MAX_FRAME_LEN }
    }
}

impl FrameCodec {
    /// A codec for a bulk connection (frames up to [`MAX_BULK_FRAME_LEN`]).
    pub fn bulk() -> Self {
        FrameCodec { max_len: MAX_BULK_FRAME_LEN }
    }

    /// Changes the limit, as a server does once a connection turns out to be
    /// a bulk connection.
    pub fn set_max_len(&mut self, max_len: usize) {
        self.max_len = max_len;
    }

    pub fn max_len(&self) -> usize {
        self.max_len
    }
}

impl Decoder for FrameCodec {
    type Item = BytesMut;
    type Error = FrameError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<BytesMut>, FrameError> {
        if src.len() < 4 {
            return Ok(None);
        }
        let len = u32::from_be_bytes([src[0], src[1], src[2], src[3]]) as usize;
        if len > self.max_len {
            return Err(FrameError::TooLarge(len));
        }
        if src.len() < 4 + len {
            src.reserve(4 + len - src.len());
            return Ok(None);
        }
        src.advance(4);
        Ok(Some(src.split_to(len)))
    }
}

impl Encoder<Bytes> for FrameCodec {
    type Error = FrameError;

    fn encode(&mut self, body: Bytes, dst: &mut BytesMut) -> Result<(), FrameError> {
        if body.len() > self.max_len {
            return Err(FrameError::TooLarge(body.len()));
        }
        dst.reserve(4 + body.len());
        dst.put_u32(body.len() as u32);
        dst.extend_from_slice(&body);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v1::{Message, SendMessage};
    use crate::Payload;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn send_message_round_trips(id in any::<u64>(), conv in any::<u64>(), text in ".{0,200}", mentions in proptest::collection::vec(any::<u64>(), 0..8)) {
            let env = Envelope::new(id, Payload::SendMessage(SendMessage {
                conversation_id: conv, client_msg_id: format!("m{id}"), text, mentions, reply_to_seq: 0, priority: 0, attachment: None, markdown: false,
            }));
            let mut codec = FrameCodec::default();
            let mut buf = BytesMut::new();
            codec.encode(encode_envelope(&env), &mut buf).unwrap();
            let body = codec.decode(&mut buf).unwrap().unwrap();
            prop_assert_eq!(decode_envelope(&body).unwrap(), env);
            prop_assert!(buf.is_empty());
        }

        #[test]
        fn message_round_trips(seq in any::<u64>(), sender in any::<u64>(), text in "\\PC{0,100}", at in any::<i64>()) {
            let env = Envelope::new(0, Payload::Message(Message { conversation_id: 1, seq, sender_id: sender, text, sent_at_ms: at, ..Default::default() }));
            prop_assert_eq!(decode_envelope(&encode_envelope(&env)).unwrap(), env);
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode_envelope(&bytes);
            let mut codec = FrameCodec::default();
            let mut buf = BytesMut::from(&bytes[..]);
            while let Ok(Some(body)) = codec.decode(&mut buf) {
                let _ = decode_envelope(&body);
            }
        }
    }

    #[test]
    fn frames_split_across_reads_decode() {
        let mut codec = FrameCodec::default();
        let mut whole = BytesMut::new();
        for i in 0..3u8 {
            codec.encode(Bytes::from(vec![i; 300]), &mut whole).unwrap();
        }
        // Feed one byte at a time, as a slow network would.
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for b in whole.iter() {
            buf.extend_from_slice(&[*b]);
            while let Some(frame) = codec.decode(&mut buf).unwrap() {
                out.push(frame);
            }
        }
        assert_eq!(out.len(), 3);
        assert!(out.iter().enumerate().all(|(i, f)| f.len() == 300 && f.iter().all(|b| *b == i as u8)));
    }

    #[test]
    fn oversized_length_prefix_is_refused_before_buffering() {
        let mut codec = FrameCodec::default();
        let mut buf = BytesMut::from(&((MAX_FRAME_LEN as u32 + 1).to_be_bytes())[..]);
        assert!(matches!(codec.decode(&mut buf), Err(FrameError::TooLarge(_))));
    }

    #[test]
    fn unknown_fields_are_ignored() {
        // Field 1 (id) = 7, then an unknown field 999 (varint) = 1.
        let mut bytes = vec![0x08, 0x07];
        bytes.extend_from_slice(&[0xb8, 0x3e, 0x01]);
        let env = decode_envelope(&bytes).unwrap();
        assert_eq!(env.id, 7);
        assert!(env.payload.is_none());
    }
}
