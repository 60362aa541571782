//! Escape and abuse attempts against the sandbox, with real processes and real namespaces. Each test asserts
//! the specific containment, and that the test process (playing the env host) is unharmed afterwards.
//! Needs root and bubblewrap (`apt-get install -y bubblewrap`), as an env host does.

mod support;

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;

use support::{
    argv, assert_host_fine, eventually, marker, orphaned_sandbox_zombies, policy, processes_with,
    repo, run, sh,
};
use troupe_sandbox::{ExitStatus, Outcome, Sandbox};

#[tokio::test]
async fn host_secrets_are_absent() {
    let secrets = tempfile::tempdir().unwrap();
    let tmp_secret = secrets.path().join("secret.txt");
    std::fs::write(&tmp_secret, "TOPSECRET-tmp").unwrap();
    let root_secret = format!("/root/troupe-sandbox-secret-{}", marker());
    std::fs::write(&root_secret, "TOPSECRET-root").unwrap();
    let repo = repo();
    let script = format!(
        "cat {} {root_secret} /etc/shadow; ls /root /home /var /run /sys /boot; ls /etc",
        tmp_secret.display()
    );
    let out = run(policy(), &sh(&script), repo.path()).await;
    std::fs::remove_file(&root_secret).unwrap();

    assert!(!out.stdout_text().contains("TOPSECRET") && !out.stderr_text().contains("TOPSECRET"));
    let err = out.stderr_text();
    for path in [
        tmp_secret.to_str().unwrap(),
        &root_secret,
        "/etc/shadow",
        "/root",
        "/home",
        "/var",
        "/sys",
    ] {
        assert!(
            err.contains(&format!("{path}: No such file"))
                || err.contains(&format!("'{path}': No such file")),
            "{path} visible"
        );
    }
    let etc: Vec<String> = out
        .stdout_text()
        .split_whitespace()
        .map(String::from)
        .collect();
    assert!(
        !etc.iter()
            .any(|e| e == "shadow" || e == "gitconfig" || e == "pip.conf"),
        "{etc:?}"
    );
    assert!(etc.iter().any(|e| e == "passwd"));
    assert_host_fine();
}

#[tokio::test]
async fn writes_outside_the_repo_never_reach_the_host() {
    let m = format!("troupe-escape-{}", marker());
    let mut policy = policy();
    policy.tmp_bytes = 8 << 20;
    let repo = repo();
    let script = format!(
        "for p in /usr/{m} /usr/bin/{m} /etc/{m} /{m} /dev/{m} /proc/{m}; do echo x > $p && echo WROTE $p; done; \
         echo x > /tmp/{m} && echo TMP_OK; dd if=/dev/zero of=/tmp/big bs=1M count=64 2>&1; echo dd=$?"
    );
    let out = run(policy, &sh(&script), repo.path()).await;

    let stdout = out.stdout_text();
    assert!(!stdout.contains("WROTE"), "{stdout}");
    assert!(out.stderr_text().contains("Read-only file system"));
    assert!(stdout.contains("TMP_OK"), "the private /tmp is writable");
    assert!(
        stdout.contains("No space left on device") && stdout.contains("dd=1"),
        "the private /tmp is bounded"
    );
    for host in [
        format!("/usr/{m}"),
        format!("/usr/bin/{m}"),
        format!("/etc/{m}"),
        format!("/{m}"),
        format!("/tmp/{m}"),
        format!("/dev/{m}"),
    ] {
        assert!(!Path::new(&host).exists(), "{host} reached the host");
    }
    assert_host_fine();
}

#[tokio::test]
async fn a_listener_on_host_loopback_is_unreachable() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let repo = repo();
    let script = format!(
        "import socket, errno\n\
         s = socket.socket()\n\
         try:\n    s.connect(('127.0.0.1', {port})); print('CONNECTED')\n\
         except OSError as e:\n    print('ERR', errno.errorcode[e.errno])\n"
    );
    let out = run(policy(), &argv(&["python3", "-c", &script]), repo.path()).await;

    assert_eq!(
        out.stdout_text().trim(),
        "ERR ECONNREFUSED",
        "the sandbox's 127.0.0.1 is its own"
    );
    assert_eq!(
        listener.accept().unwrap_err().kind(),
        std::io::ErrorKind::WouldBlock
    );
    assert_host_fine();
}

