//! The Python functions task repositories are made of. Each template is a small function
//! with the places a bug can be planted in it; each knows its own behaviour, correct and
//! with each bug, so the symptom and the hidden tests' expected values are
//! computed here, never written by hand.

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::family::BugFamily::{self, *};
use super::value::Value::{self, Bool, Int, List, Pairs};

/// The template's constants: `{k}` in its body, and `{k2}`, the wrong value a
/// wrong-constant bug uses instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Consts {
    pub k: i64,
    pub k2: i64,
}

/// One way to plant a bug in a template: on body line `line`, the fragment `correct`
/// becomes `buggy`.
#[derive(Debug)]
pub(crate) struct Bug {
    /// Which of the template's bugs (1, 2, ...), as its `eval` knows them.
    pub id: u8,
    pub family: BugFamily,
    pub line: usize,
    pub correct: &'static str,
    pub buggy: &'static str,
}

/// A function template.
pub(crate) struct Template {
    /// Names the function may get.
    pub names: [&'static str; 3],
    /// Its parameter list.
    pub params: &'static str,
    /// Body lines, indented relative to the body; `{k}` is the constant.
    pub body: &'static [&'static str],
    /// Range of `k` (inclusive); `(0, 0)` when the body has none.
    pub k: (i64, i64),
    /// Where bugs can be planted.
    pub bugs: &'static [Bug],
    /// Draws arguments (biased toward the inputs where bugs show).
    pub args: fn(&mut ChaCha8Rng, Consts) -> Vec<Value>,
    /// The result of calling the function: correct (`None`) or with bug `Some(id)`.
    pub eval: fn(&[Value], Consts, Option<u8>) -> Value,
}

/// `text` with `{k}` and `{k2}` replaced.
pub(crate) fn fill(text: &str, c: Consts) -> String {
    text.replace("{k2}", &c.k2.to_string())
        .replace("{k}", &c.k.to_string())
}

fn r(rng: &mut ChaCha8Rng, lo: i64, hi: i64) -> i64 {
    rng.random_range(lo..=hi)
}

fn ints(rng: &mut ChaCha8Rng, len: (i64, i64), lo: i64, hi: i64) -> Vec<i64> {
    let n = r(rng, len.0, len.1);
    (0..n).map(|_| r(rng, lo, hi)).collect()
}

/// `xs` with `v` in a random place, half of the time (where `<` and `<=` differ).
fn maybe_with(rng: &mut ChaCha8Rng, mut xs: Vec<i64>, v: i64) -> Vec<i64> {
    if !xs.is_empty() && rng.random_bool(0.5) {
        let at = rng.random_range(0..xs.len());
        xs[at] = v;
    }
    xs
}

fn range(start: i64, stop: i64, step: i64) -> Vec<i64> {
    let mut out = Vec::new();
    let mut i = start;
    while (step > 0 && i < stop) || (step < 0 && i > stop) {
        out.push(i);
        i += step;
    }
    out
}

/// Python's `xs[i]` for an in-range `i` (negative counts from the end).
pub(crate) fn at(xs: &[i64], i: i64) -> i64 {
    let n = xs.len() as i64;
    let j = if i < 0 { n + i } else { i };
    xs.get(j as usize).copied().unwrap_or(0)
}

macro_rules! bug {
    ($id:expr, $family:expr, $line:expr, $correct:expr, $buggy:expr) => {
        Bug {
            id: $id,
            family: $family,
            line: $line,
            correct: $correct,
            buggy: $buggy,
        }
    };
}

