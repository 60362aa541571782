//! The reward rules of a code-fixing episode, free of I/O: what a submitted diff may
//! touch, how the hidden runner's report reads, and the [`Reward`] each verdict earns.
//!
//! Integrity rules: a diff that adds, changes, deletes or renames a test file, a hidden
//! run that reports no tests (or fewer than the suite holds), and a hidden run that
//! times out all earn 0, each under its own breakdown key so they are counted.

use troupe_core::Reward;
use troupe_sandbox::{CommandOutput, Outcome};

use super::commands::RESULT_MARKER;

/// How a judged episode ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Every hidden test passed.
    Solved,
    /// The hidden tests ran; some failed or errored.
    Failed {
        /// Tests that passed.
        passed: u32,
        /// Tests in the suite.
        total: u32,
    },
    /// The episode ended without a diff from the env host (it was cut off).
    NoSubmission,
    /// The diff does not apply to the task's repository.
    BadDiff,
    /// The diff touches a test file (integrity: no reward).
    TestsModified,
    /// The hidden run reported no tests, or fewer than the suite holds (integrity).
    NoTests,
    /// The hidden run hit its time or CPU limit (integrity).
    Timeout,
}

/// Every verdict's breakdown key, in the order rewards list them.
pub const REASONS: [&str; 7] = [
    "solved",
    "failed",
    "no_submission",
    "bad_diff",
    "tests_modified",
    "no_tests",
    "timeout",
];

impl Verdict {
    /// The breakdown key counting this verdict.
    pub fn reason(self) -> &'static str {
        match self {
            Verdict::Solved => "solved",
            Verdict::Failed { .. } => "failed",
            Verdict::NoSubmission => "no_submission",
            Verdict::BadDiff => "bad_diff",
            Verdict::TestsModified => "tests_modified",
            Verdict::NoTests => "no_tests",
            Verdict::Timeout => "timeout",
        }
    }

    /// The reward: 1 when solved, else 0. The breakdown holds a 0/1 entry per verdict
    /// ([`REASONS`]), so summing breakdowns counts each case, and `tests_passed`, the
    /// share of hidden tests that passed (diagnostic only).
    pub fn reward(self) -> Reward {
        let passed = match self {
            Verdict::Solved => 1.0,
            Verdict::Failed { passed, total } if total > 0 => passed as f32 / total as f32,
            _ => 0.0,
        };
        let mut breakdown: Vec<(String, f32)> = REASONS
            .iter()
            .map(|r| (r.to_string(), f32::from(u8::from(*r == self.reason()))))
            .collect();
        breakdown.push(("tests_passed".into(), passed));
        Reward {
            total: if self == Verdict::Solved { 1.0 } else { 0.0 },
            breakdown,
        }
    }
}

/// Whether `path`'s file is a test file: `test*.py`, `*_test.py` or `conftest.py`.
pub fn is_test_path(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path);
    (name.starts_with("test") && name.ends_with(".py"))
        || name.ends_with("_test.py")
        || name == "conftest.py"
}

/// The paths a git diff names in its headers (`diff --git`, `---`/`+++`, renames and
/// copies), unquoted, without the `a/` / `b/` prefixes.
pub fn touched_paths(diff: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in diff.lines() {
        if let Some(rest) = line.strip_prefix("diff --git ") {
            // `a/X b/Y`: unambiguous when X == Y, which --no-renames guarantees; take
            // every token that looks like a path so nothing is missed.
            out.extend(rest.split(' ').map(strip_side));
        } else if let Some(p) = ["--- ", "+++ "].iter().find_map(|m| line.strip_prefix(m)) {
            out.push(strip_side(p.trim_end_matches('\t')));
        } else if let Some(p) = ["rename from ", "rename to ", "copy from ", "copy to "]
            .iter()
            .find_map(|m| line.strip_prefix(m))
        {
            out.push(unquote(p));
        }
    }
    out.retain(|p| !p.is_empty() && p != "/dev/null");
    out.sort();
    out.dedup();
    out
}

fn strip_side(p: &str) -> String {
    let p = unquote(p);
    p.strip_prefix("a/")
        .or_else(|| p.strip_prefix("b/"))
        .map(str::to_string)
        .unwrap_or(p)
}

fn unquote(p: &str) -> String {
    p.strip_prefix('"')
        .and_then(|q| q.strip_suffix('"'))
        .unwrap_or(p)
        .to_string()
}

/// Whether the diff touches a test file, or one of `protected` (the task's visible tests).
pub fn touches_tests(diff: &str, protected: &[String]) -> bool {
    touched_paths(diff)
        .iter()
        .any(|p| is_test_path(p) || protected.iter().any(|t| p.contains(t.as_str())))
}

/// The hidden runner's report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HiddenReport {
    /// Tests run.
    pub ran: u32,
    /// Assertion failures.
    pub failures: u32,
    /// Errors (the code under test raised, or did not import).
    pub errors: u32,
    /// Skipped tests (a skip is not a pass).
    pub skipped: u32,
}

/// The last `TROUPE-HIDDEN ...` line of `stdout`, if any is well formed.
pub fn parse_report(stdout: &str) -> Option<HiddenReport> {
    let line = stdout
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix(RESULT_MARKER))?;
    let mut fields = [None; 4];
    for part in line.split_whitespace() {
        let (k, v) = part.split_once('=')?;
        let slot = ["ran", "failures", "errors", "skipped"]
            .iter()
            .position(|n| *n == k)?;
        fields[slot] = Some(v.parse().ok()?);
    }
    Some(HiddenReport {
        ran: fields[0]?,
        failures: fields[1]?,
        errors: fields[2]?,
        skipped: fields[3]?,
    })
}

