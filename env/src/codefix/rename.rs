//! Per-task variable names. Each placed function gets its parameters and locals renamed
//! from a pool, the same way in its body and in its bug's fragments, so the issue's
//! `Fix:` fragments vary from task to task (`w * h` is as often `rate * qty` or `b * t`).
//! A policy cannot solve unseen tasks by recalling the fragments of the ones it trained
//! on; it has to copy them from the issue and the observations, which is the skill that
//! transfers to held-out bug families.
//!
//! Renaming works on Python tokens: an identifier is renamed only as a whole token, and
//! keywords and the builtins the templates call are never renamed, so the renamed
//! function behaves exactly as the template's `eval` says.

use rand::Rng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

/// Names a template's own identifiers never take: the keywords and builtins the
/// templates use, and a few that would read as them.
pub(crate) const RESERVED: &[&str] = &[
    "and", "def", "elif", "else", "False", "for", "if", "in", "is", "len", "list", "max", "min",
    "None", "not", "or", "range", "return", "sum", "True", "while",
];

/// Names a variable may get.
pub(crate) const POOL: &[&str] = &[
    "a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k", "m", "n", "p", "q", "r", "s", "t", "u",
    "v", "w", "x", "y", "z", "lo", "hi", "xs", "ys", "acc", "age", "amt", "base", "cap", "cnt",
    "cost", "count", "data", "days", "dist", "fee", "gap", "high", "hours", "idx", "items", "item",
    "key", "left", "level", "limit", "low", "mark", "nums", "num", "off", "pay", "price", "prices",
    "qty", "rate", "right", "row", "run", "score", "seq", "size", "start", "step", "stop", "tally",
    "top", "total", "units", "val", "vals", "width", "height", "wage",
];

/// One token of a line of template code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Token<'a> {
    /// A Python identifier or keyword.
    Ident(&'a str),
    /// Anything else: a run of digits, or one other character.
    Other(&'a str),
}

/// `text` as tokens; concatenating them gives `text` back.
pub(crate) fn tokens(text: &str) -> Vec<Token<'_>> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        let run = |pred: fn(u8) -> bool| {
            bytes[i..]
                .iter()
                .position(|&b| !pred(b))
                .map_or(bytes.len(), |n| i + n)
        };
        let (end, ident) = if c.is_ascii_alphabetic() || c == b'_' {
            (run(|b| b.is_ascii_alphanumeric() || b == b'_'), true)
        } else if c.is_ascii_digit() {
            (run(|b| b.is_ascii_digit()), false)
        } else {
            let width = text[i..].chars().next().map_or(1, char::len_utf8);
            (i + width, false)
        };
        let piece = &text[i..end];
        out.push(if ident {
            Token::Ident(piece)
        } else {
            Token::Other(piece)
        });
        i = end;
    }
    out
}

/// Whether `name` is an identifier renaming must leave alone.
pub(crate) fn is_reserved(name: &str) -> bool {
    RESERVED.contains(&name)
}

/// The renaming of one placed function: template name → task name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Renaming {
    map: Vec<(String, &'static str)>,
}

impl Renaming {
    /// A fresh renaming of every non-reserved identifier in `params` and `body`, each to
    /// a distinct pool name.
    pub(crate) fn draw(g: &mut ChaCha8Rng, params: &str, body: &[&str]) -> Renaming {
        let mut own: Vec<&str> = Vec::new();
        for text in std::iter::once(params).chain(body.iter().copied()) {
            for t in tokens(text) {
                if let Token::Ident(name) = t
                    && !is_reserved(name)
                    && !own.contains(&name)
                {
                    own.push(name);
                }
            }
        }
        // Now and then a template keeps the names it has that are in the pool, so the
        // familiar spellings stay in the mix; the other names come from the rest of it.
        let keep = g.random_bool(0.2);
        let kept = |name: &str| keep && POOL.contains(&name);
        let mut pool: Vec<&'static str> = POOL
            .iter()
            .copied()
            .filter(|p| !kept(p) || !own.contains(p))
            .collect();
        pool.shuffle(g);
        let mut fresh = pool.into_iter();
        let map = own
            .into_iter()
            .map(|from| {
                let to = match POOL.iter().find(|p| kept(p) && **p == from) {
                    Some(&same) => same,
                    None => fresh
                        .next()
                        .expect("the pool outnumbers any template's identifiers"),
                };
                (from.to_string(), to)
            })
            .collect();
        Renaming { map }
    }

    /// `text` with each renamed identifier replaced.
    pub(crate) fn apply(&self, text: &str) -> String {
        tokens(text)
            .into_iter()
            .map(|t| match t {
                Token::Ident(name) => self
                    .map
                    .iter()
                    .find(|(from, _)| from == name)
                    .map_or(name, |(_, to)| *to),
                Token::Other(s) => s,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    #[test]
    fn tokens_round_trip_and_split_identifiers_from_the_rest() {
        let line = "return [p[0] + p12 for p in pairs if p >= 10]";
        let t = tokens(line);
        assert_eq!(
            t.iter()
                .map(|t| match t {
                    Token::Ident(s) | Token::Other(s) => *s,
                })
                .collect::<String>(),
            line
        );
        assert!(t.contains(&Token::Ident("p12")));
        assert!(t.contains(&Token::Other("10")));
        assert!(t.contains(&Token::Other(">")));
        assert!(!t.contains(&Token::Ident("p1")));
    }

    #[test]
    fn renaming_is_whole_token_and_leaves_keywords_and_builtins() {
        let mut g = ChaCha8Rng::seed_from_u64(1);
        for _ in 0..200 {
            let r = Renaming::draw(&mut g, "xs, n", &["return sum(xs[:n]) + len(xs)"]);
            let out = r.apply("return sum(xs[:n]) + len(xs)");
            assert!(
                out.starts_with("return sum(") && out.contains(") + len("),
                "{out}"
            );
            let renamed = r.apply("xs");
            assert_ne!(renamed, r.apply("n"));
            assert!(!is_reserved(&renamed));
            // `xs` inside another identifier is not touched.
            assert_eq!(r.apply("xs_total"), "xs_total");
        }
    }

    #[test]
    fn the_pool_is_clean_and_names_vary() {
        for p in POOL {
            assert!(!is_reserved(p), "{p}");
            assert!(matches!(tokens(p).as_slice(), [Token::Ident(_)]), "{p}");
        }
        let mut g = ChaCha8Rng::seed_from_u64(2);
        let mut seen = std::collections::HashSet::new();
        for t in crate::codefix::templates::TEMPLATES {
            for _ in 0..20 {
                let r = Renaming::draw(&mut g, t.params, t.body);
                let mut to: Vec<&str> = r.map.iter().map(|(_, to)| *to).collect();
                to.sort_unstable();
                assert!(to.windows(2).all(|w| w[0] != w[1]), "{:?}", r.map);
            }
        }
        for _ in 0..300 {
            seen.insert(Renaming::draw(&mut g, "w, h", &["return w * h"]).apply("w * h"));
        }
        assert!(seen.len() > 150, "only {} spellings", seen.len());
    }
}
