//! A warm pool of prepared sandbox slots. An env host takes one for an episode, runs the episode's commands
//! in it against the episode's repository, and drops it to give it back.

use std::path::Path;
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::slot::Slot;
use crate::{CommandOutput, SandboxError, SandboxPolicy};

/// `N` sandboxes kept prepared (uid leased, scratch files written, command line resolved, set-up proven by
/// a trial run), so a command pays only for bubblewrap and the command itself.
#[derive(Debug, Clone)]
pub struct SandboxPool {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    free: Mutex<Vec<Slot>>,
    permits: Arc<Semaphore>,
    size: usize,
}

/// A slot taken from a [`SandboxPool`]; back in the pool when dropped.
#[derive(Debug)]
pub struct PooledSandbox {
    slot: Option<Slot>,
    pool: Arc<Inner>,
    _permit: OwnedSemaphorePermit,
}

impl SandboxPool {
    /// Prepares and probes `slots` sandboxes under `policy`.
    pub async fn new(policy: SandboxPolicy, slots: usize) -> Result<SandboxPool, SandboxError> {
        crate::check_host(&policy)?;
        let policy = Arc::new(policy);
        let mut free = Vec::with_capacity(slots);
        for _ in 0..slots {
            let slot = Slot::prepare(policy.clone())?;
            slot.probe().await?;
            free.push(slot);
        }
        Ok(SandboxPool {
            inner: Arc::new(Inner {
                free: Mutex::new(free),
                permits: Arc::new(Semaphore::new(slots)),
                size: slots,
            }),
        })
    }

    /// Takes a slot, waiting for one to be given back if all are in use (back-pressure for the env host).
    pub async fn take(&self) -> PooledSandbox {
        let permit = self
            .inner
            .permits
            .clone()
            .acquire_owned()
            .await
            .expect("the pool never closes its semaphore");
        self.checkout(permit)
    }

    /// Takes a slot if one is free now.
    pub fn try_take(&self) -> Option<PooledSandbox> {
        let permit = self.inner.permits.clone().try_acquire_owned().ok()?;
        Some(self.checkout(permit))
    }

    /// Slots free right now.
    pub fn available(&self) -> usize {
        self.inner.permits.available_permits()
    }

    /// Slots in the pool.
    pub fn size(&self) -> usize {
        self.inner.size
    }

    fn checkout(&self, permit: OwnedSemaphorePermit) -> PooledSandbox {
        let slot = self
            .inner
            .free
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .pop()
            .expect("a permit guarantees a free slot");
        PooledSandbox {
            slot: Some(slot),
            pool: self.inner.clone(),
            _permit: permit,
        }
    }
}

impl PooledSandbox {
    /// Runs `cmd` in this slot with `repo` as the writable `/repo`. Commands of one slot run one at a time
    /// (`&mut self`); each gets a fresh `/tmp` and fresh namespaces, only the repository carries over.
    pub async fn run(
        &mut self,
        cmd: &[String],
        repo: &Path,
    ) -> Result<CommandOutput, SandboxError> {
        self.slot
            .as_ref()
            .expect("present until drop")
            .run(cmd, repo)
            .await
    }
}

impl Drop for PooledSandbox {
    fn drop(&mut self) {
        if let Some(slot) = self.slot.take() {
            // The permit is a field, released after this body: the slot is back before anyone can wait on it.
            let mut free = self.pool.free.lock().unwrap_or_else(|p| p.into_inner());
            free.push(slot);
        }
    }
}