/// The verdict of a hidden run of a suite of `expected` tests.
pub fn judge_run(out: &CommandOutput, expected: u32) -> Verdict {
    if matches!(out.outcome, Outcome::TimedOut | Outcome::CpuLimit) {
        return Verdict::Timeout;
    }
    let Some(report) = parse_report(&out.stdout_text()) else {
        return Verdict::NoTests;
    };
    let bad = report.failures + report.errors + report.skipped;
    if bad == 0 && report.ran < expected {
        return Verdict::NoTests;
    }
    if bad == 0 && out.success() {
        Verdict::Solved
    } else {
        Verdict::Failed {
            passed: report.ran.saturating_sub(bad).min(expected),
            total: expected,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use troupe_sandbox::ExitStatus;

    use super::*;

    fn run(outcome: Outcome, code: i32, stdout: &str) -> CommandOutput {
        CommandOutput {
            outcome,
            status: ExitStatus::Code(code),
            stdout: stdout.as_bytes().to_vec(),
            stderr: Vec::new(),
            stdout_truncated: false,
            stderr_truncated: false,
            wall: Duration::from_millis(1),
        }
    }

    #[test]
    fn rewards_count_each_verdict_once() {
        let verdicts = [
            Verdict::Solved,
            Verdict::Failed {
                passed: 1,
                total: 4,
            },
            Verdict::NoSubmission,
            Verdict::BadDiff,
            Verdict::TestsModified,
            Verdict::NoTests,
            Verdict::Timeout,
        ];
        for v in verdicts {
            let r = v.reward();
            assert_eq!(r.total, f32::from(u8::from(v == Verdict::Solved)));
            let ones: Vec<&str> = r
                .breakdown
                .iter()
                .filter(|(k, x)| *x == 1.0 && k != "tests_passed")
                .map(|(k, _)| k.as_str())
                .collect();
            assert_eq!(ones, vec![v.reason()], "{v:?}");
        }
        let failed = Verdict::Failed {
            passed: 1,
            total: 4,
        }
        .reward();
        assert_eq!(failed.breakdown.last().unwrap().1, 0.25);
    }

    #[test]
    fn hidden_runs_are_judged_by_their_report() {
        let ok = "TROUPE-HIDDEN ran=4 failures=0 errors=0 skipped=0\n";
        assert_eq!(judge_run(&run(Outcome::Exited, 0, ok), 4), Verdict::Solved);
        // A forged early line does not count; the last report does.
        let two = format!("{ok}TROUPE-HIDDEN ran=4 failures=1 errors=0 skipped=0\n");
        assert_eq!(
            judge_run(&run(Outcome::Exited, 1, &two), 4),
            Verdict::Failed {
                passed: 3,
                total: 4
            }
        );
        // Exiting 0 without a report (os._exit at import), or running fewer tests.
        assert_eq!(judge_run(&run(Outcome::Exited, 0, ""), 4), Verdict::NoTests);
        let fewer = "TROUPE-HIDDEN ran=0 failures=0 errors=0 skipped=0\n";
        assert_eq!(
            judge_run(&run(Outcome::Exited, 0, fewer), 4),
            Verdict::NoTests
        );
        let skipped = "TROUPE-HIDDEN ran=4 failures=0 errors=0 skipped=4\n";
        assert_eq!(
            judge_run(&run(Outcome::Exited, 0, skipped), 4),
            Verdict::Failed {
                passed: 0,
                total: 4
            }
        );
        let import_error = "TROUPE-HIDDEN ran=0 failures=0 errors=1 skipped=0\n";
        assert!(matches!(
            judge_run(&run(Outcome::Exited, 1, import_error), 4),
            Verdict::Failed { passed: 0, .. }
        ));
        assert_eq!(
            judge_run(&run(Outcome::TimedOut, 137, ok), 4),
            Verdict::Timeout
        );
        assert_eq!(
            judge_run(&run(Outcome::CpuLimit, 152, ""), 4),
            Verdict::Timeout
        );
        assert_eq!(parse_report("TROUPE-HIDDEN ran=x"), None);
        assert_eq!(parse_report("TROUPE-HIDDEN ran=1 bogus=2"), None);
    }

    #[test]
    fn diffs_touching_tests_are_caught() {
        let code = "diff --git a/geometry.py b/geometry.py\nindex 1..2 100644\n--- a/geometry.py\n+++ b/geometry.py\n@@ -1 +1 @@\n-a\n+b\n";
        let tests = vec!["test_geometry.py".to_string()];
        assert_eq!(touched_paths(code), vec!["geometry.py"]);
        assert!(!touches_tests(code, &tests));
        let visible = code.replace("geometry.py", "test_geometry.py");
        assert!(touches_tests(&visible, &tests));
        let new_test = "diff --git a/tests/test_x.py b/tests/test_x.py\nnew file mode 100644\n--- /dev/null\n+++ b/tests/test_x.py\n";
        assert!(touches_tests(new_test, &[]));
        let conftest = "diff --git a/conftest.py b/conftest.py\ndeleted file mode 100644\n--- a/conftest.py\n+++ /dev/null\n";
        assert!(touches_tests(conftest, &[]));
        let renamed = "diff --git a/test_geometry.py b/old.py\nsimilarity index 100%\nrename from test_geometry.py\nrename to old.py\n";
        assert!(touches_tests(renamed, &tests));
        let quoted =
            "diff --git \"a/t est.py\" \"b/t est.py\"\n--- \"a/t est.py\"\n+++ \"b/t est.py\"\n";
        assert!(touched_paths(quoted).contains(&"t est.py".to_string()));
        assert!(!is_test_path("contest.py") && is_test_path("a/b_test.py"));
    }
}
