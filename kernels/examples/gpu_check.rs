//! One table: each CUDA kernel's max abs error against the CPU reference and its GPU time per
//! call, then NCCL broadcast (world 1) and the same-GPU copy of a 134.5M-float weight buffer.
//!
//! `cargo run --release -p troupe-kernels --features cuda --example gpu_check`

use std::time::Instant;

use anyhow::{Context, Result};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use troupe_kernels::cudarc::driver::{CudaSlice, CudaStream, sys::CUevent_flags};
use troupe_kernels::nccl::{NcclId, WeightBroadcast, copy_weights};
use troupe_kernels::{
    ClipRange, GpuKernels, NucleusSampling, PgLossInputs, PgLossViews, TemperedSoftmax,
    cuda_available,
};

/// SmolLM2-135M's parameter count, the buffer a weight push moves.
const WEIGHTS: usize = 134_515_008;
const ITERS: usize = 20;

/// GPU milliseconds per call of `f`, timed with events after two warm-up calls.
fn time_ms(stream: &std::sync::Arc<CudaStream>, mut f: impl FnMut() -> Result<()>) -> Result<f64> {
    for _ in 0..2 {
        f()?;
    }
    let start = stream.record_event(Some(CUevent_flags::CU_EVENT_DEFAULT))?;
    for _ in 0..ITERS {
        f()?;
    }
    let end = stream.record_event(Some(CUevent_flags::CU_EVENT_DEFAULT))?;
    Ok(f64::from(start.elapsed_ms(&end)?) / ITERS as f64)
}

fn logits(rng: &mut StdRng, rows: usize, vocab: usize) -> Vec<f32> {
    let mut l: Vec<f32> = (0..rows * vocab)
        .map(|_| rng.random_range(-6.0f32..6.0))
        .collect();
    for r in 0..rows {
        for _ in 0..3 {
            let j = rng.random_range(0..vocab);
            l[r * vocab + j] += rng.random_range(4.0f32..14.0);
        }
    }
    l
}

