//! Files and folders on this machine: hashing a file in chunks, walking a
//! folder into a `FolderManifest`, and writing a received folder without ever
//! stepping outside its own fresh directory. Everything here is blocking
//! file-system work; the engine runs it on the blocking pool.

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use hutong_protocol::files::{self, check_folder, check_name, CheckedManifest, FileError, Hash, CHUNK_SIZE};
use hutong_protocol::v1::{self, EntryKind, FolderEntry, FolderManifest};

use crate::error::ClientError;

/// A file found while walking a folder.
#[derive(Debug, Clone, PartialEq)]
pub struct WalkedFile {
    /// "/"-separated, relative to the folder.
    pub rel: String,
    pub path: PathBuf,
    pub size: u64,
}

/// A folder as found on disk: what will be sent.
#[derive(Debug, Clone, PartialEq)]
pub struct WalkedFolder {
    pub root: PathBuf,
    /// The folder's own name (a valid single component).
    pub name: String,
    /// Every directory below the root (empty ones too), relative, sorted.
    pub dirs: Vec<String>,
    /// Every regular file, sorted by path.
    pub files: Vec<WalkedFile>,
    /// Symbolic links, devices, sockets and pipes left out.
    pub skipped: usize,
    pub total: u64,
}

pub(crate) fn unsafe_path(message: impl Into<String>) -> ClientError {
    ClientError::local("UNSAFE_PATH", message)
}

pub(crate) fn file_error(e: FileError) -> ClientError {
    match e {
        FileError::UnsafePath { path, reason } => unsafe_path(format!("unsafe path {path:?}: {reason}")),
        FileError::BadManifest(reason) if reason.contains("100,000") => {
            ClientError::local("TOO_LARGE", reason.to_string())
        }
        FileError::BadManifest(reason) => ClientError::local("CORRUPT", reason.to_string()),
    }
}

/// The name a path is sent under: its last component, which must be a valid
/// file name on every system.
pub fn name_of(path: &Path) -> Result<String, ClientError> {
    let name = match path.file_name() {
        Some(n) => n.to_owned(),
        None => fs::canonicalize(path)
            .map_err(|e| ClientError::io(path, &e))?
            .file_name()
            .map(ToOwned::to_owned)
            .ok_or_else(|| unsafe_path(format!("{} has no name to send it under", path.display())))?,
    };
    let name = name
        .to_str()
        .ok_or_else(|| unsafe_path(format!("{} is not a valid UTF-8 name", path.display())))?
        .to_owned();
    check_name(&name).map_err(|reason| unsafe_path(format!("unsafe name {name:?}: {reason}")))?;
    Ok(name)
}

/// Walks a folder (never following symbolic links). Links, devices, sockets
/// and pipes inside are left out with a warning and counted; a name that
/// could not be written on every system fails the whole walk.
pub fn walk(root: &Path) -> Result<WalkedFolder, ClientError> {
    let meta = fs::symlink_metadata(root).map_err(|e| ClientError::io(root, &e))?;
    if meta.file_type().is_symlink() {
        return Err(ClientError::local(
            "NOT_A_FOLDER",
            format!("{} is a symbolic link; send the folder it points to", root.display()),
        ));
    }
    if !meta.is_dir() {
        return Err(ClientError::local("NOT_A_FOLDER", format!("{} is not a folder", root.display())));
    }
    let name = name_of(root)?;
    let mut walked = WalkedFolder {
        root: root.to_owned(),
        name,
        dirs: Vec::new(),
        files: Vec::new(),
        skipped: 0,
        total: 0,
    };
    let mut stack: Vec<(PathBuf, String)> = vec![(root.to_owned(), String::new())];
    while let Some((dir, rel_dir)) = stack.pop() {
        let entries = fs::read_dir(&dir).map_err(|e| ClientError::io(&dir, &e))?;
        for entry in entries {
            let entry = entry.map_err(|e| ClientError::io(&dir, &e))?;
            let path = entry.path();
            let file_name = entry.file_name();
            let Some(name) = file_name.to_str() else {
                return Err(unsafe_path(format!("{} is not a valid UTF-8 name", path.display())));
            };
            let rel = if rel_dir.is_empty() { name.to_owned() } else { format!("{rel_dir}/{name}") };
            check_name(name).map_err(|reason| unsafe_path(format!("unsafe path {rel:?}: {reason}")))?;
            let file_type = entry.file_type().map_err(|e| ClientError::io(&path, &e))?;
            if file_type.is_dir() {
                walked.dirs.push(rel.clone());
                stack.push((path, rel));
            } else if file_type.is_file() {
                let size = entry.metadata().map_err(|e| ClientError::io(&path, &e))?.len();
                walked.total += size;
                walked.files.push(WalkedFile { rel, path, size });
            } else {
                tracing::warn!(path = %path.display(), "leaving out a symbolic link or special file");
                walked.skipped += 1;
            }
        }
    }
    walked.dirs.sort();
    walked.files.sort_by(|a, b| a.rel.cmp(&b.rel));
    Ok(walked)
}

