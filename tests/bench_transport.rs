//! Smoke test of `troupe bench transport`: a quick run completes, cleans up its peer
//! processes, and reports every figure. Figures are checked for being measured (positive),
//! never against targets: timing thresholds do not belong in tests.

use std::process::Command;

const KEYS: &[&str] = &[
    "small_msgs_per_s_remote",
    "small_msgs_per_s_local",
    "small_remote_over_local",
    "ask_rtt_us_remote",
    "ask_rtt_us_local",
    "ask_rtt_remote_over_local",
    "quic_goodput_mib_s",
    "quic_bare_goodput_mib_s",
    "tls_tcp_goodput_mib_s",
    "quic_over_tls_tcp",
    "broadcast_efficiency",
    "broadcast_seconds",
    "broadcast_aggregate_mib_s",
];

#[test]
fn quick_transport_bench_reports_every_figure() {
    let out = Command::new(env!("CARGO_BIN_EXE_troupe"))
        .args(["bench", "transport", "--quick", "--json"])
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
    assert_eq!(report["quick"], true);
    assert!(report["targets_met"].is_object(), "{report}");
}
