//! The batched decode loop.

use std::time::{Duration, Instant};

use candle_core::{Device, Tensor};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use troupe_core::TokenId;
use troupe_model::{KvCache, Transformer, transformer::MASKED};

use crate::SamplerError;

/// How tokens are drawn.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SamplingParams {
    /// Softmax temperature; `0` is greedy decoding.
    pub temperature: f32,
    /// Nucleus mass; `1.0` samples from the full distribution (unbiased for RL).
    pub top_p: f32,
    /// Longest completion, in tokens (the end-of-turn token included).
    pub max_new_tokens: usize,
}

impl Default for SamplingParams {
    fn default() -> Self {
        Self {
            temperature: 1.0,
            top_p: 1.0,
            max_new_tokens: 16,
        }
    }
}

impl SamplingParams {
    /// Greedy decoding, for evaluation.
    pub fn greedy(max_new_tokens: usize) -> Self {
        Self {
            temperature: 0.0,
            top_p: 1.0,
            max_new_tokens,
        }
    }
}

/// One completion: its tokens and, per token, the behaviour log-prob.
#[derive(Debug, Clone, PartialEq)]
pub struct Generation {
    /// Generated ids (ending with the end-of-turn token when `finished`).
    pub tokens: Vec<TokenId>,
    /// `log softmax(logits / T)` of each generated token (`T = 1` when greedy).
    pub logprobs: Vec<f32>,
    /// Whether the policy closed its turn before `max_new_tokens`.
    pub finished: bool,
}

/// What a streaming caller wants after seeing one of a row's tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Keep generating this row.
    Continue,
    /// Stop this row here (a stop string matched, or nobody is listening any more).
    Stop,
}

/// Where a [`generate_timed`] call spent its time.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct DecodeTiming {
    /// The prompt pass: building the batch, the forward pass, reading the logits.
    pub prefill: Duration,
    /// Everything after it: drawing each token and each one-token forward pass.
    pub decode: Duration,
    /// One-token forward passes run (each advances every row of the batch).
    pub decode_steps: usize,
}

/// Generates one completion per prompt, all prompts in one left-padded batch.
/// `rngs[i]` drives row `i` alone, so a row's tokens do not depend on its batch-mates.
pub fn generate(
    model: &Transformer,
    prompts: &[Vec<TokenId>],
    params: &SamplingParams,
    rngs: &mut [ChaCha8Rng],
) -> Result<Vec<Generation>, SamplerError> {
    Ok(generate_timed(model, prompts, params, rngs)?.0)
}

/// [`generate`], also reporting how long the prompt pass and the decode steps took.
pub fn generate_timed(
    model: &Transformer,
    prompts: &[Vec<TokenId>],
    params: &SamplingParams,
    rngs: &mut [ChaCha8Rng],
) -> Result<(Vec<Generation>, DecodeTiming), SamplerError> {
    let params = vec![*params; prompts.len()];
    decode(model, prompts, &params, rngs, |_, _, _| Flow::Continue)
}

/// [`generate`] with per-row sampling parameters, handing each token to `on_token(row,
/// token, logprob)` as soon as it is drawn; a row whose callback answers [`Flow::Stop`]
/// draws no more tokens. Row `i` may draw up to `params[i].max_new_tokens`, bounded by
/// what its own prompt leaves of `max_seq`.
pub fn generate_streaming(
    model: &Transformer,
    prompts: &[Vec<TokenId>],
    params: &[SamplingParams],
    rngs: &mut [ChaCha8Rng],
    on_token: impl FnMut(usize, TokenId, f32) -> Flow,
) -> Result<Vec<Generation>, SamplerError> {
    Ok(decode(model, prompts, params, rngs, on_token)?.0)
}

