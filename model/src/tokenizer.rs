//! Byte-level tokenizer with chat-template special tokens.
//!
//! Ids 0..=255 are raw bytes, so every UTF-8 string encodes losslessly; the special
//! tokens frame chat turns: `<|bos|> <|user|> ... <|end|> <|assistant|> ... <|end|>`.

use troupe_core::TokenId;

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
}

/// Encodes conversations with the chat template and decodes policy output.
#[derive(Debug, Clone, Default)]
pub struct ChatTokenizer;

impl ChatTokenizer {
    /// A tokenizer.
    pub fn new() -> Self {
        Self
    }

    /// Raw bytes of `text` as token ids.
    pub fn encode_text(&self, text: &str) -> Vec<TokenId> {
        text.bytes().map(TokenId::from).collect()
    }

    /// Text of the byte tokens in `tokens` (specials skipped, invalid UTF-8 replaced).
    pub fn decode(&self, tokens: &[TokenId]) -> String {
        let bytes: Vec<u8> = tokens
            .iter()
            .filter(|&&t| t < 256)
            .map(|&t| t as u8)
            .collect();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// The end-of-turn token id.
    pub fn end_id(&self) -> TokenId {
        END
    }

    /// Tokens of one whole turn: role token, content, end.
    pub fn turn(&self, role: TurnRole, content: &str) -> Vec<TokenId> {
        let mut out = Vec::with_capacity(content.len() + 2);
        out.push(role.token());
        out.extend(self.encode_text(content));
        out.push(END);
        out
    }

    /// Tokens that follow an environment observation so the policy answers next:
    /// the user turn plus the assistant-turn opener.
    pub fn observation(&self, content: &str) -> Vec<TokenId> {
        let mut out = self.turn(TurnRole::User, content);
        out.push(ASSISTANT);
        out
    }

    /// A fresh conversation's prompt for a first user message.
    pub fn generation_prompt(&self, user: &str) -> Vec<TokenId> {
        let mut out = vec![BOS];
        out.extend(self.observation(user));
        out
    }

    /// Encodes a whole conversation for supervised training: returns the tokens and a
    /// mask that is 1 on the assistant's content and closing `END` (what the policy
    /// must learn to produce) and 0 elsewhere.
    pub fn encode_conversation(&self, turns: &[(TurnRole, &str)]) -> (Vec<TokenId>, Vec<u8>) {
        let mut tokens = vec![BOS];
        let mut mask = vec![0u8];
        for (role, content) in turns {
            let turn = self.turn(*role, content);
            let train = u8::from(*role == TurnRole::Assistant);
            // The role opener is context; content and END are the policy's.
            mask.push(0);
            mask.extend(std::iter::repeat_n(train, turn.len() - 1));
            tokens.extend(turn);
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

    proptest! {
        #[test]
        fn utf8_round_trips(s in "\\PC{0,40}") {
            let tok = ChatTokenizer::new();
            prop_assert_eq!(tok.decode(&tok.encode_text(&s)), s);
        }
    }
}