/// The folder's manifest, given each file's id (in `walked.files` order)
/// and size as hashed; entries sorted by path.
pub fn folder_manifest(walked: &WalkedFolder, files: &[(Hash, u64)]) -> FolderManifest {
    let mut entries: Vec<FolderEntry> = walked
        .dirs
        .iter()
        .map(|d| FolderEntry {
            path: d.clone(),
            kind: EntryKind::EntryDirectory as i32,
            size: 0,
            file_id: Vec::new(),
        })
        .chain(walked.files.iter().zip(files).map(|(f, (id, size))| FolderEntry {
            path: f.rel.clone(),
            kind: EntryKind::EntryFile as i32,
            size: *size,
            file_id: id.to_vec(),
        }))
        .collect();
    entries.sort_by(|a, b| a.path.cmp(&b.path));
    FolderManifest { entries }
}

/// Checks what a walk found as a receiver would (case clashes, limits)
/// before anything is hashed or sent.
pub fn check_walked(walked: &WalkedFolder) -> Result<(), ClientError> {
    let placeholder: Vec<(Hash, u64)> = walked.files.iter().map(|f| ([0; 32], f.size)).collect();
    check_folder(&folder_manifest(walked, &placeholder)).map(drop).map_err(file_error)
}

/// Reads `reader` to the end in [`CHUNK_SIZE`] pieces and hashes each and
/// the whole. `stop` is asked between chunks.
pub fn hash_reader(mut reader: impl Read, stop: &dyn Fn() -> bool) -> io::Result<CheckedManifest> {
    let mut buf = vec![0u8; CHUNK_SIZE as usize];
    let mut whole = blake3::Hasher::new();
    let mut chunks = Vec::new();
    let mut size = 0u64;
    loop {
        if stop() {
            return Err(io::Error::new(io::ErrorKind::Interrupted, "stopped"));
        }
        let n = read_full(&mut reader, &mut buf)?;
        if n == 0 {
            break;
        }
        // The chunk's own hash and the whole content's run side by side.
        let data = &buf[..n];
        let chunk = std::thread::scope(|s| {
            let chunk = s.spawn(|| *blake3::hash(data).as_bytes());
            whole.update(data);
            chunk.join()
        })
        .map_err(|_| io::Error::other("hashing failed"))?;
        chunks.push(chunk);
        size += n as u64;
        if n < buf.len() {
            break;
        }
    }
    Ok(CheckedManifest::new(size, CHUNK_SIZE, *whole.finalize().as_bytes(), chunks))
}

/// What changes when a file's content may have: its size, modification
/// and change times and (on Unix) its inode. The change time cannot be set
/// back by tools that preserve modification times.
pub fn stamp(meta: &std::fs::Metadata) -> String {
    let modified = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt as _;
        format!("{}:{modified}:{}.{}:{}", meta.len(), meta.ctime(), meta.ctime_nsec(), meta.ino())
    }
    #[cfg(not(unix))]
    {
        format!("{}:{modified}", meta.len())
    }
}

/// Hashes a file in chunks (never holding more than one chunk).
pub fn hash_file(path: &Path, stop: &dyn Fn() -> bool) -> Result<CheckedManifest, ClientError> {
    let file = File::open(path).map_err(|e| ClientError::io(path, &e))?;
    hash_reader(file, stop).map_err(|e| ClientError::io(path, &e))
}