fn max_abs(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

struct Table(Vec<[String; 5]>);

impl Table {
    fn row(&mut self, kernel: &str, shape: String, err: String, ms: f64, bytes: f64) {
        self.0.push([
            kernel.into(),
            shape,
            err,
            format!("{:.1}", ms * 1e3),
            format!("{:.0}", bytes / (ms * 1e-3) / 1e9),
        ]);
    }

    fn print(&self) {
        let head = [
            "kernel",
            "shape",
            "max abs err vs CPU",
            "GPU us/call",
            "GB/s",
        ];
        let mut w = head.map(str::len);
        for r in &self.0 {
            for (i, c) in r.iter().enumerate() {
                w[i] = w[i].max(c.len());
            }
        }
        let line = |c: [&str; 5]| {
            println!(
                "{:<a$}  {:<b$}  {:>c$}  {:>d$}  {:>e$}",
                c[0],
                c[1],
                c[2],
                c[3],
                c[4],
                a = w[0],
                b = w[1],
                c = w[2],
                d = w[3],
                e = w[4]
            )
        };
        line(head);
        for r in &self.0 {
            line([&r[0], &r[1], &r[2], &r[3], &r[4]]);
        }
    }
}

fn main() -> Result<()> {
    if !cuda_available() {
        println!("no GPU: skipped");
        return Ok(());
    }
    let t0 = Instant::now();
    let k = GpuKernels::new(0).context("loading the kernels")?;
    println!(
        "device: {} (NVRTC compile + load {:.0} ms)",
        k.device_name()?,
        t0.elapsed().as_secs_f64() * 1e3
    );
    let s = k.stream().clone();
    let mut rng = StdRng::seed_from_u64(7);
    let mut table = Table(vec![]);

    // Fused log-prob, forward and backward.
    for (rows, vocab) in [(4096, 264), (1024, 49152)] {
        let soft = TemperedSoftmax {
            vocab,
            temperature: 1.0,
        };
        let l = logits(&mut rng, rows, vocab);
        let t: Vec<u32> = (0..rows)
            .map(|_| rng.random_range(0..vocab as u32))
            .collect();
        let g: Vec<f32> = (0..rows).map(|_| rng.random_range(-1.0f32..1.0)).collect();
        let cpu = troupe_kernels::token_logprob_fwd(&l, &t, soft);
        let gpu = k.token_logprob_fwd(&l, &t, soft)?;
        let d_cpu = troupe_kernels::token_logprob_bwd(&l, &t, &cpu.lse, &g, soft);
        let d_gpu = k.token_logprob_bwd(&l, &t, &gpu.lse, &g, soft)?;
        let (dl, dt, dg) = (s.clone_htod(&l)?, s.clone_htod(&t)?, s.clone_htod(&g)?);
        let mut lp: CudaSlice<f32> = s.alloc_zeros(rows)?;
        let mut lse: CudaSlice<f32> = s.alloc_zeros(rows)?;
        let mut dlog: CudaSlice<f32> = s.alloc_zeros(rows * vocab)?;
        let shape = format!("{rows} x {vocab}");
        let bytes = (rows * vocab * 4) as f64;
        let ms = time_ms(&s, || {
            Ok(k.token_logprob_fwd_dev(
                &dl.as_view(),
                &dt.as_view(),
                soft,
                &mut lp.as_view_mut(),
                &mut lse.as_view_mut(),
            )?)
        })?;
        let err = max_abs(&cpu.logprob, &gpu.logprob).max(max_abs(&cpu.lse, &gpu.lse));
        table.row(
            "token_logprob_fwd",
            shape.clone(),
            format!("{err:.1e}"),
            ms,
            bytes,
        );
        let ms = time_ms(&s, || {
            Ok(k.token_logprob_bwd_dev(
                &dl.as_view(),
                &dt.as_view(),
                &lse.as_view(),
                &dg.as_view(),
                soft,
                &mut dlog.as_view_mut(),
            )?)
        })?;
        let err = max_abs(&d_cpu, &d_gpu);
        table.row(
            "token_logprob_bwd",
            shape,
            format!("{err:.1e}"),
            ms,
            2.0 * bytes,
        );
    }

    // Sampling: a decode step's batch of rows.
    for (rows, vocab) in [(256, 264), (256, 49152)] {
        let l = logits(&mut rng, rows, vocab);
        let dl = s.clone_htod(&l)?;
        for (temperature, top_p) in [(0.0f32, 1.0f32), (1.0, 1.0), (0.7, 0.9)] {
            let params = NucleusSampling {
                vocab,
                temperature,
                top_p,
            };
            let u: Vec<f32> = (0..rows).map(|_| rng.random::<f32>()).collect();
            let cpu = troupe_kernels::sample_rows(&l, &u, params);
            let gpu = k.sample_top_p(&l, &u, params)?;
            let mismatched = (0..rows)
                .filter(|&r| cpu.tokens[r] != gpu.tokens[r])
                .count();
            let lp_err = (0..rows)
                .filter(|&r| cpu.tokens[r] == gpu.tokens[r])
                .map(|r| (cpu.logprobs[r] - gpu.logprobs[r]).abs())
                .fold(0.0f32, f32::max);
            let du = s.clone_htod(&u)?;
            let mut tok: CudaSlice<u32> = s.alloc_zeros(rows)?;
            let mut tlp: CudaSlice<f32> = s.alloc_zeros(rows)?;
            let ms = time_ms(&s, || {
                Ok(k.sample_top_p_dev(
                    &dl.as_view(),
                    &du.as_view(),
                    params,
                    &mut tok.as_view_mut(),
                    &mut tlp.as_view_mut(),
                )?)
            })?;
            table.row(
                &format!("sample T={temperature} p={top_p}"),
                format!("{rows} x {vocab}"),
                format!("{lp_err:.1e}, {mismatched}/{rows} tok"),
                ms,
                (rows * vocab * 4) as f64,
            );
        }
    }

    // PG loss over a learner batch of tokens.
    let n = 1 << 20;
    let logp: Vec<f32> = (0..n).map(|_| -rng.random_range(0.0f32..8.0)).collect();
    let old: Vec<f32> = logp
        .iter()
        .map(|&x| x + rng.random_range(-0.4f32..0.4))
        .collect();
    let adv: Vec<f32> = (0..n).map(|_| rng.random_range(-2.0f32..2.0)).collect();
    let mask: Vec<f32> = (0..n).map(|_| f32::from(rng.random_bool(0.8))).collect();
    let inputs = PgLossInputs {
        logp: &logp,
        old_logp: &old,
        advantages: &adv,
        mask: &mask,
    };
    let clip = ClipRange {
        low: 0.2,
        high: 0.28,
    };
    let cpu = troupe_kernels::pg_loss_fwd(inputs, clip);
    let gpu = k.pg_loss_fwd(inputs, clip)?;
    let d_cpu = troupe_kernels::pg_loss_bwd(inputs, clip, 1.0);
    let d_gpu = k.pg_loss_bwd(inputs, clip, 1.0)?;
    let d = [&logp, &old, &adv, &mask].map(|x| s.clone_htod(x.as_slice()));
    let d = d.into_iter().collect::<Result<Vec<_>, _>>()?;
    let views = PgLossViews {
        logp: d[0].as_view(),
        old_logp: d[1].as_view(),
        advantages: d[2].as_view(),
        mask: d[3].as_view(),
    };
    let mut stats: CudaSlice<f32> = s.alloc_zeros(3)?;
    let mut dlp: CudaSlice<f32> = s.alloc_zeros(n)?;
    let ms = time_ms(&s, || {
        Ok(k.pg_loss_fwd_dev(&views, clip, &mut stats.as_view_mut())?)
    })?;
    let err = (cpu.loss - gpu.loss).abs();
    table.row(
        "pg_loss_fwd",
        format!("{n}"),
        format!("{err:.1e}"),
        ms,
        (16 * n) as f64,
    );
    let ms = time_ms(&s, || {
        Ok(k.pg_loss_bwd_dev(&views, clip, 1.0, &mut dlp.as_view_mut())?)
    })?;
    let err = max_abs(&d_cpu, &d_gpu);
    table.row(
        "pg_loss_bwd",
        format!("{n}"),
        format!("{err:.1e}"),
        ms,
        (36 * n) as f64,
    );

    // Weight push of a SmolLM2-135M-sized f32 buffer. GB/s counts the buffer's bytes once.
    let bytes = (WEIGHTS * 4) as f64;
    let src: CudaSlice<f32> = s.alloc_zeros(WEIGHTS)?;
    let mut dst: CudaSlice<f32> = s.alloc_zeros(WEIGHTS)?;
    let shape = format!("{WEIGHTS} f32");
    match NcclId::new() {
        Ok(id) => {
            // World 1 (one GPU): NCCL skips an in-place broadcast entirely, so only the
            // out-of-place one moves the bytes (as a copy); across GPUs it is the same call.
            let wb = WeightBroadcast::join(s.clone(), 0, 1, id)?;
            let ms = time_ms(&s, || Ok(wb.broadcast_into(Some(&src), &mut dst, 0)?))?;
            table.row(
                "nccl broadcast src->dst (world 1)",
                shape.clone(),
                "-".into(),
                ms,
                bytes,
            );
        }
        Err(e) => println!("NCCL skipped: {e}"),
    }
    let ms = time_ms(&s, || Ok(copy_weights(&s, &src, &mut dst)?))?;
    table.row("device-to-device copy", shape, "-".into(), ms, bytes);
    s.synchronize()?;

    table.print();
    println!("GB/s: the least bytes a call must move (inputs read once, outputs written once);");
    println!("      for the weight push, the buffer's size once (a copy reads and writes it).");
    println!("sample: the error is over rows where both chose the same token; 'tok' counts rows");
    println!("      whose token differs (a draw within rounding of a nucleus or CDF boundary).");
    Ok(())
}
