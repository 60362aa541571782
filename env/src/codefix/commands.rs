//! The fixed commands the env host and the judge run in the sandbox, as argument vectors
//! (no host shell ever sees them). Untrusted text (the agent's command, edit fragments,
//! the diff, the hidden tests) only ever travels as an argument or a file in the
//! sandboxed repository.

/// Where the judge writes the diff in its copy of the repository before applying it.
pub(crate) const DIFF_FILE: &str = ".troupe-submission.diff";

/// Marker of the hidden runner's result line.
pub(crate) const RESULT_MARKER: &str = "TROUPE-HIDDEN";

fn sh(script: &str) -> Vec<String> {
    vec!["/bin/sh".into(), "-c".into(), script.into()]
}

/// The first commit of a freshly written task repository.
pub(crate) fn init_repo() -> Vec<String> {
    sh("git init -q && git add -A && git commit -q --no-verify -m task")
}

/// The agent's `<sh>` command.
pub(crate) fn shell(cmd: &str) -> Vec<String> {
    sh(cmd)
}

/// The `<edit FILE:LINE>OLD => NEW</edit>` action: a literal replacement of the first
/// `OLD` on line `LINE` (awk `index`/`substr`, no patterns), then the edited line is
/// printed as `FILE:LINE:TEXT` (the shape of `git grep -n` output). Prints
/// `error: ...` and exits 1 when the file or the text is not there.
const EDIT: &str = r#"f=$1 n=$2
case $f in -*) f="./$f" ;; esac
[ -f "$f" ] || { echo "error: $f: no such file"; exit 1; }
awk -v n="$n" 'BEGIN { old = ARGV[2]; new = ARGV[3]; ARGV[2] = ""; ARGV[3] = "" }
NR == n + 0 { i = index($0, old); if (i) { $0 = substr($0, 1, i - 1) new substr($0, i + length(old)); hit = 1 } }
{ print }
END { exit hit ? 0 : 3 }' "$f" "$3" "$4" > "$f.troupe-edit"
if [ $? -ne 0 ]; then rm -f "$f.troupe-edit"; echo "error: \`$3\` is not on line $n of $f"; exit 1; fi
cat "$f.troupe-edit" > "$f" && rm -f "$f.troupe-edit"
printf '%s:%s:' "$f" "$n"; sed -n "${n}p" "$f""#;

/// The edit action's command.
pub(crate) fn edit(file: &str, line: usize, old: &str, new: &str) -> Vec<String> {
    let mut argv = sh(EDIT);
    argv.extend([
        "edit".into(),
        file.into(),
        line.to_string(),
        old.into(),
        new.into(),
    ]);
    argv
}

/// Everything the episode changed, new files included, as one binary-safe diff.
pub(crate) fn diff() -> Vec<String> {
    sh(
        "git add -A && git -c core.quotepath=off diff --cached --no-color --no-ext-diff \
        --no-textconv --no-renames --binary HEAD",
    )
}

/// Applies [`DIFF_FILE`] to the judge's copy of the repository, then removes it.
pub(crate) fn apply() -> Vec<String> {
    sh(&format!(
        "git apply --whitespace=nowarn {DIFF_FILE} && rm -f {DIFF_FILE}"
    ))
}

/// Runs the hidden tests against the repository at `repo` and prints
/// `TROUPE-HIDDEN ran=N failures=F errors=E skipped=S`. The test source travels as an
/// argument, never as a file the repository could shadow or change; `-I` keeps the
/// repository off the front of `sys.path` (it is appended, so the standard library
/// wins over same-named repository files), `-B` writes no bytecode.
const RUNNER: &str = r#"import io, sys, types, unittest
sys.path.append(sys.argv[1])
module = types.ModuleType("hidden_tests")
try:
    exec(compile(sys.argv[2], "hidden_tests.py", "exec"), module.__dict__)
except BaseException:
    sys.stdout.write("TROUPE-HIDDEN ran=0 failures=0 errors=1 skipped=0\n")
    sys.stdout.flush()
    sys.exit(1)
suite = unittest.defaultTestLoader.loadTestsFromModule(module)
result = unittest.TextTestRunner(stream=io.StringIO(), verbosity=0).run(suite)
sys.stdout.write("TROUPE-HIDDEN ran=%d failures=%d errors=%d skipped=%d\n" % (
    result.testsRun, len(result.failures), len(result.errors), len(result.skipped)))
sys.stdout.flush()
sys.exit(0 if result.wasSuccessful() else 1)
"#;

/// The hidden-test run.
pub(crate) fn hidden(repo: &str, source: &str) -> Vec<String> {
    ["python3", "-I", "-B", "-c", RUNNER, repo, source]
        .map(String::from)
        .to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn untrusted_text_travels_as_arguments() {
        let argv = edit("a.py", 3, "x'; rm -rf /; '", "$(id)");
        assert_eq!(argv[..2], ["/bin/sh".to_string(), "-c".to_string()]);
        assert_eq!(argv[3..], ["edit", "a.py", "3", "x'; rm -rf /; '", "$(id)"]);
        assert!(RUNNER.contains(RESULT_MARKER));
        let h = hidden("/repo", "import os");
        assert_eq!(h.last().map(String::as_str), Some("import os"));
        assert!(apply()[2].contains(DIFF_FILE));
    }
}
