//! A byte-level BPE tokenizer with the ChatML template, as used by SmolLM2, Qwen2 and
//! other Hugging Face chat models, built from a GGUF file's `tokenizer.ggml.*` metadata
//! or read from a `tokenizer.json`.
//!
//! candle's GGUF tokenizer adds a prefix space and ignores
//! `tokenizer.ggml.add_space_prefix = false`; this one builds the pre-tokenizer the model
//! was trained with: individual digits, then GPT-2 byte-level splitting without a prefix
//! space.

use std::path::Path;

use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::{BPE, Vocab};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::{AddedToken, Tokenizer};
use troupe_core::TokenId;

use crate::{ModelError, Result};

/// GGUF `token_type` of control tokens (special tokens).
const CONTROL: i32 = 3;

/// Tokenizer and template of a ChatML model.
#[derive(Debug, Clone)]
pub struct ChatMl {
    tokenizer: Tokenizer,
    im_start: TokenId,
    im_end: TokenId,
    newline: Vec<TokenId>,
    default_system: Option<String>,
    vocab: usize,
}

fn tok_err(what: &str, e: impl std::fmt::Display) -> ModelError {
    ModelError::Tokenizer(format!("{what}: {e}"))
}

impl ChatMl {
    /// Builds the tokenizer from GGUF tokenizer metadata: the token strings, BPE merges
    /// (`"a b"`), token types (3 = control) and the chat template text.
    pub fn from_gguf_parts(
        tokens: &[String],
        merges: &[String],
        token_types: &[i32],
        chat_template: Option<&str>,
    ) -> Result<Self> {
        let vocab: Vocab = tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (t.clone(), i as u32))
            .collect();
        let merges = merges
            .iter()
            .map(|m| {
                m.split_once(' ')
                    .map(|(a, b)| (a.to_string(), b.to_string()))
                    .ok_or_else(|| tok_err("merge", format!("`{m}` is not `a b`")))
            })
            .collect::<Result<Vec<_>>>()?;
        let bpe = BPE::builder()
            .vocab_and_merges(vocab, merges)
            .build()
            .map_err(|e| tok_err("BPE", e))?;
        let mut tokenizer = Tokenizer::new(bpe);
        tokenizer.with_pre_tokenizer(Some(Sequence::new(vec![
            Digits::new(true).into(),
            ByteLevel::new(false, true, true).into(),
        ])));
        tokenizer.with_decoder(Some(ByteLevelDecoder::default()));
        let specials: Vec<AddedToken> = tokens
            .iter()
            .zip(token_types)
            .filter(|(_, ty)| **ty == CONTROL)
            .map(|(t, _)| AddedToken::from(t.clone(), true))
            .collect();
        tokenizer
            .add_special_tokens(specials)
            .map_err(|e| tok_err("special tokens", e))?;
        Self::new(tokenizer, tokens.len(), chat_template)
    }

    /// Reads a Hugging Face `tokenizer.json`.
    pub fn from_file(path: &Path, chat_template: Option<&str>) -> Result<Self> {
        let tokenizer =
            Tokenizer::from_file(path).map_err(|e| tok_err(&path.display().to_string(), e))?;
        let vocab = tokenizer.get_vocab_size(true);
        Self::new(tokenizer, vocab, chat_template)
    }

    fn new(mut tokenizer: Tokenizer, vocab: usize, chat_template: Option<&str>) -> Result<Self> {
        // Text (prompts, observations, file contents) never turns into control tokens:
        // the template inserts those by id.
        tokenizer.set_encode_special_tokens(true);
        let id = |t: &str| {
            tokenizer
                .token_to_id(t)
                .ok_or_else(|| tok_err("chat template", format!("no `{t}` token")))
        };
        let mut this = Self {
            im_start: id("<|im_start|>")?,
            im_end: id("<|im_end|>")?,
            newline: Vec::new(),
            default_system: chat_template.and_then(default_system_prompt),
            tokenizer,
            vocab,
        };
        this.newline = this.encode_text("\n");
        Ok(this)
    }

    /// The tokenizer itself (for export).
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// Number of token ids.
    pub fn vocab_size(&self) -> usize {
        self.vocab
    }

    /// The system prompt the template inserts when a conversation has none.
    pub fn default_system(&self) -> Option<&str> {
        self.default_system.as_deref()
    }

    /// `<|im_end|>`, which closes every turn.
    pub fn end_id(&self) -> TokenId {
        self.im_end
    }

    /// Token ids of plain text (special-token strings in it are spelled out as text).
    pub fn encode_text(&self, text: &str) -> Vec<TokenId> {
        self.tokenizer
            .encode_fast(text, false)
            .map(|e| e.get_ids().to_vec())
            .unwrap_or_default()
    }

    /// Text of `tokens`, special tokens skipped.
    pub fn decode(&self, tokens: &[TokenId]) -> String {
        self.tokenizer.decode(tokens, true).unwrap_or_default()
    }

    /// Text of `tokens` with special tokens written out.
    pub fn decode_with_specials(&self, tokens: &[TokenId]) -> String {
        self.tokenizer.decode(tokens, false).unwrap_or_default()
    }

    /// `<|im_start|>role\n`: the context that opens a turn.
    pub fn header(&self, role: &str) -> Vec<TokenId> {
        let mut out = vec![self.im_start];
        out.extend(self.encode_text(&format!("{role}\n")));
        out
    }

    /// `\n` after `<|im_end|>`.
    pub fn newline(&self) -> &[TokenId] {
        &self.newline
    }
}

/// The default system prompt in a ChatML template of the SmolLM2 form
/// `{{ '<|im_start|>system\nPROMPT<|im_end|>\n' }}` (the newline written out or escaped).
fn default_system_prompt(template: &str) -> Option<String> {
    let start = "'<|im_start|>system";
    let rest = &template[template.find(start)? + start.len()..];
    let rest = rest
        .strip_prefix('\n')
        .or_else(|| rest.strip_prefix("\\n"))?;
    Some(rest[..rest.find("<|im_end|>")?].to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_system_prompt_is_read_from_the_template() {
        let t = "{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\\nYou are X<|im_end|>\\n' }}{% endif %}";
        assert_eq!(default_system_prompt(t).as_deref(), Some("You are X"));
        let real_newline = t.replace("\\n", "\n");
        assert_eq!(
            default_system_prompt(&real_newline).as_deref(),
            Some("You are X")
        );
        assert_eq!(default_system_prompt("{{ messages }}"), None);
    }
}