#[tokio::test]
async fn no_outbound_network_and_no_dns() {
    let repo = repo();
    let script = "import socket, errno\n\
        def attempt(name, f):\n\
        \x20   try:\n        f(); print(name, 'OK')\n\
        \x20   except socket.gaierror as e:\n        print(name, 'GAIERROR')\n\
        \x20   except OSError as e:\n        print(name, errno.errorcode.get(e.errno, e.errno))\n\
        attempt('dns', lambda: socket.getaddrinfo('example.com', 80))\n\
        attempt('tcp', lambda: socket.create_connection(('1.1.1.1', 53), timeout=3))\n\
        attempt('udp', lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b'x', ('8.8.8.8', 53)))\n\
        print('ifaces', sorted(l.split(':')[0].strip() for l in open('/proc/net/dev').readlines()[2:]))\n";
    let out = run(policy(), &argv(&["python3", "-c", script]), repo.path()).await;

    let stdout = out.stdout_text();
    assert!(stdout.contains("dns GAIERROR"), "{stdout}");
    assert!(stdout.contains("tcp ENETUNREACH"), "{stdout}");
    assert!(stdout.contains("udp ENETUNREACH"), "{stdout}");
    assert!(stdout.contains("ifaces ['lo']"), "{stdout}");
    assert_host_fine();
}

#[tokio::test]
async fn a_fork_bomb_is_bounded_by_the_process_limit() {
    let m = marker();
    let mut policy = policy();
    policy.limits.processes = 16;
    policy.limits.wall_timeout = Duration::from_secs(10);
    let repo = repo();
    // Counts how many children it can hold at once, then exits leaving them asleep.
    let script = "import os, sys, time\n\
        n = 0\n\
        while True:\n\
        \x20   try:\n        pid = os.fork()\n\
        \x20   except OSError as e:\n        print('FORK_FAILED', n, e.errno, flush=True); break\n\
        \x20   if pid == 0:\n        time.sleep(1000); os._exit(0)\n\
        \x20   n += 1\n";
    let out = run(
        policy.clone(),
        &argv(&["python3", "-c", script, &m]),
        repo.path(),
    )
    .await;
    let fields: Vec<String> = out
        .stdout_text()
        .split_whitespace()
        .map(String::from)
        .collect();
    assert_eq!(fields[0], "FORK_FAILED");
    let held: u64 = fields[1].parse().unwrap();
    assert!(
        held < 16,
        "held {held} children with a limit of 16 processes"
    );
    assert_eq!(fields[2], "11", "fork fails with EAGAIN");
    assert_eq!(out.outcome, Outcome::Exited);
    assert!(
        processes_with(&m).is_empty(),
        "sleeping children outlived the command"
    );

    // The classic shell bomb: forks until refused, ends with the command; the host can still fork.
    let out = run(
        policy,
        &sh("f() { f | f & }; f; sleep 1; echo bombed"),
        repo.path(),
    )
    .await;
    assert_ne!(out.outcome, Outcome::TimedOut);
    assert_host_fine();
}

#[tokio::test]
async fn a_memory_bomb_fails_to_allocate() {
    let mut policy = policy();
    policy.limits.address_space_bytes = 512 << 20;
    let repo = repo();
    let script = "try:\n    x = bytearray(8 << 30)\nexcept MemoryError:\n    print('BIG_REFUSED')\n\
        chunks = []\n\
        try:\n    while True: chunks.append(bytearray(16 << 20))\n\
        except MemoryError:\n    print('GROWTH_STOPPED', len(chunks) * 16, 'MiB')\n";
    let out = run(policy, &argv(&["python3", "-c", script]), repo.path()).await;

    let stdout = out.stdout_text();
    assert!(stdout.contains("BIG_REFUSED"), "{stdout}");
    let mib: u64 = stdout.split_whitespace().nth(2).unwrap().parse().unwrap();
    assert!(mib < 512, "grew to {mib} MiB under a 512 MiB address space");
    assert!(out.success());
    assert_host_fine();
}

