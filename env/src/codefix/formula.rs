//! Generated formulas: one-line functions whose whole body is drawn per task
//! (`return min(a, 3) * b - xs[-1]`), for the training families only. The templates give
//! about fifty bug sites, so which operator, number or second operand a fix writes can be
//! recalled from the template; a formula's fix cannot, and a policy trained on them has to
//! copy every byte of the fragments — the skill held-out families need.
//!
//! Formulas print in one canonical form and parse back from it, so an issue's fragments
//! can be recognised without a task key ([`family_of`]): both must parse, and differ in
//! exactly one place, in one of the training families' ways.

use rand::Rng;
use rand::seq::{IndexedRandom, SliceRandom};
use rand_chacha::ChaCha8Rng;

use super::family::BugFamily;
use super::rename::{Token, is_reserved, tokens};
use super::templates::at;
use super::value::Value;

/// Names a formula function gets (none is a template's, a pool name or a builtin).
pub(crate) const NAMES: [&str; 10] = [
    "blend", "mix", "combine", "formula", "adjust", "weigh", "gauge", "tune", "measure", "compose",
];

/// Longest fragment a formula may print as: an edit writes it twice within the sampler's
/// `max_new_tokens`.
const MAX_LEN: usize = 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Add,
    Sub,
    Mul,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cmp {
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
    Ne,
}

/// A formula's expression tree. Comparisons appear only at the top.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Expr {
    Var(String),
    Num(i64),
    /// `xs[i]`, an element of the list parameter.
    Item(String, i64),
    /// `min(a, b)` (`true`) or `max(a, b)`.
    MinMax(bool, Box<Expr>, Box<Expr>),
    Bin(Op, Box<Expr>, Box<Expr>),
    Cmp(Cmp, Box<Expr>, Box<Expr>),
}

const OPS: [(Op, &str); 3] = [(Op::Add, "+"), (Op::Sub, "-"), (Op::Mul, "*")];
const CMPS: [(Cmp, &str); 6] = [
    (Cmp::Lt, "<"),
    (Cmp::Le, "<="),
    (Cmp::Gt, ">"),
    (Cmp::Ge, ">="),
    (Cmp::Eq, "=="),
    (Cmp::Ne, "!="),
];

impl Expr {
    /// Binding strength: comparisons 0, `+ -` 1, `*` 2, atoms 3.
    fn prec(&self) -> u8 {
        match self {
            Expr::Cmp(..) => 0,
            Expr::Bin(Op::Add | Op::Sub, ..) => 1,
            Expr::Bin(Op::Mul, ..) => 2,
            _ => 3,
        }
    }

    fn write(&self, out: &mut String) {
        let child = |e: &Expr, out: &mut String, paren: bool| {
            if paren {
                out.push('(');
            }
            e.write(out);
            if paren {
                out.push(')');
            }
        };
        match self {
            Expr::Var(v) => out.push_str(v),
            Expr::Num(n) => out.push_str(&n.to_string()),
            Expr::Item(xs, i) => out.push_str(&format!("{xs}[{i}]")),
            Expr::MinMax(min, a, b) => {
                out.push_str(if *min { "min(" } else { "max(" });
                a.write(out);
                out.push_str(", ");
                b.write(out);
                out.push(')');
            }
            Expr::Bin(_, a, b) | Expr::Cmp(_, a, b) => {
                let sym = match self {
                    Expr::Cmp(c, ..) => CMPS.iter().find(|(x, _)| x == c).map(|(_, s)| *s),
                    Expr::Bin(o, ..) => OPS.iter().find(|(x, _)| x == o).map(|(_, s)| *s),
                    _ => None,
                };
                // Left-associative: the left operand needs parentheses only when it binds
                // more loosely, the right one also when it binds as loosely.
                child(a, out, a.prec() < self.prec());
                out.push(' ');
                out.push_str(sym.unwrap_or("?"));
                out.push(' ');
                child(b, out, b.prec() <= self.prec());
            }
        }
    }

    fn text(&self) -> String {
        let mut s = String::new();
        self.write(&mut s);
        s
    }

