//! The actor that part (a) talks to: it counts one-way casts, echoes pings and reports
//! its count on a flush. The same actor serves the local baseline (same process) and the
//! remote figure (another process, reached through a ractor_cluster session over QUIC).
//!
//! Remote variants cross the network exactly as troupe's own actor messages do
//! (`troupe_actors::remote`: versioned frames, reply ports bridged to bytes), so the
//! remote figure measures the real message path.

use ractor::message::{BoxedDowncastErr, SerializedMessage};
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use troupe_actors::remote;

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
        match self {
            CounterMsg::Tick(payload) => remote::cast("Tick", &payload),
            CounterMsg::Ping(n, reply) => remote::call("Ping", &n, reply),
            CounterMsg::Flush(reply) => remote::call("Flush", &(), reply),
        }
    }

    fn deserialize(msg: SerializedMessage) -> Result<Self, BoxedDowncastErr> {
        match msg {
            SerializedMessage::Cast { variant, args, .. } if variant == "Tick" => {
                let payload: Vec<u8> = remote::decode(&args)?;
                if payload.len() > MAX_TICK {
                    return Err(BoxedDowncastErr);
                }
                Ok(CounterMsg::Tick(payload))
            }
            SerializedMessage::Call {
                variant,
                args,
                reply,
                ..
            } => match variant.as_str() {
                "Ping" => Ok(CounterMsg::Ping(
                    remote::decode(&args)?,
                    remote::reply_port(reply),
                )),
                "Flush" => {
                    let () = remote::decode(&args)?;
                    Ok(CounterMsg::Flush(remote::reply_port(reply)))
                }
                _ => Err(BoxedDowncastErr),
            },
            _ => Err(BoxedDowncastErr),
        }
    }
}

#[cfg(test)]
mod tests {
    use ractor::Message;

    use super::*;

    #[test]
    fn malformed_remote_messages_are_refused() {
        let cast = |variant: &str, payload: Vec<u8>| remote::cast(variant, &payload).unwrap();
        assert!(CounterMsg::deserialize(cast("Tick", vec![0; MAX_TICK + 1])).is_err());
        assert!(CounterMsg::deserialize(cast("Tock", vec![0; 8])).is_err());
        assert!(matches!(
            CounterMsg::deserialize(cast("Tick", vec![7; 64])),
            Ok(CounterMsg::Tick(p)) if p.len() == 64
        ));
        let raw = SerializedMessage::Cast {
            variant: "Tick".into(),
            args: vec![1, 2, 3],
            metadata: None,
        };
        assert!(CounterMsg::deserialize(raw).is_err());
    }

    #[tokio::test]
    async fn ping_arguments_are_checked() {
        let (tx, _rx) = ractor::concurrency::oneshot::<Vec<u8>>();
        let bad = SerializedMessage::Call {
            variant: "Ping".into(),
            args: vec![1, 2, 3],
            reply: tx.into(),
            metadata: None,
        };
        assert!(CounterMsg::deserialize(bad).is_err());
        let (tx, _rx) = ractor::concurrency::oneshot::<Vec<u8>>();
        let good = SerializedMessage::Call {
            variant: "Ping".into(),
            args: remote::encode(&42u64).unwrap(),
            reply: tx.into(),
            metadata: None,
        };
        assert!(matches!(
            CounterMsg::deserialize(good),
            Ok(CounterMsg::Ping(42, _))
        ));
    }
}
