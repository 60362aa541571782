//! The inference thread: owns the model, takes requests from a channel, batches those
//! that arrive together into one decode, and streams each row's text back as it becomes
//! valid UTF-8, cut at the first stop sequence.

use std::collections::VecDeque;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rand_chacha::ChaCha8Rng;
use tokio::sync::mpsc::UnboundedSender;
use troupe_core::TokenId;
use troupe_model::Transformer;
use troupe_model::tokenizer::ChatTokenizer;
use troupe_sampler::{Flow, SamplingParams, generate_streaming};

use super::api::{Finish, FinishReason};

/// What the engine tells a request's handler, in order: text pieces, then one `Done`
/// or `Failed`.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// The next piece of the completion's text.
    Text(String),
    /// The completion ended.
    Done(Finish),
    /// The model failed; nothing more follows.
    Failed(String),
}

/// One request for the engine.
#[derive(Debug)]
pub struct Job {
    /// Prompt token ids.
    pub prompt: Vec<TokenId>,
    /// Sampling parameters (`max_new_tokens` fits the context with the prompt).
    pub params: SamplingParams,
    /// Stop sequences.
    pub stop: Vec<String>,
    /// This request's own random stream.
    pub rng: ChaCha8Rng,
    /// Where its events go; once the receiver is dropped the row stops.
    pub events: UnboundedSender<Event>,
}

/// How the engine groups requests.
#[derive(Debug, Clone, Copy)]
pub struct EngineOptions {
    /// Most requests decoded together.
    pub max_batch: usize,
    /// How long the first request of a batch waits for company.
    pub gather: Duration,
}

/// Handle to the inference thread; dropping every handle ends the thread.
#[derive(Debug, Clone)]
pub struct Engine {
    jobs: mpsc::Sender<Job>,
}

impl Engine {
    /// Starts the inference thread with `model`, decoding text with `tokenizer`.
    pub fn start(
        model: Transformer,
        tokenizer: ChatTokenizer,
        opts: EngineOptions,
    ) -> std::io::Result<Self> {
        let (jobs, rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("troupe-serve-engine".into())
            .spawn(move || run(&model, &tokenizer, &rx, opts))?;
        Ok(Self { jobs })
    }

    /// Queues `job`; gives it back if the engine has stopped.
    pub fn submit(&self, job: Job) -> Result<(), Box<Job>> {
        self.jobs.send(job).map_err(|e| Box::new(e.0))
    }
}

fn run(model: &Transformer, tok: &ChatTokenizer, rx: &mpsc::Receiver<Job>, opts: EngineOptions) {
    let max_seq = model.config().max_seq;
    let mut pending: VecDeque<Job> = VecDeque::new();
    loop {
        if pending.is_empty() {
            match rx.recv() {
                Ok(job) => pending.push_back(job),
                Err(_) => return,
            }
        }
        let deadline = Instant::now() + opts.gather;
        while pending.len() < opts.max_batch {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(job) => pending.push_back(job),
                Err(_) => break,
            }
        }
        pending.retain(|j| !j.events.is_closed());
        let batch = take_batch(&mut pending, opts.max_batch, max_seq, |j| {
            (j.prompt.len(), j.params.max_new_tokens)
        });
        if !batch.is_empty() {
            let started = Instant::now();
            let rows = batch.len();
            let longest = batch.iter().map(|j| j.prompt.len()).max().unwrap_or(0);
            decode(model, tok, batch);
            tracing::debug!(rows, longest, queued = pending.len(), elapsed = ?started.elapsed(), "decoded a batch");
        }
    }
}

