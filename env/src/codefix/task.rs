//! A code-fixing task, generated deterministically from its [`TaskKey`]: a small Python
//! repository with one planted bug, visible tests, hidden tests kept out of the
//! repository, and the issue text the policy is shown.

use rand::seq::{IndexedRandom, SliceRandom};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use troupe_core::TaskSpec;

use super::family::BugFamily;
use super::formula::{self, Formula};
use super::rename::{POOL, Renaming, Token, is_reserved, tokens};
use super::templates::{Bug, Consts, TEMPLATES, Template, fill};
use super::value::{Value, call};
use crate::{EnvError, Split};

/// `TaskSpec::answer` of a code-fixing task starts with this; the rest names the key.
pub const KEY_PREFIX: &str = "codefix/";

/// Module names a repository's files get (none shadows a standard-library module).
const MODULES: [&str; 10] = [
    "geometry", "stats", "shop", "counting", "lists", "scores", "tools", "helpers", "mathx",
    "payroll",
];

/// Functions per repository (one of them carries the bug), split over two modules.
const FUNCTIONS: usize = 4;

/// Share of training tasks whose buggy function is a generated [`Formula`].
const FORMULA_SHARE: f64 = 0.5;

/// Assertions per function in the hidden tests.
const HIDDEN_CASES: usize = 3;

/// Identifies a task: a bug family and a seed. The same key always gives the same
/// repository, issue and hidden tests, so the judge regenerates what the env host served.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TaskKey {
    /// The kind of bug planted.
    pub family: BugFamily,
    /// Which task of the family.
    pub seed: u64,
}

impl TaskKey {
    /// The key as `TaskSpec::answer` carries it: `codefix/<family>/<seed>`.
    pub fn to_answer(self) -> String {
        format!("{KEY_PREFIX}{}/{}", self.family.name(), self.seed)
    }

    /// Parses `codefix/<family>/<seed>`.
    pub fn parse(answer: &str) -> Result<TaskKey, EnvError> {
        let bad = |reason: &str| EnvError::TaskKey {
            key: answer.chars().take(80).collect(),
            reason: reason.to_string(),
        };
        let rest = answer
            .strip_prefix(KEY_PREFIX)
            .ok_or_else(|| bad("does not start with codefix/"))?;
        let (family, seed) = rest
            .split_once('/')
            .ok_or_else(|| bad("expected codefix/<family>/<seed>"))?;
        let family = BugFamily::parse(family).ok_or_else(|| bad("unknown bug family"))?;
        let seed = seed.parse().map_err(|_| bad("seed is not a number"))?;
        Ok(TaskKey { family, seed })
    }

    /// The key of `task` if it is a code-fixing task (`None` for other tasks; an error
    /// for a malformed code-fixing key).
    pub fn of_task(task: &TaskSpec) -> Option<Result<TaskKey, EnvError>> {
        task.answer
            .starts_with(KEY_PREFIX)
            .then(|| TaskKey::parse(&task.answer))
    }
}

/// One file of the task repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoFile {
    /// Path relative to the repository root.
    pub path: String,
    /// Contents.
    pub contents: String,
}

/// Where the bug is and what fixes it: on `line` (1-based) of `file`, `buggy` should
/// read `correct`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fix {
    /// The module holding the bug.
    pub file: String,
    /// Its line, 1-based.
    pub line: usize,
    /// The faulty fragment (unique in the repository).
    pub buggy: String,
    /// What it should be.
    pub correct: String,
}

/// A generated task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodefixTask {
    /// Its key.
    pub key: TaskKey,
    /// What the policy is shown first.
    pub issue: String,
    /// The repository the agent works in (modules, visible tests, `.gitignore`).
    pub files: Vec<RepoFile>,
    /// Paths of the visible test files (a diff touching them earns no reward).
    pub visible_tests: Vec<String>,
    /// Source of the hidden test module; never part of the repository.
    pub hidden_tests: String,
    /// Test methods in the hidden module.
    pub hidden_test_count: usize,
    /// The planted bug and its fix.
    pub fix: Fix,
    /// Whether the buggy function is a generated formula rather than a template's.
    pub formula: bool,
}

impl CodefixTask {
    /// The [`TaskSpec`] the coordinator hands out for this task.
    pub fn spec(&self, id: u64) -> TaskSpec {
        TaskSpec {
            id,
            prompt: self.issue.clone(),
            answer: self.key.to_answer(),
            difficulty: BugFamily::ALL
                .iter()
                .position(|f| *f == self.key.family)
                .unwrap_or(0) as u32,
        }
    }
}

