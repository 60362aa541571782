//! The code-fixing environment against real sandboxes, real git and real Python: the
//! expert solves every family (template and formula tasks), the hidden tests fail on the buggy code and pass on the
//! fixed code, each integrity rule earns 0 under its own counter, and abusive agent
//! commands leave the env host working. Like the sandbox's tests, these need root and
//! bubblewrap (an env host's requirements).

use troupe_core::{Reward, TaskSpec};
use troupe_env::codefix::{
    BugFamily, CodefixConfig, CodefixHost, CodefixJudge, TaskKey, expert_episode, generate,
};
use troupe_env::{Role, Split};

fn config() -> CodefixConfig {
    CodefixConfig {
        command_timeout_ms: 5_000,
        judge_timeout_ms: 3_000,
        ..CodefixConfig::default()
    }
}

fn spec(family: BugFamily, seed: u64) -> TaskSpec {
    generate(TaskKey { family, seed }).spec(seed)
}

fn counter(r: &Reward, key: &str) -> f32 {
    r.breakdown
        .iter()
        .find(|(k, _)| k == key)
        .map_or_else(|| panic!("no {key} in {r:?}"), |(_, v)| *v)
}

/// Plays `actions` as the policy; returns the observations and the submission.
async fn play(
    host: &CodefixHost,
    episode: u64,
    task: &TaskSpec,
    actions: &[&str],
) -> (Vec<String>, Option<String>) {
    assert_eq!(host.reset(episode, task).await.unwrap(), task.prompt);
    let mut seen = Vec::new();
    for a in actions {
        let out = host.step(episode, a).await.unwrap();
        if out.done {
            return (seen, out.submission);
        }
        seen.push(out.observation.expect("a live episode observes").text);
    }
    (seen, Some(host.finish(episode).await.unwrap()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_expert_solves_every_family_and_the_untouched_repository_fails() {
    let cfg = config();
    let host = CodefixHost::new(cfg.clone(), 64).await.unwrap();
    let judge = CodefixJudge::new(&cfg).await.unwrap();
    let mut set = tokio::task::JoinSet::new();
    for (i, family) in BugFamily::ALL.into_iter().enumerate() {
        // Seeds 0 and 1, and for a training family its first formula task too.
        let formula = (0..100).find(|&seed| generate(TaskKey { family, seed }).formula);
        assert_eq!(
            formula.is_some(),
            family.split() == Split::Train,
            "{family}"
        );
        let mut seeds = vec![0, 1];
        seeds.extend(formula.filter(|s| *s > 1));
        for seed in seeds {
            let (host, judge) = (host.clone(), judge.clone());
            set.spawn(async move {
                let task = spec(family, seed);
                let episode = (i * 1000) as u64 + seed;
                let (turns, diff) = expert_episode(&host, episode, &task).await.unwrap();
                let solved = judge.judge(&task, &diff).await.unwrap();
                let untouched = judge.judge(&task, "").await.unwrap();
                (family, turns, diff, solved, untouched, task.answer)
            });
        }
    }
    while let Some(joined) = set.join_next().await {
        let (family, turns, diff, solved, untouched, answer) = joined.unwrap();
        let transcript: Vec<String> = turns.iter().map(|(r, t)| format!("{r}: {t}")).collect();
        let transcript = transcript.join("\n");
        assert_eq!(
            solved.total, 1.0,
            "{family}: {solved:?}\n{transcript}\n{diff}"
        );
        assert_eq!(counter(&solved, "solved"), 1.0);
        assert_eq!(
            untouched.total, 0.0,
            "{family}: the bug does not fail the hidden tests"
        );
        assert_eq!(counter(&untouched, "failed"), 1.0, "{untouched:?}");
        assert!(counter(&untouched, "tests_passed") < 1.0);
        // grep, edit, submit: the last observation is the corrected line.
        assert_eq!(turns.len(), 6, "{transcript}");
        let fix = generate(TaskKey::parse(&answer).unwrap()).fix;
        let (role, seen) = &turns[4];
        assert_eq!(*role, Role::User);
        assert!(
            seen.starts_with(&format!("{}:{}:", fix.file, fix.line)) && seen.contains(&fix.correct),
            "{transcript}"
        );
        assert!(
            diff.starts_with("diff --git ") && diff.lines().count() < 20,
            "{diff}"
        );
    }
    assert_eq!(host.live(), 0, "finished episodes free their slots");
}

/// Every family's hidden tests, run by Python on many generated repositories: each fails
/// on the buggy code and passes once the fix line is corrected. One Python process runs
/// them all (module caches cleared between repositories).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hidden_tests_fail_before_and_pass_after_the_fix_across_many_tasks() {
    const DRIVER: &str = r#"
import io, json, os, sys, types, unittest
out = []
for case in json.load(open("manifest.json")):
    sys.path.insert(0, os.path.abspath(case["dir"]))
    for m in case["modules"]:
        sys.modules.pop(m, None)
    mod = types.ModuleType("hidden")
    exec(compile(case["hidden"], "hidden.py", "exec"), mod.__dict__)
    suite = unittest.defaultTestLoader.loadTestsFromModule(mod)
    r = unittest.TextTestRunner(stream=io.StringIO()).run(suite)
    out.append([case["dir"], r.testsRun, r.wasSuccessful()])
    sys.path.pop(0)
print(json.dumps(out))
"#;
    let repo = tempfile::tempdir().unwrap();
    let mut manifest = Vec::new();
    let mut expected = Vec::new();
    for family in BugFamily::ALL {
        for seed in 100..125 {
            let task = generate(TaskKey { family, seed });
            for fixed in [false, true] {
                let dir = format!("{}-{seed}-{}", family.name(), u8::from(fixed));
                let root = repo.path().join(&dir);
                std::fs::create_dir_all(&root).unwrap();
                let mut modules = Vec::new();
                for f in &task.files {
                    let mut text = f.contents.clone();
                    if fixed && f.path == task.fix.file {
                        text = text.replacen(&task.fix.buggy, &task.fix.correct, 1);
                    }
                    std::fs::write(root.join(&f.path), text).unwrap();
                    if let Some(m) = f.path.strip_suffix(".py") {
                        modules.push(m.to_string());
                    }
                }
                manifest.push(serde_json::json!({
                    "dir": dir, "modules": modules, "hidden": task.hidden_tests,
                }));
                expected.push((dir, task.hidden_test_count, fixed));
            }
        }
    }
    std::fs::write(
        repo.path().join("manifest.json"),
        serde_json::to_string(&manifest).unwrap(),
    )
    .unwrap();
    let sandbox = troupe_sandbox::Sandbox::new(config().judge_policy()).unwrap();
    let cmd = ["python3", "-B", "-c", DRIVER].map(String::from);
    let out = sandbox.run(&cmd, repo.path()).await.unwrap();
    assert!(out.success(), "{}", out.stderr_text());
    let results: Vec<(String, usize, bool)> = serde_json::from_str(&out.stdout_text()).unwrap();
    assert_eq!(results.len(), expected.len());
    for ((dir, ran, passed), (want_dir, count, fixed)) in results.into_iter().zip(expected) {
        assert_eq!(dir, want_dir);
        assert_eq!(ran, count, "{dir}");
        assert_eq!(passed, fixed, "{dir}: hidden tests passed = {passed}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn integrity_cases_earn_nothing_and_are_counted() {
    let cfg = config();
    let host = CodefixHost::new(cfg.clone(), 16).await.unwrap();
    let judge = CodefixJudge::new(&cfg).await.unwrap();
    let task = spec(BugFamily::WrongOperator, 3);
    let fix = generate(TaskKey::parse(&task.answer).unwrap()).fix;
    let edit = format!(
        "<edit {}:{}>{} => {}</edit>",
        fix.file, fix.line, fix.buggy, fix.correct
    );
    let cases = [
        // A correct fix plus a weakened visible test.
        (
            "<sh>sed -i 's/assertEqual/assertNotEqual/' test_*.py</sh>".to_string(),
            "tests_modified",
        ),
        // A correct fix, and the module ends the interpreter "successfully" on import,
        // so no test ever reports.
        (
            format!(
                "<sh>printf 'import os\\nos._exit(0)\\n' >> {}</sh>",
                fix.file
            ),
            "no_tests",
        ),
        // A correct fix, and the module never finishes importing.
        (
            format!(
                "<sh>printf 'while True:\\n    pass\\n' >> {}</sh>",
                fix.file
            ),
            "timeout",
        ),
    ];
    for (i, (cheat, reason)) in cases.iter().enumerate() {
        let (_, diff) = play(&host, 100 + i as u64, &task, &[&edit, cheat, "<submit/>"]).await;
        let diff = diff.unwrap();
        assert!(diff.contains(&fix.correct), "{diff}");
        let reward = judge.judge(&task, &diff).await.unwrap();
        assert_eq!(reward.total, 0.0, "{reason}: {reward:?}\n{diff}");
        assert_eq!(counter(&reward, reason), 1.0, "{reason}: {reward:?}");
        assert_eq!(counter(&reward, "solved"), 0.0);
    }
    // The same fix alone is solved: the cheats, not the fix, cost the reward.
    let (_, diff) = play(&host, 200, &task, &[&edit, "<submit/>"]).await;
    assert_eq!(judge.judge(&task, &diff.unwrap()).await.unwrap().total, 1.0);
    // A diff that does not apply, and an episode cut off before the host diffed it.
    let bad = judge
        .judge(
            &task,
            "diff --git a/x.py b/x.py\n--- a/x.py\n+++ b/x.py\n@@ -1 +1 @@\n-nothing\n+here\n",
        )
        .await
        .unwrap();
    assert_eq!(counter(&bad, "bad_diff"), 1.0, "{bad:?}");
    let cut = judge.judge(&task, "<sh>git grep -n x</sh>").await.unwrap();
    assert_eq!(counter(&cut, "no_submission"), 1.0, "{cut:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abusive_commands_leave_the_env_host_working() {
    let mut cfg = config();
    cfg.command_timeout_ms = 3_000;
    cfg.max_turns = 12;
    let host = CodefixHost::new(cfg.clone(), 16).await.unwrap();
    let judge = CodefixJudge::new(&cfg).await.unwrap();
    // A bystander episode, started before the abuse, must come through unharmed.
    let bystander = spec(BugFamily::WrongConstant, 11);
    host.reset(1, &bystander).await.unwrap();

    let abuser = spec(BugFamily::SwappedOperands, 12);
    let (seen, diff) = play(
        &host,
        2,
        &abuser,
        &[
            "<sh>cat /etc/shadow</sh>",
            "<sh>ls /root /home /run 2>&1 | head -3</sh>",
            "<sh>kill -9 -1; echo survived</sh>",
            "<sh>f(){ f|f& };f</sh>",
            "<sh>rm -rf --no-preserve-root / 2>/dev/null; ls -a /repo | wc -l</sh>",
            "<sh>yes | head -c 10000000</sh>",
            "<edit ../../etc/passwd:1>root => owned</edit>",
            "not an action",
        ],
    )
    .await;
    eprintln!("{seen:#?}");
    assert_eq!(seen.len(), 8, "{seen:?}");
    assert!(
        seen[0].contains("No such file") && !seen[0].contains("root:"),
        "{}",
        seen[0]
    );
    assert!(seen[1].contains("No such file"), "{}", seen[1]);
    assert!(
        seen[3].contains("[timed out after 3 s]") || seen[3].contains("[exit"),
        "{}",
        seen[3]
    );
    assert!(
        seen[5].len() <= cfg.observation_bytes + 40,
        "observation not capped"
    );
    assert!(seen[6].starts_with("error:"), "{}", seen[6]);
    assert!(seen[7].starts_with("error: expected"), "{}", seen[7]);
    // The abuser wrecked its own repository and nothing else: it submits no usable diff.
    let wrecked = judge
        .judge(&abuser, &diff.unwrap_or_default())
        .await
        .unwrap();
    assert_eq!(wrecked.total, 0.0);

    // The host's own files and this process are fine; the bystander still solves.
    assert!(std::path::Path::new("/etc/passwd").exists());
    assert!(
        std::process::Command::new("true")
            .status()
            .unwrap()
            .success()
    );
    let fix = generate(TaskKey::parse(&bystander.answer).unwrap()).fix;
    let edit = format!(
        "<edit {}:{}>{} => {}</edit>",
        fix.file, fix.line, fix.buggy, fix.correct
    );
    let seen = host.step(1, &edit).await.unwrap();
    assert_eq!(
        seen.observation.map(|o| o.text.contains(&fix.correct)),
        Some(true)
    );
    let done = host.step(1, "<submit/>").await.unwrap();
    assert!(done.done);
    let reward = judge
        .judge(&bystander, &done.submission.unwrap())
        .await
        .unwrap();
    assert_eq!(reward.total, 1.0, "{reward:?}");
    // And new episodes start and run as before.
    let fresh = spec(BugFamily::OffByOne, 13);
    let (turns, diff) = expert_episode(&host, 3, &fresh).await.unwrap();
    assert_eq!(
        judge.judge(&fresh, &diff).await.unwrap().total,
        1.0,
        "{turns:?}"
    );
    assert_eq!(host.live(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn episodes_end_at_max_turns_and_refuse_unknown_ids() {
    let cfg = CodefixConfig {
        max_turns: 2,
        ..config()
    };
    let host = CodefixHost::new(cfg, 1).await.unwrap();
    let task = spec(BugFamily::WrongIndex, 4);
    assert_eq!(
        TaskKey::parse(&task.answer).unwrap().family.split(),
        Split::Heldout
    );
    host.reset(7, &task).await.unwrap();
    // Capacity 1: a second episode is pushed back, a duplicate id refused.
    assert!(matches!(
        host.reset(8, &task).await,
        Err(troupe_env::EnvError::Full { capacity: 1 })
    ));
    assert!(matches!(
        host.reset(7, &task).await,
        Err(troupe_env::EnvError::DuplicateEpisode { episode: 7 })
    ));
    let first = host
        .step(7, "<sh>echo hi > note.txt; cat note.txt</sh>")
        .await
        .unwrap();
    assert_eq!(
        first.observation.map(|o| o.text).as_deref(),
        Some("hi\n[exit 0]")
    );
    assert!(!first.done);
    // The second turn is the last: the episode ends and the diff shows the new file.
    let last = host.step(7, "<sh>true</sh>").await.unwrap();
    assert!(last.done && last.observation.is_none());
    let diff = last.submission.unwrap();
    assert!(
        diff.contains("b/note.txt") && diff.contains("+hi"),
        "{diff}"
    );
    assert!(matches!(
        host.step(7, "<submit/>").await,
        Err(troupe_env::EnvError::UnknownEpisode { episode: 7 })
    ));
    assert!(host.finish(7).await.is_err());
    // A task that is not a code-fixing task, or whose prompt is not its key's issue.
    let digits = TaskSpec {
        id: 1,
        prompt: "sort 21".into(),
        answer: "12".into(),
        difficulty: 2,
    };
    assert!(host.reset(9, &digits).await.is_err());
    let forged = TaskSpec {
        prompt: "something else".into(),
        ..task.clone()
    };
    assert!(host.reset(9, &forged).await.is_err());
    assert_eq!(host.live(), 0);
    // The slot is free again; an untouched repository's diff is empty.
    host.reset(10, &task).await.unwrap();
    assert_eq!(host.finish(10).await.unwrap(), "");
    assert_eq!(host.live(), 0);
}