/// Takes the next batch off the front of `pending`, in arrival order: the first job,
/// then each later one that fits beside those taken, up to `max_batch`. `shape` gives a
/// job's prompt length and token budget; a batch fits when its longest prompt plus its
/// largest budget is within `max_seq`, so no row's budget is cut by a batch-mate's
/// prompt (the batch is left-padded to its longest prompt).
pub fn take_batch<T>(
    pending: &mut VecDeque<T>,
    max_batch: usize,
    max_seq: usize,
    shape: impl Fn(&T) -> (usize, usize),
) -> Vec<T> {
    let mut batch = Vec::new();
    let (mut longest, mut budget) = (0, 0);
    let mut rest = VecDeque::with_capacity(pending.len());
    while let Some(job) = pending.pop_front() {
        let (len, new) = shape(&job);
        let fits = batch.is_empty() || longest.max(len) + budget.max(new) <= max_seq;
        if batch.len() < max_batch && fits {
            longest = longest.max(len);
            budget = budget.max(new);
            batch.push(job);
        } else {
            rest.push_back(job);
        }
    }
    *pending = rest;
    batch
}

/// One decode of `jobs` as a batch, each row's text sent as it comes.
fn decode(model: &Transformer, tok: &ChatTokenizer, jobs: Vec<Job>) {
    let prompts: Vec<Vec<TokenId>> = jobs.iter().map(|j| j.prompt.clone()).collect();
    let params: Vec<SamplingParams> = jobs.iter().map(|j| j.params).collect();
    let mut rngs: Vec<ChaCha8Rng> = jobs.iter().map(|j| j.rng.clone()).collect();
    let mut texts: Vec<TextStream> = jobs.iter().map(|j| TextStream::new(&j.stop)).collect();
    let result = generate_streaming(model, &prompts, &params, &mut rngs, |row, token, _| {
        let text = &mut texts[row];
        let listening = match text.push(tok, token) {
            Some(piece) => jobs[row].events.send(Event::Text(piece)).is_ok(),
            None => !jobs[row].events.is_closed(),
        };
        if text.stopped() || !listening {
            Flow::Stop
        } else {
            Flow::Continue
        }
    });
    match result {
        Ok(gens) => {
            for ((job, text), gen_) in jobs.iter().zip(&mut texts).zip(&gens) {
                if let Some(rest) = text.finish() {
                    let _ = job.events.send(Event::Text(rest));
                }
                let reason = if gen_.finished || text.stopped() {
                    FinishReason::Stop
                } else {
                    FinishReason::Length
                };
                let _ = job.events.send(Event::Done(Finish {
                    reason,
                    prompt_tokens: job.prompt.len(),
                    completion_tokens: gen_.tokens.len(),
                }));
            }
        }
        Err(e) => {
            tracing::error!(error = %e, "decode failed");
            for job in &jobs {
                let _ = job.events.send(Event::Failed(e.to_string()));
            }
        }
    }
}

/// A completion's text as its tokens arrive: hands out only text that is valid UTF-8
/// and cannot turn into the start of a stop sequence, and ends at the first stop
/// sequence (which is not returned).
#[derive(Debug, Clone, Default)]
pub struct TextStream {
    tokens: Vec<TokenId>,
    stop: Vec<String>,
    text: String,
    sent: usize,
    stop_at: Option<usize>,
}

/// The longest end of `text` that is a proper prefix of one of `stop`.
fn partial_stop(text: &str, stop: &[String]) -> usize {
    stop.iter()
        .flat_map(|s| {
            (1..s.len())
                .filter(|&k| s.is_char_boundary(k) && text.ends_with(&s[..k]))
                .max()
        })
        .max()
        .unwrap_or(0)
}

impl TextStream {
    /// A stream that ends at the first of `stop`.
    pub fn new(stop: &[String]) -> Self {
        Self {
            stop: stop.to_vec(),
            ..Self::default()
        }
    }

