use std::collections::HashSet;

use super::*;
use crate::{TaskConfig, TaskFamily, TaskSource};

fn keys(per_family: u64) -> impl Iterator<Item = TaskKey> {
    BugFamily::ALL
        .into_iter()
        .flat_map(move |family| (0..per_family).map(move |seed| TaskKey { family, seed }))
}

#[test]
fn generation_is_deterministic_and_varied() {
    let mut issues = HashSet::new();
    let mut fragments = HashSet::new();
    for key in keys(40) {
        let task = generate(key);
        assert_eq!(generate(key), task);
        issues.insert(task.issue.clone());
        fragments.insert(task.fix.buggy.clone());
    }
    assert!(
        issues.len() > 250,
        "only {} distinct issues of 280",
        issues.len()
    );
    // Variables are renamed per task, so fragments cannot be learnt by heart.
    assert!(
        fragments.len() > 200,
        "only {} distinct faulty fragments of 280",
        fragments.len()
    );
}

#[test]
fn about_half_of_training_tasks_are_formulas_and_no_heldout_task_is() {
    let is_formula = |t: &CodefixTask| {
        let named = formula::NAMES
            .iter()
            .any(|n| t.issue.starts_with(&format!("Bug: {n}(")));
        assert_eq!(named, t.formula, "{}", t.issue);
        t.formula
    };
    let mut formulas = 0;
    for key in keys(100) {
        let t = generate(key);
        if key.family.split() == Split::Heldout {
            assert!(!is_formula(&t), "{}", t.issue);
        } else if is_formula(&t) {
            formulas += 1;
            // One line, `return <formula>`, carries the bug.
            let module = t.files.iter().find(|f| f.path == t.fix.file).unwrap();
            let line = module.contents.lines().nth(t.fix.line - 1).unwrap();
            assert_eq!(line, format!("    return {}", t.fix.buggy), "{key:?}");
        }
    }
    assert!(
        (140..=260).contains(&formulas),
        "{formulas} formulas of 400"
    );
}

#[test]
fn keys_round_trip_and_bad_keys_are_errors() {
    let key = TaskKey {
        family: BugFamily::OffByOne,
        seed: 42,
    };
    assert_eq!(key.to_answer(), "codefix/off_by_one/42");
    assert_eq!(TaskKey::parse(&key.to_answer()).unwrap(), key);
    for bad in [
        "codefix/off_by_one",
        "codefix/nope/1",
        "codefix/off_by_one/x",
        "sort/1/2",
    ] {
        let err = TaskKey::parse(bad).unwrap_err();
        assert!(matches!(err, EnvError::TaskKey { .. }), "{bad}: {err}");
    }
    let spec = generate(key).spec(9);
    assert_eq!(spec.id, 9);
    assert_eq!(TaskKey::of_task(&spec).unwrap().unwrap(), key);
    let digits = TaskSpec {
        id: 0,
        prompt: "sort 21".into(),
        answer: "12".into(),
        difficulty: 2,
    };
    assert!(TaskKey::of_task(&digits).is_none());
}

#[test]
fn every_task_has_one_locatable_bug_and_its_fix() {
    for key in keys(60) {
        let t = generate(key);
        let at = |path: &str| t.files.iter().find(|f| f.path == path);
        let module = at(&t.fix.file).expect("fix file exists");
        let hits: usize = t
            .files
            .iter()
            .map(|f| f.contents.matches(&t.fix.buggy).count())
            .sum();
        assert_eq!(hits, 1, "{key:?}: {:?} appears {hits} times", t.fix.buggy);
        let line = module.contents.lines().nth(t.fix.line - 1).unwrap();
        assert!(
            line.contains(&t.fix.buggy),
            "{key:?}: line {} is {line:?}",
            t.fix.line
        );
        assert!(
            t.issue.contains(&format!(
                "Fix: `{}` should be `{}`.",
                t.fix.buggy, t.fix.correct
            )),
            "{}",
            t.issue
        );
        assert!(
            t.issue.starts_with("Bug: ") && t.issue.len() < 160,
            "{}",
            t.issue
        );
        assert_eq!(t.hidden_test_count, FUNCTIONS);
        assert_eq!(t.hidden_tests.matches("    def test_").count(), FUNCTIONS);
        assert_eq!(t.visible_tests.len(), 2);
        for v in &t.visible_tests {
            assert!(at(v).is_some() && crate::codefix::is_test_path(v));
        }
        assert!(
            !t.files.iter().any(|f| f.contents.contains("hidden")),
            "hidden tests leak into the repository"
        );
    }
}

#[test]
fn issues_are_split_by_their_family() {
    for key in keys(60) {
        let t = generate(key);
        let split = split_of_issue(&t.issue);
        if key.family.split() == Split::Heldout {
            assert_eq!(split, Split::Heldout, "{key:?}: {}", t.issue);
        }
    }
    // Every training issue reads as training: template sites by pattern, formulas by
    // parsing.
    for key in keys(60).filter(|k| k.family.split() == Split::Train) {
        let issue = generate(key).issue;
        assert_eq!(split_of_issue(&issue), Split::Train, "{key:?}: {issue}");
    }
    assert_eq!(split_of_issue("sort 123"), Split::Heldout);
    assert!(pattern_matches(&["x * {k}"], &["x * 12"]));
    assert!(pattern_matches(&["x * {k}"], &["y * 3"]));
    assert!(pattern_matches(&["age >= {k2}"], &["level >= 7"]));
    assert!(!pattern_matches(&["x * {k}"], &["x * "]));
    assert!(!pattern_matches(&["x * {k}"], &["x * 3 + 1"]));
    assert!(!pattern_matches(&["x * {k}"], &["x * y"]));
    // One renaming for both fragments, one-to-one, builtins kept.
    assert!(pattern_matches(&["w * h", "w * w"], &["a * b", "a * a"]));
    assert!(!pattern_matches(&["w * h", "w * w"], &["a * b", "b * b"]));
    assert!(!pattern_matches(&["w * h"], &["a * a"]));
    assert!(!pattern_matches(&["sum(xs)"], &["len(xs)"]));
    assert!(!pattern_matches(&["x < lo"], &["x < range"]));
}

#[test]
fn task_source_keeps_the_families_apart() {
    let cfg = TaskConfig {
        family: TaskFamily::Codefix,
        ..TaskConfig::default()
    };
    let mut source = TaskSource::new(cfg.clone(), 5).unwrap();
    for _ in 0..200 {
        let t = source.next_train();
        let key = TaskKey::of_task(&t).unwrap().unwrap();
        assert_eq!(key.family.split(), Split::Train);
        assert_eq!(generate(key).issue, t.prompt);
    }
    let heldout = source.heldout(60);
    assert_eq!(heldout.len(), 60);
    let families: HashSet<BugFamily> = heldout
        .iter()
        .map(|t| TaskKey::of_task(t).unwrap().unwrap().family)
        .collect();
    assert_eq!(
        families,
        BugFamily::of_split(Split::Heldout).into_iter().collect()
    );
    let prompts: HashSet<&str> = heldout.iter().map(|t| t.prompt.as_str()).collect();
    assert_eq!(prompts.len(), 60);
    assert!(
        heldout
            .iter()
            .all(|t| cfg.split_of(&t.prompt) == Split::Heldout)
    );
}