    /// The value with `ints` bound to the integer parameters and `list` to the list one.
    fn eval(&self, ints: &[(&str, i64)], list: &[i64]) -> Value {
        let int = |e: &Expr| e.eval(ints, list).int();
        match self {
            Expr::Var(v) => Value::Int(ints.iter().find(|(n, _)| n == v).map_or(0, |p| p.1)),
            Expr::Num(n) => Value::Int(*n),
            Expr::Item(_, i) => Value::Int(at(list, *i)),
            Expr::MinMax(min, a, b) => {
                let (a, b) = (int(a), int(b));
                Value::Int(if *min { a.min(b) } else { a.max(b) })
            }
            Expr::Bin(op, a, b) => {
                let (a, b) = (int(a), int(b));
                Value::Int(match op {
                    Op::Add => a + b,
                    Op::Sub => a - b,
                    Op::Mul => a * b,
                })
            }
            Expr::Cmp(c, a, b) => {
                let (a, b) = (int(a), int(b));
                Value::Bool(match c {
                    Cmp::Lt => a < b,
                    Cmp::Le => a <= b,
                    Cmp::Gt => a > b,
                    Cmp::Ge => a >= b,
                    Cmp::Eq => a == b,
                    Cmp::Ne => a != b,
                })
            }
        }
    }

    /// Whether no operation is one a person would not write: on two numbers (`3 * 4`),
    /// or a subtraction, comparison, `min` or `max` of a thing with itself (`t < t`).
    fn sensible(&self) -> bool {
        match self {
            Expr::MinMax(_, a, b) | Expr::Bin(_, a, b) | Expr::Cmp(_, a, b) => {
                let numbers = matches!((&**a, &**b), (Expr::Num(_), Expr::Num(_)));
                let same = a == b && !matches!(self, Expr::Bin(Op::Add | Op::Mul, ..));
                !numbers && !same && a.sensible() && b.sensible()
            }
            _ => true,
        }
    }

    /// Every subexpression, preorder, as paths of child indices.
    fn paths(&self, at: &mut Vec<usize>, out: &mut Vec<Vec<usize>>) {
        out.push(at.clone());
        if let Expr::MinMax(_, a, b) | Expr::Bin(_, a, b) | Expr::Cmp(_, a, b) = self {
            for (i, c) in [a, b].into_iter().enumerate() {
                at.push(i);
                c.paths(at, out);
                at.pop();
            }
        }
    }

    fn at(&self, path: &[usize]) -> &Expr {
        match (path.split_first(), self) {
            (Some((i, rest)), Expr::MinMax(_, a, b) | Expr::Bin(_, a, b) | Expr::Cmp(_, a, b)) => {
                if *i == 0 { a } else { b }.at(rest)
            }
            (_, e) => e,
        }
    }

    fn at_mut(&mut self, path: &[usize]) -> &mut Expr {
        match (path.split_first(), self) {
            (Some((i, rest)), Expr::MinMax(_, a, b) | Expr::Bin(_, a, b) | Expr::Cmp(_, a, b)) => {
                if *i == 0 { a } else { b }.at_mut(rest)
            }
            (_, e) => e,
        }
    }
}

/// A generated one-line function body and its parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Formula {
    ints: Vec<&'static str>,
    list: Option<&'static str>,
    body: Expr,
}