    /// Adds the next token; returns the text that is now safe to send, if any.
    pub fn push(&mut self, tok: &ChatTokenizer, token: TokenId) -> Option<String> {
        if self.stopped() {
            return None;
        }
        self.tokens.push(token);
        self.text = tok.decode(&self.tokens);
        let stop_at = self.stop.iter().filter_map(|s| self.text.find(s)).min();
        let safe = match stop_at {
            Some(at) => {
                self.stop_at = Some(at);
                at
            }
            // The last character may be half of a multi-byte one.
            None if self.text.ends_with(char::REPLACEMENT_CHARACTER) => return None,
            None => self.text.len() - partial_stop(&self.text, &self.stop),
        };
        self.take(safe)
    }

    fn take(&mut self, end: usize) -> Option<String> {
        let piece = self.text.get(self.sent..end)?.to_string();
        self.sent = end;
        (!piece.is_empty()).then_some(piece)
    }

    /// The completion ended: whatever text was held back.
    pub fn finish(&mut self) -> Option<String> {
        self.take(self.stop_at.unwrap_or(self.text.len()))
    }

    /// Whether a stop sequence has matched.
    pub fn stopped(&self) -> bool {
        self.stop_at.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(stop: &[&str], text: &str) -> (Vec<String>, TextStream) {
        let tok = ChatTokenizer::new();
        let stop: Vec<String> = stop.iter().map(|s| s.to_string()).collect();
        let mut s = TextStream::new(&stop);
        let mut pieces = Vec::new();
        for t in tok.encode_text(text) {
            pieces.extend(s.push(&tok, t));
        }
        pieces.extend(s.finish());
        (pieces, s)
    }

    #[test]
    fn pieces_are_whole_characters() {
        // Byte tokens: "é" and "🚀" arrive over two and four tokens.
        let (pieces, s) = stream(&[], "aé🚀b");
        assert_eq!(pieces, ["a", "é", "🚀", "b"]);
        assert!(!s.stopped());
    }

    #[test]
    fn text_ends_before_the_first_stop_sequence() {
        let (pieces, s) = stream(&["lo w", "xyz"], "hello world");
        assert_eq!(pieces.concat(), "hel");
        assert!(s.stopped());
        // "l" might start "lo w", so it waits until the stop is certain.
        assert_eq!(pieces, ["h", "e", "l"]);
        // A partial match that comes to nothing is sent in full.
        let (pieces, s) = stream(&["lo w"], "hello there");
        assert_eq!(pieces.concat(), "hello there");
        assert!(!s.stopped());
        // Held back at the end of the completion: flushed by `finish`.
        let (pieces, _) = stream(&["!!"], "hi!");
        assert_eq!(pieces, ["h", "i", "!"]);
    }

    #[test]
    fn the_earliest_of_several_stops_wins() {
        let (pieces, _) = stream(&["c", "b"], "abcd");
        assert_eq!(pieces.concat(), "a");
        let (pieces, _) = stream(&["é"], "caféx");
        assert_eq!(pieces.concat(), "caf");
    }

    #[test]
    fn batches_keep_arrival_order_and_fit_the_context() {
        // (prompt length, budget) per job, context 100.
        let mut pending: VecDeque<(usize, usize)> =
            [(10, 20), (50, 60), (30, 20), (70, 40), (5, 5)].into();
        let first = take_batch(&mut pending, 3, 100, |j| *j);
        assert_eq!(first, [(10, 20), (30, 20), (5, 5)]);
        assert_eq!(pending, [(50, 60), (70, 40)]);
        // Alone each is taken, whatever its shape; together they would not fit.
        let second = take_batch(&mut pending, 3, 100, |j| *j);
        assert_eq!(second, [(50, 60)]);
        let third = take_batch(&mut pending, 3, 100, |j| *j);
        assert_eq!(third, [(70, 40)]);
        assert!(pending.is_empty());
        // `max_batch` bounds the batch even when more would fit.
        let mut many: VecDeque<(usize, usize)> = [(1, 1); 5].into();
        assert_eq!(take_batch(&mut many, 2, 100, |j| *j).len(), 2);
        assert_eq!(many.len(), 3);
    }
}
