use std::collections::HashSet;
use std::io::Write;
use std::process::{Command, Stdio};

use rand::SeedableRng;

use super::*;
use crate::codefix::rename::POOL;

fn pool() -> Vec<&'static str> {
    POOL.iter().copied().filter(|p| !is_reserved(p)).collect()
}

#[test]
fn formulas_print_canonically_parse_back_and_vary() {
    let mut g = ChaCha8Rng::seed_from_u64(1);
    let mut texts = HashSet::new();
    let mut shapes = HashSet::new();
    for _ in 0..2000 {
        let f = Formula::draw(&mut g, &pool());
        let text = f.text();
        assert!(text.len() <= MAX_LEN, "{text}");
        assert!(f.body.sensible(), "{text}");
        assert_eq!(parse(&text).as_ref(), Some(&f.body), "{text}");
        texts.insert(text.clone());
        // The shape: names and numbers blanked, operators and brackets kept.
        let shape: String = tokens(&text)
            .into_iter()
            .map(|t| match t {
                Token::Ident("min" | "max") | Token::Other(_) => "·",
                Token::Ident(_) => "v",
            })
            .collect();
        shapes.insert(shape);
    }
    assert!(texts.len() > 1900, "only {} distinct formulas", texts.len());
    assert!(shapes.len() > 100, "only {} shapes", shapes.len());
    // Other spellings of a formula, and what is not one, do not parse.
    for bad in [
        "(a + b)",
        "a  + b",
        "a+b",
        "a ** 2",
        "a + ",
        "sum(xs)",
        "xs[:n]",
        "lo <= x <= hi",
    ] {
        assert_eq!(parse(bad), None, "{bad}");
    }
    assert!(!parse("3 * 4 + a").unwrap().sensible() && !parse("t < t").unwrap().sensible());
    assert!(parse("t * t").unwrap().sensible());
    let deep = "(".repeat(100_000) + "a" + &")".repeat(100_000);
    assert_eq!(family_of(&deep, "a"), None);
    assert!(parse("a - (b - c)").is_some() && parse("(a - b) * 3").is_some());
    assert!(parse("min(a, 3) * xs[-1] >= b").is_some());
}

#[test]
fn python_computes_what_eval_says() {
    let mut g = ChaCha8Rng::seed_from_u64(2);
    let mut program = String::new();
    let mut expected = Vec::new();
    for i in 0..400 {
        let f = Formula::draw(&mut g, &pool());
        let args = f.args(&mut g);
        program += &format!("def f{i}({}):\n    return {}\n", f.params(), f.text());
        program += &format!(
            "print({})\n",
            crate::codefix::value::call(&format!("f{i}"), &args)
        );
        expected.push(f.eval(&args).to_string());
    }
    let mut child = Command::new("python3")
        .arg("-")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(program.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let got: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(got, expected);
}

#[test]
fn planted_bugs_read_as_their_family_and_nothing_else_does() {
    let mut g = ChaCha8Rng::seed_from_u64(3);
    for family in BugFamily::ALL {
        let mut planted = 0;
        for _ in 0..300 {
            let f = Formula::draw(&mut g, &pool());
            let Some(b) = f.plant(&mut g, family) else {
                continue;
            };
            planted += 1;
            assert_ne!(b.text(), f.text());
            assert!(b.text().len() <= MAX_LEN);
            assert_eq!(
                family_of(&b.text(), &f.text()),
                Some(family),
                "{} / {}",
                b.text(),
                f.text()
            );
        }
        // Only training families are planted in formulas.
        if family.split() == crate::Split::Train {
            assert!(planted > 100, "{family}: {planted} of 300");
        } else {
            assert_eq!(planted, 0, "{family}");
        }
    }
    // Held-out kinds of change, two changes, and non-formulas read as no family.
    for (buggy, correct) in [
        ("x > lo", "x < lo"),
        ("age > 18", "age >= 18"),
        ("xs[0]", "xs[-1]"),
        ("xs[-2]", "xs[-1]"),
        ("p[0] + p[0]", "p[0] + p[1]"),
        ("range(1, n)", "range(1, n + 1)"),
        ("a + c", "a * b"),
        ("max(a, b)", "min(a, b)"),
        ("a + b", "a + b"),
        ("a + b", "(a + b)"),
    ] {
        assert_eq!(family_of(buggy, correct), None, "{buggy} / {correct}");
    }
    assert_eq!(family_of("a + b", "a * b"), Some(BugFamily::WrongOperator));
    assert_eq!(
        family_of("b - a", "a - b"),
        Some(BugFamily::SwappedOperands)
    );
    assert_eq!(
        family_of("x * 4 < y", "x * 3 < y"),
        Some(BugFamily::WrongConstant)
    );
    assert_eq!(
        family_of("min(a, a)", "min(a, b)"),
        Some(BugFamily::WrongVariable)
    );
}
