//! A local OpenAI-compatible judge server: llama.cpp's server from PyPI's
//! `llama-cpp-python[server]` (`python3 -m llama_cpp.server`) on a GGUF model, on
//! 127.0.0.1 and a free port. For tests and for trying a judge on one machine; it is
//! stopped (killed and reaped) when dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::JudgeError;

/// A running `llama_cpp.server` process.
#[derive(Debug)]
pub struct LlamaServer {
    child: Child,
    base_url: String,
    log: PathBuf,
}

fn failed(reason: String) -> JudgeError {
    JudgeError::LocalServer(reason)
}

impl LlamaServer {
    /// Starts `python -m llama_cpp.server --model MODEL` with a 2048-token context and
    /// waits until `GET /v1/models` answers, or fails after `startup` (or as soon as
    /// the process exits) with the reason and the end of its log.
    pub async fn start(python: &str, model: &Path, startup: Duration) -> Result<Self, JudgeError> {
        if !model.is_file() {
            return Err(failed(format!(
                "model {} not found (scripts/fetch-smollm2.sh models fetches SmolLM2)",
                model.display()
            )));
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| failed(format!("no free port: {e}")))?
            .port();
        let log = std::env::temp_dir().join(format!(
            "troupe-llama-server-{}-{port}.log",
            std::process::id()
        ));
        let out = std::fs::File::create(&log)
            .and_then(|f| Ok((f.try_clone()?, f)))
            .map_err(|e| failed(format!("{}: {e}", log.display())))?;
        let child = Command::new(python)
            .args(["-m", "llama_cpp.server", "--model"])
            .arg(model)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--n_ctx", "2048"])
            .stdin(Stdio::null())
            .stdout(out.0)
            .stderr(out.1)
            .spawn()
            .map_err(|e| failed(format!("cannot run {python}: {e}")))?;
        let mut server = Self {
            child,
            base_url: format!("http://127.0.0.1:{port}/v1"),
            log,
        };
        server.wait_ready(startup).await?;
        Ok(server)
    }

    async fn wait_ready(&mut self, startup: Duration) -> Result<(), JudgeError> {
        let http = reqwest::Client::new();
        let url = format!("{}/models", self.base_url);
        let deadline = Instant::now() + startup;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(failed(format!(
                    "llama_cpp.server exited ({status}) before it answered:\n{}",
                    self.log_tail()
                )));
            }
            let ready = http
                .get(&url)
                .timeout(Duration::from_secs(2))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if ready {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(failed(format!(
                    "llama_cpp.server did not answer {url} within {startup:?}:\n{}",
                    self.log_tail()
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `http://127.0.0.1:PORT/v1`.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The last 2000 bytes of the server's output.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read(&self.log).unwrap_or_default();
        String::from_utf8_lossy(&text[text.len().saturating_sub(2000)..]).into_owned()
    }
}

impl Drop for LlamaServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}