/// Fills `buf` as far as the reader goes; returns how much was read.
fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Reads `len` bytes at `offset` of a file.
pub fn read_at(path: &Path, offset: u64, len: usize) -> io::Result<Vec<u8>> {
    let mut file = File::open(path)?;
    file.seek(SeekFrom::Start(offset))?;
    let mut buf = vec![0u8; len];
    let n = read_full(&mut file, &mut buf)?;
    if n != len {
        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the file became shorter"));
    }
    Ok(buf)
}

// ------------------------------------------------------------- receiving

/// The hidden name a download is written under until it is complete and
/// verified: `.<name>.hutong-part` beside the final name (a hash of the
/// name when that would be too long).
pub fn part_path(final_path: &Path) -> PathBuf {
    part_path_n(final_path, 0)
}

fn part_path_n(final_path: &Path, n: u32) -> PathBuf {
    let name = final_path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let extra = if n == 0 { String::new() } else { format!(".{n}") };
    let mut part = format!(".{name}{extra}.hutong-part");
    if part.len() > files::MAX_NAME_LEN {
        let h = blake3::hash(name.as_bytes()).to_hex();
        part = format!(".hutong-{}{extra}.part", &h[..16]);
    }
    final_path.with_file_name(part)
}

/// True when something (a file, a link, anything) is at `path`.
fn occupied(path: &Path) -> bool {
    fs::symlink_metadata(path).is_ok()
}

/// `dir/name`, or "name (1).ext", "name (2).ext"... when that is taken (on
/// disk, by a download's part file, or as `taken` says).
pub fn free_name(dir: &Path, name: &str, taken: &dyn Fn(&Path) -> bool) -> PathBuf {
    let (stem, ext) = match name.rfind('.') {
        Some(i) if i > 0 => (&name[..i], &name[i..]),
        _ => (name, ""),
    };
    let mut n = 0u32;
    loop {
        let candidate = if n == 0 { name.to_owned() } else { format!("{stem} ({n}){ext}") };
        let path = dir.join(&candidate);
        if !occupied(&path) && !occupied(&part_path(&path)) && !taken(&path) {
            return path;
        }
        n += 1;
    }
}

/// One file of a received folder: where it goes and where it is written first.
#[derive(Debug, Clone, PartialEq)]
pub struct FolderFile {
    pub rel: String,
    pub final_path: PathBuf,
    pub part_path: PathBuf,
    pub size: u64,
    pub file_id: Hash,
}

/// A directory that is really a directory (not a link to one).
fn is_real_dir(path: &Path) -> bool {
    fs::symlink_metadata(path).map(|m| m.file_type().is_dir()).unwrap_or(false)
}

fn join_rel(root: &Path, rel: &str) -> PathBuf {
    let mut p = root.to_owned();
    for c in rel.split('/') {
        p.push(c);
    }
    p
}

/// Creates a received folder at `root` (which must not exist yet, unless
/// `resuming`) with every directory of `manifest`, and says where each file
/// goes. The manifest is checked first: an unsafe one writes nothing at all.
/// Directories are made one level at a time with `create_dir`, and anything
/// already there must be a real directory, so no path can lead outside `root`.
pub fn materialise(
    root: &Path,
    manifest: &FolderManifest,
    resuming: bool,
) -> Result<Vec<FolderFile>, ClientError> {
    check_folder(manifest).map_err(file_error)?;
    match fs::create_dir(root) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && resuming && is_real_dir(root) => {}
        Err(e) => return Err(ClientError::io(root, &e)),
    }
    let mut dirs: Vec<&FolderEntry> =
        manifest.entries.iter().filter(|e| e.kind == EntryKind::EntryDirectory as i32).collect();
    dirs.sort_by_key(|e| (e.path.split('/').count(), e.path.clone()));
    for d in dirs {
        let path = join_rel(root, &d.path);
        match fs::create_dir(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && is_real_dir(&path) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                return Err(unsafe_path(format!("{} exists and is not a folder", path.display())))
            }
            Err(e) => return Err(ClientError::io(&path, &e)),
        }
    }
    // Part names must not be names the folder itself uses.
    let names: HashSet<String> = manifest.entries.iter().map(|e| e.path.to_lowercase()).collect();
    let mut out = Vec::new();
    for f in manifest.entries.iter().filter(|e| e.kind == EntryKind::EntryFile as i32) {
        let final_path = join_rel(root, &f.path);
        let parent_rel = f.path.rsplit_once('/').map(|(p, _)| p.to_owned());
        let mut n = 0;
        let part_path = loop {
            let part = part_path_n(&final_path, n);
            let part_name = part.file_name().map(|p| p.to_string_lossy().into_owned()).unwrap_or_default();
            let part_rel = match &parent_rel {
                Some(p) => format!("{p}/{part_name}"),
                None => part_name,
            };
            if !names.contains(&part_rel.to_lowercase()) {
                break part;
            }
            n += 1;
        };
        out.push(FolderFile {
            rel: f.path.clone(),
            final_path,
            part_path,
            size: f.size,
            file_id: files::hash_from(&f.file_id).map_err(file_error)?,
        });
    }
    Ok(out)
}

