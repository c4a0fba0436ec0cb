//! A folder manifest from a hostile sender, as the server reads it before a
//! folder message is stored and every receiver before writing anything:
//! decoding and `check_folder` may not panic, and what they accept keeps
//! the limits (entry count, path bytes, safe relative paths, sizes that add
//! up). Shared by the fuzz target and the corpus replay test.

use hutong_protocol::files::{check_folder, check_relative_path, MAX_FOLDER_ENTRIES, MAX_FOLDER_PATH_BYTES};
use hutong_protocol::v1::{EntryKind, FolderManifest};
use prost::Message as _;

pub fn run(data: &[u8]) {
    let Ok(folder) = FolderManifest::decode(data) else { return };
    let Ok(total) = check_folder(&folder) else { return };
    assert!(folder.entries.len() <= MAX_FOLDER_ENTRIES);
    assert!(folder.entries.iter().map(|e| e.path.len()).sum::<usize>() <= MAX_FOLDER_PATH_BYTES);
    let mut sum = 0u64;
    for e in &folder.entries {
        assert!(check_relative_path(&e.path).is_ok(), "accepted an unsafe path {:?}", e.path);
        assert!(!e.path.split('/').any(|c| c == ".." || c == "." || c.is_empty()));
        match EntryKind::try_from(e.kind) {
            Ok(EntryKind::EntryFile) => {
                assert_eq!(e.file_id.len(), 32);
                sum += e.size;
            }
            Ok(EntryKind::EntryDirectory) => {}
            other => panic!("accepted an entry of kind {other:?}"),
        }
    }
    assert_eq!(sum, total);
}
