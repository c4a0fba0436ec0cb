//! File chunks on disk without the page cache.
//!
//! Both ends of a transfer write megabytes that nobody reads back soon: the
//! server's chunk store and a download's part file. Written through the page
//! cache, every byte is first copied into freshly allocated cache pages; on
//! the machines we measure on that copy costs more than hashing, encryption
//! and the network together (`docs/PERFORMANCE.md`, "Large files"), and a
//! big upload pushes out the pages the chat database lives on. So on Linux
//! the block-aligned part of a write goes to the disk directly (`O_DIRECT`)
//! from a block-aligned copy of the data. The unaligned tail (only a file's
//! last chunk has one), other systems, and file systems that refuse direct
//! I/O use ordinary writes. Whole chunk files are read the same way.
//!
//! A direct write is not durable on its own either (the device may cache
//! it): callers still `sync_data` before they rely on the data.

use std::fs::File;
use std::io::{self, Seek as _, SeekFrom, Write as _};
use std::path::Path;

use bytes::Bytes;

/// Alignment of direct I/O buffers, offsets and lengths: the largest logical
/// block size in common use.
pub const ALIGN: usize = 4096;

/// Writes `data` at `offset` of the existing file at `path`. The aligned
/// part goes past the page cache where the system allows it; the rest is
/// written the ordinary way, its writeback started at once.
pub fn write_at(path: &Path, offset: u64, data: &[u8]) -> io::Result<()> {
    let mut file = std::fs::OpenOptions::new().write(true).open(path)?;
    let aligned = offset & (ALIGN as u64 - 1) == 0;
    let direct = if aligned { data.len() & !(ALIGN - 1) } else { 0 };
    let done = if direct > 0 { write_direct(&file, offset, &data[..direct])? } else { 0 };
    if done < data.len() {
        let at = offset + done as u64;
        file.seek(SeekFrom::Start(at))?;
        file.write_all(&data[done..])?;
        start_writeback(&file, at, (data.len() - done) as u64);
    }
    Ok(())
}

/// Reads a whole file (a chunk: a few MiB at most) into memory.
pub fn read_all(path: &Path) -> io::Result<Bytes> {
    if let Some(data) = read_direct(path)? {
        return Ok(data);
    }
    std::fs::read(path).map(Bytes::from)
}

/// Asks the kernel to start writing a range's dirty pages to disk now,
/// without waiting, so a later flush finds little left to do.
#[cfg(target_os = "linux")]
fn start_writeback(file: &File, offset: u64, len: u64) {
    use std::os::fd::AsRawFd as _;
    let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else { return };
    // SAFETY: a plain system call on a descriptor this function borrows.
    unsafe {
        libc::sync_file_range(file.as_raw_fd(), offset, len, libc::SYNC_FILE_RANGE_WRITE);
    }
}

#[cfg(not(target_os = "linux"))]
fn start_writeback(_: &File, _: u64, _: u64) {}

/// Writes block-aligned `data` at block-aligned `offset` with `O_DIRECT`
/// (switched on for this write, off again after it); returns how many bytes
/// it wrote: all, or 0 when the file system refuses direct I/O (the caller
/// then writes them the ordinary way).
#[cfg(target_os = "linux")]
fn write_direct(file: &File, offset: u64, data: &[u8]) -> io::Result<usize> {
    use std::os::unix::fs::FileExt as _;
    if !set_direct(file, true)? {
        return Ok(0);
    }
    let written = match file.write_all_at(Aligned::copy_of(data).as_slice(), offset) {
        Ok(()) => data.len(),
        // Whatever part was written is written again the ordinary way.
        Err(e) if refused(&e) => 0,
        Err(e) => return Err(e),
    };
    set_direct(file, false)?;
    Ok(written)
}

#[cfg(not(target_os = "linux"))]
fn write_direct(_: &File, _: u64, _: &[u8]) -> io::Result<usize> {
    Ok(0)
}

/// Switches `O_DIRECT` on or off for a descriptor; false when the file
/// system refuses it.
#[cfg(target_os = "linux")]
fn set_direct(file: &File, on: bool) -> io::Result<bool> {
    use std::os::fd::AsRawFd as _;
    let fd = file.as_raw_fd();
    // SAFETY: plain fcntl calls on a descriptor this function borrows.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    let wanted = if on { flags | libc::O_DIRECT } else { flags & !libc::O_DIRECT };
    // SAFETY: as above.
    if unsafe { libc::fcntl(fd, libc::F_SETFL, wanted) } < 0 {
        let e = io::Error::last_os_error();
        return if refused(&e) { Ok(false) } else { Err(e) };
    }
    Ok(true)
}

