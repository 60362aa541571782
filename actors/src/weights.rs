//! The embedded bulk channel for weights. The learner publishes each new version
//! here and samplers read the publication they were told to use; only indices cross
//! as actor messages. Across machines this becomes dedicated QUIC streams.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use troupe_core::PolicyVersion;
use troupe_model::WeightSnapshot;

/// One published set of weights.
#[derive(Debug, Clone)]
pub struct Published {
    /// The policy version these weights are.
    pub version: PolicyVersion,
    /// The weights.
    pub weights: WeightSnapshot,
}

/// Recent publications, keyed by publication index (0: initial weights, 1: after SFT,
/// `1 + s`: after RL step `s`). Keeps the newest `keep` entries.
#[derive(Debug, Clone)]
pub struct WeightStore {
    inner: Arc<Mutex<BTreeMap<u64, Published>>>,
    keep: usize,
    latest: Arc<tokio::sync::watch::Sender<Option<u64>>>,
}

impl WeightStore {
    /// A store keeping the `keep` newest publications.
    pub fn new(keep: usize) -> Self {
        let (latest, _) = tokio::sync::watch::channel(None);
        Self {
            inner: Arc::new(Mutex::new(BTreeMap::new())),
            keep: keep.max(1),
            latest: Arc::new(latest),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Published>> {
        // A panic while holding the lock cannot leave the map half-updated.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Publishes `weights` as `index`.
    pub fn publish(&self, index: u64, version: PolicyVersion, weights: WeightSnapshot) {
        let mut map = self.lock();
        map.insert(index, Published { version, weights });
        while map.len() > self.keep {
            map.pop_first();
        }
        drop(map);
        self.latest.send_if_modified(|l| {
            let newer = l.is_none_or(|held| index > held);
            if newer {
                *l = Some(index);
            }
            newer
        });
    }

    /// Notified with the newest publication index whenever a newer one is published.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<Option<u64>> {
        self.latest.subscribe()
    }

    /// The publication `index`, if still held.
    pub fn get(&self, index: u64) -> Option<Published> {
        self.lock().get(&index).cloned()
    }

    /// The newest publication index.
    pub fn latest(&self) -> Option<u64> {
        self.lock().keys().next_back().copied()
    }
}
