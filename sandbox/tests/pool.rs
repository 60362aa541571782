//! The warm pool: episodes keep their repository across commands, slots come back, slots do not share
//! limits, and the per-command overhead cold vs warm (printed, not asserted).

mod support;

use std::time::{Duration, Instant};

use support::{argv, eventually, marker, policy, processes_with, repo, sh};
use troupe_sandbox::{Sandbox, SandboxPool};

#[tokio::test]
async fn an_episode_keeps_its_repository_and_nothing_else() {
    let pool = SandboxPool::new(policy(), 2).await.unwrap();
    assert_eq!((pool.size(), pool.available()), (2, 2));
    let repo = repo();
    {
        let mut episode = pool.take().await;
        let _other = pool.try_take().unwrap();
        assert!(pool.try_take().is_none(), "a full pool refuses");

        let first = episode
            .run(
                &sh("echo step1 > state; touch /tmp/scratch; sleep 100 &"),
                repo.path(),
            )
            .await
            .unwrap();
        assert!(first.success());
        let second = episode
            .run(&sh("cat state; test -e /tmp/scratch || echo fresh-tmp; pgrep sleep || echo no-sleepers"), repo.path())
            .await
            .unwrap();
        assert_eq!(second.stdout_text(), "step1\nfresh-tmp\nno-sleepers\n");
    }
    assert_eq!(pool.available(), 2, "dropped slots are back");
}

#[tokio::test]
async fn slots_do_not_share_the_process_limit() {
    let m = marker();
    let mut policy = policy();
    policy.limits.processes = 16;
    policy.limits.wall_timeout = Duration::from_secs(6);
    let pool = SandboxPool::new(policy, 2).await.unwrap();
    let (mut bomb, mut busy) = (pool.take().await, pool.take().await);
    let (bomb_repo, busy_repo) = (repo(), repo());
    // Slot A holds all its processes until its timeout; meanwhile slot B still forks freely.
    let hog = "import os, time\nwhile True:\n    try:\n        os.fork() or time.sleep(60)\n    except OSError:\n        time.sleep(60)\n";
    let hog_cmd = argv(&["python3", "-c", hog, &m]);
    let (bombed, worked) = tokio::join!(bomb.run(&hog_cmd, bomb_repo.path()), async {
        // 16 processes of the uid: the two of bubblewrap and 14 of the hog.
        let full = eventually(Duration::from_secs(5), || processes_with(&m).len() >= 14).await;
        let out = busy
            .run(
                &sh("for i in 1 2 3 4 5 6 7 8; do (true) & done; wait; echo forked"),
                busy_repo.path(),
            )
            .await;
        (full, out)
    });
    assert_eq!(bombed.unwrap().outcome, troupe_sandbox::Outcome::TimedOut);
    let (full, worked) = worked;
    assert!(full, "the hog never reached its process limit");
    assert_eq!(worked.unwrap().stdout_text(), "forked\n");
    assert!(processes_with(&m).is_empty());
}

#[tokio::test]
async fn per_command_overhead_cold_vs_warm() {
    const N: usize = 20;
    let cmd = argv(&["true"]);
    let repo = repo();

    let mut host = Vec::new();
    for _ in 0..N {
        let t = Instant::now();
        assert!(
            tokio::process::Command::new("true")
                .status()
                .await
                .unwrap()
                .success()
        );
        host.push(t.elapsed());
    }
    let sandbox = Sandbox::new(policy()).unwrap();
    let mut cold = Vec::new();
    for _ in 0..N {
        let t = Instant::now();
        assert!(sandbox.run(&cmd, repo.path()).await.unwrap().success());
        cold.push(t.elapsed());
    }
    let pool = SandboxPool::new(policy(), 1).await.unwrap();
    let mut slot = pool.take().await;
    let mut warm = Vec::new();
    for _ in 0..N {
        let t = Instant::now();
        assert!(slot.run(&cmd, repo.path()).await.unwrap().success());
        warm.push(t.elapsed());
    }
    let median = |v: &mut Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    let (h, c, w) = (median(&mut host), median(&mut cold), median(&mut warm));
    println!(
        "per-command wall time of `true`, median of {N}: host spawn {h:?}, sandbox cold {c:?}, sandbox warm {w:?} \
         (warm/cold {:.2}, sandbox overhead over host spawn: cold {:?}, warm {:?})",
        w.as_secs_f64() / c.as_secs_f64(),
        c.saturating_sub(h),
        w.saturating_sub(h)
    );
}
