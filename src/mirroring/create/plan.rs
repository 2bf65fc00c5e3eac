//! A create's dry run: work out what the create would do (which target and
//! filter it would reuse or make, which session number it would take), ask
//! EC2 with `DryRun` whether each call it would make is permitted, and change
//! nothing: no claim, no join, no resource, no event. Only reads.

use serde_json::{json, Value};

use super::super::model::{CreateRequest, FilterSpec, TargetSpec};
use super::super::{aws_failure, Failure};
use super::{choose_session_number, pick_target};
use crate::contract::{ActionResult, CREATE};
use crate::ports::{AwsError, CheckedCall, NewSession, SessionQuery, SharedKey};

/// What the create would do with one shared resource.
enum Step {
    /// Use this one (reused, adopted or given by the caller).
    Use {
        id: String,
        how: &'static str,
    },
    Create,
}

impl Step {
    fn id(&self) -> Option<&str> {
        match self {
            Step::Use { id, .. } => Some(id),
            Step::Create => None,
        }
    }

    fn json(&self) -> Value {
        match self {
            Step::Use { id, how } => json!({"action": how, "id": id}),
            Step::Create => json!({"action": "create"}),
        }
    }
}

/// A create's dry run: only reads, and `DryRun` calls.
pub struct Planner {
    pub(crate) claims: std::sync::Arc<dyn crate::ports::SharedResources>,
    pub(crate) filters: std::sync::Arc<dyn crate::ports::Filters>,
    pub(crate) numbers: std::sync::Arc<dyn crate::ports::SessionNumbers>,
    pub(crate) preflight: std::sync::Arc<dyn crate::ports::Preflight>,
    pub(crate) sessions: std::sync::Arc<dyn crate::ports::Sessions>,
    pub(crate) targets: std::sync::Arc<dyn crate::ports::Targets>,
    pub(crate) deployment: std::sync::Arc<crate::mirroring::Deployment>,
    pub(crate) facts: std::sync::Arc<crate::mirroring::facts::InstanceFacts>,
}

