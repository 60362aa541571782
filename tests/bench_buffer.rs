//! Smoke test of `troupe bench buffer`: a quick run completes, cleans up its peer process,
//! and reports every figure. Figures are checked for being measured (positive), never
//! against targets: timing thresholds do not belong in tests.

use std::process::Command;

const KEYS: &[&str] = &[
    "remote_insert_per_s",
    "local_insert_per_s",
    "remote_over_local_insert",
    "durable_insert_per_s",
    "core_insert_per_s",
    "remote_sample_p50_us",
    "remote_sample_p99_us",
    "local_sample_p50_us",
    "local_sample_p99_us",
    "sample_p50_us_10k",
    "sample_p99_us_10k",
    "sample_p50_us_100k",
    "sample_p99_us_100k",
    "sample_p50_us_1m",
    "sample_p99_us_1m",
    "sample_p99_1m_over_10k",
    "stored_10k",
    "stored_100k",
    "stored_1m",
    "trajectory_tokens_mean",
    "trajectory_memory_bytes_mean",
    "trajectory_encoded_bytes_mean",
];

#[test]
fn quick_buffer_bench_reports_every_figure() {
    let out = Command::new(env!("CARGO_BIN_EXE_troupe"))
        .args(["bench", "buffer", "--quick", "--json"])
        .output()
        .expect("troupe runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "bench failed: {stderr}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("stdout is not one JSON object ({e}); stderr: {stderr}"));
    for key in KEYS {
        let value = report[key]
            .as_f64()
            .unwrap_or_else(|| panic!("{key} missing from {report}"));
        assert!(value.is_finite() && value > 0.0, "{key} = {value}");
    }
    assert!(report["stored_10k"].as_u64() < report["stored_1m"].as_u64());
    assert_eq!(report["quick"], true);
    assert!(report["targets_met"].is_object(), "{report}");
}
