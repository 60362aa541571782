//! Bug families: what kind of mistake a task's repository carries, and which side of the
//! train / held-out split each family is on. The split is by family, so held-out
//! evaluation measures whether the skill transfers to kinds of bugs never trained on.

use crate::Split;

/// The kind of mistake planted in a task's repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BugFamily {
    /// An arithmetic operator is wrong: `w + h` where `w * h` is meant.
    WrongOperator,
    /// A literal number is wrong: `x * 4` where `x * 3` is meant.
    WrongConstant,
    /// Two operands are swapped: `b - a` where `a - b` is meant.
    SwappedOperands,
    /// The wrong variable is used: `w * w` where `w * h` is meant.
    WrongVariable,
    /// A comparison is wrong: `age > 18` where `age >= 18` is meant (held out).
    WrongComparison,
    /// A bound is off by one: `range(1, n)` where `range(1, n + 1)` is meant (held out).
    OffByOne,
    /// The wrong element is picked: `xs[0]` where `xs[-1]` is meant (held out).
    WrongIndex,
}

impl BugFamily {
    /// Every family, train families first.
    pub const ALL: [BugFamily; 7] = [
        BugFamily::WrongOperator,
        BugFamily::WrongConstant,
        BugFamily::SwappedOperands,
        BugFamily::WrongVariable,
        BugFamily::WrongComparison,
        BugFamily::OffByOne,
        BugFamily::WrongIndex,
    ];

    /// The family's name in task keys and metrics (`wrong_operator`, ...).
    pub fn name(self) -> &'static str {
        match self {
            BugFamily::WrongOperator => "wrong_operator",
            BugFamily::WrongConstant => "wrong_constant",
            BugFamily::SwappedOperands => "swapped_operands",
            BugFamily::WrongVariable => "wrong_variable",
            BugFamily::WrongComparison => "wrong_comparison",
            BugFamily::OffByOne => "off_by_one",
            BugFamily::WrongIndex => "wrong_index",
        }
    }

    /// The family called `name`.
    pub fn parse(name: &str) -> Option<BugFamily> {
        BugFamily::ALL.into_iter().find(|f| f.name() == name)
    }

    /// Train families are trained on (RL tasks and expert seeds); held-out families are
    /// only ever evaluated.
    pub fn split(self) -> Split {
        match self {
            BugFamily::WrongOperator
            | BugFamily::WrongConstant
            | BugFamily::SwappedOperands
            | BugFamily::WrongVariable => Split::Train,
            BugFamily::WrongComparison | BugFamily::OffByOne | BugFamily::WrongIndex => {
                Split::Heldout
            }
        }
    }

    /// The families on `split`'s side.
    pub fn of_split(split: Split) -> Vec<BugFamily> {
        BugFamily::ALL
            .into_iter()
            .filter(|f| f.split() == split)
            .collect()
    }
}

impl std::fmt::Display for BugFamily {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_splits_are_disjoint_and_non_empty() {
        for f in BugFamily::ALL {
            assert_eq!(BugFamily::parse(f.name()), Some(f));
        }
        assert_eq!(BugFamily::parse("typo"), None);
        let train = BugFamily::of_split(Split::Train);
        let heldout = BugFamily::of_split(Split::Heldout);
        assert!(!train.is_empty() && !heldout.is_empty());
        assert!(train.iter().all(|f| !heldout.contains(f)));
        assert_eq!(train.len() + heldout.len(), BugFamily::ALL.len());
    }
}
