//! What the person chose in this session through the shell's own pickers
//! and window drops: the only local paths the web view may send. The web
//! view is not trusted with decisions that matter (a page that got script
//! into it must not send `~/.ssh/id_ed25519` to a chat), so it names a path
//! and the shell checks that the person gave it, here, first.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::views::{AppError, CmdResult};

/// At most this many granted paths are remembered; a flood of drops
/// starts the list again rather than growing it without end.
const MAX_GRANTS: usize = 100_000;

#[derive(Default)]
pub struct Grants {
    paths: Mutex<HashSet<PathBuf>>,
}

impl Grants {
    /// Remembers paths the person picked or dropped on the window.
    pub fn grant(&self, paths: impl IntoIterator<Item = PathBuf>) {
        let mut granted = self.paths.lock().unwrap_or_else(|e| e.into_inner());
        for p in paths {
            if granted.len() >= MAX_GRANTS {
                granted.clear();
            }
            granted.insert(p);
        }
    }

    /// The paths, if every one was granted in this session; else `FORBIDDEN`
    /// naming the first that was not (nothing is sent then).
    pub fn check(&self, paths: &[String]) -> CmdResult<Vec<PathBuf>> {
        let granted = self.paths.lock().unwrap_or_else(|e| e.into_inner());
        paths
            .iter()
            .map(|p| {
                let path = Path::new(p);
                if granted.contains(path) {
                    Ok(path.to_owned())
                } else {
                    Err(AppError::new(
                        "FORBIDDEN",
                        format!("{p} was not picked or dropped in this session; choose it again"),
                    ))
                }
            })
            .collect()
    }

    /// Forgets every grant (signing out).
    pub fn clear(&self) {
        self.paths.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_picked_or_dropped_paths_pass() {
        let grants = Grants::default();
        grants.grant([PathBuf::from("/home/me/报告.pdf"), PathBuf::from("/home/me/photos")]);
        let ok = grants.check(&["/home/me/报告.pdf".into(), "/home/me/photos".into()]).unwrap();
        assert_eq!(ok.len(), 2);
        // A path the web view made up, or one next to a granted one: refused, and nothing passes.
        for bad in ["/home/me/.ssh/id_ed25519", "/home/me/photos/../.ssh/id_ed25519", "/home/me/photos/x"] {
            let e = grants.check(&["/home/me/报告.pdf".into(), bad.into()]).unwrap_err();
            assert_eq!(e.code, "FORBIDDEN", "{bad}");
            assert!(e.message.contains(bad));
        }
        grants.clear();
        assert!(grants.check(&["/home/me/报告.pdf".into()]).is_err());
    }

    #[test]
    fn the_list_is_bounded() {
        let grants = Grants::default();
        grants.grant((0..MAX_GRANTS + 10).map(|i| PathBuf::from(format!("/f{i}"))));
        assert!(grants.paths.lock().unwrap().len() <= MAX_GRANTS);
        assert!(grants.check(&[format!("/f{}", MAX_GRANTS + 9)]).is_ok());
    }
}
