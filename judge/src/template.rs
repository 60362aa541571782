//! The judge prompt: a template with `{task}`, `{response}` and `{reference}`
//! placeholders, checked once when the configuration is read and filled in one pass
//! (text inside a policy's response is never expanded again).
//!
//! `{{` and `}}` stand for literal braces. Any other `{name}` is an error, as is a
//! template without `{response}` (the judge would not see what it judges).

use crate::verdict::VerdictFormat;

/// The default user turn of the judge; the verdict format's instruction is appended.
pub const DEFAULT_TEMPLATE: &str = "You are grading a response to a task. Decide whether the response is correct.\n\nTask:\n{task}\n\nReference answer:\n{reference}\n\nResponse:\n{response}\n\n";

/// One piece of a parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Task,
    Response,
    Reference,
}

/// A parsed prompt template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromptTemplate {
    parts: Vec<Part>,
}

impl PromptTemplate {
    /// Parses `text`; the error says what is wrong and where (byte offset).
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut lit = String::new();
        let mut rest = text;
        let offset = |rest: &str| text.len() - rest.len();
        while let Some(i) = rest.find(['{', '}']) {
            lit.push_str(&rest[..i]);
            let tail = &rest[i..];
            if let Some(after) = tail.strip_prefix("{{") {
                lit.push('{');
                rest = after;
            } else if let Some(after) = tail.strip_prefix("}}") {
                lit.push('}');
                rest = after;
            } else if tail.starts_with('}') {
                return Err(format!(
                    "unmatched `}}` at byte {} (write `}}}}` for a literal brace)",
                    offset(tail)
                ));
            } else {
                let Some(end) = tail.find('}') else {
                    return Err(format!(
                        "unclosed `{{` at byte {} (write `{{{{` for a literal brace)",
                        offset(tail)
                    ));
                };
                let part = match &tail[1..end] {
                    "task" => Part::Task,
                    "response" => Part::Response,
                    "reference" => Part::Reference,
                    other => {
                        return Err(format!(
                            "unknown placeholder {{{other}}} at byte {} (use {{task}}, {{response}} or {{reference}})",
                            offset(tail)
                        ));
                    }
                };
                if !lit.is_empty() {
                    parts.push(Part::Text(std::mem::take(&mut lit)));
                }
                parts.push(part);
                rest = &tail[end + 1..];
            }
        }
        lit.push_str(rest);
        if !lit.is_empty() {
            parts.push(Part::Text(lit));
        }
        if !parts.contains(&Part::Response) {
            return Err("the template has no {response} placeholder".into());
        }
        Ok(Self { parts })
    }

    /// The default template followed by `format`'s instruction.
    pub fn default_for(format: VerdictFormat) -> Self {
        Self::parse(&format!("{DEFAULT_TEMPLATE}{}", format.instruction()))
            .expect("the default template parses")
    }

    /// Fills in the placeholders.
    pub fn render(&self, task: &str, response: &str, reference: &str) -> String {
        let mut out = String::new();
        for p in &self.parts {
            out.push_str(match p {
                Part::Text(t) => t,
                Part::Task => task,
                Part::Response => response,
                Part::Reference => reference,
            });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn placeholders_and_escapes() {
        let t = PromptTemplate::parse("T={task} R={response} A={reference} {{x}}").unwrap();
        assert_eq!(t.render("sort 31", "13", "13"), "T=sort 31 R=13 A=13 {x}");
        let only = PromptTemplate::parse("{response}").unwrap();
        assert_eq!(only.render("a", "b", "c"), "b");
    }

    #[test]
    fn bad_templates_are_explained() {
        for (text, why) in [
            ("grade {answer}", "unknown placeholder {answer} at byte 6"),
            ("grade {response", "unclosed `{` at byte 6"),
            ("{response} }", "unmatched `}` at byte 11"),
            ("grade {task}", "no {response}"),
            ("{{response}}", "no {response}"),
            ("", "no {response}"),
        ] {
            let err = PromptTemplate::parse(text).unwrap_err();
            assert!(err.contains(why), "{text:?}: {err}");
        }
    }

    #[test]
    fn default_templates_parse_and_end_with_the_instruction() {
        for f in [VerdictFormat::PassFail, VerdictFormat::Score] {
            let p = PromptTemplate::default_for(f).render("T", "R", "A");
            assert!(p.contains("Task:\nT") && p.contains("Response:\nR"));
            assert!(p.ends_with(f.instruction()));
        }
    }

    proptest! {
        /// A response full of braces and placeholder names is inserted verbatim.
        #[test]
        fn responses_are_never_expanded(resp in "[{}a-z ]{0,40}") {
            let t = PromptTemplate::parse("<{response}|{task}>").unwrap();
            prop_assert_eq!(t.render("{response}", &resp, "x"), format!("<{resp}|{{response}}>"));
        }
    }
}
