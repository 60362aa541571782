//! Finding and killing a sandbox's processes from the host, through `/proc`. A leased host uid belongs to
//! one sandbox only, so "every live process of the uid" is exactly what must be dead after a kill.

use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::SandboxError;

/// Host pids whose parent is `parent` (the sandbox's pid 1 is bubblewrap's only child).
pub(crate) fn children_of(parent: i32) -> Vec<i32> {
    pids()
        .filter(|&pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|stat| parent_in_stat(&stat))
                == Some(parent)
        })
        .collect()
}

/// Host pids of live (not zombie) processes with `uid` as real, effective, saved or filesystem uid.
pub(crate) fn live_processes_of(uid: u32) -> Vec<i32> {
    pids()
        .filter(|&pid| {
            std::fs::read_to_string(format!("/proc/{pid}/status"))
                .ok()
                .and_then(|status| live_uids_in_status(&status))
                .is_some_and(|uids| uids.contains(&uid))
        })
        .collect()
}

/// SIGKILL, ignoring a process that is already gone.
pub(crate) fn kill_now(pid: i32) {
    let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
}

/// Kills every live process of `uid` until none is left; gives up after `grace`.
pub(crate) fn sweep(uid: u32, grace: Duration) -> Result<(), SandboxError> {
    let deadline = Instant::now() + grace;
    loop {
        let alive = live_processes_of(uid);
        if alive.is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(SandboxError::Survivors { uid, pids: alive });
        }
        tracing::warn!(uid, ?alive, "killing leftover sandbox processes");
        alive.iter().copied().for_each(kill_now);
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn pids() -> impl Iterator<Item = i32> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse().ok())
}

/// The parent pid in a `/proc/PID/stat` line: `pid (comm) state ppid ...`, where comm may hold spaces and
/// parentheses, so the fields start after the last `)`.
fn parent_in_stat(stat: &str) -> Option<i32> {
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// The four uids of a `/proc/PID/status` file, or `None` for a zombie or dead process.
fn live_uids_in_status(status: &str) -> Option<[u32; 4]> {
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
            .map(str::trim)
    };
    if field("State")?.starts_with(['Z', 'X']) {
        return None;
    }
    let mut uids = field("Uid")?.split_whitespace().map(str::parse::<u32>);
    let mut next = || uids.next()?.ok();
    Some([next()?, next()?, next()?, next()?])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_parent_survives_odd_command_names() {
        assert_eq!(parent_in_stat("42 (sleep) S 7 42 42 0"), Some(7));
        assert_eq!(parent_in_stat("42 (a) b (c) R 9 1 1"), Some(9));
        assert_eq!(parent_in_stat("garbage"), None);
    }

    #[test]
    fn status_uids_skip_zombies() {
        let live = "Name:\tsh\nState:\tS (sleeping)\nUid:\t5\t6\t7\t8\nGid:\t0\t0\t0\t0\n";
        assert_eq!(live_uids_in_status(live), Some([5, 6, 7, 8]));
        let zombie = "Name:\tsh\nState:\tZ (zombie)\nUid:\t5\t5\t5\t5\n";
        assert_eq!(live_uids_in_status(zombie), None);
    }

    #[test]
    fn this_process_is_found_by_its_uid() {
        let me = std::process::id() as i32;
        let uid = nix::unistd::geteuid().as_raw();
        assert!(live_processes_of(uid).contains(&me));
    }
}
