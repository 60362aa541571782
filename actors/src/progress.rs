//! How a run reports progress to whoever started it (the CLI draws bars).

/// Receives progress as the run goes. Implementations must be cheap: they are called
/// from actor handlers.
pub trait Progress: Send + Sync + std::fmt::Debug {
    /// A phase begins with `total` units of work.
    fn phase(&self, name: &str, total: u64);
    /// `done` units of the current phase are finished; `msg` is a short status line.
    fn advance(&self, done: u64, msg: &str);
    /// The current phase ended with a one-line result.
    fn finish_phase(&self, msg: &str);
    /// A message worth a line of its own (warnings, rejected input).
    fn note(&self, line: &str);
}
