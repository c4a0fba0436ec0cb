//! cargo-fuzz target; the body is shared with the corpus replay test
//! (`tests/tests/fuzz_corpus.rs`), see `fuzz/bodies/frame_decoder.rs`.
#![no_main]

#[path = "../bodies/frame_decoder.rs"]
mod body;

libfuzzer_sys::fuzz_target!(|data: &[u8]| body::run(data));
