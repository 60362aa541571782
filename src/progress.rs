//! Progress for `troupe run`: one indicatif bar per phase on a terminal; plain lines
//! (phase start, every tenth of the phase or 15 seconds, phase end) when stderr is a file
//! or a pipe, so logs of long runs show progress too.

use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

/// How often a plain-text phase reports at most.
const PLAIN_EVERY: Duration = Duration::from_secs(15);

/// Draws one indicatif bar per phase, or plain lines when stderr is not a terminal.
#[derive(Debug)]
pub struct Bars {
    bar: Mutex<Option<ProgressBar>>,
    plain: Option<Mutex<PlainPhase>>,
}

/// The phase a plain-text reporter is in.
#[derive(Debug)]
struct PlainPhase {
    name: String,
    total: u64,
    started: Instant,
    last_line: Instant,
    last_done: u64,
}

impl PlainPhase {
    /// Whether `done` is worth a line: a tenth of the phase more than the last line and a
    /// second after it (results often arrive in bursts), or `PLAIN_EVERY` after it.
    fn due(&self, done: u64, now: Instant) -> bool {
        let step = (self.total / 10).max(1);
        let since = now.duration_since(self.last_line);
        (done >= self.last_done + step && since >= Duration::from_secs(1)) || since >= PLAIN_EVERY
    }
}

impl Bars {
    pub fn new() -> Self {
        let plain = (!std::io::stderr().is_terminal()).then(|| {
            Mutex::new(PlainPhase {
                name: String::new(),
                total: 0,
                started: Instant::now(),
                last_line: Instant::now(),
                last_done: 0,
            })
        });
        Self {
            bar: Mutex::new(None),
            plain,
        }
    }

    fn with<F: FnOnce(&ProgressBar)>(&self, f: F) {
        if let Some(b) = self.bar.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            f(b);
        }
    }

    fn with_plain<F: FnOnce(&mut PlainPhase)>(&self, f: F) {
        if let Some(p) = &self.plain {
            f(&mut p.lock().unwrap_or_else(|e| e.into_inner()));
        }
    }
}

impl troupe_actors::Progress for Bars {
    fn phase(&self, name: &str, total: u64) {
        self.with_plain(|p| {
            let now = Instant::now();
            *p = PlainPhase {
                name: name.to_string(),
                total,
                started: now,
                last_line: now,
                last_done: 0,
            };
            eprintln!("{name}: 0/{total}");
        });
        let bar = ProgressBar::new(total);
        let style = ProgressStyle::with_template(
            "{prefix:>22} [{bar:30}] {pos}/{len} {elapsed_precise} {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
        bar.set_style(style);
        bar.set_prefix(name.to_string());
        if let Some(old) = self
            .bar
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .replace(bar)
        {
            old.finish();
        }
    }

    fn advance(&self, done: u64, msg: &str) {
        self.with_plain(|p| {
            let now = Instant::now();
            if p.due(done, now) {
                p.last_line = now;
                p.last_done = done;
                let secs = now.duration_since(p.started).as_secs();
                eprintln!("{}: {done}/{} {secs}s {msg}", p.name, p.total);
            }
        });
        self.with(|b| {
            b.set_position(done);
            b.set_message(msg.to_string());
        });
    }

    fn finish_phase(&self, msg: &str) {
        self.with_plain(|p| {
            let secs = p.started.elapsed().as_secs();
            eprintln!("{}: done in {secs}s {msg}", p.name);
        });
        if let Some(b) = self.bar.lock().unwrap_or_else(|e| e.into_inner()).take() {
            b.finish_with_message(msg.to_string());
        }
    }

    fn note(&self, line: &str) {
        // `suspend` prints even when the bar is hidden (output not a terminal).
        let guard = self.bar.lock().unwrap_or_else(|e| e.into_inner());
        match guard.as_ref() {
            Some(b) => b.suspend(|| eprintln!("  {line}")),
            None => eprintln!("  {line}"),
        }
    }
}
