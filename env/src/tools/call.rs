//! The tool-call format: parsing a policy turn into an answer, a call or a malformed
//! call, and writing calls.

use std::fmt;

use super::calc;

/// Opens a tool call.
pub const CALL_OPEN: &str = "<call>";
/// Closes a tool call.
pub const CALL_CLOSE: &str = "</call>";

/// A tool the environment can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Tool {
    /// `calc`: one arithmetic operation on two non-negative integers (see [`calc`]).
    Calc,
}

impl Tool {
    /// Every tool, in the order error messages list them.
    pub const ALL: [Tool; 1] = [Tool::Calc];

    /// The tool's name in a call.
    pub fn name(self) -> &'static str {
        match self {
            Tool::Calc => "calc",
        }
    }

    /// The name of the tool's one argument in OpenAI-style function calls.
    pub fn argument(self) -> &'static str {
        match self {
            Tool::Calc => "expression",
        }
    }

    /// The tool called `name`, if there is one.
    pub fn from_name(name: &str) -> Option<Tool> {
        Tool::ALL.into_iter().find(|t| t.name() == name)
    }
}

impl fmt::Display for Tool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A well-formed tool call: a known tool and an input its grammar accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolCall {
    /// The tool.
    pub tool: Tool,
    /// Its input, exactly as written between the name's space and `</call>`.
    pub input: String,
}

impl ToolCall {
    /// The call as the policy writes it: `<call>NAME INPUT</call>`.
    pub fn to_text(&self) -> String {
        format!("{CALL_OPEN}{} {}{CALL_CLOSE}", self.tool, self.input)
    }
}

/// What one policy turn is, read strictly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// No call markers: the turn is the policy's final answer.
    Answer(String),
    /// A well-formed call.
    Call(ToolCall),
    /// The turn tries to call a tool (it holds a call marker) but breaks the format;
    /// the reason is what the environment tells the policy.
    Malformed(String),
}

/// Reads one policy turn.
///
/// A turn holding neither `<call>` nor `</call>` is an answer. Otherwise it must be
/// `[text]<call>NAME INPUT</call>[whitespace]`: one call that ends the turn (any text
/// before it is ignored), `NAME` a known tool, one space, and an `INPUT` the tool's
/// grammar accepts. Anything else is [`Action::Malformed`].
pub fn parse_action(turn: &str) -> Action {
    if !turn.contains(CALL_OPEN) && !turn.contains(CALL_CLOSE) {
        return Action::Answer(turn.to_owned());
    }
    match parse_call(turn) {
        Ok(call) => Action::Call(call),
        Err(reason) => Action::Malformed(reason),
    }
}

fn parse_call(turn: &str) -> Result<ToolCall, String> {
    let Some(open) = turn.find(CALL_OPEN) else {
        return Err(format!("{CALL_CLOSE} without {CALL_OPEN}"));
    };
    let body_and_rest = &turn[open + CALL_OPEN.len()..];
    let Some(close) = body_and_rest.find(CALL_CLOSE) else {
        return Err(format!("{CALL_OPEN} is not closed by {CALL_CLOSE}"));
    };
    let body = &body_and_rest[..close];
    let rest = &body_and_rest[close + CALL_CLOSE.len()..];
    if body.contains(CALL_OPEN) || turn[..open].contains(CALL_CLOSE) {
        return Err("one call per turn".into());
    }
    if !rest
        .trim_matches(|c: char| c.is_ascii_whitespace())
        .is_empty()
    {
        return Err(format!(
            "the call must end the turn (text after {CALL_CLOSE})"
        ));
    }
    let Some((name, input)) = body.split_once(' ') else {
        return Err(format!(
            "expected {CALL_OPEN}NAME INPUT{CALL_CLOSE}, e.g. {}",
            example()
        ));
    };
    let tool = Tool::from_name(name).ok_or_else(|| {
        let known: Vec<&str> = Tool::ALL.iter().map(|t| t.name()).collect();
        format!("unknown tool {name:?} (tools: {})", known.join(", "))
    })?;
    match tool {
        Tool::Calc => calc::parse(input).map_err(|e| format!("calc: {e}"))?,
    };
    Ok(ToolCall {
        tool,
        input: input.to_owned(),
    })
}

/// A call that shows the format, for error messages.
fn example() -> String {
    ToolCall {
        tool: Tool::Calc,
        input: "12*34".into(),
    }
    .to_text()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn malformed(turn: &str) -> String {
        match parse_action(turn) {
            Action::Malformed(r) => r,
            other => panic!("{turn:?} read as {other:?}"),
        }
    }

    #[test]
    fn answers_and_calls() {
        assert_eq!(parse_action("42"), Action::Answer("42".into()));
        assert_eq!(parse_action(""), Action::Answer(String::new()));
        let call = ToolCall {
            tool: Tool::Calc,
            input: "347*589".into(),
        };
        assert_eq!(call.to_text(), "<call>calc 347*589</call>");
        assert_eq!(parse_action(&call.to_text()), Action::Call(call.clone()));
        // Text before the call is allowed, whitespace after it.
        assert_eq!(
            parse_action("let me compute <call>calc 347*589</call>\n "),
            Action::Call(call)
        );
        assert_eq!(
            parse_action("<call>calc 3 + 4</call>"),
            Action::Call(ToolCall {
                tool: Tool::Calc,
                input: "3 + 4".into()
            })
        );
    }

    #[test]
    fn malformed_calls_are_explained() {
        assert_eq!(
            malformed("<call>calc 1+2"),
            "<call> is not closed by </call>"
        );
        assert_eq!(malformed("calc 1+2</call>"), "</call> without <call>");
        assert_eq!(
            malformed("<call>calc 1+2</call> so 3"),
            "the call must end the turn (text after </call>)"
        );
        assert_eq!(
            malformed("<call>calc 1+2</call><call>calc 3+4</call>"),
            "the call must end the turn (text after </call>)"
        );
        assert_eq!(
            malformed("<call><call>calc 1+2</call>"),
            "one call per turn"
        );
        assert_eq!(
            malformed("</call><call>calc 1+2</call>"),
            "one call per turn"
        );
        assert_eq!(
            malformed("<call>calc</call>"),
            "expected <call>NAME INPUT</call>, e.g. <call>calc 12*34</call>"
        );
        assert_eq!(
            malformed("<call>python 1+2</call>"),
            "unknown tool \"python\" (tools: calc)"
        );
        assert!(malformed("<call>calc 1/2</call>").starts_with("calc: "));
        assert!(malformed("<call>calc  1+2</call>").starts_with("calc: "));
    }
}
