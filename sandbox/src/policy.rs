//! What a sandbox allows: which host paths it sees, which limits it runs under. Plain data with defaults and
//! validation; nothing here touches the host.

use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use crate::SandboxError;

/// Paths the sandbox synthesises itself; a bind on or under them would be hidden or would hide them.
const SYNTHETIC: [&str; 7] = [
    "/proc",
    "/dev",
    "/tmp",
    "/etc/passwd",
    "/etc/group",
    "/etc/hostname",
    "/etc/hosts",
];

/// Everything that decides what one sandboxed command may see and use.
///
/// The default is what an env host runs agent commands under: the repository read-write at `/repo`, the
/// host's `/usr` (and the merged-`/usr` links `/bin`, `/lib`, ...) and a few `/etc` files read-only, no network,
/// a 256 MiB `/tmp`, and the [`Limits::default`] and [`OutputLimits::default`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxPolicy {
    /// Where the task repository appears inside the sandbox; also the working directory.
    pub repo_mount: PathBuf,
    /// Host paths bound read-only at the same place. Missing ones are skipped; a symlink (such as `/bin` ->
    /// `usr/bin`) is recreated as the same symlink. Everything not listed is absent.
    pub read_only: Vec<PathBuf>,
    /// Hostname inside the sandbox (own UTS namespace).
    pub hostname: String,
    /// Uid the command sees for itself (mapped onto the leased host uid; must not be 0).
    pub uid: u32,
    /// Gid the command sees for itself.
    pub gid: u32,
    /// Host uids leased to sandboxes, one per concurrently running sandbox (see [`HostUids`]).
    pub host_uids: HostUids,
    /// Directory of the lock files that lease host uids between processes (root-only, e.g. under `/run`).
    pub lease_dir: PathBuf,
    /// The command's whole environment; nothing of the host's environment is passed.
    pub env: Vec<(String, String)>,
    /// Size of the private `/tmp` tmpfs in bytes (memory of the host; fresh for every command).
    pub tmp_bytes: u64,
    /// Size of the private `/dev/shm` tmpfs in bytes.
    pub shm_bytes: u64,
    /// Resource limits of every process of the command.
    pub limits: Limits,
    /// How much of stdout and stderr is kept, and when a flood is stopped.
    pub output: OutputLimits,
    /// The bubblewrap executable.
    pub bwrap: PathBuf,
}

/// A range of host uids, each leased to one running sandbox at a time.
///
/// The command runs as the leased uid on the host, never as root: `RLIMIT_NPROC` then bounds its processes
/// (the kernel exempts root), and the uid's processes can be found and killed without touching anyone
/// else's. The repository is chowned to the leased uid before each command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostUids {
    /// First uid of the range (not 0).
    pub first: u32,
    /// Number of uids: the most sandboxes that can run at once on this host.
    pub count: u32,
}

/// Limits applied with `setrlimit(2)` to the command and inherited by every process it starts, plus the
/// wall-clock timeout that kills the whole process tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// CPU seconds per process (`RLIMIT_CPU`; SIGXCPU at the limit, SIGKILL one second later).
    pub cpu_seconds: u64,
    /// Virtual address space per process in bytes (`RLIMIT_AS`). Not a total over the tree: that is at most
    /// `processes` times this.
    pub address_space_bytes: u64,
    /// Processes and threads of the leased uid (`RLIMIT_NPROC`), counting bubblewrap and the pid-1 shell.
    pub processes: u64,
    /// Largest file a process may write, in bytes (`RLIMIT_FSIZE`; SIGXFSZ beyond it).
    pub file_size_bytes: u64,
    /// Open file descriptors per process (`RLIMIT_NOFILE`).
    pub open_files: u64,
    /// Wall-clock time from start to kill of the whole tree.
    pub wall_timeout: Duration,
}

/// Output capture: each stream keeps its first bytes up to a cap; the command keeps running past the cap
/// (its exit status still counts) until the total it wrote reaches `kill_after_bytes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutputLimits {
    /// Bytes of stdout kept (host memory per running command).
    pub stdout_bytes: usize,
    /// Bytes of stderr kept.
    pub stderr_bytes: usize,
    /// Total bytes written to stdout and stderr after which the command is killed
    /// ([`Outcome::OutputLimit`](crate::Outcome::OutputLimit)). Costs host CPU to drain, not memory.
    pub kill_after_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            cpu_seconds: 60,
            address_space_bytes: 4 << 30,
            processes: 128,
            file_size_bytes: 256 << 20,
            open_files: 1024,
            wall_timeout: Duration::from_secs(120),
        }
    }
}