/// One function placed in the repository.
struct Placed {
    name: &'static str,
    kind: Kind,
}

/// What a placed function is made from.
enum Kind {
    /// A template, with its constants, its variables' names in this task, and the bug
    /// planted in it if it is the buggy one.
    Template {
        template: &'static Template,
        consts: Consts,
        vars: Renaming,
        bug: Option<&'static Bug>,
    },
    /// A generated formula, and the same with a bug planted (formulas are only ever
    /// placed as the buggy function).
    Formula { correct: Formula, buggy: Formula },
}

impl Placed {
    fn new(g: &mut ChaCha8Rng, template: &'static Template, bug: Option<&'static Bug>) -> Placed {
        Placed {
            name: template.names[g.random_range(0..3)],
            kind: Kind::Template {
                template,
                consts: consts(g, template),
                vars: Renaming::draw(g, template.params, template.body),
                bug,
            },
        }
    }

    /// A formula function with a bug of `family` planted, if the drawn formula has a
    /// place for one.
    fn formula(g: &mut ChaCha8Rng, family: BugFamily) -> Option<Placed> {
        let correct = Formula::draw(g, POOL);
        let buggy = correct.plant(g, family)?;
        Some(Placed {
            name: formula::NAMES.choose(g).copied().unwrap_or("blend"),
            kind: Kind::Formula { correct, buggy },
        })
    }

    fn is_buggy(&self) -> bool {
        match &self.kind {
            Kind::Template { bug, .. } => bug.is_some(),
            Kind::Formula { .. } => true,
        }
    }

    /// The buggy function's fault: its body line (0-based), the faulty fragment and the
    /// correct one, as they read in this task.
    fn fault(&self) -> Option<(usize, String, String)> {
        match &self.kind {
            Kind::Template {
                consts, vars, bug, ..
            } => {
                let text = |t: &str| vars.apply(&fill(t, *consts));
                bug.map(|b| (b.line, text(b.buggy), text(b.correct)))
            }
            Kind::Formula { correct, buggy } => Some((0, buggy.text(), correct.text())),
        }
    }

    fn source(&self) -> Vec<String> {
        let (params, body) = match &self.kind {
            Kind::Template {
                template,
                consts,
                vars,
                ..
            } => {
                let body = template.body.iter().map(|l| vars.apply(&fill(l, *consts)));
                (vars.apply(template.params), body.collect())
            }
            Kind::Formula { correct, .. } => {
                (correct.params(), vec![format!("return {}", correct.text())])
            }
        };
        let mut lines = vec![format!("def {}({params}):", self.name)];
        let fault = self.fault();
        for (i, mut line) in body.into_iter().enumerate() {
            if let Some((_, buggy, correct)) = fault.as_ref().filter(|f| f.0 == i) {
                line = line.replacen(correct, buggy, 1);
            }
            lines.push(format!("    {line}"));
        }
        lines
    }

    /// Draws arguments to call it with.
    fn args(&self, g: &mut ChaCha8Rng) -> Vec<Value> {
        match &self.kind {
            Kind::Template {
                template, consts, ..
            } => (template.args)(g, *consts),
            Kind::Formula { correct, .. } => correct.args(g),
        }
    }

    /// What it should return for `args`.
    fn expect(&self, args: &[Value]) -> Value {
        match &self.kind {
            Kind::Template {
                template, consts, ..
            } => (template.eval)(args, *consts, None),
            Kind::Formula { correct, .. } => correct.eval(args),
        }
    }

    /// What it returns for `args`, bug and all.
    fn got(&self, args: &[Value]) -> Value {
        match &self.kind {
            Kind::Template {
                template,
                consts,
                bug,
                ..
            } => (template.eval)(args, *consts, bug.map(|b| b.id)),
            Kind::Formula { buggy, .. } => buggy.eval(args),
        }
    }

    fn assert_line(&self, args: &[Value]) -> String {
        format!(
            "        self.assertEqual({}, {})",
            call(self.name, args),
            self.expect(args)
        )
    }
}

fn consts(g: &mut ChaCha8Rng, t: &Template) -> Consts {
    let k = g.random_range(t.k.0..=t.k.1);
    let mut k2 = k;
    while k2 == k || k2 < 1 {
        k2 = k + [-2, -1, 1, 2][g.random_range(0..4)];
    }
    Consts { k, k2 }
}

