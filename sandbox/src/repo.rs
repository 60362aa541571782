//! Getting a task repository ready for the sandbox user: a canonical directory that the unprivileged
//! leased uid can reach, and owned by it so that the command can write everywhere in it.

use std::os::unix::fs::{MetadataExt, lchown};
use std::path::{Path, PathBuf};

use crate::SandboxError;

/// Canonicalises `repo`, checks the leased uid can reach it, and gives every entry in it to `uid` (and the
/// gid with the same number). Symlinks are changed themselves, never followed, so a link the sandbox left
/// in the repository cannot make the host chown something outside it. Must not run while a command is
/// running in the same repository.
pub(crate) fn prepare(repo: &Path, uid: u32) -> Result<PathBuf, SandboxError> {
    let not_dir = || SandboxError::RepoNotDirectory {
        path: repo.to_path_buf(),
    };
    let canonical = repo.canonicalize().map_err(|_| not_dir())?;
    if !canonical.is_dir() {
        return Err(not_dir());
    }
    check_reachable(&canonical)?;
    give_tree(&canonical, uid)?;
    Ok(canonical)
}

/// Every directory above `path` must be searchable by "others": the sandbox user is nobody's group member.
pub(crate) fn check_reachable(path: &Path) -> Result<(), SandboxError> {
    for ancestor in path.ancestors().skip(1) {
        let meta = std::fs::metadata(ancestor).map_err(SandboxError::io(format!(
            "cannot stat {}",
            ancestor.display()
        )))?;
        if meta.mode() & 0o001 == 0 {
            return Err(SandboxError::RepoNotReachable {
                repo: path.to_path_buf(),
                blocked: ancestor.to_path_buf(),
            });
        }
    }
    Ok(())
}

fn give_tree(root: &Path, uid: u32) -> Result<(), SandboxError> {
    let mut stack = vec![root.to_path_buf()];
    while let Some(path) = stack.pop() {
        let meta = std::fs::symlink_metadata(&path)
            .map_err(SandboxError::io(format!("cannot stat {}", path.display())))?;
        if meta.uid() != uid || meta.gid() != uid {
            lchown(&path, Some(uid), Some(uid))
                .map_err(SandboxError::io(format!("cannot chown {}", path.display())))?;
        }
        if meta.is_dir() {
            let entries = std::fs::read_dir(&path)
                .map_err(SandboxError::io(format!("cannot list {}", path.display())))?;
            for entry in entries {
                let entry =
                    entry.map_err(SandboxError::io(format!("cannot list {}", path.display())))?;
                stack.push(entry.path());
            }
        }
    }
    Ok(())
}
