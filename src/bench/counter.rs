//! The actor that part (a) talks to: it counts one-way casts, echoes pings and reports
//! its count on a flush. The same actor serves the local baseline (same process) and the
//! remote figure (another process, reached through a ractor_cluster session over QUIC).
//!
//! Wire format of the remote variants (ractor's `SerializedMessage`, variant by name):
//! `Tick` carries its payload as is (at most [`MAX_TICK`] bytes); `Ping` carries a `u64`
//! big-endian; `Flush` carries nothing; replies are a `u64` big-endian.

use ractor::message::{BoxedDowncastErr, SerializedMessage};
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};

/// Process group the remote counter joins, so the other node can find it.
pub const GROUP: &str = "troupe-bench/counter";
/// Largest `Tick` payload a counter accepts from the network.
pub const MAX_TICK: usize = 4096;

/// Counter inbox.
#[derive(Debug)]
pub enum CounterMsg {
    /// A one-way message with an opaque payload; counted.
    Tick(Vec<u8>),
    /// A round trip: the reply is the same number.
    Ping(u64, RpcReplyPort<u64>),
    /// Reply with the ticks counted since the last flush, and start again from zero.
    Flush(RpcReplyPort<u64>),
}

/// Counts ticks; its state is the count.
#[derive(Debug)]
pub struct Counter;

impl Actor for Counter {
    type Msg = CounterMsg;
    type State = u64;
    type Arguments = ();

    async fn pre_start(
        &self,
        _: ActorRef<Self::Msg>,
        (): (),
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(0)
    }

    async fn handle(
        &self,
        _: ActorRef<Self::Msg>,
        msg: Self::Msg,
        count: &mut u64,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            CounterMsg::Tick(_) => *count += 1,
            // A caller that gave up on its reply is not the counter's failure.
            CounterMsg::Ping(n, reply) => drop(reply.send(n)),
            CounterMsg::Flush(reply) => drop(reply.send(std::mem::take(count))),
        }
        Ok(())
    }
}

impl ractor::Message for CounterMsg {
    fn serializable() -> bool {
        true
    }

    fn serialize(self) -> Result<SerializedMessage, BoxedDowncastErr> {
        let call = |variant: &str, args: Vec<u8>, reply| SerializedMessage::Call {
            variant: variant.into(),
            args,
            reply: bytes_port(reply),
            metadata: None,
        };
        Ok(match self {
            CounterMsg::Tick(payload) => SerializedMessage::Cast {
                variant: "Tick".into(),
                args: payload,
                metadata: None,
            },
            CounterMsg::Ping(n, reply) => call("Ping", n.to_be_bytes().to_vec(), reply),
            CounterMsg::Flush(reply) => call("Flush", Vec::new(), reply),
        })
    }

    fn deserialize(msg: SerializedMessage) -> Result<Self, BoxedDowncastErr> {
        match msg {
            SerializedMessage::Cast { variant, args, .. }
                if variant == "Tick" && args.len() <= MAX_TICK =>
            {
                Ok(CounterMsg::Tick(args))
            }
            SerializedMessage::Call {
                variant,
                args,
                reply,
                ..
            } => match variant.as_str() {
                "Ping" => Ok(CounterMsg::Ping(decode_u64(&args)?, typed_port(reply))),
                "Flush" if args.is_empty() => Ok(CounterMsg::Flush(typed_port(reply))),
                _ => Err(BoxedDowncastErr),
            },
            _ => Err(BoxedDowncastErr),
        }
    }
}

fn decode_u64(bytes: &[u8]) -> Result<u64, BoxedDowncastErr> {
    let bytes: [u8; 8] = bytes.try_into().map_err(|_| BoxedDowncastErr)?;
    Ok(u64::from_be_bytes(bytes))
}

/// Caller side: a byte reply port whose answer is decoded into the caller's typed port.
fn bytes_port(reply: RpcReplyPort<u64>) -> RpcReplyPort<Vec<u8>> {
    let (tx, rx) = ractor::concurrency::oneshot::<Vec<u8>>();
    let timeout = reply.get_timeout();
    tokio::spawn(async move {
        if let Ok(bytes) = rx.await
            && let Ok(value) = decode_u64(&bytes)
        {
            let _ = reply.send(value);
        }
    });
    match timeout {
        Some(t) => RpcReplyPort::from((tx, t)),
        None => RpcReplyPort::from(tx),
    }
}

/// Callee side: a typed reply port whose answer is encoded into the peer's byte port.
fn typed_port(bytes: RpcReplyPort<Vec<u8>>) -> RpcReplyPort<u64> {
    let (tx, rx) = ractor::concurrency::oneshot::<u64>();
    let timeout = bytes.get_timeout();
    tokio::spawn(async move {
        if let Ok(value) = rx.await {
            let _ = bytes.send(value.to_be_bytes().to_vec());
        }
    });
    match timeout {
        Some(t) => RpcReplyPort::from((tx, t)),
        None => RpcReplyPort::from(tx),
    }
}

#[cfg(test)]
mod tests {
    use ractor::Message;

    use super::*;

    #[test]
    fn malformed_remote_messages_are_refused() {
        let cast = |variant: &str, args: Vec<u8>| SerializedMessage::Cast {
            variant: variant.into(),
            args,
            metadata: None,
        };
        assert!(CounterMsg::deserialize(cast("Tick", vec![0; MAX_TICK + 1])).is_err());
        assert!(CounterMsg::deserialize(cast("Tock", vec![0; 8])).is_err());
        assert!(matches!(
            CounterMsg::deserialize(cast("Tick", vec![7; 64])),
            Ok(CounterMsg::Tick(p)) if p.len() == 64
        ));
        assert!(decode_u64(&[1, 2, 3]).is_err());
        assert_eq!(decode_u64(&42u64.to_be_bytes()).ok(), Some(42));
    }
}