/// Generates the task of `key`. Deterministic: the same key gives the same task.
pub fn generate(key: TaskKey) -> CodefixTask {
    let family_salt = BugFamily::ALL
        .iter()
        .position(|f| *f == key.family)
        .unwrap_or(0) as u64;
    let mut g = ChaCha8Rng::seed_from_u64(key.seed ^ ((family_salt + 1) << 56));
    let sites: Vec<(&'static Template, &'static Bug)> = TEMPLATES
        .iter()
        .flat_map(|t| t.bugs.iter().map(move |b| (t, b)))
        .filter(|(_, b)| b.family == key.family)
        .collect();
    loop {
        if let Some(task) = attempt(key, &sites, &mut g) {
            return task;
        }
    }
}

/// One draw of a task; `None` when it fails a check (no input shows the bug, or the
/// faulty fragment is not unique), and the caller draws again from where `g` is.
fn attempt(
    key: TaskKey,
    sites: &[(&'static Template, &'static Bug)],
    g: &mut ChaCha8Rng,
) -> Option<CodefixTask> {
    // Training tasks are half the time a generated formula, whose fix cannot be
    // recalled from the templates; held-out tasks are always template sites.
    let (buggy, template) = if key.family.split() == Split::Train && g.random_bool(FORMULA_SHARE) {
        (Placed::formula(g, key.family)?, None)
    } else {
        let &(template, bug) = sites.choose(g)?;
        (Placed::new(g, template, Some(bug)), Some(template))
    };
    let (example, got) = (0..100).find_map(|_| {
        let args = buggy.args(g);
        let got = buggy.got(&args);
        (got != buggy.expect(&args)).then_some((args, got))
    })?;
    let mut others: Vec<&'static Template> = TEMPLATES
        .iter()
        .filter(|t| !template.is_some_and(|own| std::ptr::eq(*t, own)))
        .collect();
    others.shuffle(g);
    let mut placed = vec![buggy];
    for t in others.into_iter().take(FUNCTIONS - 1) {
        placed.push(Placed::new(g, t, None));
    }
    placed.shuffle(g);
    let modules: Vec<&str> = MODULES.choose_multiple(g, 2).copied().collect();
    let half = FUNCTIONS / 2;
    let mut files = Vec::new();
    let mut visible_tests = Vec::new();
    let mut fix = None;
    let mut imports = Vec::new();
    for (m, group) in modules.iter().zip(placed.chunks(half)) {
        let path = format!("{m}.py");
        let mut lines: Vec<String> = Vec::new();
        for (i, p) in group.iter().enumerate() {
            if i > 0 {
                lines.extend([String::new(), String::new()]);
            }
            let start = lines.len();
            if let Some((line, buggy, correct)) = p.fault() {
                fix = Some(Fix {
                    file: path.clone(),
                    line: start + 2 + line,
                    buggy,
                    correct,
                });
            }
            lines.extend(p.source());
        }
        files.push(RepoFile {
            path,
            contents: lines.join("\n") + "\n",
        });
        let names: Vec<&str> = group.iter().map(|p| p.name).collect();
        imports.push(format!("from {m} import {}", names.join(", ")));
        let test_path = format!("test_{m}.py");
        let mut test = vec![
            "import unittest".to_string(),
            String::new(),
            imports.last().cloned().unwrap_or_default(),
            String::new(),
            String::new(),
            format!("class Test{}(unittest.TestCase):", capitalise(m)),
        ];
        for (i, p) in group.iter().enumerate() {
            if i > 0 {
                test.push(String::new());
            }
            test.push(format!("    def test_{}(self):", p.name));
            let args = if p.is_buggy() {
                example.clone()
            } else {
                p.args(g)
            };
            test.push(p.assert_line(&args));
        }
        files.push(RepoFile {
            path: test_path.clone(),
            contents: test.join("\n") + "\n",
        });
        visible_tests.push(test_path);
    }
    files.push(RepoFile {
        path: ".gitignore".into(),
        contents: "__pycache__/\n".into(),
    });
    let fix = fix?;
    let occurrences: usize = files
        .iter()
        .map(|f| f.contents.matches(&fix.buggy).count())
        .sum();
    if occurrences != 1 {
        return None;
    }
    let hidden_tests = hidden_module(&imports, &placed, &example, g);
    let expected = placed
        .iter()
        .find(|p| p.is_buggy())
        .map(|p| p.expect(&example))?;
    let issue = format!(
        "Bug: {} returns {got}, expected {expected}.\nFix: `{}` should be `{}`.",
        call(placed.iter().find(|p| p.is_buggy())?.name, &example),
        fix.buggy,
        fix.correct
    );
    Some(CodefixTask {
        key,
        issue,
        files,
        visible_tests,
        hidden_tests,
        hidden_test_count: placed.len(),
        fix,
        formula: template.is_none(),
    })
}