#[tokio::test]
async fn sleeping_forever_times_out_and_the_whole_tree_dies() {
    let m = format!("7777.{}", marker());
    let mut policy = policy();
    policy.limits.wall_timeout = Duration::from_secs(4);
    let repo = repo();
    let script = format!(
        "setsid sleep {m} & nohup sleep {m} >/dev/null 2>&1 & (sleep {m} &); \
         python3 -c 'import os, time; os.fork() or (os.setsid(), time.sleep(1e6))' {m} & exec sleep {m}"
    );
    let sandbox = Sandbox::new(policy).unwrap();
    let path = repo.path().to_path_buf();
    let cmd = sh(&script);
    let task = tokio::spawn(async move { sandbox.run(&cmd, &path).await });
    // While it runs, the detached sleepers are there to be killed (the proof that the test means something).
    let seen = eventually(Duration::from_millis(2500), || {
        processes_with(&m).len() >= 5
    })
    .await;
    let out = task.await.unwrap().unwrap();

    assert!(seen, "the detached processes never all started");
    assert_eq!(out.outcome, Outcome::TimedOut);
    assert_eq!(out.status, ExitStatus::Signal(9));
    assert!(out.wall >= Duration::from_secs(4));
    assert_eq!(
        processes_with(&m),
        Vec::<i32>::new(),
        "processes survived the timeout"
    );
    assert_host_fine();
}

#[tokio::test]
async fn background_processes_end_with_the_command() {
    let m = format!("8888.{}", marker());
    let repo = repo();
    let script =
        format!("setsid sleep {m} & nohup sleep {m} >/dev/null 2>&1 & (sleep {m} &); echo started");
    for _ in 0..5 {
        let out = run(policy(), &sh(&script), repo.path()).await;
        assert!(out.success());
        // Gone by the time `run` returns, not merely soon after.
        assert_eq!(
            processes_with(&m),
            Vec::<i32>::new(),
            "background processes outlived the command"
        );
    }
    assert_eq!(
        orphaned_sandbox_zombies(),
        Vec::<i32>::new(),
        "sandbox zombies left to the host's init"
    );
    assert_host_fine();
}

#[tokio::test]
async fn the_env_host_cannot_be_killed() {
    let mut bystander = std::process::Command::new("sleep")
        .arg("30")
        .spawn()
        .unwrap();
    let host = std::process::id();
    let repo = repo();
    let script = format!(
        "kill -9 {host}; echo host=$?; kill -9 {}; echo bystander=$?; \
         sleep 100 & sibling=$!; kill -9 -1; echo all=$?; wait $sibling; echo sibling=$?; echo still here",
        bystander.id()
    );
    let out = run(policy(), &sh(&script), repo.path()).await;

    let stdout = out.stdout_text();
    assert!(
        stdout.contains("host=1") && stdout.contains("bystander=1"),
        "{stdout}"
    );
    assert!(out.stderr_text().contains("No such process"));
    // `kill -9 -1` reaches everything in the sandbox's pid namespace (the sibling), nothing outside.
    assert!(
        stdout.contains("all=0") && stdout.contains("sibling=137"),
        "{stdout}"
    );
    assert!(stdout.contains("still here"));
    assert!(
        bystander.try_wait().unwrap().is_none(),
        "a host process was killed"
    );
    bystander.kill().unwrap();
    bystander.wait().unwrap();
    assert_host_fine();
}

