//! Replays the fuzz targets' inputs in every test run, without cargo-fuzz:
//! each target's body (`fuzz/bodies/`) runs over every file of its committed
//! seeds and regression cases (`fuzz/seeds/<target>/`) and of a local
//! corpus (`fuzz/corpus/<target>/`) when one exists. A target must not
//! panic on any of them.

use std::path::{Path, PathBuf};

#[path = "../../fuzz/bodies/frame_decoder.rs"]
mod frame_decoder;

#[path = "../../fuzz/bodies/folder_manifest.rs"]
mod folder_manifest;

#[path = "../../fuzz/bodies/csv_import.rs"]
mod csv_import;

fn inputs(target: &str) -> Vec<PathBuf> {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let mut files = Vec::new();
    for dir in ["seeds", "corpus"] {
        let Ok(entries) = std::fs::read_dir(fuzz.join(dir).join(target)) else { continue };
        for e in entries {
            let path = e.unwrap().path();
            if path.is_file() {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

fn replay(target: &str, run: fn(&[u8])) {
    let files = inputs(target);
    assert!(files.len() >= 5, "{target}: the committed seeds are missing ({} files)", files.len());
    for path in files {
        let data = std::fs::read(&path).unwrap();
        if std::panic::catch_unwind(|| run(&data)).is_err() {
            panic!("{target} panicked on {}", path.display());
        }
    }
}

#[test]
fn frame_decoder_corpus() {
    replay("frame_decoder", frame_decoder::run);
}

#[test]
fn folder_manifest_corpus() {
    replay("folder_manifest", folder_manifest::run);
}

#[test]
fn csv_import_corpus() {
    replay("csv_import", csv_import::run);
}
