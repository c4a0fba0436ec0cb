//! cargo-fuzz target; the body is shared with the corpus replay test
//! (`tests/tests/fuzz_corpus.rs`), see `fuzz/bodies/csv_import.rs`.
#![no_main]

#[path = "../bodies/csv_import.rs"]
mod body;

libfuzzer_sys::fuzz_target!(|data: &[u8]| body::run(data));
