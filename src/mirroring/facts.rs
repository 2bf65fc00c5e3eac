//! What EC2 says of instances that never (or rarely) changes, cached per
//! process: whether an instance type can be a mirror source (asked once: a
//! type never changes; a type EC2 refused as a source is remembered), how
//! many sources a target ENI takes (by its instance's type), and
//! a target ENI's ingress rules (read at most once a minute: a launch storm
//! to one appliance reads them once, not once a create). Holds only the
//! `Instances` port.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tracing::warn;

use crate::domain::instance::{source_refusal, sources_per_eni_target, InstanceTypeFacts};
use crate::ports::{AwsError, AwsResult, Ingress, Instances, InterfaceInfo};

/// How long a target ENI's ingress rules are taken as read.
const INGRESS_FRESH_FOR: Duration = Duration::from_secs(60);

pub struct InstanceFacts {
    ec2: Arc<dyn Instances>,
    /// Instance type -> what EC2 said of it (`None`: EC2 does not know it).
    types: Mutex<HashMap<String, Option<InstanceTypeFacts>>>,
    /// Instance types EC2 refused as a source (`NetworkInterfaceNotSupported`)
    /// though the documented rules allow them: not tried again.
    refused_types: Mutex<HashMap<String, String>>,
    /// Target ENI -> how many sources it takes.
    target_capacity: Mutex<HashMap<String, usize>>,
    /// Target ENI -> its ingress rules and when they were read.
    ingress_read: Mutex<HashMap<String, (Instant, Option<Ingress>)>>,
}

impl InstanceFacts {
    pub fn new(ec2: Arc<dyn Instances>) -> Self {
        Self {
            ec2,
            types: Mutex::default(),
            refused_types: Mutex::default(),
            target_capacity: Mutex::default(),
            ingress_read: Mutex::default(),
        }
    }

    /// Why an instance of this type cannot be a mirror source (AWS's
    /// documented rules, or EC2's own refusal earlier in this process);
    /// `None`: it can. EC2 is asked about a type once per process.
    pub async fn source_refusal(&self, instance_type: &str) -> Result<Option<String>, AwsError> {
        if let Some(why) = self
            .refused_types
            .lock()
            .ok()
            .and_then(|r| r.get(instance_type).cloned())
        {
            return Ok(Some(why));
        }
        let known = self.types.lock().ok().and_then(|t| t.get(instance_type).cloned());
        let facts = match known {
            Some(facts) => facts,
            None => {
                let facts = self.ec2.instance_type(instance_type).await?;
                if let Ok(mut types) = self.types.lock() {
                    types.insert(instance_type.to_owned(), facts.clone());
                }
                facts
            }
        };
        Ok(match facts {
            Some(facts) => source_refusal(instance_type, &facts),
            None => Some(format!("EC2 does not know the instance type {instance_type}")),
        })
    }

    /// EC2 refused an ENI of this type as a source: the rest of the process
    /// does not try the type again.
    pub fn mark_refused(&self, instance_type: &str, why: &str) {
        if let Ok(mut refused) = self.refused_types.lock() {
            refused.insert(instance_type.to_owned(), format!("EC2 refused it as a source: {why}"));
        }
    }

    /// How many sources a target ENI takes: 100 when it is attached to an
    /// instance of one of the largest sizes, else 10 (also when EC2 cannot
    /// say: the smaller limit is never wrong to keep). Read once per process.
    pub async fn sources_per_target(&self, eni: &str) -> usize {
        if let Some(known) = self.target_capacity.lock().ok().and_then(|c| c.get(eni).copied()) {
            return known;
        }
        let instance_type = match self.ec2.interface(eni).await {
            Ok(Some(InterfaceInfo {
                instance_id: Some(instance),
                ..
            })) => match self.ec2.instance(&instance).await {
                Ok(found) => found.map(|i| i.instance_type),
                Err(err) => {
                    warn!(target_eni = eni, error = %err, "could not read the target's instance; 10 sources assumed");
                    return sources_per_eni_target(None);
                }
            },
            Ok(_) => None,
            Err(err) => {
                warn!(target_eni = eni, error = %err, "could not read the target ENI; 10 sources assumed");
                return sources_per_eni_target(None);
            }
        };
        let capacity = sources_per_eni_target(instance_type.as_deref());
        if let Ok(mut known) = self.target_capacity.lock() {
            known.insert(eni.to_owned(), capacity);
        }
        capacity
    }

    /// A target ENI's ingress rules, read at most once a minute per process
    /// (rules change rarely; a warning a minute late is still a warning).
    pub async fn ingress_of(&self, eni: &str) -> AwsResult<Option<Ingress>> {
        let fresh = self.ingress_read.lock().ok().and_then(|read| {
            read.get(eni)
                .filter(|(at, _)| at.elapsed() < INGRESS_FRESH_FOR)
                .map(|(_, ingress)| ingress.clone())
        });
        if let Some(ingress) = fresh {
            return Ok(ingress);
        }
        let ingress = self.ec2.ingress(eni).await?;
        if let Ok(mut read) = self.ingress_read.lock() {
            read.insert(eni.to_owned(), (Instant::now(), ingress.clone()));
        }
        Ok(ingress)
    }

    /// The ingress of each ENI target, read once per sweep; `None` for a
    /// target that is not an ENI or could not be read (not judged).
    pub async fn ingress_of_targets<'a>(
        &self,
        targets: impl Iterator<Item = &'a str>,
    ) -> HashMap<String, Option<Ingress>> {
        let enis: BTreeSet<&str> = targets.filter(|t| t.starts_with("eni-")).collect();
        let mut known = HashMap::new();
        for eni in enis {
            let ingress = match self.ingress_of(eni).await {
                Ok(ingress) => ingress,
                Err(err) => {
                    warn!(target_eni = eni, error = %err, "could not read the target's ingress rules");
                    None
                }
            };
            known.insert(eni.to_owned(), ingress);
        }
        known
    }

    /// For an ENI target: why mirrored traffic from the source would not get
    /// in (`delivery::refusal`); `None` when it would, or it cannot be read.
    pub async fn delivery_refusal(&self, request: &crate::domain::model::CreateRequest) -> Option<String> {
        let target = request.target.eni().filter(|_| request.check_delivery)?;
        let (ingress, source) = tokio::join!(
            self.ingress_of(target.as_str()),
            self.ec2.interface(request.source_eni.as_str())
        );
        let (Ok(Some(ingress)), Ok(Some(source))) = (ingress, source) else {
            return None;
        };
        super::delivery::refusal(&ingress, &source.endpoint)
    }
}
