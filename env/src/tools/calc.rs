//! The calculator tool: one operation on two non-negative integers.
//!
//! Input grammar: `INT OP INT`, where `INT` is 1 to 30 decimal digits, `OP` is one of
//! `+`, `-`, `*`, and spaces may surround `OP` (nothing else: no signs, no parentheses,
//! no second operation). The result is the exact integer in decimal (negative after a
//! `-` whose right side is larger). A problem with several operations takes one call
//! per operation, feeding each result into the next call.

use std::fmt;

/// Most digits per operand (a sum or difference of two always fits `i128`; a product
/// that does not is refused).
pub const MAX_OPERAND_DIGITS: usize = 30;

/// One arithmetic operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// `+`
    Add,
    /// `-`
    Sub,
    /// `*`
    Mul,
}

impl Op {
    fn from_char(c: char) -> Option<Op> {
        Some(match c {
            '+' => Op::Add,
            '-' => Op::Sub,
            '*' => Op::Mul,
            _ => return None,
        })
    }

    /// The operator's symbol.
    pub fn symbol(self) -> char {
        match self {
            Op::Add => '+',
            Op::Sub => '-',
            Op::Mul => '*',
        }
    }
}

/// A parsed calculator input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Calculation {
    /// Left operand (below `10^30`).
    pub left: i128,
    /// The operation.
    pub op: Op,
    /// Right operand (below `10^30`).
    pub right: i128,
}

impl Calculation {
    /// The exact result, or `None` when a product does not fit `i128` (39 digits).
    pub fn eval(self) -> Option<i128> {
        let (a, b) = (self.left, self.right);
        match self.op {
            Op::Add => a.checked_add(b),
            Op::Sub => a.checked_sub(b),
            Op::Mul => a.checked_mul(b),
        }
    }
}

impl fmt::Display for Calculation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}{}", self.left, self.op.symbol(), self.right)
    }
}

/// Reads an operand at the start of `s`; returns it and the rest.
fn operand<'a>(s: &'a str, which: &str) -> Result<(i128, &'a str), String> {
    let digits = s.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return Err(format!(
            "expected the {which} operand (digits) at {:?}",
            s.chars().take(8).collect::<String>()
        ));
    }
    if digits > MAX_OPERAND_DIGITS {
        return Err(format!(
            "the {which} operand has {digits} digits (at most {MAX_OPERAND_DIGITS})"
        ));
    }
    let value = s[..digits]
        .parse()
        .map_err(|e| format!("the {which} operand: {e}"))?;
    Ok((value, &s[digits..]))
}

/// Parses a calculator input (see the module docs for the grammar).
pub fn parse(input: &str) -> Result<Calculation, String> {
    let (left, rest) = operand(input, "left")?;
    let rest = rest.trim_start_matches(' ');
    let mut chars = rest.chars();
    let op = match chars.next() {
        None => return Err("expected an operator (+, -, *) after the left operand".into()),
        Some(c) => {
            Op::from_char(c).ok_or_else(|| format!("unsupported operator {c:?} (use +, - or *)"))?
        }
    };
    let rest = chars.as_str().trim_start_matches(' ');
    let (right, rest) = operand(rest, "right")?;
    if !rest.is_empty() {
        return Err(format!(
            "unexpected {:?} after the right operand (one operation per call)",
            rest.chars().take(8).collect::<String>()
        ));
    }
    Ok(Calculation { left, op, right })
}

/// Runs the calculator: the result in decimal, or why the input was refused.
pub fn run(input: &str) -> Result<String, String> {
    let calculation = parse(input)?;
    calculation
        .eval()
        .map(|r| r.to_string())
        .ok_or_else(|| format!("{calculation} overflows (results have at most 38 digits)"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn pinned_results() {
        assert_eq!(run("347*589").as_deref(), Ok("204383"));
        assert_eq!(run("204383+1234").as_deref(), Ok("205617"));
        assert_eq!(run("3 - 10").as_deref(), Ok("-7"));
        assert_eq!(run("007*2").as_deref(), Ok("14"));
        assert_eq!(
            run("999999999999999999*999999999999999999").as_deref(),
            Ok("999999999999999998000000000000000001")
        );
        assert_eq!(
            run(&format!("{0}+{0}", "9".repeat(30))).as_deref(),
            Ok(format!("1{}8", "9".repeat(29)).as_str())
        );
    }

    #[test]
    fn refusals_say_why() {
        let err = |s: &str| run(s).unwrap_err();
        assert!(err("").contains("left operand"));
        assert!(err(" 1+2").contains("left operand"));
        assert!(err("1").contains("expected an operator"));
        assert!(err("1/2").contains("unsupported operator '/'"));
        assert!(err("1+").contains("right operand"));
        assert!(err("1+-2").contains("right operand"));
        assert!(err("1+2*3").contains("one operation per call"));
        assert!(err("1+2 ").contains("after the right operand"));
        assert!(err(&format!("{}+1", "9".repeat(31))).contains("31 digits"));
        assert!(err(&format!("{0}*{0}", "9".repeat(30))).contains("overflows"));
        assert!(err("١+2").contains("left operand"));
    }

    proptest! {
        #[test]
        fn agrees_with_integer_arithmetic(a in 0u64..10u64.pow(18), b in 0u64..10u64.pow(18), op in 0..3usize) {
            let sym = ['+', '-', '*'][op];
            let want = match sym {
                '+' => i128::from(a) + i128::from(b),
                '-' => i128::from(a) - i128::from(b),
                _ => i128::from(a) * i128::from(b),
            };
            prop_assert_eq!(run(&format!("{a}{sym}{b}")), Ok(want.to_string()));
            prop_assert_eq!(run(&format!("{a} {sym} {b}")), Ok(want.to_string()));
        }

        #[test]
        fn arbitrary_input_never_panics(s in "\\PC{0,40}") {
            let _ = run(&s);
        }
    }
}