/// Opens (or creates) a part file of `size` bytes and says which chunks of
/// `manifest` it already holds intact (a resumed download fetches only the
/// others). A new part file is preallocated with `set_len`.
pub fn open_part(part: &Path, manifest: &CheckedManifest) -> Result<Vec<bool>, ClientError> {
    let io = |e: io::Error| ClientError::io(part, &e);
    let existing = match fs::symlink_metadata(part) {
        Ok(m) if m.file_type().is_file() => Some(m.len()),
        Ok(_) => return Err(unsafe_path(format!("{} exists and is not a file", part.display()))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(io(e)),
    };
    let chunks = manifest.chunks.len();
    let mut good = vec![false; chunks];
    match existing {
        None => {
            let file = OpenOptions::new().write(true).create_new(true).open(part).map_err(io)?;
            file.set_len(manifest.size).map_err(io)?;
        }
        Some(len) => {
            let mut file = OpenOptions::new().read(true).write(true).open(part).map_err(io)?;
            let mut buf = vec![0u8; manifest.chunk_size as usize];
            for (i, ok) in good.iter_mut().enumerate() {
                let start = i as u64 * u64::from(manifest.chunk_size);
                let chunk_len = manifest.chunk_len(i);
                if start + chunk_len > len {
                    break;
                }
                file.seek(SeekFrom::Start(start)).map_err(io)?;
                let n = read_full(&mut file, &mut buf[..chunk_len as usize]).map_err(io)?;
                *ok = n as u64 == chunk_len && blake3::hash(&buf[..n]).as_bytes() == &manifest.chunks[i];
            }
            if len != manifest.size {
                file.set_len(manifest.size).map_err(io)?;
            }
        }
    }
    Ok(good)
}

/// Writes a verified chunk into a part file (which must exist).
pub fn write_chunk(part: &Path, offset: u64, data: &[u8]) -> Result<(), ClientError> {
    hutong_chunkio::write_at(part, offset, data).map_err(|e| ClientError::io(part, &e))
}

/// Checks a complete part file against the whole-content hash (a streamed
/// read, unless `hashed`: the content was hashed in order as it was
/// written) and makes it durable.
pub fn verify_part(part: &Path, manifest: &CheckedManifest, hashed: bool) -> Result<bool, ClientError> {
    let io = |e: io::Error| ClientError::io(part, &e);
    let file = File::open(part).map_err(io)?;
    if file.metadata().map_err(io)?.len() != manifest.size {
        return Ok(false);
    }
    if hashed {
        file.sync_all().map_err(io)?;
        return Ok(true);
    }
    let mut hasher = blake3::Hasher::new();
    let mut reader = io::BufReader::with_capacity(1024 * 1024, file);
    io::copy(&mut reader, &mut hasher).map_err(io)?;
    if hasher.finalize().as_bytes() != &manifest.content_hash {
        return Ok(false);
    }
    reader.into_inner().sync_all().map_err(io)?;
    Ok(true)
}

/// True when a finished file at `path` holds exactly this content.
pub fn file_matches(path: &Path, manifest: &CheckedManifest) -> bool {
    match fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_file() && m.len() == manifest.size => {}
        _ => return false,
    }
    File::open(path).and_then(|f| hash_reader(f, &|| false)).map(|m| m.id == manifest.id).unwrap_or(false)
}

