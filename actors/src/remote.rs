//! How actor messages cross the network: bincode payloads in troupe's versioned,
//! size-limited frames, and reply ports bridged to bytes. A malformed payload from a
//! peer is a decode error (the message is refused), never a panic.

use bincode::{Decode, Encode};
use ractor::message::{BoxedDowncastErr, SerializedMessage};
use ractor::{ActorCell, ActorRef, RpcReplyPort};
use troupe_core::wire::{DEFAULT_FRAME_LIMIT, decode_frame, encode_frame};

/// Process group of each role (how roles find each other, on one node or many).
pub mod group {
    /// The coordinator.
    pub const COORDINATOR: &str = "troupe/coordinator";
    /// The replay buffer.
    pub const BUFFER: &str = "troupe/buffer";
    /// The learner.
    pub const LEARNER: &str = "troupe/learner";
    /// Samplers.
    pub const SAMPLER: &str = "troupe/sampler";
    /// Environment hosts.
    pub const ENV_HOST: &str = "troupe/env_host";
    /// Judges.
    pub const JUDGE: &str = "troupe/judge";
    /// Node supervisors, one per node, each named `node-NAME`.
    pub const NODE: &str = "troupe/node";
}

/// Members of `group` as typed references, local ones first, then by id (a stable order).
pub fn members<M: ractor::Message>(group: &str) -> Vec<ActorRef<M>> {
    let mut cells: Vec<ActorCell> = ractor::pg::get_members(&group.to_string());
    cells.sort_by_key(|c| (!c.get_id().is_local(), c.get_id().pid()));
    cells.into_iter().map(ActorRef::from).collect()
}

/// Joins `cell` to `group`.
pub fn join(group: &str, cell: ActorCell) {
    ractor::pg::join(group.to_string(), vec![cell]);
}

/// Encodes `value` as one of troupe's frames.
pub fn encode<T: Encode>(value: &T) -> Result<Vec<u8>, BoxedDowncastErr> {
    encode_frame(value).map_err(|e| {
        tracing::error!(error = %e, "cannot encode an actor message");
        BoxedDowncastErr
    })
}

/// Decodes a frame written by [`encode`]; malformed bytes are refused, never a panic.
pub fn decode<T: Decode<()>>(bytes: &[u8]) -> Result<T, BoxedDowncastErr> {
    decode_frame(bytes, DEFAULT_FRAME_LIMIT).map_err(|e| {
        tracing::warn!(error = %e, "refused a malformed actor message");
        BoxedDowncastErr
    })
}

/// A cast with `variant` and `args`.
pub fn cast<T: Encode>(variant: &str, args: &T) -> Result<SerializedMessage, BoxedDowncastErr> {
    Ok(SerializedMessage::Cast {
        variant: variant.into(),
        args: encode(args)?,
        metadata: None,
    })
}

/// A call with `variant`, `args` and a typed reply port bridged to bytes.
pub fn call<A: Encode, R: Decode<()> + Send + 'static>(
    variant: &str,
    args: &A,
    reply: RpcReplyPort<R>,
) -> Result<SerializedMessage, BoxedDowncastErr> {
    let (tx, rx) = ractor::concurrency::oneshot::<Vec<u8>>();
    let timeout = reply.get_timeout();
    tokio::spawn(async move {
        if let Ok(bytes) = rx.await
            && let Ok(value) = decode::<R>(&bytes)
        {
            let _ = reply.send(value);
        }
    });
    let port = match timeout {
        Some(t) => RpcReplyPort::from((tx, t)),
        None => RpcReplyPort::from(tx),
    };
    Ok(SerializedMessage::Call {
        variant: variant.into(),
        args: encode(args)?,
        reply: port,
        metadata: None,
    })
}

/// A typed reply port whose answer is encoded into the peer's byte reply port.
pub fn reply_port<R: Encode + Send + 'static>(bytes: RpcReplyPort<Vec<u8>>) -> RpcReplyPort<R> {
    let (tx, rx) = ractor::concurrency::oneshot::<R>();
    let timeout = bytes.get_timeout();
    tokio::spawn(async move {
        if let Ok(value) = rx.await
            && let Ok(encoded) = encode(&value)
        {
            let _ = bytes.send(encoded);
        }
    });
    match timeout {
        Some(t) => RpcReplyPort::from((tx, t)),
        None => RpcReplyPort::from(tx),
    }
}