impl Formula {
    /// Draws a formula over two or three integer parameters (and a list one, a third of
    /// the time), with between one and three operations, printing in at most
    /// [`MAX_LEN`] bytes.
    pub(crate) fn draw(g: &mut ChaCha8Rng, pool: &[&'static str]) -> Formula {
        loop {
            let mut names: Vec<&'static str> = pool.to_vec();
            names.shuffle(g);
            let n_ints = g.random_range(2..=3);
            let ints = names[..n_ints].to_vec();
            let list = g.random_bool(1.0 / 3.0).then(|| names[n_ints]);
            let mut body = expr(g, 2, &ints, list);
            if g.random_bool(0.3) {
                body = Expr::Cmp(
                    CMPS.choose(g).map_or(Cmp::Lt, |c| c.0),
                    Box::new(body),
                    Box::new(expr(g, 1, &ints, list)),
                );
            }
            let f = Formula { ints, list, body };
            let mut nodes = Vec::new();
            f.body.paths(&mut Vec::new(), &mut nodes);
            if f.text().len() <= MAX_LEN && nodes.len() >= 3 && f.body.sensible() {
                return f;
            }
        }
    }

    /// The parameter list, as in `def f(a, b, xs):`.
    pub(crate) fn params(&self) -> String {
        let mut p: Vec<&str> = self.ints.clone();
        p.extend(self.list);
        p.join(", ")
    }

    /// The expression the body returns.
    pub(crate) fn text(&self) -> String {
        self.body.text()
    }

    /// Draws arguments: small integers, and a list of two to four elements.
    pub(crate) fn args(&self, g: &mut ChaCha8Rng) -> Vec<Value> {
        let mut args: Vec<Value> = self
            .ints
            .iter()
            .map(|_| Value::Int(g.random_range(-3..=9)))
            .collect();
        if self.list.is_some() {
            let n = g.random_range(2..=4);
            args.push(Value::List((0..n).map(|_| g.random_range(0..=9)).collect()));
        }
        args
    }

    /// The function's result on `args`.
    pub(crate) fn eval(&self, args: &[Value]) -> Value {
        let ints: Vec<(&str, i64)> = self
            .ints
            .iter()
            .zip(args)
            .map(|(n, v)| (*n, v.int()))
            .collect();
        let list = args.get(self.ints.len()).map_or(&[][..], Value::list);
        self.body.eval(&ints, list)
    }

    /// The formula with a bug of `family` planted, or `None` when this formula has no
    /// place for one (or `family` is not a training family).
    pub(crate) fn plant(&self, g: &mut ChaCha8Rng, family: BugFamily) -> Option<Formula> {
        let mut paths = Vec::new();
        self.body.paths(&mut Vec::new(), &mut paths);
        let fits = |p: &&Vec<usize>| match (family, self.body.at(p)) {
            (BugFamily::WrongOperator, Expr::Bin(..)) => true,
            (BugFamily::WrongConstant, Expr::Num(_)) => true,
            (BugFamily::SwappedOperands, Expr::Bin(Op::Sub, a, b)) => a != b,
            (BugFamily::WrongVariable, Expr::Var(_)) => self.ints.len() > 1,
            _ => false,
        };
        let sites: Vec<&Vec<usize>> = paths.iter().filter(fits).collect();
        let mut out = self.clone();
        let site = sites.choose(g)?;
        let node = out.body.at_mut(site);
        *node = match node.clone() {
            Expr::Bin(op, a, b) if family == BugFamily::WrongOperator => {
                let others: Vec<Op> = OPS.iter().map(|o| o.0).filter(|o| *o != op).collect();
                Expr::Bin(*others.choose(g)?, a, b)
            }
            Expr::Num(n) => {
                let wrong: Vec<i64> = [-2, -1, 1, 2]
                    .iter()
                    .map(|d| n + d)
                    .filter(|v| *v >= 1)
                    .collect();
                Expr::Num(*wrong.choose(g)?)
            }
            Expr::Bin(Op::Sub, a, b) => Expr::Bin(Op::Sub, b, a),
            Expr::Var(v) => {
                let others: Vec<&str> = self.ints.iter().copied().filter(|o| *o != v).collect();
                Expr::Var(others.choose(g)?.to_string())
            }
            _ => return None,
        };
        (out.text().len() <= MAX_LEN).then_some(out)
    }
}

/// A random expression of at most `depth` levels of operations.
fn expr(g: &mut ChaCha8Rng, depth: u32, ints: &[&'static str], list: Option<&str>) -> Expr {
    if depth == 0 || g.random_bool(0.3) {
        let roll = g.random_range(0..100);
        return match list {
            Some(xs) if roll < 20 => {
                Expr::Item(xs.to_string(), *[0, 1, -1, -2].choose(g).unwrap_or(&0))
            }
            _ if roll < 50 => Expr::Num(g.random_range(1..=9)),
            _ => Expr::Var(ints.choose(g).unwrap_or(&"a").to_string()),
        };
    }
    let (a, b) = (
        expr(g, depth - 1, ints, list),
        expr(g, depth - 1, ints, list),
    );
    if g.random_bool(0.15) {
        Expr::MinMax(g.random_bool(0.5), Box::new(a), Box::new(b))
    } else {
        Expr::Bin(
            OPS.choose(g).map_or(Op::Add, |o| o.0),
            Box::new(a),
            Box::new(b),
        )
    }
}

/// The training family an issue's fragments show, if both are formulas in canonical form
/// that differ in exactly one place, in one family's way: one arithmetic operator, one
/// number, one variable, or the operands of one subtraction swapped. Anything else (a
/// comparison changed, an index changed, two changes) is `None`.
pub(crate) fn family_of(buggy: &str, correct: &str) -> Option<BugFamily> {
    let (b, c) = (parse(buggy)?, parse(correct)?);
    match diff(&b, &c) {
        Diff::One(f) => Some(f),
        Diff::Same | Diff::Other => None,
    }
}

enum Diff {
    Same,
    One(BugFamily),
    Other,
}

fn diff(a: &Expr, b: &Expr) -> Diff {
    use Expr::*;
    let pair = |x: (&Expr, &Expr), y: (&Expr, &Expr)| match (diff(x.0, y.0), diff(x.1, y.1)) {
        (Diff::Same, d) | (d, Diff::Same) => d,
        _ => Diff::Other,
    };
    match (a, b) {
        _ if a == b => Diff::Same,
        (Var(_), Var(_)) => Diff::One(BugFamily::WrongVariable),
        (Num(_), Num(_)) => Diff::One(BugFamily::WrongConstant),
        (Bin(Op::Sub, a1, a2), Bin(Op::Sub, b1, b2)) if a1 == b2 && a2 == b1 => {
            Diff::One(BugFamily::SwappedOperands)
        }
        (Bin(o1, a1, a2), Bin(o2, b1, b2)) if o1 != o2 => match (diff(a1, b1), diff(a2, b2)) {
            (Diff::Same, Diff::Same) => Diff::One(BugFamily::WrongOperator),
            _ => Diff::Other,
        },
        (Bin(_, a1, a2), Bin(_, b1, b2)) => pair((a1, a2), (b1, b2)),
        (MinMax(m1, a1, a2), MinMax(m2, b1, b2)) if m1 == m2 => pair((a1, a2), (b1, b2)),
        (Cmp(c1, a1, a2), Cmp(c2, b1, b2)) if c1 == c2 => pair((a1, a2), (b1, b2)),
        _ => Diff::Other,
    }
}

/// Parses a formula printed by [`Formula::text`]; `None` for anything else, including
/// the same formula spelt another way.
fn parse(text: &str) -> Option<Expr> {
    // No formula is longer; a seed file's fragment of deeply nested brackets must not
    // recurse the parser out of stack.
    if text.len() > MAX_LEN + 4 {
        return None;
    }
    let toks: Vec<&str> = tokens(text)
        .into_iter()
        .map(|t| match t {
            Token::Ident(s) | Token::Other(s) => s,
        })
        .filter(|s| *s != " ")
        .collect();
    let mut p = Parser { toks, at: 0 };
    let e = p.top()?;
    (p.at == p.toks.len() && e.text() == text).then_some(e)
}

struct Parser<'a> {
    toks: Vec<&'a str>,
    at: usize,
}

impl<'a> Parser<'a> {
    fn peek(&self, i: usize) -> Option<&'a str> {
        self.toks.get(self.at + i).copied()
    }

