//! Smoke test of `troupe bench sampler` on SmolLM2's GGUF (fetched by
//! `scripts/fetch-smollm2.sh models`): a quick run reports every troupe figure, measured
//! (positive), never checked against targets. llama.cpp's figures are present when its
//! Python binding is installed and null otherwise, with the reason.

use std::path::PathBuf;
use std::process::Command;

const TROUPE_KEYS: &[&str] = &[
    "decode_tok_s_b1",
    "decode_tok_s_b8",
    "prefill_tok_s",
    "q8_0_decode_tok_s_b1",
    "q8_0_decode_tok_s_b8",
    "q8_0_prefill_tok_s",
    "q4_1_decode_tok_s_b1",
    "q4_1_decode_tok_s_b8",
    "q4_1_prefill_tok_s",
    "f32_decode_tok_s_b1",
    "f32_decode_tok_s_b8",
    "f32_prefill_tok_s",
    "ratio_decode_b8_over_b1",
];

const LLAMACPP_KEYS: &[&str] = &[
    "llamacpp_decode_tok_s_b1",
    "llamacpp_prefill_tok_s",
    "ratio_decode_b1_vs_llamacpp",
    "ratio_prefill_vs_llamacpp",
];

fn gguf_path() -> PathBuf {
    let path = std::env::var_os("TROUPE_SMOLLM2_GGUF")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/SmolLM2-135M-Instruct.Q4_1.gguf")
        });
    assert!(
        path.exists(),
        "{} is missing: run `scripts/fetch-smollm2.sh models` (or set TROUPE_SMOLLM2_GGUF)",
        path.display()
    );
    path
}

#[test]
fn quick_sampler_bench_reports_every_figure() {
    let out = Command::new(env!("CARGO_BIN_EXE_troupe"))
        .args([
            "bench",
            "sampler",
            "--quick",
            "--json",
            "--threads",
            "2",
            "--model",
        ])
        .arg(gguf_path())
        .output()
        .expect("troupe runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "bench failed: {stderr}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("stdout is not one JSON object ({e}); stderr: {stderr}"));
    for key in TROUPE_KEYS {
        let value = report[key]
            .as_f64()
            .unwrap_or_else(|| panic!("{key} missing from {report}"));
        assert!(value.is_finite() && value > 0.0, "{key} = {value}");
    }
    let measured = report["llamacpp_error"].is_null();
    for key in LLAMACPP_KEYS {
        let value = report
            .get(*key)
            .unwrap_or_else(|| panic!("{key} missing from {report}"));
        if measured {
            let v = value.as_f64().unwrap_or(f64::NAN);
            assert!(v.is_finite() && v > 0.0, "{key} = {value}");
        } else {
            assert!(value.is_null(), "{key} = {value} without llama.cpp");
        }
    }
    assert!(measured || report["llamacpp_error"].is_string(), "{report}");
    let best = report["sampler_weights"].as_str().unwrap_or("?");
    assert!(["q8_0", "q4_1"].contains(&best), "sampler_weights = {best}");
    for key in ["decode_tok_s_b1", "decode_tok_s_b8", "prefill_tok_s"] {
        assert_eq!(report[key], report[format!("{best}_{key}")], "{key}");
    }
    assert!(
        report["decode_tok_s_b1"].as_f64() >= report["q8_0_decode_tok_s_b1"].as_f64()
            && report["decode_tok_s_b1"].as_f64() >= report["q4_1_decode_tok_s_b1"].as_f64(),
        "the headline is the fastest at batch 1: {report}"
    );
    assert_eq!(report["threads"], 2);
    assert_eq!(report["quick"], true);
    assert!(report["targets_met"].is_object(), "{report}");
}
