//! What one sandboxed command produced, and the pure rules that turn bubblewrap's exit status and the
//! supervisor's kill decision into an [`Outcome`].

use std::time::Duration;

/// How the command ended, as far as the host can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// It exited with this code.
    Code(i32),
    /// It was killed by this signal. Bubblewrap reports a signal death of the command as exit code 128 + N,
    /// the shell convention, so a command that itself exits with a code in 129..=192 reads as a signal.
    Signal(i32),
}

/// Why the command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// It exited by itself; see [`ExitStatus::Code`].
    Exited,
    /// A signal ended it (its own doing, or a limit with no dedicated outcome, e.g. `RLIMIT_AS` faults).
    Signalled,
    /// It hit the wall-clock timeout; the whole process tree was killed.
    TimedOut,
    /// It wrote more than `OutputLimits::kill_after_bytes`; the whole process tree was killed.
    OutputLimit,
    /// It used up its CPU seconds (`SIGXCPU`).
    CpuLimit,
    /// It tried to write a file beyond the size limit (`SIGXFSZ`).
    FileSizeLimit,
}

/// Everything the env host learns from one command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandOutput {
    /// Why it ended.
    pub outcome: Outcome,
    /// Its exit code or signal.
    pub status: ExitStatus,
    /// The first `OutputLimits::stdout_bytes` of its stdout.
    pub stdout: Vec<u8>,
    /// The first `OutputLimits::stderr_bytes` of its stderr.
    pub stderr: Vec<u8>,
    /// Whether stdout was longer than what was kept.
    pub stdout_truncated: bool,
    /// Whether stderr was longer than what was kept.
    pub stderr_truncated: bool,
    /// From spawning the sandbox to the end of its last process.
    pub wall: Duration,
}

impl CommandOutput {
    /// Exited by itself with code 0.
    pub fn success(&self) -> bool {
        self.outcome == Outcome::Exited && self.status == ExitStatus::Code(0)
    }

    /// Stdout as text, invalid UTF-8 replaced.
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// Stderr as text, invalid UTF-8 replaced.
    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}

/// Why the supervisor killed the sandbox, if it did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KillReason {
    /// The wall-clock timeout passed.
    Timeout,
    /// The output flood limit was passed.
    Output,
}

const SIGXCPU: i32 = 24;
const SIGXFSZ: i32 = 25;

/// The command's status from bubblewrap's (`raw`: bubblewrap's own exit code or the signal that ended
/// bubblewrap), and the outcome given whether the supervisor killed it.
pub(crate) fn classify(raw: ExitStatus, killed: Option<KillReason>) -> (Outcome, ExitStatus) {
    let status = match raw {
        ExitStatus::Code(c) if (129..=192).contains(&c) => ExitStatus::Signal(c - 128),
        other => other,
    };
    let outcome = match (killed, status) {
        (Some(KillReason::Timeout), _) => Outcome::TimedOut,
        (Some(KillReason::Output), _) => Outcome::OutputLimit,
        (None, ExitStatus::Code(_)) => Outcome::Exited,
        (None, ExitStatus::Signal(SIGXCPU)) => Outcome::CpuLimit,
        (None, ExitStatus::Signal(SIGXFSZ)) => Outcome::FileSizeLimit,
        (None, ExitStatus::Signal(_)) => Outcome::Signalled,
    };
    (outcome, status)
}

/// One output stream: keeps the first `limit` bytes, counts all of them.
#[derive(Debug)]
pub(crate) struct Capture {
    kept: Vec<u8>,
    limit: usize,
    seen: u64,
}

impl Capture {
    pub(crate) fn new(limit: usize) -> Self {
        Capture {
            kept: Vec::new(),
            limit,
            seen: 0,
        }
    }

    pub(crate) fn push(&mut self, chunk: &[u8]) {
        let room = self.limit.saturating_sub(self.kept.len());
        self.kept.extend_from_slice(&chunk[..chunk.len().min(room)]);
        self.seen += chunk.len() as u64;
    }

    /// The kept bytes and whether anything was dropped.
    pub(crate) fn finish(self) -> (Vec<u8>, bool) {
        let truncated = self.seen > self.kept.len() as u64;
        (self.kept, truncated)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_and_signals_map_to_outcomes() {
        use ExitStatus::*;
        assert_eq!(classify(Code(0), None), (Outcome::Exited, Code(0)));
        assert_eq!(classify(Code(3), None), (Outcome::Exited, Code(3)));
        assert_eq!(classify(Code(137), None), (Outcome::Signalled, Signal(9)));
        assert_eq!(
            classify(Code(128 + 24), None),
            (Outcome::CpuLimit, Signal(24))
        );
        assert_eq!(
            classify(Code(128 + 25), None),
            (Outcome::FileSizeLimit, Signal(25))
        );
        assert_eq!(classify(Code(255), None), (Outcome::Exited, Code(255)));
        assert_eq!(classify(Signal(9), None), (Outcome::Signalled, Signal(9)));
    }

    #[test]
    fn a_kill_by_the_supervisor_names_its_reason() {
        use ExitStatus::*;
        let timeout = Some(KillReason::Timeout);
        assert_eq!(classify(Code(137), timeout), (Outcome::TimedOut, Signal(9)));
        assert_eq!(classify(Code(0), timeout).0, Outcome::TimedOut);
        assert_eq!(
            classify(Signal(9), Some(KillReason::Output)).0,
            Outcome::OutputLimit
        );
    }

    #[test]
    fn capture_keeps_the_head_and_flags_truncation() {
        let mut c = Capture::new(5);
        c.push(b"abc");
        c.push(b"defg");
        c.push(b"h");
        assert_eq!(c.finish(), (b"abcde".to_vec(), true));
        let mut exact = Capture::new(3);
        exact.push(b"abc");
        assert_eq!(exact.finish(), (b"abc".to_vec(), false));
    }
}