impl Default for OutputLimits {
    fn default() -> Self {
        OutputLimits {
            stdout_bytes: 1 << 20,
            stderr_bytes: 1 << 20,
            kill_after_bytes: 64 << 20,
        }
    }
}

impl Default for HostUids {
    fn default() -> Self {
        HostUids {
            first: 2_000_000,
            count: 256,
        }
    }
}

impl Default for SandboxPolicy {
    fn default() -> Self {
        let paths = |list: &[&str]| list.iter().map(PathBuf::from).collect();
        let env = [
            (
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            ),
            ("HOME", "/tmp"),
            ("USER", "sandbox"),
            ("LOGNAME", "sandbox"),
            ("LANG", "C.UTF-8"),
            ("TERM", "dumb"),
            ("GIT_AUTHOR_NAME", "sandbox"),
            ("GIT_AUTHOR_EMAIL", "sandbox@localhost"),
            ("GIT_COMMITTER_NAME", "sandbox"),
            ("GIT_COMMITTER_EMAIL", "sandbox@localhost"),
        ];
        SandboxPolicy {
            repo_mount: PathBuf::from("/repo"),
            read_only: paths(&[
                "/usr",
                "/bin",
                "/sbin",
                "/lib",
                "/lib32",
                "/lib64",
                "/libx32",
                "/etc/alternatives",
                "/etc/ld.so.cache",
                "/etc/ld.so.conf",
                "/etc/ld.so.conf.d",
                "/etc/localtime",
                "/etc/nsswitch.conf",
                "/etc/protocols",
                "/etc/services",
                "/etc/mime.types",
                "/etc/python3",
                "/etc/python3.11",
                "/etc/python3.12",
                "/etc/python3.13",
            ]),
            hostname: "sandbox".into(),
            uid: 1000,
            gid: 1000,
            host_uids: HostUids::default(),
            lease_dir: PathBuf::from("/run/troupe-sandbox"),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            tmp_bytes: 256 << 20,
            shm_bytes: 64 << 20,
            limits: Limits::default(),
            output: OutputLimits::default(),
            bwrap: PathBuf::from("/usr/bin/bwrap"),
        }
    }
}

impl SandboxPolicy {
    /// Checks that the policy is consistent; a sandbox is only built from a validated policy.
    pub fn validate(&self) -> Result<(), SandboxError> {
        check_path("repo_mount", &self.repo_mount)?;
        for reserved in SYNTHETIC.iter().map(Path::new).chain([Path::new("/etc")]) {
            if overlaps(&self.repo_mount, reserved) {
                return Err(SandboxError::policy(
                    "repo_mount",
                    format!(
                        "overlaps {}, which the sandbox provides",
                        reserved.display()
                    ),
                ));
            }
        }
        for path in &self.read_only {
            check_path("read_only", path)?;
            if overlaps(path, &self.repo_mount) {
                return Err(SandboxError::policy(
                    "read_only",
                    format!("{} overlaps repo_mount", path.display()),
                ));
            }
            if let Some(s) = SYNTHETIC.iter().find(|s| overlaps(path, Path::new(s))) {
                return Err(SandboxError::policy(
                    "read_only",
                    format!(
                        "{} overlaps {s}, which the sandbox provides",
                        path.display()
                    ),
                ));
            }
        }
        let hostname_ok = (1..=64).contains(&self.hostname.len())
            && self
                .hostname
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
        if !hostname_ok {
            return Err(SandboxError::policy("hostname", "1 to 64 of [A-Za-z0-9.-]"));
        }
        if self.uid == 0 || self.gid == 0 {
            return Err(SandboxError::policy(
                "uid",
                "the sandbox user must not be root (uid/gid 0)",
            ));
        }
        let HostUids { first, count } = self.host_uids;
        if first == 0 || count == 0 || first.checked_add(count).is_none_or(|end| end == u32::MAX) {
            return Err(SandboxError::policy(
                "host_uids",
                "a non-empty range above 0 that ends below u32::MAX",
            ));
        }
        if !self.lease_dir.is_absolute() {
            return Err(SandboxError::policy("lease_dir", "must be absolute"));
        }
        for (key, value) in &self.env {
            if key.is_empty() || key.contains(['=', '\0']) || value.contains('\0') {
                return Err(SandboxError::policy("env", format!("bad variable {key:?}")));
            }
        }
        if self.tmp_bytes == 0 || self.shm_bytes == 0 {
            return Err(SandboxError::policy(
                "tmp_bytes",
                "tmpfs sizes must be positive",
            ));
        }
        self.limits.validate()?;
        self.output.validate()?;
        if !self.bwrap.is_absolute() {
            return Err(SandboxError::policy("bwrap", "must be an absolute path"));
        }
        Ok(())
    }
}

