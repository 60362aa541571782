//! Strict reader for user-supplied seed trajectories (OpenAI chat JSONL).
//!
//! Each non-blank line must be `{"messages":[{"role":…,"content":…},…]}` ending with
//! an assistant turn. Roles are `system`, `user`, `assistant` and `tool` (a tool's
//! result); an assistant message may call a tool with OpenAI-style `tool_calls`
//! (rendered in the policy's call format, see [`crate::tools`]) instead of `content`.
//! A malformed line is reported in [`SeedSet::rejected`] with its position and reason;
//! the remaining lines are kept.

use std::fmt;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::EnvError;
use crate::split::{Split, split_of};
use crate::tools::render_tool_calls;

/// Who wrote a chat message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// System instructions.
    System,
    /// The user (the task prompt).
    User,
    /// The model (the demonstration to imitate).
    Assistant,
    /// A tool's result.
    Tool,
}

impl Role {
    /// The role's name as it appears in chat JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
            Role::Tool => "tool",
        }
    }

    fn parse(s: &str) -> Option<Role> {
        Some(match s {
            "system" => Role::System,
            "user" => Role::User,
            "assistant" => Role::Assistant,
            "tool" => Role::Tool,
            _ => return None,
        })
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One chat message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatMessage {
    /// Its author.
    pub role: Role,
    /// Its text (empty for an assistant message that only calls tools).
    pub content: String,
    /// The message's `tool_calls`, kept verbatim as JSON text, when present.
    pub tool_calls: Option<String>,
    /// An assistant message's tool call in the policy's format (`<call>NAME INPUT</call>`,
    /// see [`crate::tools`]), rendered from `tool_calls`.
    pub call: Option<String>,
}

impl ChatMessage {
    /// The text the policy writes for this turn: `content`, then the rendered tool call
    /// (on its own line after non-empty content).
    pub fn policy_text(&self) -> String {
        match (&self.call, self.content.is_empty()) {
            (None, _) => self.content.clone(),
            (Some(call), true) => call.clone(),
            (Some(call), false) => format!("{}\n{call}", self.content),
        }
    }
}

/// One seed trajectory: a chat ending with an assistant turn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conversation {
    /// The messages, in order.
    pub messages: Vec<ChatMessage>,
}

impl Conversation {
    /// The first user message's content: the task prompt.
    pub fn prompt(&self) -> Option<&str> {
        self.messages
            .iter()
            .find(|m| m.role == Role::User)
            .map(|m| m.content.as_str())
    }
}

/// A line of a seed file that was not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectedLine {
    /// The file it came from.
    pub path: PathBuf,
    /// Its 1-based line number.
    pub line: usize,
    /// Why it was rejected.
    pub reason: String,
}

impl fmt::Display for RejectedLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.path.display(), self.line, self.reason)
    }
}

/// The accepted conversations of a seed file and the lines that were rejected.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SeedSet {
    /// Accepted conversations, in file order.
    pub conversations: Vec<Conversation>,
    /// Rejected lines, in file order.
    pub rejected: Vec<RejectedLine>,
}

/// Reads a chat-JSONL seed file. Only an unreadable file is an error; each malformed
/// line lands in [`SeedSet::rejected`] and blank lines are skipped.
pub fn read_seed_trajectories(path: &Path) -> Result<SeedSet, EnvError> {
    let bytes = std::fs::read(path).map_err(|source| EnvError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut set = SeedSet::default();
    for (i, line) in bytes.split(|&b| b == b'\n').enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        match parse_line(line) {
            Ok(None) => {}
            Ok(Some(c)) => set.conversations.push(c),
            Err(reason) => set.rejected.push(RejectedLine {
                path: path.to_path_buf(),
                line: i + 1,
                reason,
            }),
        }
    }
    Ok(set)
}

/// Removes conversations whose prompt is in the held-out split; returns how many.
///
/// Training must never see a held-out problem, even through a user's seed file.
pub fn drop_heldout(set: &mut SeedSet, heldout_per_mille: u32) -> usize {
    let before = set.conversations.len();
    set.conversations.retain(|c| {
        c.prompt()
            .is_none_or(|p| split_of(p, heldout_per_mille) == Split::Train)
    });
    before - set.conversations.len()
}