#[tokio::test]
async fn symlinks_and_hard_links_out_of_the_repo_lead_nowhere() {
    let secrets = tempfile::tempdir().unwrap();
    let secret = secrets.path().join("secret.txt");
    std::fs::write(&secret, "TOPSECRET").unwrap();
    let repo = repo();
    std::os::unix::fs::symlink(&secret, repo.path().join("secret_link")).unwrap();
    std::os::unix::fs::symlink("/etc/shadow", repo.path().join("shadow_link")).unwrap();
    std::os::unix::fs::symlink("/root", repo.path().join("root_link")).unwrap();
    let script = "cat secret_link shadow_link; ls root_link/; ln -s /etc/shadow made_link; cat made_link; \
        ln /usr/bin/dash hard_dash; echo hard=$?; ln /etc/passwd hard_passwd; echo hard2=$?";
    let out = run(policy(), &sh(script), repo.path()).await;

    assert!(!out.stdout_text().contains("TOPSECRET"));
    assert!(
        !out.stdout_text().contains("root:"),
        "no shadow or passwd lines read"
    );
    let stdout = out.stdout_text();
    assert!(
        stdout.contains("hard=1") && stdout.contains("hard2=1"),
        "hard links across mounts refused: {stdout}"
    );
    assert!(out.stderr_text().contains("Invalid cross-device link"));
    // A second command makes the host chown the repository again, links now included: never their targets.
    run(policy(), &argv(&["true"]), repo.path()).await;
    for target in [
        secret.as_path(),
        Path::new("/etc/shadow"),
        Path::new("/usr/bin/dash"),
        Path::new("/root"),
    ] {
        assert_eq!(
            std::fs::metadata(target).unwrap().uid(),
            0,
            "{} was chowned",
            target.display()
        );
    }
    assert_eq!(std::fs::read_to_string(&secret).unwrap(), "TOPSECRET");
    assert_host_fine();
}

#[tokio::test]
async fn a_file_size_bomb_stops_at_the_limit() {
    let mut policy = policy();
    policy.limits.file_size_bytes = 1 << 20;
    let repo = repo();
    let cmd = argv(&["dd", "if=/dev/zero", "of=big", "bs=64K", "count=1000"]);
    let out = run(policy, &cmd, repo.path()).await;

    assert_eq!(out.outcome, Outcome::FileSizeLimit);
    assert_eq!(out.status, ExitStatus::Signal(25));
    let size = std::fs::metadata(repo.path().join("big")).unwrap().len();
    assert!(size <= 1 << 20, "wrote {size} bytes");
    assert_host_fine();
}

#[tokio::test]
async fn an_output_flood_is_capped_then_killed() {
    let mut policy = policy();
    policy.output.stdout_bytes = 64 << 10;
    policy.output.stderr_bytes = 64 << 10;
    policy.output.kill_after_bytes = 8 << 20;
    let repo = repo();

    let out = run(policy.clone(), &argv(&["yes"]), repo.path()).await;
    assert_eq!(out.outcome, Outcome::OutputLimit);
    assert_eq!(out.stdout.len(), 64 << 10);
    assert!(out.stdout_truncated);
    assert!(out.wall < policy.limits.wall_timeout);

    // Over the cap but under the kill limit: truncated, and the command's own status still counts.
    let out = run(
        policy,
        &sh("head -c 300000 /dev/zero; echo done >&2"),
        repo.path(),
    )
    .await;
    assert!(out.success());
    assert_eq!((out.stdout.len(), out.stdout_truncated), (64 << 10, true));
    assert_eq!(
        (out.stderr_text().as_str(), out.stderr_truncated),
        ("done\n", false)
    );
    assert_host_fine();
}

#[tokio::test]
async fn host_processes_are_invisible() {
    let host = std::process::id();
    let repo = repo();
    let script = format!("cat /proc/{host}/cmdline; ls /proc | grep -E '^[0-9]+$' | tr '\\n' ' '");
    let out = run(policy(), &sh(&script), repo.path()).await;

    assert!(
        out.stderr_text().contains("No such file"),
        "host pid {host} readable"
    );
    let pids: Vec<u32> = out
        .stdout_text()
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect();
    assert!(!pids.is_empty() && pids.len() < 10, "{pids:?}");
    assert!(
        pids.iter().all(|&p| p < 20),
        "only the sandbox's own pid namespace: {pids:?}"
    );
    assert_host_fine();
}

