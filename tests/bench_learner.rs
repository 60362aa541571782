//! `troupe bench learner` on the CPU with the built-in small policy: every figure is
//! reported and measured (positive), the GPU-only comparison is null, and bad `--shape`
//! and `--device` values are refused with the reason.

use serde_json::Value;

mod common;
use common::troupe;

#[test]
fn bench_learner_reports_every_figure_on_the_cpu() {
    let out = troupe()
        .args(["bench", "learner", "--json", "--batch", "2", "--seq", "16"])
        .args([
            "--steps",
            "1",
            "--sampler-batch",
            "2",
            "--decode-tokens",
            "4",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    for key in [
        "learner_step_seconds_median",
        "learner_tokens_per_s",
        "learner_mfu",
        "sampler_tokens_per_s",
        "snapshot_bytes",
        "snapshot_to_host_seconds",
        "same_device_publish_seconds",
        "sampler_load_seconds",
        "same_device_weight_sync_seconds",
    ] {
        let v = r[key]
            .as_f64()
            .unwrap_or_else(|| panic!("{key} missing: {r}"));
        assert!(v > 0.0, "{key} = {v}");
    }
    let sync = r["same_device_weight_sync_seconds"].as_f64().unwrap();
    let parts = r["same_device_publish_seconds"].as_f64().unwrap()
        + r["sampler_load_seconds"].as_f64().unwrap();
    assert!((sync - parts).abs() < 1e-9, "{r}");
    assert!(r["device_vs_cpu_logprob_max_abs"].is_null(), "{r}");
    assert_eq!(r["model"], "built-in small policy");
    assert_eq!(r["tf32"], false);
}

#[test]
fn bench_learner_refuses_unknown_shapes_and_devices() {
    for (args, expect) in [
        (["--shape", "llama-7b"], "the known shape is smollm2-135m"),
        (["--device", "gpu0"], "expected cpu, cuda or cuda:N"),
    ] {
        let out = troupe()
            .args(["bench", "learner"])
            .args(args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(stderr.contains(expect), "{stderr}");
    }
    if !cfg!(feature = "cuda") {
        let out = troupe()
            .args(["bench", "learner", "--device", "cuda"])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(stderr.contains("--features cuda"), "{stderr}");
    }
}
