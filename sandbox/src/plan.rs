//! The bubblewrap command line a policy turns into, and the files a slot synthesises for `/etc`. Pure: the
//! facts about the host (which paths exist, which are symlinks) are looked up by the caller and passed in.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::SandboxPolicy;

/// What the host has at a path the policy binds read-only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum HostEntry {
    /// Nothing: the path is left out of the sandbox.
    Missing,
    /// A symlink with this target: recreated as the same symlink (e.g. `/bin` -> `usr/bin`).
    Symlink(PathBuf),
    /// A file or directory: bound read-only.
    Present,
}

/// The files a slot writes into its scratch directory and binds over `/etc/NAME`, so that the sandbox user
/// has a name and nothing of the host's account database is visible.
pub(crate) fn etc_files(policy: &SandboxPolicy) -> [(&'static str, String); 4] {
    let (uid, gid, host) = (policy.uid, policy.gid, &policy.hostname);
    [
        (
            "passwd",
            format!(
                "root:x:0:0:root:/root:/usr/sbin/nologin\n\
                 sandbox:x:{uid}:{gid}:sandbox:/tmp:/bin/sh\n\
                 nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
            ),
        ),
        (
            "group",
            format!("root:x:0:\nsandbox:x:{gid}:\nnogroup:x:65534:\n"),
        ),
        ("hostname", format!("{host}\n")),
        (
            "hosts",
            format!("127.0.0.1\tlocalhost {host}\n::1\tlocalhost ip6-localhost\n"),
        ),
    ]
}

/// The part of the bubblewrap command line shared by every command of a slot: namespaces, identity, the
/// read-only system binds, the synthetic `/etc` files from `etc_dir`, and fresh `/proc`, `/dev`, `/tmp`.
pub(crate) fn bwrap_prefix(
    policy: &SandboxPolicy,
    host: &[(PathBuf, HostEntry)],
    etc_dir: &Path,
) -> Vec<OsString> {
    let mut args = Args::default();
    args.push([
        "--unshare-all",
        "--unshare-user",
        "--disable-userns",
        "--cap-drop",
        "ALL",
        "--die-with-parent",
        "--new-session",
        "--as-pid-1",
    ]);
    args.push(["--uid".to_string(), policy.uid.to_string()]);
    args.push(["--gid".to_string(), policy.gid.to_string()]);
    args.push(["--hostname", policy.hostname.as_str()]);
    for (path, entry) in host {
        match entry {
            HostEntry::Missing => {}
            HostEntry::Symlink(target) => {
                args.push(["--symlink".as_ref(), target.as_os_str(), path.as_os_str()])
            }
            HostEntry::Present => {
                args.push(["--ro-bind".as_ref(), path.as_os_str(), path.as_os_str()])
            }
        }
    }
    for (name, _) in etc_files(policy) {
        let dest = Path::new("/etc").join(name);
        args.push([
            "--ro-bind".as_ref(),
            etc_dir.join(name).as_os_str(),
            dest.as_os_str(),
        ]);
    }
    args.push(["--proc", "/proc", "--dev", "/dev"]);
    args.push(["--size".to_string(), policy.shm_bytes.to_string()]);
    args.push(["--tmpfs", "/dev/shm"]);
    args.push(["--size".to_string(), policy.tmp_bytes.to_string()]);
    args.push(["--tmpfs", "/tmp"]);
    args.0
}

/// Pid 1 of the sandbox: a shell that runs the command in the foreground (default signal dispositions)
/// and, while waiting for it, reaps whatever is orphaned to it. Bubblewrap runs it as pid 1 (`--as-pid-1`)
/// and waits for it, and the kernel empties a pid namespace before its init can be reaped; so when
/// bubblewrap exits, nothing of the sandbox is left and no zombie is handed to the host's init. (With
/// bubblewrap's own init, bubblewrap exits on the command's status while its init is still alive.)
pub(crate) const INIT: [&str; 4] = ["/bin/sh", "-c", "\"$@\"; exit $?", "sh"];

/// The complete command line for one command: the slot's prefix, the repository bound read-write at the
/// policy's mount point, then the root and `/dev` made read-only (only `/repo`, `/tmp` and `/dev/shm` stay
/// writable), the working directory, and the command under [`INIT`].
pub(crate) fn bwrap_command(
    prefix: &[OsString],
    policy: &SandboxPolicy,
    repo: &Path,
    cmd: &[String],
) -> Vec<OsString> {
    let mount = policy.repo_mount.as_os_str();
    let mut args = Args(prefix.to_vec());
    args.push(["--bind".as_ref(), repo.as_os_str(), mount]);
    args.push(["--remount-ro", "/dev", "--remount-ro", "/"]);
    args.push(["--chdir".as_ref(), mount, "--".as_ref()]);
    args.push(INIT);
    args.push(cmd);
    args.0
}

#[derive(Default)]
struct Args(Vec<OsString>);

impl Args {
    fn push<I, S>(&mut self, items: I)
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.0.extend(items.into_iter().map(Into::into));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(args: &[OsString]) -> Vec<String> {
        args.iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    fn window(args: &[String], want: &[&str]) -> bool {
        args.windows(want.len()).any(|w| w == want)
    }

    #[test]
    fn prefix_binds_present_paths_and_recreates_symlinks() {
        let policy = SandboxPolicy::default();
        let host = vec![
            ("/usr".into(), HostEntry::Present),
            ("/bin".into(), HostEntry::Symlink("usr/bin".into())),
            ("/lib32".into(), HostEntry::Missing),
        ];
        let args = strings(&bwrap_prefix(&policy, &host, Path::new("/scratch/etc")));
        assert!(window(&args, &["--ro-bind", "/usr", "/usr"]));
        assert!(window(&args, &["--symlink", "usr/bin", "/bin"]));
        assert!(!args.iter().any(|a| a == "/lib32"));
        assert!(window(
            &args,
            &["--ro-bind", "/scratch/etc/passwd", "/etc/passwd"]
        ));
        assert!(window(&args, &["--uid", "1000"]));
        for flag in [
            "--unshare-all",
            "--unshare-user",
            "--disable-userns",
            "--die-with-parent",
            "--new-session",
            "--as-pid-1",
        ] {
            assert!(args.iter().any(|a| a == flag), "{flag} missing");
        }
        assert!(window(
            &args,
            &["--size", &(256u64 << 20).to_string(), "--tmpfs", "/tmp"]
        ));
    }

    #[test]
    fn command_binds_repo_then_seals_root_then_runs() {
        let policy = SandboxPolicy::default();
        let prefix = vec![OsString::from("--unshare-all")];
        let cmd = ["sh".to_string(), "-c".into(), "echo hi".into()];
        let args = strings(&bwrap_command(
            &prefix,
            &policy,
            Path::new("/host/repo"),
            &cmd,
        ));
        let tail = [
            "--bind",
            "/host/repo",
            "/repo",
            "--remount-ro",
            "/dev",
            "--remount-ro",
            "/",
            "--chdir",
            "/repo",
            "--",
            "/bin/sh",
            "-c",
            "\"$@\"; exit $?",
            "sh",
            "sh",
            "-c",
            "echo hi",
        ];
        assert_eq!(&args[1..], &tail);
    }

    #[test]
    fn etc_names_the_sandbox_user_and_host() {
        let files = etc_files(&SandboxPolicy::default());
        assert!(files[0].1.contains("sandbox:x:1000:1000:"));
        assert_eq!(files[2].1, "sandbox\n");
    }
}
