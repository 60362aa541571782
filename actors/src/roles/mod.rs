//! One thin actor per role: decode a message, call the role's core, send the results.

pub mod buffer;
pub mod coordinator;
pub mod envhost;
pub mod judge;
pub mod learner;
pub mod sampler;
pub mod supervisor;

/// The single member of a one-actor role's group (coordinator, buffer, learner).
pub(crate) fn one<M: ractor::Message>(
    group: &str,
) -> Result<ractor::ActorRef<M>, ractor::ActorProcessingErr> {
    crate::remote::members::<M>(group)
        .into_iter()
        .next()
        .ok_or_else(|| format!("no actor in group {group}").into())
}

/// Picks one of `n` peers for `key` (stable, so an episode always meets the same env host).
pub(crate) fn pick<T>(peers: &[T], key: u64) -> &T {
    &peers[(crate::schedule::mix(0, key) % peers.len() as u64) as usize]
}
