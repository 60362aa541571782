//! SmolLM2-135M-Instruct from its GGUF (fetched by `scripts/fetch-smollm2.sh models`):
//! logits against candle's quantized_llama reference on the same weights, gradient
//! coverage, tokenizer round trips and the chat template, and the quantised sampler's
//! log-prob gap.

use std::collections::HashMap;
use std::io::Cursor;
use std::path::PathBuf;

use candle_core::quantized::{GgmlDType, QMatMul, QTensor, gguf_file};
use candle_core::{D, Device, Module, Tensor};
use troupe_model::config::{ModelConfig, SamplerWeights};
use troupe_model::gguf::permute_rotary;
use troupe_model::layers::LinearWeight;
use troupe_model::logprob::{pack, target_logprobs};
use troupe_model::pretrained::{initial_weights, resolve};
use troupe_model::tokenizer::{ChatTokenizer, TurnRole};
use troupe_model::{Params, Transformer};

fn gguf_path() -> PathBuf {
    let path = std::env::var_os("TROUPE_SMOLLM2_GGUF")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../models/SmolLM2-135M-Instruct.Q4_1.gguf")
        });
    assert!(
        path.exists(),
        "{} is missing: run `scripts/fetch-smollm2.sh models` (or set TROUPE_SMOLLM2_GGUF)",
        path.display()
    );
    path
}

fn spec(max_seq: usize) -> (ModelConfig, ChatTokenizer) {
    let cfg = ModelConfig {
        pretrained: Some(gguf_path()),
        max_seq,
        ..ModelConfig::default()
    };
    let spec = resolve(&cfg).unwrap();
    (spec.config, spec.tokenizer)
}

fn forward_all(model: &Transformer, ids: &[u32]) -> Tensor {
    let n = ids.len();
    let dev = &Device::Cpu;
    let x = Tensor::from_vec(ids.to_vec(), (1, n), dev).unwrap();
    let pos = Tensor::arange(0u32, n as u32, dev)
        .unwrap()
        .reshape((1, n))
        .unwrap();
    model
        .forward(&x, &pos, &Transformer::causal_bias(n).unwrap(), None)
        .unwrap()
        .squeeze(0)
        .unwrap()
}

#[test]
fn the_named_shape_is_the_ggufs() {
    let (from_file, _) = spec(2048);
    let named = ModelConfig::smollm2_135m_shape();
    assert_eq!(named.parameter_count(), 134_515_008);
    // The file's epsilon is stored as f32; the named shape keeps the byte tokenizer's
    // pad and end ids (its vocabulary holds them).
    assert!((from_file.rms_eps - named.rms_eps).abs() < 1e-9);
    assert_eq!(
        ModelConfig {
            pretrained: None,
            sampler_weights: named.sampler_weights,
            rms_eps: named.rms_eps,
            pad_token: named.pad_token,
            end_token: named.end_token,
            ..from_file
        },
        named
    );
}