impl Limits {
    fn validate(&self) -> Result<(), SandboxError> {
        if self.cpu_seconds == 0 {
            return Err(SandboxError::policy(
                "limits.cpu_seconds",
                "must be positive",
            ));
        }
        if self.address_space_bytes < 64 << 20 {
            return Err(SandboxError::policy(
                "limits.address_space_bytes",
                "at least 64 MiB",
            ));
        }
        if self.processes < 4 {
            return Err(SandboxError::policy(
                "limits.processes",
                "at least 4 (bubblewrap and the pid-1 shell use 2)",
            ));
        }
        if self.file_size_bytes == 0 {
            return Err(SandboxError::policy(
                "limits.file_size_bytes",
                "must be positive",
            ));
        }
        if self.open_files < 16 {
            return Err(SandboxError::policy("limits.open_files", "at least 16"));
        }
        if self.wall_timeout.is_zero() {
            return Err(SandboxError::policy(
                "limits.wall_timeout",
                "must be positive",
            ));
        }
        Ok(())
    }
}

impl OutputLimits {
    fn validate(&self) -> Result<(), SandboxError> {
        let kept = self.stdout_bytes as u64 + self.stderr_bytes as u64;
        if self.kill_after_bytes < kept {
            return Err(SandboxError::policy(
                "output.kill_after_bytes",
                "must be at least stdout_bytes + stderr_bytes",
            ));
        }
        Ok(())
    }
}

/// An absolute path of normal components only, not `/` itself.
fn check_path(field: &'static str, path: &Path) -> Result<(), SandboxError> {
    let normal = path
        .components()
        .skip(1)
        .all(|c| matches!(c, Component::Normal(_)));
    if !path.is_absolute() || !normal || path.parent().is_none() {
        return Err(SandboxError::policy(
            field,
            format!(
                "{} must be absolute, below /, without . or ..",
                path.display()
            ),
        ));
    }
    Ok(())
}

/// Whether one path is the other or lies below it.
fn overlaps(a: &Path, b: &Path) -> bool {
    a.starts_with(b) || b.starts_with(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_policy_is_valid() {
        SandboxPolicy::default().validate().unwrap();
    }

    fn rejects(field: &str, edit: impl FnOnce(&mut SandboxPolicy)) {
        let mut policy = SandboxPolicy::default();
        edit(&mut policy);
        match policy.validate() {
            Err(SandboxError::InvalidPolicy { field: f, .. }) => assert_eq!(f, field),
            other => panic!("expected InvalidPolicy({field}), got {other:?}"),
        }
    }

    #[test]
    fn repo_mount_must_not_cover_system_paths() {
        rejects("repo_mount", |p| p.repo_mount = "/".into());
        rejects("repo_mount", |p| p.repo_mount = "repo".into());
        rejects("repo_mount", |p| p.repo_mount = "/tmp/repo".into());
        rejects("repo_mount", |p| p.repo_mount = "/etc".into());
        rejects("repo_mount", |p| p.repo_mount = "/repo/../etc".into());
        rejects("read_only", |p| p.repo_mount = "/usr/src/repo".into());
    }

    #[test]
    fn read_only_binds_must_not_shadow_synthetic_paths() {
        rejects("read_only", |p| p.read_only.push("/proc/1".into()));
        rejects("read_only", |p| p.read_only.push("/dev".into()));
        rejects("read_only", |p| p.read_only.push("/etc/passwd".into()));
        rejects("read_only", |p| p.read_only.push("/".into()));
        rejects("read_only", |p| p.read_only.push("/root/..".into()));
    }

    #[test]
    fn limits_and_identities_are_checked() {
        rejects("uid", |p| p.uid = 0);
        rejects("hostname", |p| p.hostname = "a b".into());
        rejects("host_uids", |p| p.host_uids.first = 0);
        rejects("host_uids", |p| p.host_uids.count = 0);
        rejects("host_uids", |p| p.host_uids.first = u32::MAX - 3);
        rejects("limits.processes", |p| p.limits.processes = 2);
        rejects("limits.wall_timeout", |p| {
            p.limits.wall_timeout = Duration::ZERO
        });
        rejects("output.kill_after_bytes", |p| {
            p.output.kill_after_bytes = 10
        });
        rejects("env", |p| p.env.push(("A=B".into(), "c".into())));
        rejects("bwrap", |p| p.bwrap = "bwrap".into());
    }
}
