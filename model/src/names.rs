//! One table of tensor names: troupe's, Hugging Face Llama's and GGUF's.

/// Per-layer names: (troupe suffix, Hugging Face suffix, GGUF suffix).
const LAYER: [(&str, &str, &str); 9] = [
    ("attn_norm", "input_layernorm.weight", "attn_norm.weight"),
    ("wq", "self_attn.q_proj.weight", "attn_q.weight"),
    ("wk", "self_attn.k_proj.weight", "attn_k.weight"),
    ("wv", "self_attn.v_proj.weight", "attn_v.weight"),
    ("wo", "self_attn.o_proj.weight", "attn_output.weight"),
    (
        "mlp_norm",
        "post_attention_layernorm.weight",
        "ffn_norm.weight",
    ),
    ("w_gate", "mlp.gate_proj.weight", "ffn_gate.weight"),
    ("w_up", "mlp.up_proj.weight", "ffn_up.weight"),
    ("w_down", "mlp.down_proj.weight", "ffn_down.weight"),
];

/// Whole-model names: (troupe, Hugging Face, GGUF).
const GLOBAL: [(&str, &str, &str); 3] = [
    ("tok_emb", "model.embed_tokens.weight", "token_embd.weight"),
    ("final_norm", "model.norm.weight", "output_norm.weight"),
    ("lm_head", "lm_head.weight", "output.weight"),
];

/// The naming scheme of a checkpoint format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// Hugging Face `transformers` Llama.
    HuggingFace,
    /// llama.cpp GGUF.
    Gguf,
}

fn pick<'a>(entry: &(&'a str, &'a str, &'a str), scheme: Scheme) -> &'a str {
    match scheme {
        Scheme::HuggingFace => entry.1,
        Scheme::Gguf => entry.2,
    }
}

/// The `scheme` name of troupe parameter `name`, if it has one.
pub fn external(name: &str, scheme: Scheme) -> Option<String> {
    if let Some(g) = GLOBAL.iter().find(|g| g.0 == name) {
        return Some(pick(g, scheme).to_string());
    }
    let rest = name.strip_prefix("layers.")?;
    let (l, suffix) = rest.split_once('.')?;
    let entry = LAYER.iter().find(|e| e.0 == suffix)?;
    Some(match scheme {
        Scheme::HuggingFace => format!("model.layers.{l}.{}", entry.1),
        Scheme::Gguf => format!("blk.{l}.{}", entry.2),
    })
}

/// The troupe name of a `scheme` tensor, if troupe has one.
pub fn internal(name: &str, scheme: Scheme) -> Option<String> {
    if let Some(g) = GLOBAL.iter().find(|g| pick(g, scheme) == name) {
        return Some(g.0.to_string());
    }
    let rest = match scheme {
        Scheme::HuggingFace => name.strip_prefix("model.layers.")?,
        Scheme::Gguf => name.strip_prefix("blk.")?,
    };
    let (l, suffix) = rest.split_once('.')?;
    l.parse::<usize>().ok()?;
    let entry = LAYER.iter().find(|e| pick(e, scheme) == suffix)?;
    Some(format!("layers.{l}.{}", entry.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_in_both_schemes() {
        for name in [
            "tok_emb",
            "layers.3.wq",
            "layers.29.w_gate",
            "final_norm",
            "lm_head",
        ] {
            for scheme in [Scheme::HuggingFace, Scheme::Gguf] {
                let ext = external(name, scheme).unwrap();
                assert_eq!(internal(&ext, scheme).as_deref(), Some(name), "{ext}");
            }
        }
        assert_eq!(
            external("layers.0.wk", Scheme::HuggingFace).unwrap(),
            "model.layers.0.self_attn.k_proj.weight"
        );
        assert_eq!(
            external("layers.0.wk", Scheme::Gguf).unwrap(),
            "blk.0.attn_k.weight"
        );
        assert_eq!(internal("rope_freqs.weight", Scheme::Gguf), None);
        assert_eq!(external("pos_emb", Scheme::HuggingFace), None);
    }
}
