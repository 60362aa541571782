//! Tool use: a calculator the policy calls in a documented text format, the `calc`
//! task family that needs it, its environment and its expert.
//!
//! # The tool-call format
//!
//! A policy turn either answers or calls one tool:
//!
//! ```text
//! <call>NAME INPUT</call>
//! ```
//!
//! The call ends the turn (text before it is allowed and ignored, whitespace after
//! it); `NAME` is a tool and `INPUT`, after exactly one space, must match that tool's
//! grammar. A turn with no `<call>`/`</call>` marker is the final answer. The
//! environment answers a call in a **tool** turn holding the result, or `error: …`
//! saying what was wrong with a malformed call (unknown tool, bad input, text after
//! the call, a second call); the episode then continues, up to `max_turns` policy
//! turns. The only tool today:
//!
//! - `calc INT OP INT`: one of `+ - *` on two non-negative integers of up to 30
//!   digits (spaces allowed around `OP`), e.g. `<call>calc 347*589</call>` → `204383`.
//!   A chain such as `347*589+1234` takes two calls, the second on the first's result.
//!
//! In chat terms (seed files, the chat template) a conversation is
//! `user → assistant (call) → tool (result) → … → assistant (answer)`. Seed files may
//! hold calls either as assistant `content` in the format above, or as OpenAI
//! `tool_calls` (one per message, a function with one string argument), which
//! [`render_tool_calls`] turns into the same text.
//!
//! ```
//! use troupe_core::TaskSpec;
//! use troupe_env::{Environment, tools::{Action, ToolEnv, parse_action}};
//!
//! assert!(matches!(parse_action("<call>calc 6*7</call>"), Action::Call(_)));
//! let task = TaskSpec { id: 1, prompt: "6*7+1".into(), answer: "43".into(), difficulty: 1 };
//! let mut env = ToolEnv::new(&task, 4);
//! assert_eq!(env.reset(), "6*7+1");
//! assert_eq!(env.step("<call>calc 6*7</call>").observation.unwrap().text, "42");
//! assert_eq!(env.step("<call>calc 42+1</call>").observation.unwrap().text, "43");
//! assert!(env.step("43").done);
//! ```

pub mod calc;
mod call;
mod env;
mod openai;
mod task;

pub use call::{Action, CALL_CLOSE, CALL_OPEN, Tool, ToolCall, parse_action};
pub use env::{ERROR_PREFIX, ToolEnv};
pub use openai::render_tool_calls;
pub(crate) use task::draw;
pub use task::{Chain, expert_action};
