//! Chat tokenizers: troupe's byte-level vocabulary, or a pretrained model's.
//!
//! Byte-level: ids 0..=255 are raw bytes, so every UTF-8 string encodes losslessly; the
//! special tokens frame chat turns: `<|bos|> <|user|> ... <|end|> <|assistant|> ... <|end|>`.
//! Pretrained: a BPE vocabulary with the ChatML template ([`crate::chatml`]).

use std::sync::Arc;

use troupe_core::TokenId;

use crate::chatml::ChatMl;

/// Padding (never attended to, never trained on).
pub const PAD: TokenId = 256;
/// Start of a conversation.
pub const BOS: TokenId = 257;
/// Opens a user turn.
pub const USER: TokenId = 258;
/// Opens an assistant turn.
pub const ASSISTANT: TokenId = 259;
/// Closes any turn; the policy ends its answer with it.
pub const END: TokenId = 260;
/// Opens a system turn.
pub const SYSTEM: TokenId = 261;
/// Opens a tool-result turn.
pub const TOOL: TokenId = 262;
/// Vocabulary size (bytes + specials, rounded up).
pub const VOCAB_SIZE: usize = 264;

/// Role of a chat turn, as the template sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TurnRole {
    /// System instructions.
    System,
    /// The user (or environment observation).
    User,
    /// The policy.
    Assistant,
    /// A tool's output.
    Tool,
}

impl TurnRole {
    fn token(self) -> TokenId {
        match self {
            TurnRole::System => SYSTEM,
            TurnRole::User => USER,
            TurnRole::Assistant => ASSISTANT,
            TurnRole::Tool => TOOL,
        }
    }

    /// The role's name in ChatML templates.
    pub fn name(self) -> &'static str {
        match self {
            TurnRole::System => "system",
            TurnRole::User => "user",
            TurnRole::Assistant => "assistant",
            TurnRole::Tool => "tool",
        }
    }
}

/// Encodes conversations with a chat template and decodes policy output: the built-in
/// byte-level vocabulary, or a pretrained model's BPE vocabulary with its ChatML template.
#[derive(Debug, Clone, Default)]
pub enum ChatTokenizer {
    /// Bytes plus troupe's own role tokens.
    #[default]
    Bytes,
    /// A pretrained model's tokenizer and template.
    ChatMl(Arc<ChatMl>),
}

impl ChatTokenizer {
    /// The byte-level tokenizer.
    pub fn new() -> Self {
        Self::Bytes
    }

    /// Number of token ids the tokenizer can produce.
    pub fn vocab_size(&self) -> usize {
        match self {
            Self::Bytes => VOCAB_SIZE,
            Self::ChatMl(c) => c.vocab_size(),
        }
    }

    /// Token ids of `text` (no special tokens).
    pub fn encode_text(&self, text: &str) -> Vec<TokenId> {
        match self {
            Self::Bytes => text.bytes().map(TokenId::from).collect(),
            Self::ChatMl(c) => c.encode_text(text),
        }
    }

    /// Text of `tokens` (specials skipped, invalid UTF-8 replaced).
    pub fn decode(&self, tokens: &[TokenId]) -> String {
        match self {
            Self::Bytes => {
                let bytes: Vec<u8> = tokens
                    .iter()
                    .filter(|&&t| t < 256)
                    .map(|&t| t as u8)
                    .collect();
                String::from_utf8_lossy(&bytes).into_owned()
            }
            Self::ChatMl(c) => c.decode(tokens),
        }
    }

    /// The end-of-turn token id.
    pub fn end_id(&self) -> TokenId {
        match self {
            Self::Bytes => END,
            Self::ChatMl(c) => c.end_id(),
        }
    }

    /// The id batches are padded with.
    pub fn pad_id(&self) -> TokenId {
        match self {
            Self::Bytes => PAD,
            Self::ChatMl(c) => c.end_id(),
        }
    }

    /// Tokens that open a turn of `role` (context, never trained).
    fn header(&self, role: TurnRole) -> Vec<TokenId> {
        match self {
            Self::Bytes => vec![role.token()],
            Self::ChatMl(c) => c.header(role.name()),
        }
    }

    /// Tokens after a turn's end token (ChatML's newline).
    fn separator(&self) -> Vec<TokenId> {
        match self {
            Self::Bytes => Vec::new(),
            Self::ChatMl(c) => c.newline().to_vec(),
        }
    }

    /// Tokens of one whole turn: opener, content, end, separator.
    pub fn turn(&self, role: TurnRole, content: &str) -> Vec<TokenId> {
        let mut out = self.header(role);
        out.extend(self.encode_text(content));
        out.push(self.end_id());
        out.extend(self.separator());
        out
    }

    /// Tokens that follow the policy's end token when the environment answers in a user
    /// turn, so the policy speaks next: separator, the user turn, the assistant opener.
    pub fn observation(&self, content: &str) -> Vec<TokenId> {
        self.observation_as(TurnRole::User, content)
    }

    /// Tokens that follow the policy's end token when the environment answers in a turn
    /// of `role` (a tool's result: [`TurnRole::Tool`]): separator, that turn, the
    /// assistant opener. The same tokens [`ChatTokenizer::encode_conversation`] puts
    /// between the two assistant turns around it.
    pub fn observation_as(&self, role: TurnRole, content: &str) -> Vec<TokenId> {
        let mut out = self.separator();
        out.extend(self.turn(role, content));
        out.extend(self.header(TurnRole::Assistant));
        out
    }