#[test]
fn shape_and_tokenizer_come_from_the_gguf() {
    let (cfg, tok) = spec(256);
    assert_eq!(
        (
            cfg.vocab,
            cfg.d_model,
            cfg.n_layers,
            cfg.n_heads,
            cfg.kv_heads(),
            cfg.d_ff
        ),
        (49152, 576, 30, 9, 3, 1536)
    );
    assert!(cfg.tied_embeddings && cfg.gated_mlp);
    assert_eq!(cfg.parameter_count(), 134_515_008);
    let ChatTokenizer::ChatMl(chat) = &tok else {
        panic!("expected the ChatML tokenizer")
    };
    // The model's own template, with its default system prompt.
    let prompt = tok.generation_prompt("Sort 3 1 2");
    assert_eq!(
        chat.decode_with_specials(&prompt),
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\nSort 3 1 2<|im_end|>\n<|im_start|>assistant\n"
    );
    // A chat request's messages: an explicit system turn replaces the default one.
    assert_eq!(tok.chat_prompt(&[(TurnRole::User, "Sort 3 1 2")]), prompt);
    let chat_ids = tok.chat_prompt(&[
        (TurnRole::System, "Be brief."),
        (TurnRole::User, "Hi"),
        (TurnRole::Assistant, "Hello!"),
        (TurnRole::User, "Bye"),
    ]);
    assert_eq!(
        chat.decode_with_specials(&chat_ids),
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello!<|im_end|>\n<|im_start|>user\nBye<|im_end|>\n<|im_start|>assistant\n"
    );
    // Digits are split one by one and there is no prefix space.
    let ids = tok.encode_text("x 2024");
    let pieces: Vec<String> = ids
        .iter()
        .map(|&i| chat.decode_with_specials(&[i]))
        .collect();
    assert_eq!(pieces, ["x", " ", "2", "0", "2", "4"]);
    let hello = tok.encode_text("Hello");
    assert_eq!(
        hello.len(),
        1,
        "`Hello` is one token without a prefix space"
    );
    // Lossless round trips, including non-ASCII and whitespace runs.
    for s in [
        "",
        "Hello, world!",
        "  two  spaces\tand\ttabs\n\nnewlines",
        "naïve café — 東京 🚀",
        "fn main() { println!(\"{}\", 1 + 2); }",
        "<|im_start|> is plain text here",
    ] {
        assert_eq!(tok.decode(&tok.encode_text(s)), s, "{s:?}");
    }
    // The SFT encoding's prefix is exactly what a sampler is prompted with.
    let (conv, mask) = tok.encode_conversation(&[
        (TurnRole::User, "Sort 3 1 2"),
        (TurnRole::Assistant, "1 2 3"),
    ]);
    assert_eq!(&conv[..prompt.len()], &prompt[..]);
    let trained: Vec<u32> = conv
        .iter()
        .zip(&mask)
        .filter(|(_, m)| **m == 1)
        .map(|(t, _)| *t)
        .collect();
    let mut expected = tok.encode_text("1 2 3");
    expected.push(tok.end_id());
    assert_eq!(trained, expected);
    // A tool result is a `tool` turn, as the model's template renders a tool message,
    // followed by the assistant opener; it is context, never trained.
    let tool = tok.observation_as(TurnRole::Tool, "2726");
    assert_eq!(
        chat.decode_with_specials(&tool),
        "\n<|im_start|>tool\n2726<|im_end|>\n<|im_start|>assistant\n"
    );
    let (conv, mask) = tok.encode_conversation(&[
        (TurnRole::User, "47*58"),
        (TurnRole::Assistant, "<call>calc 47*58</call>"),
        (TurnRole::Tool, "2726"),
        (TurnRole::Assistant, "2726"),
    ]);
    let mut sampled = tok.generation_prompt("47*58");
    sampled.extend(tok.encode_text("<call>calc 47*58</call>"));
    sampled.push(tok.end_id());
    sampled.extend(&tool);
    assert_eq!(&conv[..sampled.len()], &sampled[..]);
    let call_end = sampled.len() - tool.len();
    assert!(mask[call_end..sampled.len()].iter().all(|&m| m == 0));
}

