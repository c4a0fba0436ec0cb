//! Small pure helpers that several domains share and that belong to none of
//! them (so no domain has to import another one for them).

use std::net::IpAddr;

/// Full pinyin and initials of a name, lower case: 张三 → ("zhangsan", "zs").
/// Other letters and digits are kept (lower-cased) in both.
pub fn pinyin_keys(name: &str) -> (String, String) {
    use pinyin::ToPinyin;
    let mut full = String::new();
    let mut initials = String::new();
    for c in name.chars() {
        if let Some(p) = c.to_pinyin() {
            full.push_str(p.plain());
            initials.push_str(p.first_letter());
        } else if c.is_alphanumeric() {
            let lower: String = c.to_lowercase().collect();
            full.push_str(&lower);
            initials.push_str(&lower);
        }
    }
    (full, initials)
}

/// Characters that make a spreadsheet read a cell as a formula (or, for
/// tab and carriage return, hide what follows them).
const FORMULA_STARTS: [char; 6] = ['=', '+', '-', '@', '\t', '\r'];

/// Creates `path` holding `bytes`, readable by the owner only, unless it
/// exists; never leaves it half-written. Several processes may start on a
/// new data directory at once (the server and `hutong-server user add`, or
/// two of those): each writes its own temporary file and links it into
/// place, which succeeds for one of them; the others keep what that one
/// wrote. A reader therefore sees either no file or a whole one.
pub fn create_private_once(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    if path.exists() {
        return Ok(());
    }
    let tmp = path.with_extension(format!("tmp-{}-{:x}", std::process::id(), rand::random::<u64>()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let written = (|| {
        let mut file = options.open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()
    })();
    let linked = written.and_then(|()| match std::fs::hard_link(&tmp, path) {
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        other => other,
    });
    let _ = std::fs::remove_file(&tmp);
    linked
}

/// A cell for every CSV the server writes: text starting like a formula
/// gets a leading `'`, so a spreadsheet shows it instead of running it (a
/// display name `=HYPERLINK(...)` stays text). The one place this is
/// decided; [`csv_cell_restore`] undoes it on import.
pub fn csv_cell(text: &str) -> std::borrow::Cow<'_, str> {
    if text.starts_with(FORMULA_STARTS) {
        std::borrow::Cow::Owned(format!("'{text}"))
    } else {
        std::borrow::Cow::Borrowed(text)
    }
}

/// Reads back a cell [`csv_cell`] wrote, so an exported file imports as it
/// was: a `'` is dropped only where `csv_cell` adds one.
pub fn csv_cell_restore(text: &str) -> &str {
    match text.strip_prefix('\'') {
        Some(rest) if rest.starts_with(FORMULA_STARTS) => rest,
        _ => text,
    }
}

/// Compares two byte strings in time that depends on their lengths only.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// An address block of an allow-list: `10.0.0.0/8`, `2001:db8::/32`, or one
/// address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub fn parse(text: &str) -> Result<Cidr, crate::error::ServiceError> {
        let bad = || {
            crate::error::ServiceError::BadRequest(format!(
                "{text:?} is not an address block such as 10.0.0.0/8"
            ))
        };
        let (addr, prefix) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| bad())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) && p.len() <= 3 => {
                p.parse::<u8>().map_err(|_| bad())?
            }
            Some(_) => return Err(bad()),
            None => max,
        };
        if prefix > max {
            return Err(bad());
        }
        Ok(Cidr { addr, prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        // A dual-stack listener shows IPv4 peers as ::ffff:a.b.c.d.
        match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.prefix)).unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(self.prefix)).unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// Whether `ip` is in one of `cidrs` (as stored: checked when set).
pub fn address_allowed(cidrs: &[String], ip: IpAddr) -> bool {
    cidrs.iter().filter_map(|c| Cidr::parse(c).ok()).any(|c| c.contains(ip))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formulas_are_neutralised_and_restored() {
        for (cell, written) in [
            ("=1+1", "'=1+1"),
            ("+86 138 0000 0000", "'+86 138 0000 0000"),
            ("-5", "'-5"),
            ("@SUM(A1)", "'@SUM(A1)"),
            ("\tx", "'\tx"),
            ("\rx", "'\rx"),
            ("张三", "张三"),
            ("a=b", "a=b"),
            ("'quoted", "'quoted"),
            ("", ""),
        ] {
            assert_eq!(csv_cell(cell), written);
            assert_eq!(csv_cell_restore(&csv_cell(cell)), cell);
        }
    }
}
