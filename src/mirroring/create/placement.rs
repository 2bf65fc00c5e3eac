//! Pools of destinations (`TARGET_POOLS`): a create to `pool:<name>` is
//! placed on one member, as peers that run several appliances do: a member
//! in the source's own Availability Zone first (mirrored traffic that
//! crosses zones is billed), then the least loaded; an ENI member with no
//! room is skipped. Load is the number of actions in the member's claim
//! item, the same count that bounds an ENI target's sources, so placing
//! reserves the place with the same conditional write: two creates placed
//! at once never both take a member's last place, and the second spills to
//! the next member. A removed source leaves the claim, which frees its place.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::join_all;

use super::super::model::{CreateRequest, TargetSpec, POOL_PREFIX, UNLIMITED_SOURCES};
use super::super::{jitter_millis, Deployment, Failure, VALIDATION_ERROR};
use super::MAKER_WAIT;
use crate::deadline;
use crate::mirroring::facts::InstanceFacts;
use crate::ports::{ActionRecords, Instances, RecordStatus, SharedKey, SharedResources, Slot};

/// The code of a create to a pool none of whose members has room.
pub const POOL_EXHAUSTED: &str = "TrafficMirrorPoolExhausted";

/// Placing a create to a pool on one of its members.
pub struct Placement {
    pub(crate) claims: Arc<dyn SharedResources>,
    pub(crate) records: Arc<dyn ActionRecords>,
    pub(crate) instances: Arc<dyn Instances>,
    pub(crate) facts: Arc<InstanceFacts>,
    pub(crate) deployment: Arc<Deployment>,
}

/// The member a create was placed on, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placed {
    pub member: TargetSpec,
    pub why: String,
}

/// One member as placement weighs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Member {
    pub target: TargetSpec,
    /// Its zone; `None` for a load balancer, which spans zones.
    pub zone: Option<String>,
    pub load: usize,
    pub capacity: usize,
}

impl Placement {
    /// Places the create on a member of `pool`. With `reserve`, the member's
    /// place is taken in the ledger (the create joins it again, which is a
    /// no-op); a dry run only chooses.
    pub async fn place(&self, request: &CreateRequest, pool: &str, reserve: bool) -> Result<Placed, Failure> {
        let Some(members) = self.deployment.fleet.pools.get(pool) else {
            return Err(Failure::refused(
                VALIDATION_ERROR,
                format!("{POOL_PREFIX}{pool} is not a pool of this deployment (TARGET_POOLS); nothing was created"),
                false,
            ));
        };
        // An action placed before that still holds its place (in progress,
        // or finished and replayed) stays where it was; one that was rolled
        // back is placed again.
        let mut reserve = reserve;
        if let Ok(Some(record)) = self.records.get(&request.action_id).await {
            // A finished action is answered from the ledger, not run again:
            // taking a place for it would leave that place taken.
            if record
                .status
                .is_some_and(|s| !s.holds_resources() && s != RecordStatus::Failed)
            {
                reserve = false;
            }
            let holds_place = record.status.is_some_and(|status| status.holds_resources());
            let earlier = record
                .target_key
                .as_deref()
                .filter(|_| holds_place && record.pool.as_deref() == Some(format!("{POOL_PREFIX}{pool}").as_str()))
                .and_then(|key| members.iter().find(|m| m.claim_name() == Some(key)));
            if let Some(member) = earlier {
                return Ok(Placed {
                    member: member.clone(),
                    why: record.placed_because.unwrap_or_else(|| "placed there earlier".into()),
                });
            }
        }
        let source_zone = match self.instances.interface(request.source_eni.as_str()).await {
            Ok(interface) => interface.and_then(|i| i.availability_zone),
            Err(err) => return Err(Failure::aws(format!("looking up {}", request.source_eni), &err)),
        };
        let weighed = join_all(members.iter().map(|member| self.weigh(member))).await;
        let mut weighed: Vec<Member> = weighed.into_iter().collect::<Result<_, _>>()?;
        for member in ranked(&mut weighed, source_zone.as_deref()) {
            let why = reason(&member, source_zone.as_deref());
            if !reserve {
                return Ok(Placed {
                    member: member.target,
                    why,
                });
            }
            let Some(key) = member
                .target
                .claim_name()
                .map(|name| SharedKey::Target(name.to_owned()))
            else {
                continue;
            };
            // Full: another create took the last place since it was weighed.
            if self.take_place(&key, &request.action_id, member.capacity).await? {
                return Ok(Placed {
                    member: member.target,
                    why,
                });
            }
        }
        let loads: Vec<String> = weighed
            .iter()
            .map(|m| format!("{} {}/{}", m.target, m.load, capacity_text(m.capacity)))
            .collect();
        Err(Failure::refused(
            POOL_EXHAUSTED,
            format!(
                "every member of {POOL_PREFIX}{pool} is full ({}); nothing was created (add a member to the pool)",
                loads.join(", ")
            ),
            false,
        ))
    }

