//! Leasing a host uid to one sandbox at a time, across processes: one lock file per uid, held with
//! `flock(2)` for as long as the lease lives. The kernel drops the lock if the holder dies, so a crashed env
//! host never leaks uids; whoever leases the uid next first kills anything still running under it.

use std::fs::{DirBuilder, File, OpenOptions, TryLockError};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;
use std::time::Duration;

use crate::policy::HostUids;
use crate::{SandboxError, procs};

/// Exclusive use of one host uid (and the gid with the same number) until dropped.
#[derive(Debug)]
pub(crate) struct UidLease {
    uid: u32,
    _lock: File,
}

impl UidLease {
    /// Leases the first free uid of `range`, with its lock file in `dir`.
    pub(crate) fn acquire(dir: &Path, range: HostUids) -> Result<UidLease, SandboxError> {
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(SandboxError::io(format!("cannot create {}", dir.display())))?;
        for uid in range.first..range.first + range.count {
            let path = dir.join(format!("uid-{uid}.lock"));
            let lock = OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .mode(0o600)
                .open(&path)
                .map_err(SandboxError::io(format!("cannot open {}", path.display())))?;
            match lock.try_lock() {
                Ok(()) => {
                    // A previous holder that died without cleaning up may have left processes behind.
                    procs::sweep(uid, Duration::from_secs(2))?;
                    return Ok(UidLease { uid, _lock: lock });
                }
                Err(TryLockError::WouldBlock) => continue,
                Err(TryLockError::Error(e)) => {
                    return Err(SandboxError::io(format!("cannot lock {}", path.display()))(
                        e,
                    ));
                }
            }
        }
        Err(SandboxError::NoFreeUid {
            first: range.first,
            count: range.count,
        })
    }

    /// The leased host uid (also used as the gid).
    pub(crate) fn uid(&self) -> u32 {
        self.uid
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_leased_uid_is_not_leased_again_until_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let range = HostUids {
            first: 3_999_000,
            count: 2,
        };
        let a = UidLease::acquire(dir.path(), range).unwrap();
        let b = UidLease::acquire(dir.path(), range).unwrap();
        assert_ne!(a.uid(), b.uid());
        assert!(matches!(
            UidLease::acquire(dir.path(), range),
            Err(SandboxError::NoFreeUid { .. })
        ));
        let freed = a.uid();
        drop(a);
        assert_eq!(UidLease::acquire(dir.path(), range).unwrap().uid(), freed);
    }
}
