//! The policy's action format. Each policy turn is exactly one action:
//!
//! - `<sh>COMMAND</sh>`: run `COMMAND` with `/bin/sh -c` in the sandbox, in `/repo`.
//! - `<edit FILE:LINE>OLD => NEW</edit>`: on line `LINE` (1-based) of `FILE`, replace the
//!   first occurrence of `OLD` with `NEW`; both are literal text, not patterns.
//! - `<submit/>`: end the episode; the repository's diff is what gets judged.
//!
//! Surrounding whitespace is ignored; anything else is an invalid action, answered with
//! an error observation (the turn still counts).

use std::fmt;

/// One parsed policy action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// `<sh>COMMAND</sh>`
    Shell(String),
    /// `<edit FILE:LINE>OLD => NEW</edit>`
    Edit {
        /// File, relative to the repository root.
        file: String,
        /// Line number, 1-based.
        line: usize,
        /// Text to find on the line.
        old: String,
        /// Its replacement.
        new: String,
    },
    /// `<submit/>`
    Submit,
}

/// The observation an unparsable action gets.
pub const USAGE: &str =
    "error: expected <sh>CMD</sh>, <edit FILE:LINE>OLD => NEW</edit> or <submit/>";

/// The separator between `OLD` and `NEW` in an edit.
const ARROW: &str = " => ";

impl Action {
    /// Parses one policy turn; `Err` holds the observation explaining what is wrong.
    pub fn parse(text: &str) -> Result<Action, String> {
        let t = text.trim_matches(|c: char| c.is_ascii_whitespace());
        if t.contains('\0') {
            return Err("error: NUL byte in action".into());
        }
        if t == "<submit/>" {
            return Ok(Action::Submit);
        }
        if let Some(cmd) = t.strip_prefix("<sh>").and_then(|r| r.strip_suffix("</sh>")) {
            if cmd.trim().is_empty() {
                return Err("error: empty command".into());
            }
            return Ok(Action::Shell(cmd.to_string()));
        }
        if let Some(rest) = t
            .strip_prefix("<edit ")
            .and_then(|r| r.strip_suffix("</edit>"))
        {
            let (head, body) = rest
                .split_once('>')
                .ok_or_else(|| "error: edit needs <edit FILE:LINE>".to_string())?;
            let (file, line) = head
                .rsplit_once(':')
                .ok_or_else(|| "error: edit needs FILE:LINE".to_string())?;
            let line: usize = line
                .parse()
                .ok()
                .filter(|&l| l >= 1)
                .ok_or_else(|| format!("error: bad line number {line:?}"))?;
            if file.is_empty() {
                return Err("error: edit needs a file".into());
            }
            let (old, new) = body
                .split_once(ARROW)
                .ok_or_else(|| "error: edit needs OLD => NEW".to_string())?;
            if old.is_empty() {
                return Err("error: OLD is empty".into());
            }
            return Ok(Action::Edit {
                file: file.to_string(),
                line,
                old: old.to_string(),
                new: new.to_string(),
            });
        }
        Err(USAGE.into())
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Shell(cmd) => write!(f, "<sh>{cmd}</sh>"),
            Action::Edit {
                file,
                line,
                old,
                new,
            } => write!(f, "<edit {file}:{line}>{old}{ARROW}{new}</edit>"),
            Action::Submit => f.write_str("<submit/>"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_parse_and_print_back() {
        for a in [
            Action::Shell("git grep -nF 'w + h'".into()),
            Action::Edit {
                file: "geometry.py".into(),
                line: 2,
                old: "w + h".into(),
                new: "w * h".into(),
            },
            Action::Edit {
                file: "a:b.py".into(),
                line: 10,
                old: "x - y".into(),
                new: String::new(),
            },
            Action::Submit,
        ] {
            assert_eq!(Action::parse(&a.to_string()), Ok(a.clone()), "{a}");
        }
        assert_eq!(
            Action::parse("  <submit/>\n"),
            Ok(Action::Submit),
            "surrounding whitespace is ignored"
        );
    }

    #[test]
    fn malformed_actions_explain_themselves() {
        let cases = [
            ("", USAGE),
            ("ls", USAGE),
            ("<sh>ls</sh> extra", USAGE),
            ("<sh> </sh>", "empty command"),
            ("<edit geometry.py>a => b</edit>", "FILE:LINE"),
            ("<edit geometry.py:0>a => b</edit>", "bad line number"),
            ("<edit geometry.py:x>a => b</edit>", "bad line number"),
            ("<edit :3>a => b</edit>", "needs a file"),
            ("<edit g.py:3>a b</edit>", "OLD => NEW"),
            ("<edit g.py:3> => b</edit>", "OLD is empty"),
            ("<sh>a\0b</sh>", "NUL"),
        ];
        for (text, want) in cases {
            let err = Action::parse(text).unwrap_err();
            assert!(
                err.starts_with("error: ") && err.contains(want),
                "{text:?}: {err}"
            );
        }
    }
}
