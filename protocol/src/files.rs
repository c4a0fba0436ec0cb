//! The rules both sides apply to files and folders: chunking, the file id,
//! and which folder entries may be written. The server checks a folder when
//! it is sent; every receiver checks it again before writing anything.

use std::collections::HashMap;

use crate::v1::{EntryKind, FileManifest, FolderManifest};

/// Size of every chunk but a file's last, in bytes.
pub const CHUNK_SIZE: u32 = 4 * 1024 * 1024;

/// Smallest chunk size a manifest may declare. Each chunk is a file on the
/// server's disk, and quotas count bytes of content: tiny chunks would let a
/// small quota fill a disk with per-file overhead.
pub const MIN_CHUNK_SIZE: u32 = 64 * 1024;

/// Most bytes of paths a folder manifest may hold over all its entries.
pub const MAX_FOLDER_PATH_BYTES: usize = 16 * 1024 * 1024;

/// Length of a proof of possession (see [`chunk_proof`]) and of the
/// challenge that keys it.
pub const PROOF_LEN: usize = 32;

/// Largest thumbnail carried inside an image message, in bytes.
pub const MAX_THUMBNAIL_LEN: usize = 64 * 1024;

/// Longest file or folder name (one path component), in bytes.
pub const MAX_NAME_LEN: usize = 255;

/// Longest relative path inside a folder, in bytes.
pub const MAX_PATH_LEN: usize = 4096;

/// Most entries a folder may hold.
pub const MAX_FOLDER_ENTRIES: usize = 100_000;

/// Largest folder manifest, in bytes (it is stored as a file of its own).
pub const MAX_FOLDER_MANIFEST_LEN: u64 = 32 * 1024 * 1024;

/// Largest number of files one `PrepareUpload` may announce.
pub const MAX_FILES_PER_UPLOAD: usize = MAX_FOLDER_ENTRIES + 1;

/// A BLAKE3 hash.
pub type Hash = [u8; 32];

/// The id of a file: BLAKE3 over a fixed prefix, the size, the chunk size,
/// the content hash and every chunk hash. Two uploads of the same content get
/// the same id; an id names exactly one list of chunks.
pub fn file_id(size: u64, chunk_size: u32, content_hash: &Hash, chunks: &[Hash]) -> Hash {
    let mut h = blake3::Hasher::new();
    h.update(b"hutong/file/v1\0");
    h.update(&size.to_le_bytes());
    h.update(&chunk_size.to_le_bytes());
    h.update(content_hash);
    for c in chunks {
        h.update(c);
    }
    *h.finalize().as_bytes()
}

/// Why a manifest or a folder entry is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FileError {
    #[error("{0}")]
    BadManifest(&'static str),
    #[error("unsafe path {path:?}: {reason}")]
    UnsafePath { path: String, reason: &'static str },
}

/// A manifest whose fields agree with each other and with its id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedManifest {
    pub id: Hash,
    pub size: u64,
    pub chunk_size: u32,
    pub content_hash: Hash,
    pub chunks: Vec<Hash>,
}

impl CheckedManifest {
    /// Builds the manifest of content already hashed.
    pub fn new(size: u64, chunk_size: u32, content_hash: Hash, chunks: Vec<Hash>) -> Self {
        let id = file_id(size, chunk_size, &content_hash, &chunks);
        CheckedManifest { id, size, chunk_size, content_hash, chunks }
    }

    /// Length of chunk `index`.
    pub fn chunk_len(&self, index: usize) -> u64 {
        let start = index as u64 * u64::from(self.chunk_size);
        (self.size - start).min(u64::from(self.chunk_size))
    }

    pub fn to_wire(&self) -> FileManifest {
        FileManifest {
            id: self.id.to_vec(),
            size: self.size,
            chunk_size: self.chunk_size,
            content_hash: self.content_hash.to_vec(),
            chunks: self.chunks.iter().map(|c| c.to_vec()).collect(),
        }
    }
}

/// Hashes content already in memory (small files, folder manifests).
pub fn manifest_of(bytes: &[u8]) -> CheckedManifest {
    let chunks = bytes.chunks(CHUNK_SIZE as usize).map(|c| *blake3::hash(c).as_bytes()).collect();
    CheckedManifest::new(bytes.len() as u64, CHUNK_SIZE, *blake3::hash(bytes).as_bytes(), chunks)
}