    /// Tokens that start every conversation: `BOS`, or the template's default system turn.
    fn preamble(&self, has_system: bool) -> Vec<TokenId> {
        match self {
            Self::Bytes => vec![BOS],
            Self::ChatMl(c) => match c.default_system() {
                Some(system) if !has_system => self.turn(TurnRole::System, system),
                _ => Vec::new(),
            },
        }
    }

    /// A fresh conversation's prompt for a first user message.
    pub fn generation_prompt(&self, user: &str) -> Vec<TokenId> {
        let mut out = self.preamble(false);
        out.extend(self.turn(TurnRole::User, user));
        out.extend(self.header(TurnRole::Assistant));
        out
    }

    /// The prompt that asks the policy for the next assistant turn of `turns` (an OpenAI
    /// chat request's messages): the conversation as [`ChatTokenizer::encode_conversation`]
    /// encodes it, then the assistant opener. For one user turn this is
    /// [`ChatTokenizer::generation_prompt`].
    pub fn chat_prompt(&self, turns: &[(TurnRole, &str)]) -> Vec<TokenId> {
        let (mut out, _) = self.encode_conversation(turns);
        out.extend(self.header(TurnRole::Assistant));
        out
    }

    /// Encodes a whole conversation for supervised training: returns the tokens and a
    /// mask that is 1 on the assistant's content and closing end token (what the policy
    /// must learn to produce) and 0 elsewhere. Its prefix up to an assistant turn's
    /// content is exactly what [`ChatTokenizer::generation_prompt`] gives a sampler.
    pub fn encode_conversation(&self, turns: &[(TurnRole, &str)]) -> (Vec<TokenId>, Vec<u8>) {
        let has_system = turns.first().is_some_and(|(r, _)| *r == TurnRole::System);
        let mut tokens = self.preamble(has_system);
        let mut mask = vec![0u8; tokens.len()];
        for (role, content) in turns {
            let header = self.header(*role);
            let mut body = self.encode_text(content);
            body.push(self.end_id());
            let sep = self.separator();
            let train = u8::from(*role == TurnRole::Assistant);
            mask.extend(std::iter::repeat_n(0, header.len()));
            mask.extend(std::iter::repeat_n(train, body.len()));
            mask.extend(std::iter::repeat_n(0, sep.len()));
            tokens.extend(header);
            tokens.extend(body);
            tokens.extend(sep);
        }
        (tokens, mask)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn conversation_mask_covers_assistant_content_and_end() {
        let tok = ChatTokenizer::new();
        let (t, m) = tok.encode_conversation(&[(TurnRole::User, "ab"), (TurnRole::Assistant, "c")]);
        assert_eq!(t, vec![BOS, USER, 97, 98, END, ASSISTANT, 99, END]);
        assert_eq!(m, vec![0, 0, 0, 0, 0, 0, 1, 1]);
        // The prompt used for generation is exactly the context prefix of that conversation.
        assert_eq!(tok.generation_prompt("ab"), t[..6].to_vec());
    }

    #[test]
    fn chat_prompt_continues_a_conversation_with_the_assistant_opener() {
        let tok = ChatTokenizer::new();
        assert_eq!(
            tok.chat_prompt(&[(TurnRole::User, "ab")]),
            tok.generation_prompt("ab")
        );
        let turns = [
            (TurnRole::System, "s"),
            (TurnRole::User, "u"),
            (TurnRole::Assistant, "a"),
            (TurnRole::Tool, "t"),
        ];
        let (conv, _) = tok.encode_conversation(&turns);
        let prompt = tok.chat_prompt(&turns);
        assert_eq!(prompt[..conv.len()], conv[..]);
        assert_eq!(prompt[conv.len()..], [ASSISTANT]);
        assert_eq!(
            conv,
            [
                BOS, SYSTEM, 115, END, USER, 117, END, ASSISTANT, 97, END, TOOL, 116, END
            ]
        );
    }

    #[test]
    fn tool_observations_sit_between_assistant_turns_as_in_training() {
        let tok = ChatTokenizer::new();
        let turns = [
            (TurnRole::User, "7*6"),
            (TurnRole::Assistant, "<call>calc 7*6</call>"),
            (TurnRole::Tool, "42"),
            (TurnRole::Assistant, "42"),
        ];
        let (t, m) = tok.encode_conversation(&turns);
        // What a sampler holds: prompt, first action, tool observation, second action.
        let mut episode = tok.generation_prompt("7*6");
        episode.extend(tok.encode_text("<call>calc 7*6</call>"));
        episode.push(END);
        episode.extend(tok.observation_as(TurnRole::Tool, "42"));
        episode.extend(tok.encode_text("42"));
        episode.push(END);
        assert_eq!(episode, t);
        // The tool turn is context: only the two assistant turns are trained.
        let tool = t.iter().position(|&x| x == TOOL).unwrap();
        assert_eq!(&t[tool..tool + 5], &[TOOL, 52, 50, END, ASSISTANT]);
        assert!(m[tool..tool + 5].iter().all(|&x| x == 0));
        let trained: usize = m.iter().map(|&x| usize::from(x)).sum();
        assert_eq!(trained, "<call>calc 7*6</call>".len() + 1 + 2 + 1);
    }

    proptest! {
        #[test]
        fn utf8_round_trips(s in "\\PC{0,40}") {
            let tok = ChatTokenizer::new();
            prop_assert_eq!(tok.decode(&tok.encode_text(&s)), s);
        }
    }
}