#[tokio::test]
async fn mount_ptrace_and_new_namespaces_are_denied() {
    let host = std::process::id();
    let repo = repo();
    let script = format!(
        "mount -t tmpfs none /tmp 2>/dev/null; echo mount=$?; unshare -U true 2>/dev/null; echo userns=$?; \
         unshare -n true 2>/dev/null; echo netns=$?; chroot / true 2>/dev/null; echo chroot=$?; \
         grep CapEff /proc/self/status; grep NoNewPrivs /proc/self/status; \
         python3 -c 'import ctypes, os; libc = ctypes.CDLL(None, use_errno=True); \
         r = libc.ptrace(16, {host}, 0, 0); print(\"ptrace\", r, ctypes.get_errno())'"
    );
    let out = run(policy(), &sh(&script), repo.path()).await;

    let stdout = out.stdout_text();
    for denied in ["mount=", "userns=", "netns=", "chroot="] {
        let line = stdout.lines().find(|l| l.starts_with(denied)).unwrap();
        assert_ne!(line, format!("{denied}0"), "{denied} allowed");
    }
    assert!(stdout.contains("CapEff:\t0000000000000000"), "{stdout}");
    assert!(stdout.contains("NoNewPrivs:\t1"));
    assert!(
        stdout.contains("ptrace -1 3"),
        "ptrace of the host fails with ESRCH: {stdout}"
    );
    assert_host_fine();
}

#[tokio::test]
async fn the_cpu_limit_stops_a_busy_loop() {
    let mut policy = policy();
    policy.limits.cpu_seconds = 1;
    let repo = repo();
    let out = run(
        policy,
        &argv(&["python3", "-c", "while True: pass"]),
        repo.path(),
    )
    .await;
    assert_eq!(out.outcome, Outcome::CpuLimit);
    assert_eq!(out.status, ExitStatus::Signal(24));
    assert_host_fine();
}

#[tokio::test]
async fn the_environment_and_identity_are_the_sandbox_own() {
    let repo = repo();
    let script =
        "env | sort; echo uid=$(id -u) user=$(id -un); echo host=$(hostname); pwd; kill -SEGV $$";
    let out = run(policy(), &sh(script), repo.path()).await;

    let stdout = out.stdout_text();
    assert!(
        stdout.contains("HOME=/tmp") && stdout.contains("uid=1000 user=sandbox"),
        "{stdout}"
    );
    assert!(stdout.contains("host=sandbox") && stdout.contains("/repo\n"));
    for leaked in ["RUST_BACKTRACE", "CARGO", "/root", "SSL_CERT"] {
        assert!(!stdout.contains(leaked), "{leaked} leaked into the sandbox");
    }
    assert_eq!(
        (out.outcome, out.status),
        (Outcome::Signalled, ExitStatus::Signal(11))
    );
    assert_host_fine();
}

#[tokio::test]
async fn writes_in_the_repo_reach_the_host() {
    let repo = repo();
    std::fs::write(repo.path().join("from_host.txt"), "given\n").unwrap();
    let script = "cat from_host.txt; echo more >> from_host.txt; mkdir -p sub/dir && echo made > sub/dir/new.txt";
    let out = run(policy(), &sh(script), repo.path()).await;

    assert!(out.success());
    assert_eq!(out.stdout_text(), "given\n");
    assert_eq!(
        std::fs::read_to_string(repo.path().join("from_host.txt")).unwrap(),
        "given\nmore\n"
    );
    assert_eq!(
        std::fs::read_to_string(repo.path().join("sub/dir/new.txt")).unwrap(),
        "made\n"
    );
    assert_host_fine();
}

#[tokio::test]
async fn git_and_python_tests_run_inside() {
    let repo = repo();
    std::fs::write(
        repo.path().join("calc.py"),
        "def add(a, b):\n    return a + b\n",
    )
    .unwrap();
    std::fs::write(
        repo.path().join("test_calc.py"),
        "import unittest\nfrom calc import add\n\nclass T(unittest.TestCase):\n    def test_add(self):\n        self.assertEqual(add(2, 3), 5)\n",
    )
    .unwrap();
    let script = "git init -q && git add -A && git commit -qm 'initial' && git log --format=%s && \
        python3 -m unittest -q 2>&1 | tail -1";
    let out = run(policy(), &sh(script), repo.path()).await;

    assert!(out.success(), "{}", out.stderr_text());
    assert_eq!(out.stdout_text(), "initial\nOK\n");
    assert!(repo.path().join(".git/HEAD").exists());
    assert_host_fine();
}