    fn eat(&mut self, t: &str) -> Option<()> {
        (self.peek(0)? == t).then(|| self.at += 1)
    }

    fn top(&mut self) -> Option<Expr> {
        let a = self.sum()?;
        // Two-character comparisons come as two one-character tokens.
        let two = self
            .peek(0)
            .zip(self.peek(1))
            .map(|(x, y)| format!("{x}{y}"));
        let (c, width) = match CMPS.iter().find(|(_, s)| Some(s.to_string()) == two) {
            Some((c, _)) => (*c, 2),
            None => match CMPS.iter().find(|(_, s)| Some(*s) == self.peek(0)) {
                Some((c, _)) => (*c, 1),
                None => return Some(a),
            },
        };
        self.at += width;
        Some(Expr::Cmp(c, Box::new(a), Box::new(self.sum()?)))
    }

    fn sum(&mut self) -> Option<Expr> {
        let mut a = self.product()?;
        while let Some(op) = match self.peek(0) {
            Some("+") => Some(Op::Add),
            Some("-") => Some(Op::Sub),
            _ => None,
        } {
            self.at += 1;
            a = Expr::Bin(op, Box::new(a), Box::new(self.product()?));
        }
        Some(a)
    }

    fn product(&mut self) -> Option<Expr> {
        let mut a = self.atom()?;
        while self.peek(0) == Some("*") && self.peek(1) != Some("*") {
            self.at += 1;
            a = Expr::Bin(Op::Mul, Box::new(a), Box::new(self.atom()?));
        }
        Some(a)
    }

    fn atom(&mut self) -> Option<Expr> {
        let t = self.peek(0)?;
        self.at += 1;
        if t == "(" {
            let e = self.sum()?;
            self.eat(")")?;
            return Some(e);
        }
        if t.bytes().all(|b| b.is_ascii_digit()) {
            return t.parse().ok().map(Expr::Num);
        }
        let ident = matches!(tokens(t).as_slice(), [Token::Ident(_)]);
        if !ident {
            return None;
        }
        if t == "min" || t == "max" {
            self.eat("(")?;
            let a = self.sum()?;
            self.eat(",")?;
            let b = self.sum()?;
            self.eat(")")?;
            return Some(Expr::MinMax(t == "min", Box::new(a), Box::new(b)));
        }
        if is_reserved(t) {
            return None;
        }
        if self.eat("[").is_some() {
            let neg = self.eat("-").is_some();
            let i: i64 = self.peek(0)?.parse().ok()?;
            self.at += 1;
            self.eat("]")?;
            return Some(Expr::Item(t.to_string(), if neg { -i } else { i }));
        }
        Some(Expr::Var(t.to_string()))
    }
}

#[cfg(test)]
mod tests;