/// Every template.
pub(crate) static TEMPLATES: &[Template] = &[
    Template {
        names: ["area", "rect_area", "box_area"],
        params: "w, h",
        body: &["return w * h"],
        k: (0, 0),
        bugs: &[
            bug!(1, WrongOperator, 0, "w * h", "w + h"),
            bug!(2, WrongVariable, 0, "w * h", "w * w"),
        ],
        args: |g, _| vec![Int(r(g, 2, 9)), Int(r(g, 2, 9))],
        eval: |a, _, b| {
            let (w, h) = (a[0].int(), a[1].int());
            Int(match b {
                Some(1) => w + h,
                Some(2) => w * w,
                _ => w * h,
            })
        },
    },
    Template {
        names: ["perimeter", "fence_length", "rim"],
        params: "w, h",
        body: &["return 2 * (w + h)"],
        k: (0, 0),
        bugs: &[
            bug!(1, WrongConstant, 0, "2 * (w + h)", "4 * (w + h)"),
            bug!(2, WrongOperator, 0, "2 * (w + h)", "2 * (w - h)"),
        ],
        args: |g, _| vec![Int(r(g, 1, 9)), Int(r(g, 1, 9))],
        eval: |a, _, b| {
            let (w, h) = (a[0].int(), a[1].int());
            Int(match b {
                Some(1) => 4 * (w + h),
                Some(2) => 2 * (w - h),
                _ => 2 * (w + h),
            })
        },
    },
    Template {
        names: ["difference", "delta", "change"],
        params: "a, b",
        body: &["return a - b"],
        k: (0, 0),
        bugs: &[
            bug!(1, SwappedOperands, 0, "a - b", "b - a"),
            bug!(2, WrongOperator, 0, "a - b", "a + b"),
        ],
        args: |g, _| vec![Int(r(g, 1, 20)), Int(r(g, 1, 20))],
        eval: |a, _, b| {
            let (x, y) = (a[0].int(), a[1].int());
            Int(match b {
                Some(1) => y - x,
                Some(2) => x + y,
                _ => x - y,
            })
        },
    },
    Template {
        names: ["scale", "magnify", "boost"],
        params: "x",
        body: &["return x * {k}"],
        k: (3, 9),
        bugs: &[
            bug!(1, WrongConstant, 0, "x * {k}", "x * {k2}"),
            bug!(2, WrongOperator, 0, "x * {k}", "x + {k}"),
        ],
        args: |g, _| vec![Int(r(g, 2, 9))],
        eval: |a, c, b| {
            let x = a[0].int();
            Int(match b {
                Some(1) => x * c.k2,
                Some(2) => x + c.k,
                _ => x * c.k,
            })
        },
    },
    Template {
        names: ["clamp", "limit", "bound"],
        params: "x, lo, hi",
        body: &[
            "if x < lo:",
            "    return lo",
            "if x > hi:",
            "    return hi",
            "return x",
        ],
        k: (0, 0),
        bugs: &[
            bug!(1, WrongComparison, 0, "x < lo", "x > lo"),
            bug!(2, WrongVariable, 2, "x > hi", "x > lo"),
            bug!(3, WrongComparison, 2, "x > hi", "x < hi"),
        ],
        args: |g, _| {
            let lo = r(g, 0, 5);
            let hi = lo + r(g, 3, 8);
            vec![Int(r(g, lo - 3, hi + 3)), Int(lo), Int(hi)]
        },
        eval: |a, _, b| {
            let (x, lo, hi) = (a[0].int(), a[1].int(), a[2].int());
            let first = if b == Some(1) { x > lo } else { x < lo };
            let second = match b {
                Some(2) => x > lo,
                Some(3) => x < hi,
                _ => x > hi,
            };
            Int(if first {
                lo
            } else if second {
                hi
            } else {
                x
            })
        },
    },
    Template {
        names: ["count_below", "num_under", "how_many_below"],
        params: "xs, limit",
        body: &[
            "n = 0",
            "for x in xs:",
            "    if x < limit:",
            "        n += 1",
            "return n",
        ],
        k: (0, 0),
        bugs: &[
            bug!(1, WrongComparison, 2, "x < limit", "x <= limit"),
            bug!(2, WrongConstant, 0, "n = 0", "n = 1"),
            bug!(3, WrongConstant, 3, "n += 1", "n += 2"),
            bug!(4, WrongVariable, 2, "x < limit", "n < limit"),
        ],
        args: |g, _| {
            let limit = r(g, 2, 8);
            let xs = ints(g, (4, 5), 0, 9);
            vec![List(maybe_with(g, xs, limit)), Int(limit)]
        },
        eval: |a, _, b| {
            let (xs, limit) = (a[0].list(), a[1].int());
            let mut n = if b == Some(2) { 1 } else { 0 };
            for &x in xs {
                let hit = match b {
                    Some(1) => x <= limit,
                    Some(4) => n < limit,
                    _ => x < limit,
                };
                if hit {
                    n += if b == Some(3) { 2 } else { 1 };
                }
            }
            Int(n)
        },
    },
    Template {
        names: ["sum_upto", "triangle", "total_to"],
        params: "n",
        body: &["return sum(range(1, n + 1))"],
        k: (0, 0),
        bugs: &[
            bug!(1, OffByOne, 0, "range(1, n + 1)", "range(1, n)"),
            bug!(2, WrongConstant, 0, "range(1, n + 1)", "range(2, n + 1)"),
        ],
        args: |g, _| vec![Int(r(g, 2, 9))],
        eval: |a, _, b| {
            let n = a[0].int();
            Int(match b {
                Some(1) => range(1, n, 1),
                Some(2) => range(2, n + 1, 1),
                _ => range(1, n + 1, 1),
            }
            .iter()
            .sum())
        },
    },
    Template {
        names: ["take", "head", "first_n"],
        params: "xs, n",
        body: &["return xs[:n]"],
        k: (0, 0),
        bugs: &[
            bug!(1, OffByOne, 0, "xs[:n]", "xs[:n - 1]"),
            bug!(2, WrongIndex, 0, "xs[:n]", "xs[n:]"),
        ],
        args: |g, _| {
            let xs = ints(g, (4, 5), 0, 9);
            let n = r(g, 1, xs.len() as i64 - 1);
            vec![List(xs), Int(n)]
        },
        eval: |a, _, b| {
            let (xs, n) = (a[0].list(), a[1].int() as usize);
            List(match b {
                Some(1) => xs[..n - 1].to_vec(),
                Some(2) => xs[n..].to_vec(),
                _ => xs[..n].to_vec(),
            })
        },
    },
    Template {
        names: ["last", "final_item", "newest"],
        params: "xs",
        body: &["return xs[-1]"],
        k: (0, 0),
        bugs: &[
            bug!(1, WrongIndex, 0, "xs[-1]", "xs[0]"),
            bug!(2, OffByOne, 0, "xs[-1]", "xs[-2]"),
        ],
        args: |g, _| vec![List(ints(g, (3, 5), 0, 9))],
        eval: |a, _, b| {
            let xs = a[0].list();
            Int(match b {
                Some(1) => at(xs, 0),
                Some(2) => at(xs, -2),
                _ => at(xs, -1),
            })
        },
    },
    Template {
        names: ["average", "mean", "avg"],
        params: "xs",
        body: &["return sum(xs) // len(xs)"],
        k: (0, 0),
        bugs: &[
            bug!(
                1,
                WrongOperator,
                0,
                "sum(xs) // len(xs)",
                "sum(xs) % len(xs)"
            ),
            bug!(
                2,
                SwappedOperands,
                0,
                "sum(xs) // len(xs)",
                "len(xs) // sum(xs)"
            ),
        ],
        args: |g, _| vec![List(ints(g, (2, 4), 1, 9))],
        eval: |a, _, b| {
            let xs = a[0].list();
            let (s, n) = (xs.iter().sum::<i64>(), xs.len() as i64);
            Int(match b {
                Some(1) => s % n,
                Some(2) => n / s,
                _ => s / n,
            })
        },
    },
    Template {
        names: ["is_adult", "old_enough", "may_vote"],
        params: "age",
        body: &["return age >= {k}"],
        k: (12, 21),
        bugs: &[
            bug!(1, WrongComparison, 0, "age >= {k}", "age > {k}"),
            bug!(2, WrongConstant, 0, "age >= {k}", "age >= {k2}"),
        ],
        args: |g, c| {
            let age = if g.random_bool(0.5) {
                c.k + r(g, -2, 2)
            } else {
                r(g, 5, 40)
            };
            vec![Int(age)]
        },
        eval: |a, c, b| {
            let age = a[0].int();
            Bool(match b {
                Some(1) => age > c.k,
                Some(2) => age >= c.k2,
                _ => age >= c.k,
            })
        },
    },
    Template {
        names: ["pair_sums", "add_pairs", "sum_each"],
        params: "pairs",
        body: &["return [p[0] + p[1] for p in pairs]"],
        k: (0, 0),
        bugs: &[
            bug!(1, WrongOperator, 0, "p[0] + p[1]", "p[0] - p[1]"),
            bug!(2, WrongIndex, 0, "p[0] + p[1]", "p[0] + p[0]"),
        ],
        args: |g, _| {
            let pairs = (0..2).map(|_| [r(g, 1, 9), r(g, 1, 9)]).collect();
            vec![Pairs(pairs)]
        },
        eval: |a, _, b| {
            List(
                a[0].pairs()
                    .iter()
                    .map(|p| match b {
                        Some(1) => p[0] - p[1],
                        Some(2) => p[0] + p[0],
                        _ => p[0] + p[1],
                    })
                    .collect(),
            )
        },
    },
    Template {
        names: ["small_ones", "below", "keep_small"],
        params: "xs",
        body: &["return [x for x in xs if x < {k}]"],
        k: (3, 8),
        bugs: &[
            bug!(1, WrongConstant, 0, "x < {k}", "x < {k2}"),
            bug!(2, WrongComparison, 0, "x < {k}", "x <= {k}"),
        ],
        args: |g, c| {
            let xs = ints(g, (4, 5), 0, 9);
            vec![List(maybe_with(g, xs, c.k))]
        },
        eval: |a, c, b| {
            List(
                a[0].list()
                    .iter()
                    .copied()
                    .filter(|&x| match b {
                        Some(1) => x < c.k2,
                        Some(2) => x <= c.k,
                        _ => x < c.k,
                    })
                    .collect(),
            )
        },
    },
    Template {
        names: ["order_total", "bill", "cost"],
        params: "prices, qty",
        body: &[
            "total = 0",
            "for p in prices:",
            "    total += p * qty",
            "return total",
        ],
        k: (0, 0),
        bugs: &[
            bug!(1, WrongOperator, 2, "p * qty", "p + qty"),
            bug!(2, WrongVariable, 2, "p * qty", "p * p"),
            bug!(3, WrongConstant, 0, "total = 0", "total = 1"),
        ],
        args: |g, _| vec![List(ints(g, (2, 3), 1, 9)), Int(r(g, 2, 5))],
        eval: |a, _, b| {
            let (prices, qty) = (a[0].list(), a[1].int());
            let start = if b == Some(3) { 1 } else { 0 };
            Int(start
                + prices
                    .iter()
                    .map(|&p| match b {
                        Some(1) => p + qty,
                        Some(2) => p * p,
                        _ => p * qty,
                    })
                    .sum::<i64>())
        },
    },
    Template {
        names: ["evens_below", "even_numbers", "evens"],
        params: "n",
        body: &["return list(range(0, n, 2))"],
        k: (0, 0),
        bugs: &[
            bug!(1, OffByOne, 0, "range(0, n, 2)", "range(0, n - 1, 2)"),
            bug!(2, WrongConstant, 0, "range(0, n, 2)", "range(0, n, 3)"),
        ],
        args: |g, _| vec![Int(r(g, 3, 11))],
        eval: |a, _, b| {
            let n = a[0].int();
            List(match b {
                Some(1) => range(0, n - 1, 2),
                Some(2) => range(0, n, 3),
                _ => range(0, n, 2),
            })
        },
    },
    Template {
        names: ["larger", "bigger", "max_of"],
        params: "a, b",
        body: &["if a > b:", "    return a", "return b"],
        k: (0, 0),
        bugs: &[bug!(1, WrongComparison, 0, "a > b", "a < b")],
        args: |g, _| vec![Int(r(g, 1, 20)), Int(r(g, 1, 20))],
        eval: |a, _, b| {
            let (x, y) = (a[0].int(), a[1].int());
            let pick_x = if b == Some(1) { x < y } else { x > y };
            Int(if pick_x { x } else { y })
        },
    },
    Template {
        names: ["countdown", "down_from", "descending"],
        params: "n",
        body: &["return list(range(n, 0, -1))"],
        k: (0, 0),
        bugs: &[
            bug!(1, OffByOne, 0, "range(n, 0, -1)", "range(n, 1, -1)"),
            bug!(2, WrongConstant, 0, "range(n, 0, -1)", "range(n, 0, -2)"),
        ],
        args: |g, _| vec![Int(r(g, 2, 7))],
        eval: |a, _, b| {
            let n = a[0].int();
            List(match b {
                Some(1) => range(n, 1, -1),
                Some(2) => range(n, 0, -2),
                _ => range(n, 0, -1),
            })
        },
    },
    Template {
        names: ["square", "squared", "sq"],
        params: "x",
        body: &["return x ** 2"],
        k: (0, 0),
        bugs: &[
            bug!(1, WrongOperator, 0, "x ** 2", "x * 2"),
            bug!(2, WrongConstant, 0, "x ** 2", "x ** 3"),
        ],
        args: |g, _| vec![Int(r(g, 2, 9))],
        eval: |a, _, b| {
            let x = a[0].int();
            Int(match b {
                Some(1) => x * 2,
                Some(2) => x * x * x,
                _ => x * x,
            })
        },
    },
    Template {
        names: ["ratio", "quotient", "per_unit"],
        params: "a, b",
        body: &["return a // b"],
        k: (0, 0),
        bugs: &[
            bug!(1, SwappedOperands, 0, "a // b", "b // a"),
            bug!(2, WrongOperator, 0, "a // b", "a % b"),
        ],
        args: |g, _| {
            let b = r(g, 2, 6);
            vec![Int(r(g, b + 1, 40)), Int(b)]
        },
        eval: |a, _, b| {
            let (x, y) = (a[0].int(), a[1].int());
            Int(match b {
                Some(1) => y / x,
                Some(2) => x % y,
                _ => x / y,
            })
        },
    },
    Template {
        names: ["between", "in_range", "within"],
        params: "x, lo, hi",
        body: &["return lo <= x <= hi"],
        k: (0, 0),
        bugs: &[
            bug!(1, WrongComparison, 0, "lo <= x <= hi", "lo < x <= hi"),
            bug!(2, SwappedOperands, 0, "lo <= x <= hi", "hi <= x <= lo"),
        ],
        args: |g, _| {
            let lo = r(g, 0, 5);
            let hi = lo + r(g, 2, 6);
            let x = if g.random_bool(0.5) {
                lo
            } else {
                r(g, lo - 2, hi + 2)
            };
            vec![Int(x), Int(lo), Int(hi)]
        },
        eval: |a, _, b| {
            let (x, lo, hi) = (a[0].int(), a[1].int(), a[2].int());
            Bool(match b {
                Some(1) => lo < x && x <= hi,
                Some(2) => hi <= x && x <= lo,
                _ => lo <= x && x <= hi,
            })
        },
    },
    Template {
        names: ["second", "runner_up", "next_item"],
        params: "xs",
        body: &["return xs[1]"],
        k: (0, 0),
        bugs: &[
            bug!(1, WrongIndex, 0, "xs[1]", "xs[0]"),
            bug!(2, OffByOne, 0, "xs[1]", "xs[2]"),
        ],
        args: |g, _| vec![List(ints(g, (3, 5), 0, 9))],
        eval: |a, _, b| {
            let xs = a[0].list();
            Int(match b {
                Some(1) => at(xs, 0),
                Some(2) => at(xs, 2),
                _ => at(xs, 1),
            })
        },
    },
    Template {
        names: ["discounted", "after_discount", "net_price"],
        params: "price, off",
        body: &["return price - off"],
        k: (0, 0),
        bugs: &[
            bug!(1, SwappedOperands, 0, "price - off", "off - price"),
            bug!(2, WrongOperator, 0, "price - off", "price + off"),
        ],
        args: |g, _| vec![Int(r(g, 10, 50)), Int(r(g, 1, 9))],
        eval: |a, _, b| {
            let (p, o) = (a[0].int(), a[1].int());
            Int(match b {
                Some(1) => o - p,
                Some(2) => p + o,
                _ => p - o,
            })
        },
    },
    Template {
        names: ["weekly_pay", "wage", "salary"],
        params: "hours, rate",
        body: &["return hours * rate"],
        k: (0, 0),
        bugs: &[
            bug!(1, WrongVariable, 0, "hours * rate", "hours * hours"),
            bug!(2, WrongOperator, 0, "hours * rate", "hours + rate"),
        ],
        args: |g, _| vec![Int(r(g, 2, 9)), Int(r(g, 2, 9))],
        eval: |a, _, b| {
            let (h, rate) = (a[0].int(), a[1].int());
            Int(match b {
                Some(1) => h * h,
                Some(2) => h + rate,
                _ => h * rate,
            })
        },
    },
    Template {
        names: ["span", "spread", "value_range"],
        params: "xs",
        body: &["return max(xs) - min(xs)"],
        k: (0, 0),
        bugs: &[
            bug!(
                1,
                SwappedOperands,
                0,
                "max(xs) - min(xs)",
                "min(xs) - max(xs)"
            ),
            bug!(
                2,
                WrongOperator,
                0,
                "max(xs) - min(xs)",
                "max(xs) + min(xs)"
            ),
        ],
        args: |g, _| vec![List(ints(g, (3, 4), 0, 9))],
        eval: |a, _, b| {
            let xs = a[0].list();
            let (hi, lo) = (
                xs.iter().copied().max().unwrap_or(0),
                xs.iter().copied().min().unwrap_or(0),
            );
            Int(match b {
                Some(1) => lo - hi,
                Some(2) => hi + lo,
                _ => hi - lo,
            })
        },
    },
];

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use rand::SeedableRng;

    use super::*;

    #[test]
    fn every_bug_fragment_sits_on_its_line_and_every_family_has_bugs() {
        let c = Consts { k: 5, k2: 6 };
        let mut names = HashSet::new();
        for t in TEMPLATES {
            for n in t.names {
                assert!(names.insert(n), "function name {n} used twice");
            }
            for b in t.bugs {
                let line = fill(t.body[b.line], c);
                assert!(
                    line.contains(&fill(b.correct, c)),
                    "{}: {line:?} lacks {:?}",
                    t.names[0],
                    b.correct
                );
                assert_ne!(fill(b.correct, c), fill(b.buggy, c));
                assert!(!b.buggy.starts_with('-') && !b.buggy.contains('\''));
            }
        }
        for f in BugFamily::ALL {
            let n = TEMPLATES
                .iter()
                .flat_map(|t| t.bugs)
                .filter(|b| b.family == f)
                .count();
            assert!(n >= 4, "{f}: only {n} bug sites");
        }
    }

    #[test]
    fn every_bug_changes_behaviour_on_some_drawn_input() {
        let mut g = ChaCha8Rng::seed_from_u64(3);
        for t in TEMPLATES {
            let c = Consts {
                k: t.k.1,
                k2: t.k.1 - 1,
            };
            for b in t.bugs {
                let differs = (0..200).any(|_| {
                    let args = (t.args)(&mut g, c);
                    (t.eval)(&args, c, None) != (t.eval)(&args, c, Some(b.id))
                });
                assert!(differs, "{} bug {} never shows", t.names[0], b.id);
            }
        }
    }

    #[test]
    fn python_range_and_index_helpers() {
        assert_eq!(range(0, 5, 2), vec![0, 2, 4]);
        assert_eq!(range(4, 0, -1), vec![4, 3, 2, 1]);
        assert_eq!(range(4, 0, -2), vec![4, 2]);
        assert!(range(3, 3, 1).is_empty());
        assert_eq!(at(&[1, 2, 3], -1), 3);
        assert_eq!(at(&[1, 2, 3], 0), 1);
    }
}
