//! Progress bars for `troupe run`: one bar per phase, notes printed above them.

use std::sync::Mutex;

use indicatif::{ProgressBar, ProgressStyle};

/// Draws one indicatif bar per phase.
#[derive(Debug)]
pub struct Bars {
    bar: Mutex<Option<ProgressBar>>,
}

impl Bars {
    pub fn new() -> Self {
        Self {
            bar: Mutex::new(None),
        }
    }

    fn with<F: FnOnce(&ProgressBar)>(&self, f: F) {
        if let Some(b) = self.bar.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            f(b);
        }
    }
}

impl troupe_actors::Progress for Bars {
    fn phase(&self, name: &str, total: u64) {
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
        self.with(|b| {
            b.set_position(done);
            b.set_message(msg.to_string());
        });
    }

    fn finish_phase(&self, msg: &str) {
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