/// The proof that the sender holds a chunk's bytes: BLAKE3 keyed with the
/// server's one-time `challenge` over the bytes. Knowing the chunk's hash
/// (or the whole manifest) is not enough to compute it.
pub fn chunk_proof(challenge: &[u8; PROOF_LEN], data: &[u8]) -> [u8; PROOF_LEN] {
    *blake3::keyed_hash(challenge, data).as_bytes()
}

/// Parses a 32-byte hash.
pub fn hash_from(bytes: &[u8]) -> Result<Hash, FileError> {
    bytes.try_into().map_err(|_| FileError::BadManifest("a hash is not 32 bytes long"))
}

/// Checks a manifest from the wire: hash lengths, chunk size, chunk count and
/// the id.
pub fn check_manifest(m: &FileManifest) -> Result<CheckedManifest, FileError> {
    if m.chunk_size < MIN_CHUNK_SIZE || m.chunk_size > CHUNK_SIZE {
        return Err(FileError::BadManifest("the chunk size is out of range (64 KiB to 4 MiB)"));
    }
    let expected = m.size.div_ceil(u64::from(m.chunk_size));
    if m.chunks.len() as u64 != expected {
        return Err(FileError::BadManifest("the number of chunks does not match the size"));
    }
    let chunks = m.chunks.iter().map(|c| hash_from(c)).collect::<Result<Vec<_>, _>>()?;
    let content_hash = hash_from(&m.content_hash)?;
    let checked = CheckedManifest::new(m.size, m.chunk_size, content_hash, chunks);
    if checked.id[..] != m.id[..] {
        return Err(FileError::BadManifest("the file id does not match its manifest"));
    }
    Ok(checked)
}

/// Device names Windows opens instead of a file, with or without an
/// extension and in any case (superscript digits included: Windows reads
/// `COM¹` as `COM1`).
const WINDOWS_RESERVED: [&str; 32] = [
    "CON",
    "PRN",
    "AUX",
    "NUL",
    "COM0",
    "COM1",
    "COM2",
    "COM3",
    "COM4",
    "COM5",
    "COM6",
    "COM7",
    "COM8",
    "COM9",
    "COM\u{b9}",
    "COM\u{b2}",
    "COM\u{b3}",
    "LPT0",
    "LPT1",
    "LPT2",
    "LPT3",
    "LPT4",
    "LPT5",
    "LPT6",
    "LPT7",
    "LPT8",
    "LPT9",
    "LPT\u{b9}",
    "LPT\u{b2}",
    "LPT\u{b3}",
    "CONIN$",
    "CONOUT$",
];

/// Characters that change the direction of the text around them: a name
/// holding one can show as something else (`invoice` + U+202E + `fdp.exe`
/// reads "invoiceexe.pdf"), so names never carry them.
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{200e}' | '\u{200f}' | '\u{061c}')
}

/// Checks one file or folder name (a single path component) so that it can
/// be written on Windows, macOS and Linux alike.
pub fn check_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("an empty name");
    }
    if name == "." || name == ".." {
        return Err("a name that points outside the folder");
    }
    if name.len() > MAX_NAME_LEN {
        return Err("a name longer than 255 bytes");
    }
    if name
        .chars()
        .any(|c| c.is_control() || matches!(c, '/' | '\\' | '<' | '>' | ':' | '"' | '|' | '?' | '*'))
    {
        return Err("a character not allowed in file names");
    }
    if name.chars().any(is_bidi_control) {
        return Err("a character that reverses the direction of the text");
    }
    if name.ends_with('.') || name.ends_with(' ') {
        return Err("a name ending in a dot or a space");
    }
    let stem = name.split('.').next().unwrap_or(name).trim_end();
    if WINDOWS_RESERVED.iter().any(|r| r.eq_ignore_ascii_case(stem)) {
        return Err("a name Windows reserves for devices");
    }
    Ok(())
}

/// Checks a relative path inside a folder: "/"-separated components, each a
/// valid name; never absolute, never `.` or `..`.
pub fn check_relative_path(path: &str) -> Result<(), FileError> {
    let unsafe_path = |reason| FileError::UnsafePath { path: path.to_string(), reason };
    if path.is_empty() {
        return Err(unsafe_path("an empty path"));
    }
    if path.len() > MAX_PATH_LEN {
        return Err(unsafe_path("a path longer than 4096 bytes"));
    }
    if path.starts_with('/') || path.starts_with('\\') || path.as_bytes().get(1) == Some(&b':') {
        return Err(unsafe_path("an absolute path"));
    }
    for component in path.split('/') {
        check_name(component).map_err(unsafe_path)?;
    }
    Ok(())
}

