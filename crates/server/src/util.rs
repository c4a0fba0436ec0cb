//! Small pure helpers that several domains share and that belong to none of
//! them (so no domain has to import another one for them).

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