/// The whole file read with `O_DIRECT`, or `None` when the file system
/// refuses direct I/O.
#[cfg(target_os = "linux")]
fn read_direct(path: &Path) -> io::Result<Option<Bytes>> {
    use std::os::unix::fs::{FileExt as _, OpenOptionsExt as _};
    let file = match std::fs::OpenOptions::new().read(true).custom_flags(libc::O_DIRECT).open(path) {
        Ok(f) => f,
        Err(e) if refused(&e) => return Ok(None),
        Err(e) => return Err(e),
    };
    let len = usize::try_from(file.metadata()?.len()).map_err(|_| io::Error::other("file too large"))?;
    let mut buf = Aligned::zeroed(len.next_multiple_of(ALIGN));
    let mut got = 0;
    while got < len {
        // Direct reads return short only at the end of the file, so `got`
        // stays aligned until then.
        match file.read_at(&mut buf.as_mut_slice()[got..], got as u64) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if refused(&e) => return Ok(None),
            Err(e) => return Err(e),
        }
    }
    Ok(Some(buf.into_bytes(len)))
}

#[cfg(not(target_os = "linux"))]
fn read_direct(_: &Path) -> io::Result<Option<Bytes>> {
    Ok(None)
}

/// The errors with which a file system says it does not do direct I/O (or
/// not with this alignment).
#[cfg(target_os = "linux")]
fn refused(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EINVAL) | Some(libc::EOPNOTSUPP))
}

/// A byte buffer whose contents start at an [`ALIGN`]ed address.
#[cfg(target_os = "linux")]
struct Aligned {
    buf: Vec<u8>,
    start: usize,
}

#[cfg(target_os = "linux")]
impl Aligned {
    fn padding(start: *const u8) -> usize {
        (ALIGN - start.addr() % ALIGN) % ALIGN
    }

    fn copy_of(data: &[u8]) -> Aligned {
        let mut buf = Vec::with_capacity(data.len() + ALIGN);
        let start = Self::padding(buf.as_ptr());
        buf.resize(start, 0);
        buf.extend_from_slice(data);
        Aligned { buf, start }
    }

    fn zeroed(len: usize) -> Aligned {
        let buf = vec![0; len + ALIGN];
        let start = Self::padding(buf.as_ptr());
        let mut aligned = Aligned { buf, start };
        aligned.buf.truncate(start + len);
        aligned
    }

    fn as_slice(&self) -> &[u8] {
        &self.buf[self.start..]
    }

    fn as_mut_slice(&mut self) -> &mut [u8] {
        &mut self.buf[self.start..]
    }

    fn into_bytes(self, len: usize) -> Bytes {
        Bytes::from(self.buf).slice(self.start..self.start + len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(len: usize, seed: u8) -> Vec<u8> {
        (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
    }

    /// Lengths around the alignment, at aligned and unaligned offsets, on the
    /// disk and on tmpfs (which may refuse direct I/O): what is read back is
    /// what was written, and nothing around it changed.
    #[test]
    fn writes_and_reads_back_any_length_at_any_offset() {
        let dirs: Vec<std::path::PathBuf> = [std::env::temp_dir(), "/dev/shm".into(), "/var/tmp".into()]
            .into_iter()
            .filter(|d| d.is_dir())
            .collect();
        for dir in dirs {
            let tmp = tempfile::tempdir_in(&dir).unwrap();
            for (i, &(offset, len)) in
                [(0, 0), (0, 1), (0, ALIGN), (0, 3 * ALIGN + 17), (ALIGN as u64, 2 * ALIGN), (100, ALIGN + 5)]
                    .iter()
                    .enumerate()
            {
                let path = tmp.path().join(format!("f{i}"));
                let before = pattern(offset as usize + len + 10, 1);
                std::fs::write(&path, &before).unwrap();
                let data = pattern(len, 7);
                write_at(&path, offset, &data).unwrap();
                let mut expected = before.clone();
                expected[offset as usize..offset as usize + len].copy_from_slice(&data);
                let got = read_all(&path).unwrap();
                assert_eq!(&got[..], &expected[..], "{} offset {offset} len {len}", dir.display());
                assert_eq!(std::fs::read(&path).unwrap(), expected, "buffered read of {}", path.display());
            }
        }
    }

    #[test]
    fn reading_a_missing_file_is_not_found() {
        let tmp = tempfile::tempdir().unwrap();
        let err = read_all(&tmp.path().join("missing")).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
    }
}
