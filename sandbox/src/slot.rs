//! A prepared sandbox: a leased host uid, a scratch directory with the synthetic `/etc` files, and the
//! bubblewrap command line worked out from the policy and the host's paths. Preparing one is the "cold"
//! part of a command; a [`SandboxPool`](crate::SandboxPool) keeps slots prepared.

use std::ffi::OsString;
use std::fs::Permissions;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use tempfile::TempDir;

use crate::exec::{self, Launch};
use crate::lease::UidLease;
use crate::plan::{self, HostEntry};
use crate::{CommandOutput, SandboxError, SandboxPolicy, repo};

/// One sandbox ready to run commands, one at a time.
#[derive(Debug)]
pub(crate) struct Slot {
    policy: Arc<SandboxPolicy>,
    lease: UidLease,
    scratch: TempDir,
    prefix: Vec<OsString>,
}

impl Slot {
    /// Leases a uid, writes the scratch files and resolves the read-only binds. `policy` is validated.
    pub(crate) fn prepare(policy: Arc<SandboxPolicy>) -> Result<Slot, SandboxError> {
        let lease = UidLease::acquire(&policy.lease_dir, policy.host_uids)?;
        let scratch = tempfile::Builder::new()
            .prefix("troupe-sandbox-")
            .tempdir()
            .map_err(SandboxError::io(
                "cannot create the slot's scratch directory",
            ))?;
        let etc = scratch.path().join("etc");
        std::fs::create_dir(&etc).map_err(SandboxError::io("cannot create scratch etc"))?;
        for dir in [scratch.path(), &etc] {
            std::fs::set_permissions(dir, Permissions::from_mode(0o755))
                .map_err(SandboxError::io("cannot open up the scratch directory"))?;
        }
        repo::check_reachable(&etc)?;
        for (name, contents) in plan::etc_files(&policy) {
            std::fs::write(etc.join(name), contents)
                .map_err(SandboxError::io(format!("cannot write scratch etc/{name}")))?;
        }
        let host: Vec<_> = policy
            .read_only
            .iter()
            .map(|path| (path.clone(), host_entry(path)))
            .collect();
        let prefix = plan::bwrap_prefix(&policy, &host, &etc);
        Ok(Slot {
            policy,
            lease,
            scratch,
            prefix,
        })
    }

    /// Runs `cmd` with `repo` as the writable `/repo`.
    pub(crate) async fn run(
        &self,
        cmd: &[String],
        repo: &Path,
    ) -> Result<CommandOutput, SandboxError> {
        if cmd.is_empty() {
            return Err(SandboxError::EmptyCommand);
        }
        let uid = self.lease.uid();
        let repo = repo.to_path_buf();
        let repo = tokio::task::spawn_blocking(move || repo::prepare(&repo, uid))
            .await
            .map_err(|e| SandboxError::io("repository task")(std::io::Error::other(e)))??;
        let span = tracing::debug_span!("sandbox", uid, repo = %repo.display());
        let _entered = span.enter();
        exec::run(Launch {
            bwrap: &self.policy.bwrap,
            args: plan::bwrap_command(&self.prefix, &self.policy, &repo, cmd),
            env: &self.policy.env,
            uid,
            limits: self.policy.limits,
            output: self.policy.output,
        })
        .await
    }

    /// Runs `true` in a throwaway repository inside the scratch directory: proves that bubblewrap can set
    /// this policy up on this host.
    pub(crate) async fn probe(&self) -> Result<(), SandboxError> {
        let probe = self.scratch.path().join("probe");
        std::fs::create_dir_all(&probe).map_err(SandboxError::io("cannot create probe repo"))?;
        let out = self.run(&["true".to_string()], &probe).await?;
        if out.success() {
            Ok(())
        } else {
            Err(SandboxError::ProbeFailed {
                stderr: out.stderr_text(),
            })
        }
    }
}

fn host_entry(path: &Path) -> HostEntry {
    match std::fs::symlink_metadata(path) {
        Err(_) => HostEntry::Missing,
        Ok(meta) if meta.file_type().is_symlink() => match std::fs::read_link(path) {
            Ok(target) => HostEntry::Symlink(target),
            Err(_) => HostEntry::Missing,
        },
        Ok(_) => HostEntry::Present,
    }
}
