//! The expert: a stand-in for a stronger model that writes seed trajectories.

use std::io::Write;
use std::path::Path;

use troupe_core::TaskSpec;

use crate::{EnvError, TaskSource};

/// Solves a digit task from its prompt text alone (it never reads `task.answer`).
///
/// `sort <digits>` gives the digits ascending; `<a>+<b>` gives the decimal sum, of any
/// length. A prompt of neither shape gets an empty answer.
pub fn expert_solve(task: &TaskSpec) -> String {
    let prompt = task.prompt.trim();
    if let Some(digits) = prompt.strip_prefix("sort ") {
        let mut d: Vec<char> = digits.chars().filter(char::is_ascii_digit).collect();
        d.sort_unstable();
        return d.into_iter().collect();
    }
    match prompt.split_once('+') {
        Some((a, b)) => add_decimal(a.trim(), b.trim()).unwrap_or_default(),
        None => String::new(),
    }
}

/// Schoolbook addition of two non-empty decimal strings; `None` if either is not one.
fn add_decimal(a: &str, b: &str) -> Option<String> {
    let is_number = |s: &str| !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit());
    if !is_number(a) || !is_number(b) {
        return None;
    }
    let (mut a, mut b) = (a.bytes().rev(), b.bytes().rev());
    let mut out = Vec::new();
    let mut carry = 0;
    loop {
        let (x, y) = (a.next(), b.next());
        if x.is_none() && y.is_none() {
            break;
        }
        let s = x.map_or(0, |c| c - b'0') + y.map_or(0, |c| c - b'0') + carry;
        out.push(b'0' + s % 10);
        carry = s / 10;
    }
    if carry > 0 {
        out.push(b'0' + carry);
    }
    while out.len() > 1 && out.last() == Some(&b'0') {
        out.pop();
    }
    out.reverse();
    String::from_utf8(out).ok()
}

/// Writes `n` expert-solved training tasks from `source` to `path` as chat JSONL:
/// `{"messages":[{"role":"user","content":…},{"role":"assistant","content":…}]}`.
pub fn write_seed_trajectories(
    path: &Path,
    source: &mut TaskSource,
    n: usize,
) -> Result<(), EnvError> {
    let io = |source| EnvError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::create(path).map_err(io)?;
    let mut w = std::io::BufWriter::new(file);
    for _ in 0..n {
        let task = source.next_train();
        let line = serde_json::json!({
            "messages": [
                {"role": "user", "content": task.prompt},
                {"role": "assistant", "content": expert_solve(&task)},
            ]
        });
        writeln!(w, "{line}").map_err(io)?;
    }
    w.flush().map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{TaskConfig, TaskFamily, read_seed_trajectories, verify};

    #[test]
    fn expert_matches_the_reference_answer() {
        for family in [TaskFamily::Sort, TaskFamily::Add] {
            let cfg = TaskConfig {
                family,
                min_digits: 1,
                max_digits: 12,
                heldout_per_mille: 100,
            };
            let mut s = TaskSource::new(cfg, 17).unwrap();
            for _ in 0..1000 {
                let t = s.next_train();
                let blind = TaskSpec {
                    answer: String::new(),
                    ..t.clone()
                };
                let got = expert_solve(&blind);
                assert_eq!(got, t.answer, "{}", t.prompt);
                assert_eq!(verify(&t, &got).total, 1.0);
            }
        }
    }

    #[test]
    fn decimal_addition_edge_cases() {
        assert_eq!(add_decimal("0", "0").as_deref(), Some("0"));
        assert_eq!(
            add_decimal("999999999999", "1").as_deref(),
            Some("1000000000000")
        );
        assert_eq!(
            add_decimal("99999999999999999999999", "1").as_deref(),
            Some("100000000000000000000000")
        );
        assert_eq!(add_decimal("", "1"), None);
        assert_eq!(add_decimal("1a", "1"), None);
    }

    #[test]
    fn unknown_prompts_get_an_empty_answer() {
        let t = TaskSpec {
            id: 0,
            prompt: "hello".into(),
            answer: "x".into(),
            difficulty: 0,
        };
        assert_eq!(expert_solve(&t), "");
    }

    #[test]
    fn written_seeds_parse_back() {
        let path =
            std::env::temp_dir().join(format!("troupe-env-seeds-{}.jsonl", std::process::id()));
        let mut s = TaskSource::new(TaskConfig::default(), 3).unwrap();
        write_seed_trajectories(&path, &mut s, 50).unwrap();
        let set = read_seed_trajectories(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert!(set.rejected.is_empty(), "{:?}", set.rejected);
        assert_eq!(set.conversations.len(), 50);
        let first = &set.conversations[0];
        assert!(first.prompt().unwrap().starts_with("sort "));
        assert_eq!(first.messages.len(), 2);
    }

    #[test]
    fn unwritable_path_is_an_io_error_naming_it() {
        let path = std::env::temp_dir()
            .join("troupe-env-no-such-dir")
            .join("x")
            .join("seeds.jsonl");
        let mut s = TaskSource::new(TaskConfig::default(), 3).unwrap();
        let err = write_seed_trajectories(&path, &mut s, 1).unwrap_err();
        assert!(matches!(err, EnvError::Io { .. }));
        assert!(err.to_string().contains("seeds.jsonl"), "{err}");
    }
}
