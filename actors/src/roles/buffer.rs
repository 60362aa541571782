//! ReplayBuffer: a thin shell over `troupe_buffer::ReplayBuffer`.

use ractor::{Actor, ActorProcessingErr, ActorRef};
use troupe_buffer::{BufferConfig, BufferError, ReplayBuffer};
use troupe_core::PolicyVersion;

use crate::messages::BufferMsg;

/// The replay buffer actor.
#[derive(Debug)]
pub struct Buffer;

impl Actor for Buffer {
    type Msg = BufferMsg;
    type State = ReplayBuffer;
    type Arguments = BufferConfig;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        cfg: BufferConfig,
    ) -> Result<Self::State, ActorProcessingErr> {
        crate::remote::join(crate::remote::group::BUFFER, myself.get_cell());
        Ok(ReplayBuffer::new(cfg)?)
    }

    async fn handle(
        &self,
        _: ActorRef<Self::Msg>,
        msg: Self::Msg,
        buffer: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            BufferMsg::Insert(t) => match buffer.insert(*t) {
                Ok(_) => {}
                // A late trajectory for a batch already trained on is counted by the
                // caller's accounting as lost; say so rather than dropping silently.
                Err(e @ BufferError::BatchClosed { .. }) => {
                    tracing::warn!(error = %e, "late trajectory")
                }
                Err(e) => return Err(e.into()),
            },
            BufferMsg::TakeBatch(batch, version, reply) => {
                let _ = reply.send(buffer.take_batch(batch, PolicyVersion(version)));
            }
        }
        Ok(())
    }
}
