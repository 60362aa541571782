use std::collections::HashSet;

use super::*;

fn cfg(family: TaskFamily) -> TaskConfig {
    TaskConfig {
        family,
        ..TaskConfig::default()
    }
}

#[test]
fn default_config() {
    let c = TaskConfig::default();
    assert_eq!(
        (c.family, c.min_digits, c.max_digits, c.heldout_per_mille),
        (TaskFamily::Sort, 3, 6, 100)
    );
}

#[test]
fn config_deserialises_and_rejects_unknown_keys() {
    let c: TaskConfig = serde_json::from_str(r#"{"family":"add","max_digits":4}"#).unwrap();
    assert_eq!(
        c,
        TaskConfig {
            family: TaskFamily::Add,
            max_digits: 4,
            ..TaskConfig::default()
        }
    );
    let err = serde_json::from_str::<TaskConfig>(r#"{"famly":"add"}"#).unwrap_err();
    assert!(err.to_string().contains("famly"), "{err}");
    assert!(serde_json::from_str::<TaskConfig>(r#"{"family":"mul"}"#).is_err());
    let calc: TaskConfig = serde_json::from_str(r#"{"family":"calc"}"#).unwrap();
    assert_eq!(calc.family, TaskFamily::Calc);
}

#[test]
fn invalid_configs_name_the_key() {
    let cases = [
        (
            TaskConfig {
                min_digits: 0,
                ..TaskConfig::default()
            },
            "min_digits",
        ),
        (
            TaskConfig {
                max_digits: 13,
                ..TaskConfig::default()
            },
            "max_digits",
        ),
        (
            TaskConfig {
                min_digits: 5,
                max_digits: 4,
                ..TaskConfig::default()
            },
            "max_digits",
        ),
        (
            TaskConfig {
                heldout_per_mille: 0,
                ..TaskConfig::default()
            },
            "heldout_per_mille",
        ),
        (
            TaskConfig {
                heldout_per_mille: 501,
                ..TaskConfig::default()
            },
            "heldout_per_mille",
        ),
    ];
    for (c, want) in cases {
        match TaskSource::new(c, 1) {
            Err(e @ EnvError::Config { key, .. }) => {
                assert_eq!(key, want);
                assert!(e.to_string().contains(want), "{e}");
            }
            other => panic!("expected a config error for {want}, got {other:?}"),
        }
    }
}

#[test]
fn sort_tasks_have_the_documented_shape() {
    let mut s = TaskSource::new(cfg(TaskFamily::Sort), 7).unwrap();
    for _ in 0..1000 {
        let t = s.next_train();
        let digits = t.prompt.strip_prefix("sort ").unwrap();
        assert!((3..=6).contains(&digits.len()));
        assert!(digits.bytes().all(|b| b.is_ascii_digit()));
        assert_eq!(t.difficulty as usize, digits.len());
        let mut sorted: Vec<u8> = digits.bytes().collect();
        sorted.sort();
        assert_eq!(t.answer.as_bytes(), sorted);
    }
}

#[test]
fn add_tasks_have_the_documented_shape() {
    let c = TaskConfig {
        family: TaskFamily::Add,
        min_digits: 1,
        max_digits: 12,
        heldout_per_mille: 100,
    };
    let mut s = TaskSource::new(c, 7).unwrap();
    for _ in 0..1000 {
        let t = s.next_train();
        let (a, b) = t.prompt.split_once('+').unwrap();
        for op in [a, b] {
            assert!((1..=12).contains(&op.len()));
            assert!(op == "0" || !op.starts_with('0'), "leading zero in {op}");
        }
        assert_eq!(t.difficulty as usize, a.len().max(b.len()));
        let sum = a.parse::<u64>().unwrap() + b.parse::<u64>().unwrap();
        assert_eq!(t.answer, sum.to_string());
    }
}

#[test]
fn train_stream_never_contains_heldout_and_ids_increase() {
    for family in [TaskFamily::Sort, TaskFamily::Add, TaskFamily::Calc] {
        let mut s = TaskSource::new(cfg(family), 3).unwrap();
        let mut last = None;
        for i in 0..20_000u64 {
            let t = s.next_train();
            assert_eq!(split_of(&t.prompt, 100), Split::Train, "{}", t.prompt);
            assert_eq!(t.id, FIRST_TRAIN_ID + i);
            assert!(last.is_none_or(|l| t.id > l));
            last = Some(t.id);
        }
    }
}

#[test]
fn heldout_is_fixed_by_the_config_alone() {
    for family in [TaskFamily::Sort, TaskFamily::Add, TaskFamily::Calc] {
        let a = TaskSource::new(cfg(family), 1).unwrap().heldout(500);
        let mut other = TaskSource::new(cfg(family), 999).unwrap();
        other.next_train();
        let b = other.heldout(500);
        assert_eq!(a, b);
        assert_eq!(a.len(), 500);
        let prompts: HashSet<_> = a.iter().map(|t| t.prompt.as_str()).collect();
        assert_eq!(prompts.len(), 500);
        for (i, t) in a.iter().enumerate() {
            assert_eq!(t.id, i as u64);
            assert_eq!(split_of(&t.prompt, 100), Split::Heldout);
        }
    }
}

#[test]
fn heldout_stops_when_the_range_is_exhausted() {
    let c = TaskConfig {
        min_digits: 1,
        max_digits: 1,
        heldout_per_mille: 500,
        ..TaskConfig::default()
    };
    let s = TaskSource::new(c, 1).unwrap();
    let h = s.heldout(100);
    assert!(h.len() < 10);
    assert!(h.iter().all(|t| split_of(&t.prompt, 500) == Split::Heldout));
}

#[test]
fn same_seed_same_stream_different_seed_different_stream() {
    let draw = |seed| {
        let mut s = TaskSource::new(cfg(TaskFamily::Add), seed).unwrap();
        (0..200).map(|_| s.next_train()).collect::<Vec<_>>()
    };
    assert_eq!(draw(5), draw(5));
    assert_ne!(draw(5), draw(6));
}

#[test]
fn state_round_trips_through_json_and_resumes_the_stream() {
    let mut s = TaskSource::new(cfg(TaskFamily::Sort), 11).unwrap();
    for _ in 0..37 {
        s.next_train();
    }
    let json = serde_json::to_string(&s.state()).unwrap();
    let state: TaskSourceState = serde_json::from_str(&json).unwrap();
    let mut resumed = TaskSource::restore(cfg(TaskFamily::Sort), state).unwrap();
    for _ in 0..100 {
        assert_eq!(s.next_train(), resumed.next_train());
    }
}

#[test]
fn heldout_fraction_matches_the_configured_share() {
    for per_mille in [50, 100, 300] {
        let mut rng = ChaCha8Rng::seed_from_u64(42);
        let c = TaskConfig {
            family: TaskFamily::Add,
            min_digits: 1,
            max_digits: 12,
            heldout_per_mille: per_mille,
        };
        let n = 20_000;
        let held = (0..n)
            .filter(|_| split_of(&draw(&c, &mut rng).prompt, per_mille) == Split::Heldout)
            .count();
        let frac = held as f64 / n as f64;
        let want = f64::from(per_mille) / 1000.0;
        assert!(
            (frac - want).abs() < 0.03,
            "per_mille {per_mille}: got {frac}"
        );
    }
}