    /// Takes a place among the member's users (`true`), or finds it full.
    /// While another create is making the member's target nobody can join
    /// it yet, and a place is not a place until joined: wait for it, as a
    /// create waits for a shared target.
    async fn take_place(&self, key: &SharedKey, action_id: &str, capacity: usize) -> Result<bool, Failure> {
        let started = Instant::now();
        let mut pause = Duration::from_millis(25);
        loop {
            let slot = self
                .claims
                .join_shared(key, action_id, capacity, self.deployment.lease_seconds)
                .await
                .map_err(Failure::from)?;
            match slot {
                Slot::Joined(_) | Slot::Make => return Ok(true),
                Slot::Full(_) => return Ok(false),
                Slot::Busy
                    if started.elapsed() >= MAKER_WAIT || deadline::budget().is_some_and(|left| left < pause * 2) =>
                {
                    return Err(Failure::refused(
                        "SharedResourceBeingCreated",
                        format!(
                            "another invocation is still creating the mirror target of {}; retry later",
                            key.name()
                        ),
                        true,
                    ))
                }
                Slot::Busy => {
                    let jitter = Duration::from_millis(u64::from(jitter_millis(action_id, pause)));
                    tokio::time::sleep(pause + jitter).await;
                    pause = (pause * 2).min(Duration::from_millis(800));
                }
            }
        }
    }

    /// A member's zone, its load (actions in its claim item) and capacity.
    async fn weigh(&self, member: &TargetSpec) -> Result<Member, Failure> {
        let key = member.claim_name().map(|name| SharedKey::Target(name.to_owned()));
        let load = match &key {
            Some(key) => self
                .claims
                .shared(key)
                .await
                .map_err(Failure::from)?
                .map_or(0, |claims| claims.users.len()),
            None => 0,
        };
        let (zone, capacity) = match member.eni() {
            Some(eni) => {
                let zone = self
                    .instances
                    .interface(eni.as_str())
                    .await
                    .map_err(|err| Failure::aws(format!("looking up pool member {eni}"), &err))?
                    .and_then(|i| i.availability_zone);
                (zone, self.facts.sources_per_target(eni.as_str()).await)
            }
            None => (None, UNLIMITED_SOURCES),
        };
        Ok(Member {
            target: member.clone(),
            zone,
            load,
            capacity,
        })
    }
}

/// The members with room, best first: those in the source's zone, then load
/// balancers (they span zones), then the rest; within each, the least
/// loaded (by share of capacity), then by name, so every process agrees.
pub(crate) fn ranked(members: &mut [Member], source_zone: Option<&str>) -> Vec<Member> {
    let tier = |m: &Member| match (&m.zone, source_zone) {
        (Some(zone), Some(source)) if zone == source => 0,
        (None, _) => 1,
        _ => 2,
    };
    let mut open: Vec<Member> = members.iter().filter(|m| m.load < m.capacity).cloned().collect();
    // Compare load / capacity without division: a/b < c/d  <=>  a*d < c*b.
    open.sort_by(|a, b| {
        tier(a)
            .cmp(&tier(b))
            .then_with(|| (a.load as u128 * b.capacity as u128).cmp(&(b.load as u128 * a.capacity as u128)))
            .then_with(|| a.target.to_string().cmp(&b.target.to_string()))
    });
    open
}

fn capacity_text(capacity: usize) -> String {
    if capacity >= UNLIMITED_SOURCES {
        "unlimited".into()
    } else {
        capacity.to_string()
    }
}

fn reason(member: &Member, source_zone: Option<&str>) -> String {
    let place = match (&member.zone, source_zone) {
        (Some(zone), Some(source)) if zone == source => format!("in the source's zone {zone}"),
        (None, _) => "a load balancer, which spans zones".to_owned(),
        (Some(zone), _) => format!("in {zone}: no member in the source's zone had room"),
    };
    format!(
        "{place}; the least loaded such member ({} of {} sources)",
        member.load,
        capacity_text(member.capacity)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::model::EniId;

    fn eni(n: u32, zone: &str, load: usize) -> Member {
        Member {
            target: TargetSpec::Eni(EniId::parse(&format!("eni-{n:08x}")).expect("an eni id")),
            zone: Some(zone.into()),
            load,
            capacity: 10,
        }
    }

    #[test]
    fn the_same_zone_comes_first_then_load_balancers_then_the_least_loaded_elsewhere() {
        let nlb = Member {
            target: TargetSpec::NetworkLoadBalancer("arn:nlb".into()),
            zone: None,
            load: 50,
            capacity: UNLIMITED_SOURCES,
        };
        let mut members = vec![
            eni(1, "b", 0),
            eni(2, "a", 7),
            eni(3, "a", 3),
            eni(4, "a", 10),
            nlb,
            eni(5, "c", 1),
        ];
        let order: Vec<String> = ranked(&mut members, Some("a"))
            .iter()
            .map(|m| m.target.to_string())
            .collect();
        // eni 4 is full: skipped.
        assert_eq!(
            order,
            [
                "eni-00000003",
                "eni-00000002",
                "arn:nlb",
                "eni-00000001",
                "eni-00000005"
            ]
        );
        let none_known: Vec<String> = ranked(&mut [eni(1, "b", 5), eni(2, "c", 2)], None)
            .iter()
            .map(|m| m.target.to_string())
            .collect();
        assert_eq!(
            none_known,
            ["eni-00000002", "eni-00000001"],
            "without the source's zone, load decides"
        );
        assert!(ranked(&mut [eni(1, "a", 10)], Some("a")).is_empty(), "no room anywhere");
    }
}