#[test]
fn logits_match_candle_quantized_llama_on_the_same_weights() {
    let (cfg, tok) = spec(64);
    let weights = initial_weights(&cfg).unwrap();
    let model = Transformer::new(&cfg, &weights.to_map()).unwrap();

    // The reference reads the same dequantised weights from an f32 GGUF, in llama.cpp's
    // layout (q/k permuted back) and with its own rotary implementation.
    let file = gguf_file::Content::read(&mut std::fs::File::open(gguf_path()).unwrap()).unwrap();
    let mut tensors: Vec<(String, QTensor)> = Vec::new();
    for (name, t) in weights.map() {
        let ext = troupe_model::names::external(name, troupe_model::names::Scheme::Gguf).unwrap();
        let t = if name.ends_with(".wq") {
            permute_rotary(t, cfg.n_heads).unwrap()
        } else if name.ends_with(".wk") {
            permute_rotary(t, cfg.kv_heads()).unwrap()
        } else {
            t.clone()
        };
        tensors.push((ext, QTensor::quantize(&t, GgmlDType::F32).unwrap()));
    }
    let metadata: Vec<(&str, &gguf_file::Value)> =
        file.metadata.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let tensor_refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
    let mut buf = Cursor::new(Vec::new());
    gguf_file::write(&mut buf, &metadata, &tensor_refs).unwrap();
    buf.set_position(0);
    let content = gguf_file::Content::read(&mut buf).unwrap();
    let mut reference = candle_transformers::models::quantized_llama::ModelWeights::from_gguf(
        content,
        &mut buf,
        &Device::Cpu,
    )
    .unwrap();

    let ids = tok.generation_prompt("What is the capital of France?");
    let n = ids.len();
    let ours = forward_all(&model, &ids);
    let input = Tensor::from_vec(ids.clone(), (1, n), &Device::Cpu).unwrap();
    let theirs = reference.forward(&input, 0).unwrap().squeeze(0).unwrap();
    let last = ours.get(n - 1).unwrap();
    let diff = (&last - &theirs)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    let scale = theirs
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    println!(
        "last-position logits: max |ours - quantized_llama| = {diff:.2e} (max |logit| {scale:.1})"
    );
    assert!(diff < 1e-3, "logits differ by {diff}");
    assert_eq!(
        last.argmax(D::Minus1).unwrap().to_scalar::<u32>().unwrap(),
        theirs
            .argmax(D::Minus1)
            .unwrap()
            .to_scalar::<u32>()
            .unwrap()
    );
}

#[test]
fn greedy_answer_is_coherent_and_q8_and_q4_samplers_track_the_f32_learner() {
    let (cfg, tok) = spec(96);
    let weights = initial_weights(&cfg).unwrap();
    let dense = Transformer::new(&cfg, &weights.to_map()).unwrap();

    let mut ids = tok.generation_prompt("What is the capital of France? Answer in one word.");
    let start = ids.len();
    for _ in 0..8 {
        let logits = forward_all(&dense, &ids);
        let next = logits
            .get(ids.len() - 1)
            .unwrap()
            .argmax(D::Minus1)
            .unwrap()
            .to_scalar::<u32>()
            .unwrap();
        ids.push(next);
        if next == tok.end_id() {
            break;
        }
    }
    let answer = tok.decode(&ids[start..]);
    println!("greedy answer: {answer:?}");
    assert!(answer.contains("Paris"), "answer {answer:?}");

    // Log-probs of the answer under the quantised sampler weights vs the f32 learner.
    // Q4_1 gives back the file's own weights (its layers in Q4_1, the tied embedding in
    // Q8_0), so only the activations' rounding is left: measured 0.036, Q8_0 0.065.
    let lp = |m: &Transformer| m.sequence_logprobs(&ids[..start], &ids[start..]).unwrap();
    let reference = lp(&dense);
    for (weights_format, tolerance) in [(SamplerWeights::Q8_0, 0.1), (SamplerWeights::Q4_1, 0.1)] {
        let sampler = Transformer::with_weights(&cfg, &weights.to_map(), weights_format).unwrap();
        let got = lp(&sampler);
        let gap = reference
            .iter()
            .zip(&got)
            .map(|(x, y)| (x - y).abs())
            .fold(0f32, f32::max);
        println!(
            "{weights_format:?} sampler vs f32 learner: max |Δ log-prob| = {gap:.4} over {} tokens",
            got.len()
        );
        assert!(
            gap < tolerance,
            "{weights_format:?} sampler drifts by {gap}"
        );
    }
}