/// Moves a verified part file to its final name without ever replacing
/// anything there. Returns false when the final name is taken.
pub fn place(part: &Path, final_path: &Path) -> Result<bool, ClientError> {
    match fs::hard_link(part, final_path) {
        Ok(()) => {
            fs::remove_file(part).map_err(|e| ClientError::io(part, &e))?;
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(false),
        Err(_) => {
            // No hard links here (some file systems): check, then rename.
            if occupied(final_path) {
                return Ok(false);
            }
            fs::rename(part, final_path).map_err(|e| ClientError::io(final_path, &e))?;
        }
    }
    sync_dir(final_path.parent());
    Ok(true)
}

/// Makes a rename durable (best effort: not every system can sync a directory).
fn sync_dir(dir: Option<&Path>) {
    #[cfg(unix)]
    if let Some(d) = dir {
        if let Ok(f) = File::open(d) {
            let _ = f.sync_all();
        }
    }
    #[cfg(not(unix))]
    let _ = dir;
}

/// Removes the part files under a received folder (a cancelled download).
pub fn remove_parts(root: &Path) {
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = fs::read_dir(&dir) else { continue };
        for entry in entries.flatten() {
            let Ok(file_type) = entry.file_type() else { continue };
            let name = entry.file_name().to_string_lossy().into_owned();
            if file_type.is_dir() {
                stack.push(entry.path());
            } else if file_type.is_file() && name.starts_with('.') && name.ends_with("part") {
                let _ = fs::remove_file(entry.path());
            }
        }
    }
}

/// Decodes and checks a received folder manifest.
pub fn decode_folder(bytes: &[u8]) -> Result<(FolderManifest, u64), ClientError> {
    use prost::Message as _;
    let manifest = v1::FolderManifest::decode(bytes)
        .map_err(|e| ClientError::local("CORRUPT", format!("the folder's manifest cannot be read: {e}")))?;
    let total = check_folder(&manifest).map_err(|e| match e {
        FileError::BadManifest(reason) => unsafe_path(format!("the folder cannot be written: {reason}")),
        other => file_error(other),
    })?;
    Ok((manifest, total))
}

#[cfg(test)]
mod tests {
    use super::*;
    use hutong_protocol::files::manifest_of;

    fn file(path: &str, content: &[u8]) -> FolderEntry {
        FolderEntry {
            path: path.into(),
            kind: EntryKind::EntryFile as i32,
            size: content.len() as u64,
            file_id: manifest_of(content).id.to_vec(),
        }
    }

    fn dir(path: &str) -> FolderEntry {
        FolderEntry { path: path.into(), kind: EntryKind::EntryDirectory as i32, size: 0, file_id: vec![] }
    }

    /// Every path under `root`, relative.
    fn tree(root: &Path) -> Vec<String> {
        let mut out = Vec::new();
        let mut stack = vec![root.to_owned()];
        while let Some(d) = stack.pop() {
            for e in fs::read_dir(&d).unwrap().flatten() {
                out.push(e.path().strip_prefix(root).unwrap().to_string_lossy().into_owned());
                if e.file_type().unwrap().is_dir() {
                    stack.push(e.path());
                }
            }
        }
        out.sort();
        out
    }

    #[test]
    fn a_walk_finds_unicode_names_and_empty_dirs_and_skips_links() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("项目 资料");
        fs::create_dir_all(root.join("设计/图纸")).unwrap();
        fs::create_dir_all(root.join("空目录")).unwrap();
        fs::write(root.join("设计/图纸/总图.dwg"), b"drawing").unwrap();
        fs::write(root.join("Ωmega.txt"), b"omega").unwrap();
        fs::write(root.join("empty"), b"").unwrap();
        #[cfg(unix)]
        std::os::unix::fs::symlink("/etc/passwd", root.join("link")).unwrap();
        let walked = walk(&root).unwrap();
        assert_eq!(walked.name, "项目 资料");
        assert_eq!(walked.dirs, ["空目录", "设计", "设计/图纸"]);
        let rels: Vec<&str> = walked.files.iter().map(|f| f.rel.as_str()).collect();
        assert_eq!(rels, ["empty", "Ωmega.txt", "设计/图纸/总图.dwg"]);
        assert_eq!(walked.total, 12);
        #[cfg(unix)]
        assert_eq!(walked.skipped, 1);
        check_walked(&walked).unwrap();
        let ids: Vec<(Hash, u64)> =
            walked.files.iter().map(|f| (hash_file(&f.path, &|| false).unwrap().id, f.size)).collect();
        let manifest = folder_manifest(&walked, &ids);
        assert_eq!(check_folder(&manifest).unwrap(), 12);
        let paths: Vec<&str> = manifest.entries.iter().map(|e| e.path.as_str()).collect();
        let mut sorted = paths.clone();
        sorted.sort();
        assert_eq!(paths, sorted);
        assert_eq!(paths.len(), 6);
        assert_eq!(manifest.entries[1].file_id, manifest_of(b"omega").id.to_vec());

