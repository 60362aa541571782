//! The dashboard's controls: scale samplers, kill an actor. They talk to the node
//! supervisors (one per node, in the `troupe/node` group, named `node-NAME`).

use std::collections::BTreeMap;

use ractor::ActorRef;

use crate::messages::NodeMsg;
use crate::remote::{group, members};

/// Node supervisors present now, by node name.
fn supervisors() -> BTreeMap<String, ActorRef<NodeMsg>> {
    members::<NodeMsg>(group::NODE)
        .into_iter()
        .filter_map(|a| {
            let node = a.get_name()?.strip_prefix("node-")?.to_string();
            Some((node, a))
        })
        .collect()
}

/// Spreads `total` samplers over `nodes` as evenly as possible, the first nodes taking
/// the remainder.
pub fn spread(total: u32, nodes: &[String]) -> Vec<(String, u32)> {
    let n = nodes.len() as u32;
    nodes
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let extra = u32::from((i as u32) < total % n.max(1));
            (name.clone(), total / n.max(1) + extra)
        })
        .collect()
}

/// Why a control request failed: the HTTP status and the message.
#[derive(Debug, PartialEq, Eq)]
pub struct Refused(pub u16, pub String);

/// Runs `samplers` samplers on `node`, or spread over the `sampler_nodes` that are up
/// (the head's own node when none is); returns each node's new count. Samplers can run
/// on the head (`head`) and on the nodes that host samplers in `cluster.toml`: those are
/// the nodes weight publications are streamed to.
pub async fn scale(
    node: Option<&str>,
    samplers: u32,
    sampler_nodes: &[String],
    head: &str,
) -> Result<Vec<(String, u32)>, Refused> {
    let sups = supervisors();
    let plan = match node {
        Some(n) if n != head && !sampler_nodes.iter().any(|s| s == n) => {
            return Err(Refused(
                409,
                format!(
                    "node {n} hosts no samplers in cluster.toml, so weights are not streamed to it; \
                     give it roles.samplers >= 1 (optional = true lets it come and go)"
                ),
            ));
        }
        Some(n) if sups.contains_key(n) => vec![(n.to_string(), samplers)],
        Some(n) => {
            return Err(Refused(
                404,
                format!(
                    "node {n:?} is not connected (connected: {})",
                    sups.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
            ));
        }
        None => {
            // The sampler nodes that are up; failing those (the embedded run hosts every
            // role on one node), the head's own.
            let mut up: Vec<String> = sampler_nodes
                .iter()
                .filter(|n| sups.contains_key(*n))
                .cloned()
                .collect();
            if up.is_empty() && sups.contains_key(head) {
                up.push(head.to_string());
            }
            if up.is_empty() {
                return Err(Refused(
                    409,
                    "no node that can run samplers is connected".into(),
                ));
            }
            spread(samplers, &up)
        }
    };
    let mut done = Vec::new();
    for (name, n) in plan {
        let sup = &sups[&name];
        let now = ractor::call_t!(sup, NodeMsg::Scale, 10_000, n)
            .map_err(|e| Refused(502, format!("node {name} did not answer: {e}")))?;
        done.push((name, now));
    }
    Ok(done)
}

/// Kills `actor` on `node` (its supervisor restarts it).
pub async fn kill(node: &str, actor: &str) -> Result<(), Refused> {
    let sups = supervisors();
    let sup = sups
        .get(node)
        .ok_or_else(|| Refused(404, format!("node {node:?} is not connected")))?;
    match ractor::call_t!(sup, NodeMsg::Kill, 10_000, actor.to_string()) {
        Ok(true) => Ok(()),
        Ok(false) => Err(Refused(
            404,
            format!("node {node} has no actor {actor:?} it supervises"),
        )),
        Err(e) => Err(Refused(502, format!("node {node} did not answer: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::spread;

    #[test]
    fn samplers_are_spread_evenly() {
        let nodes = vec!["a".to_string(), "b".to_string(), "c".to_string()];
        let counts = |t| {
            spread(t, &nodes)
                .into_iter()
                .map(|(_, n)| n)
                .collect::<Vec<_>>()
        };
        assert_eq!(counts(7), vec![3, 2, 2]);
        assert_eq!(counts(2), vec![1, 1, 0]);
        assert_eq!(counts(0), vec![0, 0, 0]);
        assert!(spread(4, &[]).is_empty());
    }
}