/// The file's Q4_1 blocks, dequantised for the learner, quantise back to themselves: the
/// Q4_1 sampler matmul gives what candle's gives on the file's own tensor.
#[test]
fn q4_1_sampler_weights_are_the_files_own_blocks() {
    let path = gguf_path();
    let mut file = std::fs::File::open(&path).unwrap();
    let content = gguf_file::Content::read(&mut file).unwrap();
    for name in [
        "blk.0.ffn_down.weight",
        "blk.7.attn_q.weight",
        "blk.29.ffn_up.weight",
    ] {
        let q = content.tensor(&mut file, name, &Device::Cpu).unwrap();
        assert_eq!(q.dtype(), GgmlDType::Q4_1, "{name}");
        let w = q.dequantize(&Device::Cpu).unwrap();
        let ours = LinearWeight::quantize(&w, GgmlDType::Q4_1).unwrap();
        let theirs = QMatMul::from_qtensor(q).unwrap();
        let x = Tensor::randn(0f32, 1.0, (1, 5, w.dim(1).unwrap()), &Device::Cpu).unwrap();
        let diff = (ours.forward(&x).unwrap() - theirs.forward(&x).unwrap())
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(diff < 1e-4, "{name}: differs by {diff}");
    }
}

#[test]
fn every_parameter_of_the_pretrained_model_gets_a_gradient() {
    let (cfg, tok) = spec(64);
    let params = Params::from_snapshot(&cfg, &initial_weights(&cfg).unwrap()).unwrap();
    let model = Transformer::new(&cfg, &params.tensors()).unwrap();
    let (seq, mask) =
        tok.encode_conversation(&[(TurnRole::User, "2+2"), (TurnRole::Assistant, "4")]);
    let packed = pack(&[(&seq, &mask)], cfg.max_seq).unwrap();
    let loss = (target_logprobs(&model, &packed).unwrap() * &packed.mask)
        .unwrap()
        .sum_all()
        .unwrap()
        .neg()
        .unwrap();
    let grads = loss.backward().unwrap();
    let mut missing = Vec::new();
    let mut norms = HashMap::new();
    for (name, var) in params.names().iter().zip(params.vars()) {
        match grads.get(var.as_tensor()) {
            Some(g) => {
                let n = g
                    .sqr()
                    .unwrap()
                    .sum_all()
                    .unwrap()
                    .to_scalar::<f32>()
                    .unwrap();
                if n == 0.0 {
                    missing.push(name.clone());
                }
                norms.insert(name.clone(), n);
            }
            None => missing.push(name.clone()),
        }
    }
    assert_eq!(params.names().len(), 2 + 30 * 9);
    assert!(missing.is_empty(), "no gradient for {missing:?}");
}

#[test]
fn hugging_face_export_round_trips_weights_tokenizer_and_logits() {
    let (cfg, tok) = spec(64);
    let weights = initial_weights(&cfg).unwrap();
    let ChatTokenizer::ChatMl(chat) = &tok else {
        panic!("expected the ChatML tokenizer")
    };
    let dir = std::env::temp_dir().join(format!("troupe-hf-export-{}", std::process::id()));
    troupe_model::hf::export(&dir, &cfg, &weights, chat).unwrap();
    for file in [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
        "generation_config.json",
    ] {
        assert!(dir.join(file).exists(), "{file} missing");
    }
    let back_cfg = ModelConfig {
        pretrained: Some(dir.clone()),
        max_seq: 64,
        ..ModelConfig::default()
    };
    let back = resolve(&back_cfg).unwrap();
    let mut expected = cfg.clone();
    expected.pretrained = back.config.pretrained.clone();
    assert_eq!(back.config, expected);
    let back_weights = initial_weights(&back.config).unwrap();
    assert_eq!(weights.max_abs_diff(&back_weights).unwrap(), 0.0);
    let prompt = tok.generation_prompt("Sort 9 4 7, then say 12 naïve words.");
    assert_eq!(
        back.tokenizer
            .generation_prompt("Sort 9 4 7, then say 12 naïve words."),
        prompt
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