        // The root itself as a link is refused, and so is a file.
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink(&root, tmp.path().join("via-link")).unwrap();
            assert_eq!(walk(&tmp.path().join("via-link")).unwrap_err().code(), "NOT_A_FOLDER");
        }
        assert_eq!(walk(&root.join("empty")).unwrap_err().code(), "NOT_A_FOLDER");
        assert_eq!(walk(&tmp.path().join("missing")).unwrap_err().code(), "NOT_FOUND");
    }

    #[test]
    fn a_walk_refuses_names_other_systems_cannot_write() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("r");
        fs::create_dir_all(root.join("sub")).unwrap();
        fs::write(root.join("sub/CON.txt"), b"x").unwrap();
        let e = walk(&root).unwrap_err();
        assert_eq!(e.code(), "UNSAFE_PATH");
        assert!(e.to_string().contains("sub/CON.txt"), "{e}");
        fs::remove_file(root.join("sub/CON.txt")).unwrap();
        fs::write(root.join("a.txt"), b"x").unwrap();
        fs::write(root.join("A.txt"), b"y").unwrap();
        let walked = walk(&root).unwrap();
        assert_eq!(check_walked(&walked).unwrap_err().code(), "UNSAFE_PATH");
    }

    #[test]
    fn unsafe_manifests_write_nothing_at_all() {
        let link = FolderEntry { kind: EntryKind::EntrySymlink as i32, ..file("l", b"") };
        let cases: Vec<Vec<FolderEntry>> = vec![
            vec![dir("a"), file("a/ok.txt", b"1"), file("../x", b"2")],
            vec![file("/abs", b"1")],
            vec![dir("a"), link],
            vec![file("ok", b"1"), file("CON.txt", b"1")],
            vec![file("a.txt", b"1"), file("A.txt", b"2")],
            vec![dir("a"), file("a/../../x", b"1")],
            vec![file("nested/x", b"1")],
        ];
        for entries in cases {
            let outer = tempfile::tempdir().unwrap();
            let dest = outer.path().join("dest");
            fs::create_dir(&dest).unwrap();
            let root = dest.join("folder");
            let before = tree(outer.path());
            let e = materialise(&root, &FolderManifest { entries: entries.clone() }, false).unwrap_err();
            assert_eq!(e.code(), "UNSAFE_PATH", "{entries:?}");
            assert_eq!(tree(outer.path()), before, "something was written for {entries:?}");
            assert_eq!(
                decode_folder(&prost::Message::encode_to_vec(&FolderManifest { entries }))
                    .unwrap_err()
                    .code(),
                "UNSAFE_PATH"
            );
        }
    }

    #[test]
    fn a_safe_manifest_becomes_directories_and_refuses_links_in_the_way() {
        let outer = tempfile::tempdir().unwrap();
        let root = outer.path().join("收到的");
        let entries = vec![
            dir("a"),
            dir("a/b"),
            dir("empty"),
            file("a/b/c.txt", b"c"),
            file("top.txt", b"t"),
            file(".top.txt.hutong-part", b"sneaky"),
        ];
        let manifest = FolderManifest { entries };
        let files = materialise(&root, &manifest, false).unwrap();
        assert!(root.join("a/b").is_dir() && root.join("empty").is_dir());
        assert_eq!(files.len(), 3);
        let top = files.iter().find(|f| f.rel == "top.txt").unwrap();
        assert_eq!(top.final_path, root.join("top.txt"));
        assert_ne!(
            top.part_path,
            root.join(".top.txt.hutong-part"),
            "a part name never clashes with an entry"
        );
        // A second materialisation without resuming refuses the existing root.
        assert!(materialise(&root, &manifest, false).is_err());
        materialise(&root, &manifest, true).unwrap();
        // A link where a directory belongs is refused.
        #[cfg(unix)]
        {
            fs::remove_dir(root.join("empty")).unwrap();
            std::os::unix::fs::symlink(outer.path(), root.join("empty")).unwrap();
            assert_eq!(materialise(&root, &manifest, true).unwrap_err().code(), "UNSAFE_PATH");
        }
    }

    #[test]
    fn part_files_resume_from_the_chunks_they_hold() {
        let tmp = tempfile::tempdir().unwrap();
        let chunk = CHUNK_SIZE as usize;
        let mut content = vec![0u8; chunk * 3 + 100];
        for (i, b) in content.iter_mut().enumerate() {
            *b = (i % 251) as u8;
        }
        let m = manifest_of(&content);
        let part = tmp.path().join(".x.hutong-part");
        // Fresh: preallocated, nothing held.
        assert_eq!(open_part(&part, &m).unwrap(), vec![false; 4]);
        assert_eq!(fs::metadata(&part).unwrap().len(), content.len() as u64);
        // Chunks 0 and 3 written, chunk 1 corrupted.
        write_chunk(&part, 0, &content[..chunk]).unwrap();
        write_chunk(&part, 3 * chunk as u64, &content[3 * chunk..]).unwrap();
        let mut bad = content[chunk..2 * chunk].to_vec();
        bad[7] ^= 1;
        write_chunk(&part, chunk as u64, &bad).unwrap();
        assert_eq!(open_part(&part, &m).unwrap(), vec![true, false, false, true]);
        assert!(!verify_part(&part, &m, false).unwrap());
        // A part file cut short (a crash before preallocation finished) is
        // extended, and keeps the chunks it has.
        let f = OpenOptions::new().write(true).open(&part).unwrap();
        f.set_len(chunk as u64 + 5).unwrap();
        assert_eq!(open_part(&part, &m).unwrap(), vec![true, false, false, false]);
        assert_eq!(fs::metadata(&part).unwrap().len(), content.len() as u64);
        for i in 1..4 {
            let start = i * chunk;
            let end = (start + chunk).min(content.len());
            write_chunk(&part, start as u64, &content[start..end]).unwrap();
        }
        assert_eq!(open_part(&part, &m).unwrap(), vec![true; 4]);
        assert!(verify_part(&part, &m, false).unwrap());
        let dest = tmp.path().join("x");
        assert!(place(&part, &dest).unwrap());
        assert!(!part.exists());
        assert!(file_matches(&dest, &m));
        assert_eq!(hash_file(&dest, &|| false).unwrap(), m);
        // Never over an existing file.
        fs::write(&part, b"other").unwrap();
        assert!(!place(&part, &dest).unwrap());
        assert!(file_matches(&dest, &m));
    }

    #[test]
    fn names_that_are_taken_get_a_number() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path();
        let none = |_: &Path| false;
        assert_eq!(free_name(d, "报告.pdf", &none), d.join("报告.pdf"));
        fs::write(d.join("报告.pdf"), b"").unwrap();
        assert_eq!(free_name(d, "报告.pdf", &none), d.join("报告 (1).pdf"));
        // A download in progress holds its name through its part file.
        fs::write(part_path(&d.join("报告 (1).pdf")), b"").unwrap();
        assert_eq!(free_name(d, "报告.pdf", &none), d.join("报告 (2).pdf"));
        let taken = |p: &Path| p.ends_with("报告 (2).pdf");
        assert_eq!(free_name(d, "报告.pdf", &taken), d.join("报告 (3).pdf"));
        fs::create_dir(d.join("folder")).unwrap();
        assert_eq!(free_name(d, "folder", &none), d.join("folder (1)"));
        fs::write(d.join(".bashrc"), b"").unwrap();
        assert_eq!(free_name(d, ".bashrc", &none), d.join(".bashrc (1)"));
        let long = format!("{}.bin", "长".repeat(80));
        assert!(part_path(&d.join(&long)).file_name().unwrap().len() <= 255);
    }
}