/// The hidden test module: one test per function, [`HIDDEN_CASES`] assertions each; the
/// buggy function's first case is the issue's example, so the bug always fails it.
fn hidden_module(
    imports: &[String],
    placed: &[Placed],
    example: &[Value],
    g: &mut ChaCha8Rng,
) -> String {
    let mut lines = vec!["import unittest".to_string(), String::new()];
    lines.extend(imports.iter().cloned());
    lines.extend([
        String::new(),
        String::new(),
        "class HiddenTests(unittest.TestCase):".to_string(),
    ]);
    for (i, p) in placed.iter().enumerate() {
        if i > 0 {
            lines.push(String::new());
        }
        lines.push(format!("    def test_{}(self):", p.name));
        for case in 0..HIDDEN_CASES {
            let args = if case == 0 && p.is_buggy() {
                example.to_vec()
            } else {
                p.args(g)
            };
            lines.push(p.assert_line(&args));
        }
    }
    lines.join("\n") + "\n"
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
        .unwrap_or_default()
}

/// The split of a code-fixing issue text, for seed files whose conversations carry no
/// task key: the `Fix:` line's fragments are looked up among the bug sites of every
/// template (up to the renaming of variables and the value of constants) and read as a
/// generated formula's ([`formula::family_of`]), and the issue
/// is held out if any matching site's family is held out, or if no site matches (an
/// issue that cannot be placed is never trained on).
pub fn split_of_issue(issue: &str) -> Split {
    let Some((buggy, correct)) = fix_fragments(issue) else {
        return Split::Heldout;
    };
    let families: Vec<BugFamily> = TEMPLATES
        .iter()
        .flat_map(|t| t.bugs)
        .filter(|b| pattern_matches(&[b.buggy, b.correct], &[buggy, correct]))
        .map(|b| b.family)
        .chain(formula::family_of(buggy, correct))
        .collect();
    if !families.is_empty() && families.iter().all(|f| f.split() == Split::Train) {
        Split::Train
    } else {
        Split::Heldout
    }
}

/// The two fragments of an issue's "Fix: `A` should be `B`." line.
fn fix_fragments(issue: &str) -> Option<(&str, &str)> {
    let line = issue.lines().find_map(|l| l.strip_prefix("Fix: `"))?;
    let (buggy, rest) = line.split_once("` should be `")?;
    let correct = rest.strip_suffix("`.")?;
    Some((buggy, correct))
}

/// Whether the texts are the template patterns under one renaming of the patterns'
/// variables (one-to-one, keywords and builtins kept) and with `{k}` / `{k2}` standing
/// for any run of digits.
fn pattern_matches(patterns: &[&str], texts: &[&str]) -> bool {
    const CONST: &str = "\u{1}";
    if patterns.len() != texts.len() {
        return false;
    }
    let patterns: Vec<String> = patterns
        .iter()
        .map(|p| p.replace("{k2}", CONST).replace("{k}", CONST))
        .collect();
    let mut bound: Vec<(&str, &str)> = Vec::new();
    for (pattern, text) in patterns.iter().zip(texts) {
        let (p, t) = (tokens(pattern), tokens(text));
        if p.len() != t.len() {
            return false;
        }
        for (p, t) in p.into_iter().zip(t) {
            let ok = match (p, t) {
                (Token::Other(CONST), Token::Other(d)) => d.bytes().all(|b| b.is_ascii_digit()),
                (Token::Other(a), Token::Other(b)) => a == b,
                (Token::Ident(a), Token::Ident(b)) if is_reserved(a) || is_reserved(b) => a == b,
                (Token::Ident(a), Token::Ident(b)) => {
                    match bound.iter().find(|(x, y)| *x == a || *y == b) {
                        Some(&(x, y)) => x == a && y == b,
                        None => {
                            bound.push((a, b));
                            true
                        }
                    }
                }
                _ => false,
            };
            if !ok {
                return false;
            }
        }
    }
    true
}

#[cfg(test)]
mod tests;
