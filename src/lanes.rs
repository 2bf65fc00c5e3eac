//! Which actions of one invocation must run one after another: those touching
//! the same ENIs. Pure; the `App` runs each lane in order, lanes at once.

use std::collections::HashMap;

use crate::mirroring::model::MirrorRequest;

/// Groups actions that touch the same ENIs into lanes, each run in request
/// order, so that a create and a remove of one ENI in one request happen in
/// the order asked; different lanes run concurrently. (The ledger's claims
/// keep concurrent actions from colliding either way; creates sharing a load
/// balancer target or a filter run side by side.) A remove by session id or
/// reservation can reach any ENI, so it joins every lane.
pub fn lanes(actions: &[(usize, MirrorRequest)]) -> Vec<Vec<usize>> {
    let mut lane_of: Vec<usize> = (0..actions.len()).collect();
    fn root(lane_of: &mut [usize], mut i: usize) -> usize {
        while lane_of[i] != i {
            lane_of[i] = lane_of[lane_of[i]];
            i = lane_of[i];
        }
        i
    }
    for a in 0..actions.len() {
        for b in (a + 1)..actions.len() {
            if conflict(&actions[a].1, &actions[b].1) {
                let (ra, rb) = (root(&mut lane_of, a), root(&mut lane_of, b));
                lane_of[rb.max(ra)] = rb.min(ra);
            }
        }
    }
    let mut lanes: Vec<Vec<usize>> = Vec::new();
    let mut lane_index = HashMap::new();
    for position in 0..actions.len() {
        let lane = root(&mut lane_of, position);
        let slot = *lane_index.entry(lane).or_insert_with(|| {
            lanes.push(Vec::new());
            lanes.len() - 1
        });
        lanes[slot].push(position);
    }
    lanes
}

fn conflict(a: &MirrorRequest, b: &MirrorRequest) -> bool {
    let enis = |r: &MirrorRequest| match r {
        MirrorRequest::Create(c) => std::iter::once(c.source_eni.clone())
            .chain(c.target.eni().cloned())
            .collect::<Vec<_>>(),
        MirrorRequest::Remove(r) => r.target_eni.iter().cloned().collect(),
    };
    let reaches_anything = |r: &MirrorRequest| matches!(r, MirrorRequest::Remove(r) if r.session_id.is_some() || r.reservation_id.is_some());
    a.action_id() == b.action_id()
        || reaches_anything(a)
        || reaches_anything(b)
        || enis(a).iter().any(|eni| enis(b).contains(eni))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mirroring::model::{CreateRequest, EniId, FilterSpec, RemoveRequest, TargetSpec};

    fn eni(n: u32) -> EniId {
        EniId::parse(&format!("eni-{n:08x}")).expect("valid")
    }

    fn create(id: &str, source: u32, target: u32) -> MirrorRequest {
        MirrorRequest::Create(CreateRequest {
            action_id: id.into(),
            source_eni: eni(source),
            target: TargetSpec::Eni(eni(target)),
            filter: FilterSpec::from_rules(Vec::new()),
            session_number: None,
            packet_length: None,
            virtual_network_id: None,
            description: None,
            reservation_id: None,
            instance_id: None,
            dry_run: false,
        })
    }

    fn remove_target(id: &str, target: u32) -> MirrorRequest {
        MirrorRequest::Remove(RemoveRequest {
            action_id: id.into(),
            session_id: None,
            target_eni: Some(eni(target)),
            reservation_id: None,
            instance_id: None,
        })
    }

    fn lanes_of(requests: Vec<MirrorRequest>) -> Vec<Vec<usize>> {
        let indexed: Vec<_> = requests.into_iter().enumerate().collect();
        lanes(&indexed)
    }

    #[test]
    fn independent_actions_get_their_own_lanes() {
        assert_eq!(
            lanes_of(vec![create("a", 1, 2), create("b", 3, 4)]),
            vec![vec![0], vec![1]]
        );
    }

    #[test]
    fn actions_sharing_an_eni_share_a_lane_in_request_order() {
        let lanes = lanes_of(vec![
            create("a", 1, 9),
            create("b", 3, 4),
            create("c", 2, 9),
            remove_target("d", 4),
        ]);
        assert_eq!(lanes, vec![vec![0, 2], vec![1, 3]]);
    }

    #[test]
    fn a_remove_by_session_id_joins_everything() {
        let by_session = MirrorRequest::Remove(RemoveRequest {
            action_id: "r".into(),
            session_id: Some("tms-00000001".into()),
            target_eni: None,
            reservation_id: None,
            instance_id: None,
        });
        assert_eq!(
            lanes_of(vec![create("a", 1, 2), by_session, create("b", 3, 4)]),
            vec![vec![0, 1, 2]]
        );
    }

    #[test]
    fn a_repeated_action_id_runs_in_one_lane() {
        assert_eq!(lanes_of(vec![create("a", 1, 2), create("a", 3, 4)]), vec![vec![0, 1]]);
    }
}
