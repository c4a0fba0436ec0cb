//! Feeds arbitrary bytes to the stream decoder and the envelope decoder, as a
//! hostile peer would: neither may panic, and every decoded frame respects
//! the size limit. Shared by the fuzz target and the corpus replay test.

use bytes::BytesMut;
use hutong_protocol::{decode_envelope, FrameCodec, MAX_FRAME_LEN};
use tokio_util::codec::Decoder;

pub fn run(data: &[u8]) {
    let _ = decode_envelope(data);
    let mut codec = FrameCodec::default();
    // Arrive in two pieces, split where the input says.
    let split = data.first().map(|b| *b as usize % (data.len() + 1)).unwrap_or(0);
    let mut buf = BytesMut::from(&data[..split]);
    let mut rest = &data[split..];
    loop {
        match codec.decode(&mut buf) {
            Ok(Some(frame)) => {
                assert!(frame.len() <= MAX_FRAME_LEN);
                let _ = decode_envelope(&frame);
            }
            Ok(None) if !rest.is_empty() => {
                buf.extend_from_slice(rest);
                rest = &[];
            }
            Ok(None) | Err(_) => break,
        }
    }
}
