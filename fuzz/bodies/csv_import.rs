//! A directory import file from an administrator's upload (which may come
//! from anywhere): decoding (UTF-8 with or without BOM, or GBK) and CSV
//! parsing may not panic, and what is accepted keeps the row limit.
//! Shared by the fuzz target and the corpus replay test.

use hutong_server::directory::import::{read_file, ImportError, MAX_IMPORT_ROWS};

pub fn run(data: &[u8]) {
    match read_file(data) {
        Ok(rows) => assert!(rows <= MAX_IMPORT_ROWS),
        Err(ImportError::Invalid(problems)) => assert!(!problems.is_empty()),
        Err(ImportError::Service(_)) => {}
    }
}