impl Planner {
    pub(crate) async fn plan_create(&self, request: &CreateRequest) -> ActionResult {
        let action_id = request.action_id.as_str();
        let on_source = SessionQuery::SourceEni(request.source_eni.clone());
        let (sessions, claimed, target, filter) = tokio::join!(
            self.sessions.sessions(&on_source),
            self.numbers.numbers(request.source_eni.as_str()),
            self.plan_target(request),
            self.plan_filter(request),
        );
        let planned = (|| {
            let sessions =
                sessions.map_err(|e| Failure::aws(format!("listing the sessions on {}", request.source_eni), &e))?;
            let number = choose_session_number(request, &sessions, &claimed?)?;
            // An ENI with a session already is billed already.
            let adds_eni_hours = sessions.is_empty();
            Ok::<_, Failure>((number, target?, filter?, adds_eni_hours))
        })();
        let (number, target, filter, adds_eni_hours) = match planned {
            Ok(planned) => planned,
            Err(failure) => {
                let mut failure = failure.answer(action_id, CREATE);
                failure.dry_run = true;
                failure.info_message = "dry run: nothing was changed".into();
                return failure;
            }
        };

        let mut checks = Vec::new();
        if matches!(target, Step::Create) {
            checks.push(CheckedCall::Target(request.target.clone()));
        }
        if matches!(filter, Step::Create) {
            checks.push(CheckedCall::Filter);
        }
        let mut unchecked = Vec::new();
        match (target.id(), filter.id()) {
            (Some(target_id), Some(filter_id)) => checks.push(CheckedCall::Session(NewSession {
                source_eni: request.source_eni.clone(),
                target_id: target_id.to_owned(),
                filter_id: filter_id.to_owned(),
                session_number: number.number,
                packet_length: request.packet_length,
                virtual_network_id: request.virtual_network_id,
                description: request.description.clone(),
            })),
            // EC2 checks these against the resources they name, which do not exist yet.
            _ => unchecked.push(json!({"action": "CreateTrafficMirrorSession",
                                       "reason": "it names the target or filter this create would make"})),
        }
        if matches!(filter, Step::Create) && !request.filter.rules().is_empty() {
            unchecked.push(json!({"action": "CreateTrafficMirrorFilterRule",
                                  "reason": "it names the filter this create would make"}));
        }
        let mut tags = self.deployment.tags_for(
            action_id,
            request.reservation_id.as_deref(),
            request.instance_id.as_deref(),
        );
        tags.extend(super::accountability_tags(&request.accountability));
        let (answers, undeliverable) = tokio::join!(
            futures::future::join_all(checks.iter().map(|call| self.preflight.permitted(call, &tags))),
            self.facts.delivery_refusal(request)
        );
        let mut permitted = Vec::new();
        let mut refusal: Option<(&'static str, AwsError)> = None;
        for (call, answer) in checks.iter().zip(answers) {
            match answer {
                Ok(()) => permitted.push(json!({"action": call.action(), "permitted": true})),
                Err(err) => {
                    permitted.push(json!({"action": call.action(), "permitted": false, "errorCode": err.code}));
                    refusal = refusal.or(Some((call.action(), err)));
                }
            }
        }
        let plan = json!({
            "target": {"destination": request.target.to_string(), "kind": request.target.kind(), "plan": target.json()},
            "filter": {"plan": filter.json(), "rules": request.filter.rules().len()},
            "sessionNumber": number.number,
            "checks": permitted,
            "notChecked": unchecked,
            "delivery": match &undeliverable {
                Some(why) => json!({"admitted": false, "reason": why}),
                None => json!({"admitted": true}),
            },
            "cost": {
                "addsMirroredEni": adds_eni_hours,
                "estimatedHourlyCostAdded": if adds_eni_hours { self.deployment.fleet.price_per_eni_hour } else { 0.0 },
            },
        });
        let summary = format!(
            "dry run: would mirror {} to {} with session number {}; nothing was changed",
            request.source_eni, request.target, number.number
        );
        let mut result = match refusal {
            None => ActionResult {
                action_id: action_id.to_owned(),
                action_type: CREATE.to_owned(),
                success: true,
                info_message: summary,
                session_number: Some(number.number),
                traffic_mirror_target_id: target.id().map(str::to_owned),
                traffic_mirror_filter_id: filter.id().map(str::to_owned),
                reservation_id: request.reservation_id.clone(),
                ..ActionResult::default()
            },
            Some((action, err)) => {
                let mut failure = aws_failure(action_id, CREATE, &format!("EC2 would refuse {action}"), &err);
                failure.info_message = summary;
                failure
            }
        };
        if let Some(why) = &undeliverable {
            result.info_message = super::with_warning(&result.info_message, why);
        }
        result.dry_run = true;
        result.plan = Some(plan);
        result
    }

    async fn plan_target(&self, request: &CreateRequest) -> Result<Step, Failure> {
        let fail = |err: AwsError| Failure::aws(format!("looking up the mirror target of {}", request.target), &err);
        if let TargetSpec::Existing(id) = &request.target {
            return match self.targets.target(id).await.map_err(fail)? {
                Some(_) => Ok(Step::Use {
                    id: id.clone(),
                    how: "given",
                }),
                None => Err(not_found("InvalidTrafficMirrorTargetId.NotFound", "target", id)),
            };
        }
        let name = request.target.claim_name().unwrap_or_default().to_owned();
        let claim = self.claims.shared(&SharedKey::Target(name.clone())).await?;
        if let Some(id) = claim.as_ref().and_then(|c| c.resource_id.clone()) {
            let users = claim.map(|c| c.users.len()).unwrap_or_default();
            let limit = match request.target.eni() {
                Some(eni) if users >= request.target.source_limit() => {
                    self.facts.sources_per_target(eni.as_str()).await
                }
                _ => request.target.source_limit(),
            };
            if users >= limit {
                return Err(Failure::refused(
                    "TrafficMirrorSourcesPerTargetLimitExceeded",
                    format!(
                        "the mirror target of {name} already serves {users} sessions, the AWS limit for this ENI \
                         target"
                    ),
                    false,
                ));
            }
            return Ok(Step::Use { id, how: "reuse" });
        }
        let targets = self.targets.targets_of(&request.target).await.map_err(fail)?;
        let foreign: Vec<_> = targets.into_iter().filter(|t| !self.deployment.owns(&t.tags)).collect();
        Ok(match pick_target(&foreign) {
            Some(target) => Step::Use {
                id: target.id.clone(),
                how: "adopt",
            },
            None => Step::Create,
        })
    }

    async fn plan_filter(&self, request: &CreateRequest) -> Result<Step, Failure> {
        match &request.filter {
            FilterSpec::Existing(id) => match self.filters.filter(id).await {
                Ok(Some(_)) => Ok(Step::Use {
                    id: id.clone(),
                    how: "given",
                }),
                Ok(None) => Err(not_found("InvalidTrafficMirrorFilterId.NotFound", "filter", id)),
                Err(err) => Err(Failure::aws(format!("looking up filter {id}"), &err)),
            },
            FilterSpec::Rules { key, .. } => {
                let claim = self.claims.shared(&SharedKey::Filter(key.clone())).await?;
                Ok(match claim.and_then(|c| c.resource_id) {
                    Some(id) => Step::Use { id, how: "reuse" },
                    None => Step::Create,
                })
            }
        }
    }
}

fn not_found(code: &'static str, noun: &str, id: &str) -> Failure {
    Failure::refused(code, format!("the traffic mirror {noun} {id} does not exist"), false)
}
