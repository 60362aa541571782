//! The values the generated Python functions take and return, written as Python literals.

use std::fmt;

/// A Python value of the generated programs: small integers, booleans, integer lists and
/// lists of integer pairs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Value {
    /// `7`
    Int(i64),
    /// `True`
    Bool(bool),
    /// `[1, 2, 3]`
    List(Vec<i64>),
    /// `[[1, 2], [3, 4]]`
    Pairs(Vec<[i64; 2]>),
}

impl Value {
    /// The integer, or 0 for another kind (the templates only ask for what they made).
    pub(crate) fn int(&self) -> i64 {
        match self {
            Value::Int(i) => *i,
            _ => 0,
        }
    }

    /// The list, or an empty one for another kind.
    pub(crate) fn list(&self) -> &[i64] {
        match self {
            Value::List(l) => l,
            _ => &[],
        }
    }

    /// The pairs, or none for another kind.
    pub(crate) fn pairs(&self) -> &[[i64; 2]] {
        match self {
            Value::Pairs(p) => p,
            _ => &[],
        }
    }
}

fn write_list(f: &mut fmt::Formatter<'_>, items: &[i64]) -> fmt::Result {
    f.write_str("[")?;
    for (i, x) in items.iter().enumerate() {
        if i > 0 {
            f.write_str(", ")?;
        }
        write!(f, "{x}")?;
    }
    f.write_str("]")
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Int(i) => write!(f, "{i}"),
            Value::Bool(true) => f.write_str("True"),
            Value::Bool(false) => f.write_str("False"),
            Value::List(l) => write_list(f, l),
            Value::Pairs(ps) => {
                f.write_str("[")?;
                for (i, p) in ps.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write_list(f, p)?;
                }
                f.write_str("]")
            }
        }
    }
}

/// `name(a, b, ...)` with the arguments as Python literals.
pub(crate) fn call(name: &str, args: &[Value]) -> String {
    let args: Vec<String> = args.iter().map(Value::to_string).collect();
    format!("{name}({})", args.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_print_as_python_literals() {
        assert_eq!(Value::Int(-3).to_string(), "-3");
        assert_eq!(Value::Bool(false).to_string(), "False");
        assert_eq!(Value::List(vec![]).to_string(), "[]");
        assert_eq!(Value::List(vec![1, 2]).to_string(), "[1, 2]");
        assert_eq!(
            Value::Pairs(vec![[1, 2], [3, 4]]).to_string(),
            "[[1, 2], [3, 4]]"
        );
        assert_eq!(
            call("f", &[Value::Int(1), Value::List(vec![2])]),
            "f(1, [2])"
        );
    }
}