/// Checks a whole folder manifest: every path, every entry kind, no two
/// paths equal but for case, every file's parent listed as a directory, and
/// file ids of the right length. Returns the total size of its files.
pub fn check_folder(folder: &FolderManifest) -> Result<u64, FileError> {
    if folder.entries.len() > MAX_FOLDER_ENTRIES {
        return Err(FileError::BadManifest("the folder holds more than 100,000 entries"));
    }
    let path_bytes: usize = folder.entries.iter().map(|e| e.path.len()).sum();
    if path_bytes > MAX_FOLDER_PATH_BYTES {
        return Err(FileError::BadManifest("the folder's paths are longer than 16 MiB together"));
    }
    let mut seen: HashMap<String, (&str, bool)> = HashMap::with_capacity(folder.entries.len());
    let mut total = 0u64;
    for entry in &folder.entries {
        check_relative_path(&entry.path)?;
        let unsafe_path = |reason| FileError::UnsafePath { path: entry.path.clone(), reason };
        let is_dir = match EntryKind::try_from(entry.kind) {
            Ok(EntryKind::EntryFile) => {
                hash_from(&entry.file_id)?;
                total =
                    total.checked_add(entry.size).ok_or(FileError::BadManifest("the folder is too large"))?;
                false
            }
            Ok(EntryKind::EntryDirectory) => true,
            Ok(EntryKind::EntrySymlink) => return Err(unsafe_path("a symbolic link")),
            Ok(EntryKind::EntrySpecial) | Err(_) => {
                return Err(unsafe_path("neither a file nor a directory"))
            }
        };
        let folded = entry.path.to_lowercase();
        if let Some((other, _)) = seen.insert(folded, (&entry.path, is_dir)) {
            let reason = if other == entry.path {
                "listed twice"
            } else {
                "the same name as another entry but for case"
            };
            return Err(unsafe_path(reason));
        }
    }
    // Every parent must be a listed directory, so a file can never stand
    // where a directory is expected (or the reverse).
    for entry in &folder.entries {
        if let Some((parent, _)) = entry.path.rsplit_once('/') {
            match seen.get(&parent.to_lowercase()) {
                Some((_, true)) => {}
                _ => {
                    return Err(FileError::UnsafePath {
                        path: entry.path.clone(),
                        reason: "its parent is not a directory of the folder",
                    })
                }
            }
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v1::FolderEntry;

    fn file(path: &str) -> FolderEntry {
        FolderEntry { path: path.into(), kind: EntryKind::EntryFile as i32, size: 1, file_id: vec![0; 32] }
    }

    fn dir(path: &str) -> FolderEntry {
        FolderEntry { path: path.into(), kind: EntryKind::EntryDirectory as i32, size: 0, file_id: vec![] }
    }

    fn refused(entries: Vec<FolderEntry>) -> bool {
        matches!(check_folder(&FolderManifest { entries }), Err(FileError::UnsafePath { .. }))
    }

    #[test]
    fn a_unicode_tree_is_accepted() {
        let entries =
            vec![dir("设计"), dir("设计/图纸 2026"), file("设计/图纸 2026/总图.dwg"), file("Ωmega.txt")];
        assert_eq!(check_folder(&FolderManifest { entries }).unwrap(), 2);
    }

    #[test]
    fn unsafe_entries_are_refused() {
        assert!(refused(vec![file("../x")]));
        assert!(refused(vec![dir("a"), file("a/../../x")]));
        assert!(refused(vec![file("/etc/passwd")]));
        assert!(refused(vec![file("C:/x")]));
        assert!(refused(vec![file("a\\..\\x")]));
        assert!(refused(vec![file("CON.txt")]));
        assert!(refused(vec![file("lpt1")]));
        assert!(refused(vec![file("a."), file("b ")]));
        assert!(refused(vec![file("a.txt"), file("A.txt")]));
        assert!(refused(vec![file("a.txt"), file("a.txt")]));
        assert!(refused(vec![file("x/y.txt")]));
        assert!(refused(vec![file("x"), file("x/y.txt")]));
        assert!(refused(vec![file("a//b")]));
        assert!(refused(vec![file("")]));
        let link = FolderEntry { kind: EntryKind::EntrySymlink as i32, ..file("l") };
        assert!(refused(vec![link]));
        let device = FolderEntry { kind: 7, ..file("d") };
        assert!(refused(vec![device]));
    }

    #[test]
    fn names_that_reorder_their_text_are_refused() {
        for c in ['\u{202a}', '\u{202b}', '\u{202c}', '\u{202d}', '\u{202e}'] {
            assert!(check_name(&format!("invoice{c}fdp.exe")).is_err(), "U+{:04X}", c as u32);
        }
        for c in ['\u{2066}', '\u{2067}', '\u{2068}', '\u{2069}', '\u{200e}', '\u{200f}', '\u{061c}'] {
            assert!(check_name(&format!("a{c}b.txt")).is_err(), "U+{:04X}", c as u32);
        }
        assert!(refused(vec![dir("ok"), file("ok/invoice\u{202e}fdp.exe")]));
        // Right-to-left text itself is fine; only the controls are refused.
        assert!(check_name("שלום.txt").is_ok());
        assert!(check_name("تقرير.pdf").is_ok());
    }

    #[test]
    fn every_windows_device_name_is_refused() {
        for stem in [
            "COM0",
            "com0",
            "LPT0",
            "Lpt0",
            "COM\u{b9}",
            "com\u{b2}",
            "COM\u{b3}",
            "LPT\u{b9}",
            "lpt\u{b2}",
            "LPT\u{b3}",
            "CONIN$",
            "conin$",
            "CONOUT$",
            "ConOut$",
            "con",
            "nul",
            "COM9",
            "lpt9",
        ] {
            assert!(check_name(stem).is_err(), "{stem}");
            assert!(check_name(&format!("{stem}.txt")).is_err(), "{stem}.txt");
            assert!(check_name(&format!("{stem}.tar.gz")).is_err(), "{stem}.tar.gz");
        }
        // Only the exact stems: similar names are ordinary files.
        for ok in ["COM10", "LPT10", "console.txt", "CONIN", "conout.log", "com.txt", "COM\u{b4}.txt"] {
            assert!(check_name(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn ids_bind_the_chunks() {
        let m = manifest_of(&vec![7u8; CHUNK_SIZE as usize + 10]);
        assert_eq!(m.chunks.len(), 2);
        assert_eq!(m.chunk_len(1), 10);
        let wire = m.to_wire();
        assert_eq!(check_manifest(&wire).unwrap(), m);
        let mut forged = wire.clone();
        forged.chunks[1] = vec![1; 32];
        assert!(check_manifest(&forged).is_err());
        let mut short = wire;
        short.chunks.pop();
        assert!(check_manifest(&short).is_err());
        let empty = manifest_of(b"");
        assert!(empty.chunks.is_empty());
        assert_eq!(check_manifest(&empty.to_wire()).unwrap(), empty);
    }

    #[test]
    fn chunks_below_the_floor_are_refused() {
        let data = vec![3u8; 10_000];
        let chunks: Vec<Hash> = data.chunks(1000).map(|c| *blake3::hash(c).as_bytes()).collect();
        let tiny = CheckedManifest::new(data.len() as u64, 1000, *blake3::hash(&data).as_bytes(), chunks);
        assert!(matches!(check_manifest(&tiny.to_wire()), Err(FileError::BadManifest(_))));
        let chunks = vec![*blake3::hash(&data).as_bytes()];
        let floor = CheckedManifest::new(data.len() as u64, MIN_CHUNK_SIZE, chunks[0], chunks);
        assert!(check_manifest(&floor.to_wire()).is_ok());
    }

    #[test]
    fn folder_path_bytes_are_bounded() {
        // 5,000 distinct paths of 4,000 bytes each: 20 MB of paths, within the entry count.
        let entries: Vec<FolderEntry> =
            (0..5000).map(|i| file(&format!("{i:05}{}", "x".repeat(3995)))).collect();
        let err = check_folder(&FolderManifest { entries }).unwrap_err();
        assert!(err.to_string().contains("16 MiB"), "{err}");
    }

    #[test]
    fn a_proof_needs_the_bytes() {
        let challenge = [9u8; PROOF_LEN];
        let data = b"quarterly report";
        let proof = chunk_proof(&challenge, data);
        assert_eq!(proof, chunk_proof(&challenge, data));
        assert_ne!(proof, chunk_proof(&[8u8; PROOF_LEN], data));
        assert_ne!(&proof[..], blake3::hash(data).as_bytes());
    }
}
