//! Which actions of one invocation must run one after another: those whose
//! order matters to the caller. Pure; the `App` runs each lane in order,
//! lanes at once. (The ledger's claims keep concurrent actions from
//! colliding either way: this is about request order, not safety.)

use std::collections::{BTreeSet, HashMap};

use crate::domain::model::MirrorRequest;

/// The source ENIs a remove reaches, when the request alone does not say:
/// a remove by session id, reservation or instance, looked up in the ledger
/// before planning. A remove missing from the map reaches every ENI.
pub type Reach = HashMap<usize, BTreeSet<String>>;

/// Order matters between actions on the same source ENI (a remove that
/// frees a session number before a create that needs it, two creates
/// competing for three sessions), and between creates to a target ENI and a
/// remove by that target (in either order). Creates sharing a target or a
/// filter run side by side. `reach` (by position in `actions`) says which
/// source ENIs a remove by session id, reservation or instance touches.
pub fn lanes(actions: &[(usize, MirrorRequest)], reach: &Reach) -> Vec<Vec<usize>> {
    let touches: Vec<Touches> = actions
        .iter()
        .enumerate()
        .map(|(position, (_, request))| Touches::of(request, reach.get(&position)))
        .collect();
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
            if actions[a].1.action_id() == actions[b].1.action_id() || touches[a].conflicts(&touches[b]) {
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

/// What one action touches, for ordering.
struct Touches {
    /// Source ENIs; `None`: possibly any.
    sources: Option<BTreeSet<String>>,
    /// The target ENI a create mirrors to.
    creates_to: Option<String>,
    /// The target ENI a remove by target takes sessions from.
    removes_from: Option<String>,
}

impl Touches {
    fn of(request: &MirrorRequest, reach: Option<&BTreeSet<String>>) -> Touches {
        match request {
            MirrorRequest::Create(c) => Touches {
                sources: Some(BTreeSet::from([c.source_eni.to_string()])),
                creates_to: c.target.eni().map(ToString::to_string),
                removes_from: None,
            },
            MirrorRequest::Remove(r) => {
                let looked_up = r.session_id.is_some() || r.reservation_id.is_some() || r.instance_id.is_some();
                Touches {
                    // By target alone it reaches sessions to that target, whatever their source.
                    sources: match (looked_up, reach) {
                        (false, _) => Some(BTreeSet::new()),
                        (true, Some(sources)) => Some(sources.clone()),
                        (true, None) => None,
                    },
                    creates_to: None,
                    removes_from: r.target_eni.as_ref().map(ToString::to_string),
                }
            }
        }
    }

    fn conflicts(&self, other: &Touches) -> bool {
        let same_source = match (&self.sources, &other.sources) {
            (Some(a), Some(b)) => !a.is_disjoint(b),
            _ => true,
        };
        let by_target = |a: &Touches, b: &Touches| a.creates_to.is_some() && a.creates_to == b.removes_from;
        same_source || by_target(self, other) || by_target(other, self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::model::{CreateRequest, EniId, FilterSpec, RemoveRequest, TargetSpec};

    fn eni(n: u32) -> EniId {
        EniId::parse(&format!("eni-{n:08x}")).expect("valid")
    }

    fn create(id: &str, source: u32, target: u32) -> MirrorRequest {
        MirrorRequest::Create(CreateRequest {
            account: None,
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
            refuse_if_source_is_target: false,
            from_policy: false,
            check_delivery: true,
            accountability: Default::default(),
            lifetime: None,
            placement: None,
        })
    }

    fn remove(id: &str) -> RemoveRequest {
        RemoveRequest {
            account: None,
            action_id: id.into(),
            session_id: None,
            target_eni: None,
            reservation_id: None,
            instance_id: None,
            accountability: Default::default(),
            expired: false,
        }
    }

    fn remove_target(id: &str, target: u32) -> MirrorRequest {
        MirrorRequest::Remove(RemoveRequest {
            account: None,
            target_eni: Some(eni(target)),
            ..remove(id)
        })
    }

    fn remove_session(id: &str) -> MirrorRequest {
        MirrorRequest::Remove(RemoveRequest {
            account: None,
            session_id: Some("tms-00000001".into()),
            ..remove(id)
        })
    }

    fn lanes_of(requests: Vec<MirrorRequest>, reach: &[(usize, &[u32])]) -> Vec<Vec<usize>> {
        let indexed: Vec<_> = requests.into_iter().enumerate().collect();
        let reach: Reach = reach
            .iter()
            .map(|(position, sources)| (*position, sources.iter().map(|n| eni(*n).to_string()).collect()))
            .collect();
        lanes(&indexed, &reach)
    }

    #[test]
    fn the_lanes_of_a_request() {
        // (what it shows, the actions, each looked-up remove's sources, the lanes)
        type Case = (
            &'static str,
            Vec<MirrorRequest>,
            Vec<(usize, &'static [u32])>,
            Vec<Vec<usize>>,
        );
        let cases: Vec<Case> = vec![
            (
                "independent actions get their own lanes",
                vec![create("a", 1, 2), create("b", 3, 4)],
                vec![],
                vec![vec![0], vec![1]],
            ),
            (
                "creates sharing a target run side by side",
                vec![create("a", 1, 9), create("b", 2, 9), create("c", 3, 9)],
                vec![],
                vec![vec![0], vec![1], vec![2]],
            ),
            (
                "actions on one source keep request order",
                vec![create("a", 1, 8), create("b", 1, 9), create("c", 2, 9)],
                vec![],
                vec![vec![0, 1], vec![2]],
            ),
            (
                "a remove by target waits for the creates to that target, in either order",
                vec![
                    create("a", 1, 9),
                    remove_target("r", 9),
                    create("b", 2, 9),
                    create("c", 3, 4),
                ],
                vec![],
                vec![vec![0, 1, 2], vec![3]],
            ),
            (
                "a remove by session id waits only for actions on the sources it reaches",
                vec![
                    create("a", 1, 9),
                    remove_session("r"),
                    create("b", 2, 9),
                    create("c", 3, 4),
                ],
                vec![(1, &[2])],
                vec![vec![0], vec![1, 2], vec![3]],
            ),
            (
                "a remove whose reach is unknown joins every lane",
                vec![create("a", 1, 2), remove_session("r"), create("b", 3, 4)],
                vec![],
                vec![vec![0, 1, 2]],
            ),
            (
                "a remove that reaches nothing runs alone",
                vec![create("a", 1, 2), remove_session("r")],
                vec![(1, &[])],
                vec![vec![0], vec![1]],
            ),
            (
                "a repeated action id runs in one lane",
                vec![create("a", 1, 2), create("a", 3, 4)],
                vec![],
                vec![vec![0, 1]],
            ),
        ];
        for (name, requests, reach, expected) in cases {
            assert_eq!(lanes_of(requests, &reach), expected, "{name}");
        }
    }
}
