//! The batched decode loop.

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

/// Generates one completion per prompt, all prompts in one left-padded batch.
/// `rngs[i]` drives row `i` alone, so a row's tokens do not depend on its batch-mates.
pub fn generate(
    model: &Transformer,
    prompts: &[Vec<TokenId>],
    params: &SamplingParams,
    rngs: &mut [ChaCha8Rng],
) -> Result<Vec<Generation>, SamplerError> {
    if rngs.len() != prompts.len() {
        return Err(SamplerError::RngCount {
            prompts: prompts.len(),
            rngs: rngs.len(),
        });
    }
    let b = prompts.len();
    if b == 0 {
        return Ok(Vec::new());
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
    let dev = &Device::Cpu;

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
    let logits = model.forward(
        &Tensor::from_vec(ids, (b, longest), dev)?,
        &Tensor::from_vec(pos, (b, longest), dev)?,
        &Tensor::from_vec(bias, (b, 1, longest, longest), dev)?,
        Some(&mut cache),
    )?;
    let mut last: Vec<Vec<f32>> = logits.narrow(1, longest - 1, 1)?.squeeze(1)?.to_vec2()?;

    // Each row may generate until its own context is full: a long batch-mate (a
    // multi-turn episode further along) must not cut a short row's turn.
    let room: Vec<usize> = prompts
        .iter()
        .map(|p| params.max_new_tokens.min(max_seq - p.len()))
        .collect();
    let budget = room.iter().copied().max().unwrap_or(0);
    let mut out: Vec<Generation> = (0..b)
        .map(|_| Generation {
            tokens: Vec::new(),
            logprobs: Vec::new(),
            finished: false,
        })
        .collect();
    for step in 0..budget {
        let mut next = Vec::with_capacity(b);
        for (row, gen_) in out.iter_mut().enumerate() {
            if gen_.finished || gen_.tokens.len() > step || gen_.tokens.len() >= room[row] {
                next.push(pad_id);
                continue;
            }
            let u: f32 = if params.temperature > 0.0 {
                rngs[row].random()
            } else {
                0.0
            };
            let (tok, lp) =
                troupe_kernels::sample_top_p(&last[row], params.temperature, params.top_p, u);
            let tok = tok as TokenId;
            gen_.tokens.push(tok);
            gen_.logprobs.push(lp);
            gen_.finished = tok == end_id;
            next.push(if gen_.finished { pad_id } else { tok });
        }
        let active = out
            .iter()
            .zip(&room)
            .any(|(g, &room)| !g.finished && g.tokens.len() == step + 1 && g.tokens.len() < room);
        if !active || step + 1 == budget {
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
        let logits = model.forward(
            &Tensor::from_vec(next, (b, 1), dev)?,
            &Tensor::from_vec(pos, (b, 1), dev)?,
            &Tensor::from_vec(bias, (b, 1, 1, keys), dev)?,
            Some(&mut cache),
        )?;
        last = logits.squeeze(1)?.to_vec2()?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use troupe_model::{
        ModelConfig, Params,
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

    #[test]
    fn sampler_logprobs_equal_learner_recomputation() {
        let m = model(3);
        let tok = ChatTokenizer::new();
        let prompts: Vec<Vec<u32>> = ["sort 3", "sort 91827", "12+7", "sort 4444444"]
            .iter()
            .map(|p| tok.generation_prompt(p))
            .collect();
        let params = SamplingParams {
            temperature: 1.0,
            top_p: 1.0,
            max_new_tokens: 12,
        };
        let gens = generate(&m, &prompts, &params, &mut rngs(4)).unwrap();
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
        let packed = pack(&refs, 48).unwrap();
        let learner: Vec<Vec<f32>> = target_logprobs(&m, &packed).unwrap().to_vec2().unwrap();
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
