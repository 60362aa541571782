//! The `calc` task family: chained arithmetic the policy solves with the calculator,
//! one call per operation, and the expert that demonstrates it.

use rand::Rng;

use super::calc::Op;
use super::call::{Tool, ToolCall};

/// A calc problem's operations applied left to right: `first`, then each `(op, operand)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chain {
    /// The first operand.
    pub first: u128,
    /// The operations after it, in order.
    pub rest: Vec<(Op, u128)>,
}

impl Chain {
    /// Reads a prompt such as `347*589+1234`: operands (digits) and operators (`+ - *`)
    /// alternating, no spaces, evaluated left to right. `None` for any other text.
    pub fn parse(prompt: &str) -> Option<Chain> {
        let mut s = prompt;
        let operand = |s: &mut &str| -> Option<u128> {
            let n = s.bytes().take_while(u8::is_ascii_digit).count();
            let (digits, rest) = s.split_at(n);
            *s = rest;
            (n > 0).then(|| digits.parse().ok()).flatten()
        };
        let first = operand(&mut s)?;
        let mut rest = Vec::new();
        while let Some(c) = s.chars().next() {
            let op = match c {
                '+' => Op::Add,
                '-' => Op::Sub,
                '*' => Op::Mul,
                _ => return None,
            };
            s = &s[1..];
            rest.push((op, operand(&mut s)?));
        }
        (!rest.is_empty()).then_some(Chain { first, rest })
    }

    /// The exact value, left to right; `None` if it leaves `i128`.
    pub fn value(&self) -> Option<i128> {
        let mut acc = i128::try_from(self.first).ok()?;
        for &(op, x) in &self.rest {
            let x = i128::try_from(x).ok()?;
            acc = match op {
                Op::Add => acc.checked_add(x)?,
                Op::Sub => acc.checked_sub(x)?,
                Op::Mul => acc.checked_mul(x)?,
            };
        }
        Some(acc)
    }
}

/// A random number of `digits` digits without a leading zero (0 allowed at one digit).
fn number(rng: &mut impl Rng, digits: u32) -> u64 {
    let lo = if digits == 1 {
        0
    } else {
        10u64.pow(digits - 1)
    };
    rng.random_range(lo..10u64.pow(digits))
}

/// Draws a calc problem: `a*b` or `a*b+c` (even odds), each operand of
/// `min..=max` digits. Returns the prompt, the answer and the difficulty (the most
/// digits of an operand).
pub(crate) fn draw(rng: &mut impl Rng, min: u32, max: u32) -> (String, String, u32) {
    let (da, db) = (rng.random_range(min..=max), rng.random_range(min..=max));
    let (a, b) = (number(rng, da), number(rng, db));
    let product = u128::from(a) * u128::from(b);
    if rng.random_bool(0.5) {
        return (format!("{a}*{b}"), product.to_string(), da.max(db));
    }
    let dc = rng.random_range(min..=max);
    let c = number(rng, dc);
    (
        format!("{a}*{b}+{c}"),
        (product + u128::from(c)).to_string(),
        da.max(db).max(dc),
    )
}

/// The expert's next turn on a calc problem, given the tool results so far: call the
/// calculator for the next operation (on the last result), or, once every operation is
/// done, answer with the last result. It trusts the tool and never reads the reference.
/// `None` when the prompt is not a calc problem.
pub fn expert_action(prompt: &str, tool_results: &[&str]) -> Option<String> {
    let chain = Chain::parse(prompt.trim())?;
    let done = tool_results.len();
    if done >= chain.rest.len() {
        return Some(tool_results.last()?.to_string());
    }
    let left = match tool_results.last() {
        None => chain.first.to_string(),
        Some(r) => r.to_string(),
    };
    let (op, right) = chain.rest[done];
    let call = ToolCall {
        tool: Tool::Calc,
        input: format!("{left}{}{right}", op.symbol()),
    };
    Some(call.to_text())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn chains_parse_strictly_and_evaluate_left_to_right() {
        let c = Chain::parse("347*589+1234").unwrap();
        assert_eq!(c.first, 347);
        assert_eq!(c.rest, vec![(Op::Mul, 589), (Op::Add, 1234)]);
        assert_eq!(c.value(), Some(205_617));
        assert_eq!(Chain::parse("2+3*4").unwrap().value(), Some(20));
        for bad in ["", "12", "1+", "+1", "1 + 2", "1/2", "a*b", "1*2+"] {
            assert_eq!(Chain::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn drawn_problems_have_the_right_shape_and_answer() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let (mut one, mut two) = (0, 0);
        for _ in 0..400 {
            let (prompt, answer, difficulty) = draw(&mut rng, 2, 4);
            let chain = Chain::parse(&prompt).unwrap();
            assert_eq!(chain.value().unwrap().to_string(), answer);
            assert_eq!(chain.rest[0].0, Op::Mul);
            match chain.rest.len() {
                1 => one += 1,
                2 => two += 1,
                n => panic!("{n} operations in {prompt}"),
            }
            assert!((2..=4).contains(&difficulty));
        }
        assert!(one > 150 && two > 150, "{one} / {two}");
    }

    #[test]
    fn expert_calls_once_per_operation_then_answers() {
        assert_eq!(
            expert_action("347*589+1234", &[]).as_deref(),
            Some("<call>calc 347*589</call>")
        );
        assert_eq!(
            expert_action("347*589+1234", &["204383"]).as_deref(),
            Some("<call>calc 204383+1234</call>")
        );
        assert_eq!(
            expert_action("347*589+1234", &["204383", "205617"]).as_deref(),
            Some("205617")
        );
        assert_eq!(expert_action("sort 321", &[]), None);
    }
}