/// The decode loop behind every entry point: a left-padded prompt pass, then one-token
/// cached passes until every row has ended, stopped or spent its budget.
fn decode(
    model: &Transformer,
    prompts: &[Vec<TokenId>],
    params: &[SamplingParams],
    rngs: &mut [ChaCha8Rng],
    mut on_token: impl FnMut(usize, TokenId, f32) -> Flow,
) -> Result<(Vec<Generation>, DecodeTiming), SamplerError> {
    let started = Instant::now();
    let mut timing = DecodeTiming::default();
    if rngs.len() != prompts.len() {
        return Err(SamplerError::RngCount {
            prompts: prompts.len(),
            rngs: rngs.len(),
        });
    }
    if params.len() != prompts.len() {
        return Err(SamplerError::ParamsCount {
            prompts: prompts.len(),
            params: params.len(),
        });
    }
    let b = prompts.len();
    if b == 0 {
        return Ok((Vec::new(), timing));
    }
    let max_seq = model.config().max_seq;
    let longest = prompts.iter().map(Vec::len).max().unwrap_or(0);
    if longest + 1 > max_seq {
        return Err(SamplerError::PromptTooLong {
            len: longest,
            max: max_seq,
        });
    }
    let pads: Vec<usize> = prompts.iter().map(|p| longest - p.len()).collect();
    let (pad_id, end_id) = (model.config().pad_token, model.config().end_token);
    let dev: &Device = model.device();

    // Prefill: left-padded prompts, per-row positions, pads masked out.
    let mut ids = Vec::with_capacity(b * longest);
    let mut pos = Vec::with_capacity(b * longest);
    let mut bias = Vec::with_capacity(b * longest * longest);
    for (p, &pad) in prompts.iter().zip(&pads) {
        ids.extend(std::iter::repeat_n(pad_id, pad));
        ids.extend_from_slice(p);
        pos.extend((0..longest).map(|j| j.saturating_sub(pad) as u32));
        for i in 0..longest {
            bias.extend((0..longest).map(|j| if j <= i && j >= pad { 0.0 } else { MASKED }));
        }
    }
    let mut cache = KvCache::new();
    let mut last: Vec<Vec<f32>> = model
        .forward_last(
            &Tensor::from_vec(ids, (b, longest), dev)?,
            &Tensor::from_vec(pos, (b, longest), dev)?,
            &Tensor::from_vec(bias, (b, 1, longest, longest), dev)?,
            Some(&mut cache),
        )?
        .to_vec2()?;
    timing.prefill = started.elapsed();

    // Each row may generate until its own context is full: a long batch-mate (a
    // multi-turn episode further along) must not cut a short row's turn.
    let budgets: Vec<usize> = params
        .iter()
        .zip(prompts)
        .map(|(p, prompt)| p.max_new_tokens.min(max_seq - prompt.len()))
        .collect();
    let mut out: Vec<Generation> = (0..b)
        .map(|_| Generation {
            tokens: Vec::new(),
            logprobs: Vec::new(),
            finished: false,
        })
        .collect();
    let mut stopped = vec![false; b];
    let live = |g: &Generation, stopped: bool, budget: usize| {
        !g.finished && !stopped && g.tokens.len() < budget
    };
    for step in 0..budgets.iter().copied().max().unwrap_or(0) {
        let mut next = Vec::with_capacity(b);
        for (row, gen_) in out.iter_mut().enumerate() {
            if !live(gen_, stopped[row], budgets[row]) {
                next.push(pad_id);
                continue;
            }
            let p = &params[row];
            let u: f32 = if p.temperature > 0.0 {
                rngs[row].random()
            } else {
                0.0
            };
            let (tok, lp) = troupe_kernels::sample_top_p(&last[row], p.temperature, p.top_p, u);
            let tok = tok as TokenId;
            gen_.tokens.push(tok);
            gen_.logprobs.push(lp);
            gen_.finished = tok == end_id;
            stopped[row] = on_token(row, tok, lp) == Flow::Stop;
            next.push(if gen_.finished || stopped[row] {
                pad_id
            } else {
                tok
            });
        }
        let active = (0..b).any(|row| live(&out[row], stopped[row], budgets[row]));
        if !active {
            break;
        }
        let keys = longest + step + 1;
        // A row that is done is fed padding whose output is ignored; its position is
        // clamped so it never leaves the position table.
        let pos: Vec<u32> = pads
            .iter()
            .map(|&pad| (longest + step - pad).min(max_seq - 1) as u32)
            .collect();
        let bias: Vec<f32> = pads
            .iter()
            .flat_map(|&pad| (0..keys).map(move |j| if j >= pad { 0.0 } else { MASKED }))
            .collect();
        last = model
            .forward_last(
                &Tensor::from_vec(next, (b, 1), dev)?,
                &Tensor::from_vec(pos, (b, 1), dev)?,
                &Tensor::from_vec(bias, (b, 1, 1, keys), dev)?,
                Some(&mut cache),
            )?
            .to_vec2()?;
        timing.decode_steps += 1;
    }
    timing.decode = started.elapsed() - timing.prefill;
    Ok((out, timing))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use troupe_model::{
        ModelConfig, Params,
        config::Positions,
        logprob::{pack, target_logprobs},
        tokenizer::ChatTokenizer,
    };

    fn model(seed: u64) -> Transformer {
        let cfg = ModelConfig {
            d_model: 48,
            n_layers: 2,
            n_heads: 4,
            d_ff: 96,
            max_seq: 48,
            ..ModelConfig::default()
        };
        Transformer::new(&cfg, &Params::init(&cfg, seed).unwrap().tensors()).unwrap()
    }

    fn rngs(n: usize) -> Vec<ChaCha8Rng> {
        (0..n)
            .map(|i| ChaCha8Rng::seed_from_u64(i as u64))
            .collect()
    }

    /// Llama-shaped: rotary positions, grouped-query attention, SwiGLU, tied embeddings.
    fn llama_model(seed: u64) -> Transformer {
        let cfg = ModelConfig {
            d_model: 64,
            n_layers: 2,
            n_heads: 4,
            n_kv_heads: 2,
            d_ff: 96,
            max_seq: 96,
            positions: Positions::Rope,
            gated_mlp: true,
            tied_embeddings: true,
            ..ModelConfig::default()
        };
        Transformer::new(&cfg, &Params::init(&cfg, seed).unwrap().tensors()).unwrap()
    }

    /// The sampler's cached decode and the learner's uncached pass agree on every
    /// generated token's log-prob.
    fn assert_learner_agrees(m: &Transformer, max_new_tokens: usize) {
        let tok = ChatTokenizer::new();
        let prompts: Vec<Vec<u32>> = ["sort 3", "sort 91827", "12+7", "sort 4444444"]
            .iter()
            .map(|p| tok.generation_prompt(p))
            .collect();
        let params = SamplingParams {
            temperature: 1.0,
            top_p: 1.0,
            max_new_tokens,
        };
        let gens = generate(m, &prompts, &params, &mut rngs(4)).unwrap();
        let seqs: Vec<(Vec<u32>, Vec<u8>)> = prompts
            .iter()
            .zip(&gens)
            .map(|(p, g)| {
                let mut s = p.clone();
                s.extend(&g.tokens);
                let mut mask = vec![0u8; p.len()];
                mask.extend(std::iter::repeat_n(1u8, g.tokens.len()));
                (s, mask)
            })
            .collect();
        let refs: Vec<(&[u32], &[u8])> = seqs
            .iter()
            .map(|(s, m)| (s.as_slice(), m.as_slice()))
            .collect();
        let packed = pack(&refs, m.config().max_seq).unwrap();
        let learner: Vec<Vec<f32>> = target_logprobs(m, &packed).unwrap().to_vec2().unwrap();
        let mut compared = 0;
        for (row, (p, g)) in prompts.iter().zip(&gens).enumerate() {
            for (k, lp) in g.logprobs.iter().enumerate() {
                let l = learner[row][p.len() + k - 1];
                assert!(
                    (l - lp).abs() < 1e-4,
                    "row {row} token {k}: sampler {lp} learner {l}"
                );
                compared += 1;
            }
        }
        assert!(compared > 8);
    }

    #[test]
    fn sampler_logprobs_equal_learner_recomputation() {
        assert_learner_agrees(&model(3), 12);
    }

    #[test]
    fn sampler_logprobs_equal_learner_recomputation_llama_shaped() {
        assert_learner_agrees(&llama_model(3), 60);
    }

    #[test]
    fn rows_do_not_depend_on_batch_mates() {
        let m = model(4);
        let tok = ChatTokenizer::new();
        let a = tok.generation_prompt("sort 5312");
        let b = tok.generation_prompt("sort 9");
        let params = SamplingParams::default();
        let alone = generate(&m, std::slice::from_ref(&a), &params, &mut rngs(1)).unwrap();
        let together = generate(&m, &[a, b], &params, &mut rngs(2)).unwrap();
        assert_eq!(alone[0].tokens, together[0].tokens);
    }

    #[test]
    fn streaming_reports_every_token_and_honours_per_row_budgets_and_stops() {
        let m = model(6);
        let tok = ChatTokenizer::new();
        let prompts = vec![
            tok.generation_prompt("sort 51"),
            tok.generation_prompt("12+7"),
        ];
        let params = SamplingParams::default();
        let reference = generate(&m, &prompts, &params, &mut rngs(2)).unwrap();

        // Same parameters: the callback sees exactly what `generate` returns.
        let mut seen = [Vec::new(), Vec::new()];
        let streamed = generate_streaming(&m, &prompts, &[params; 2], &mut rngs(2), |r, t, _| {
            seen[r].push(t);
            Flow::Continue
        })
        .unwrap();
        assert_eq!(streamed, reference);
        for (s, g) in seen.iter().zip(&reference) {
            assert_eq!(s, &g.tokens);
        }

        // Row 1 with a budget of three, then row 0 stopped by its callback after two
        // tokens: neither changes the other's tokens; each is a prefix of its full run.
        let short = SamplingParams {
            max_new_tokens: 3,
            ..params
        };
        let cut = generate_streaming(&m, &prompts, &[params, short], &mut rngs(2), |_, _, _| {
            Flow::Continue
        })
        .unwrap();
        assert_eq!(cut[0], reference[0]);
        assert!(cut[1].tokens.len() <= 3);
        assert_eq!(
            cut[1].tokens[..],
            reference[1].tokens[..cut[1].tokens.len()]
        );
        let mut count = 0;
        let stopped = generate_streaming(&m, &prompts, &[params; 2], &mut rngs(2), |r, _, _| {
            if r == 0 {
                count += 1;
                if count == 2 {
                    return Flow::Stop;
                }
            }
            Flow::Continue
        })
        .unwrap();
        assert_eq!(
            stopped[0].tokens[..],
            reference[0].tokens[..2.min(reference[0].tokens.len())]
        );
        assert_eq!(stopped[1], reference[1]);
    }

    #[test]
    fn a_long_batch_mate_does_not_cut_a_short_row() {
        // max_seq 48: the long prompt leaves room for 3 tokens, the short one for 16.
        let m = model(6);
        let tok = ChatTokenizer::new();
        let short = tok.generation_prompt("sort 5312");
        let long = tok.generation_prompt(&"9".repeat(41));
        assert_eq!(long.len(), 45);
        let params = SamplingParams {
            temperature: 1.0,
            top_p: 1.0,
            max_new_tokens: 16,
        };
        let alone = generate(&m, std::slice::from_ref(&short), &params, &mut rngs(1)).unwrap();
        let both = generate(&m, &[short.clone(), long.clone()], &params, &mut rngs(2)).unwrap();
        assert_eq!(both[0].tokens, alone[0].tokens);
        assert_eq!(both[0].tokens.len(), 16);
        assert!(both[1].tokens.len() <= 3);
        // Both rows' log-probs are still exact.
        for (p, g) in [(&short, &both[0]), (&long, &both[1])] {
            let reference = m.sequence_logprobs(p, &g.tokens).unwrap();
            for (a, b) in reference.iter().zip(&g.logprobs) {
                assert!((a - b).abs() < 1e-4, "{a} vs {b}");
            }
        }
    }

    #[test]
    fn greedy_is_argmax_and_respects_budget() {
        let m = model(5);
        let tok = ChatTokenizer::new();
        let p = tok.generation_prompt("sort 777");
        let g = generate(
            &m,
            std::slice::from_ref(&p),
            &SamplingParams::greedy(5),
            &mut rngs(1),
        )
        .unwrap();
        assert!(g[0].tokens.len() <= 5);
        let reference = m.sequence_logprobs(&p, &g[0].tokens).unwrap();
        for (a, b) in reference.iter().zip(&g[0].logprobs) {
            assert!((a - b).abs() < 1e-4);
        }
    }
}