/// Removes conversations whose prompt is in the held-out split of `task` (a hash for the
/// digit tasks, the bug family for code fixing); returns how many.
pub fn drop_heldout_of(set: &mut SeedSet, task: &crate::TaskConfig) -> usize {
    let before = set.conversations.len();
    set.conversations
        .retain(|c| c.prompt().is_none_or(|p| task.split_of(p) == Split::Train));
    before - set.conversations.len()
}

/// The JSON type name of `v`, with its article, for messages.
fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Parses one line: `Ok(None)` for a blank line, `Err(reason)` for a malformed one.
fn parse_line(line: &[u8]) -> Result<Option<Conversation>, String> {
    let text = std::str::from_utf8(line)
        .map_err(|e| format!("invalid UTF-8 at byte {}", e.valid_up_to() + 1))?;
    if text.trim().is_empty() {
        return Ok(None);
    }
    let value: Value = serde_json::from_str(text).map_err(|e| {
        let full = e.to_string();
        let suffix = format!(" at line {} column {}", e.line(), e.column());
        let msg = full.strip_suffix(&suffix).unwrap_or(&full);
        format!("not valid JSON at column {}: {msg}", e.column())
    })?;
    let Value::Object(top) = value else {
        return Err(format!("top level is {}, expected an object", kind(&value)));
    };
    let messages = match top.get("messages") {
        None => return Err("missing \"messages\"".into()),
        Some(Value::Array(m)) if m.is_empty() => {
            return Err("\"messages\" is an empty array".into());
        }
        Some(Value::Array(m)) => m,
        Some(other) => {
            return Err(format!(
                "\"messages\" is {}, expected a non-empty array",
                kind(other)
            ));
        }
    };
    let messages = messages
        .iter()
        .enumerate()
        .map(|(i, m)| parse_message(m).map_err(|e| format!("messages[{i}]: {e}")))
        .collect::<Result<Vec<_>, _>>()?;
    if !messages.iter().any(|m| m.role == Role::Assistant) {
        return Err("no assistant message".into());
    }
    let last = messages.last().map(|m| m.role);
    if last != Some(Role::Assistant) {
        let last = last.map_or("?", Role::as_str);
        return Err(format!(
            "last message is from the {last}, expected the assistant"
        ));
    }
    Ok(Some(Conversation { messages }))
}

/// Parses one element of `"messages"`; unknown keys are ignored.
fn parse_message(m: &Value) -> Result<ChatMessage, String> {
    let Value::Object(m) = m else {
        return Err(format!("message is {}, expected an object", kind(m)));
    };
    let role = match m.get("role") {
        None => return Err("missing \"role\"".into()),
        Some(Value::String(r)) => Role::parse(r).ok_or_else(|| {
            format!("unknown role {r:?} (expected system, user, assistant or tool)")
        })?,
        Some(other) => return Err(format!("\"role\" is {}, expected a string", kind(other))),
    };
    let tool_calls = tool_calls(m);
    let call = match m.get("tool_calls") {
        Some(v) if role == Role::Assistant && !v.is_null() => {
            render_tool_calls(v).map_err(|e| format!("assistant \"tool_calls\": {e}"))?
        }
        _ => None,
    };
    let content = match m.get("content") {
        Some(Value::String(c)) => c.clone(),
        None | Some(Value::Null) if role == Role::Assistant && call.is_some() => String::new(),
        None => return Err(format!("{role} message is missing \"content\"")),
        Some(other) => {
            return Err(format!(
                "{role} message \"content\" is {}, expected a string",
                kind(other)
            ));
        }
    };
    Ok(ChatMessage {
        role,
        content,
        tool_calls,
        call,
    })
}

/// The message's `tool_calls` as JSON text, when present and not null.
fn tool_calls(m: &Map<String, Value>) -> Option<String> {
    m.get("tool_calls")
        .filter(|v| !v.is_null())
        .map(Value::to_string)
}

#[cfg(test)]
mod tests;
