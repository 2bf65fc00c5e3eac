//! What EC2 says of instances that never (or rarely) changes, cached per
//! process: an instance type's hypervisor (asked once: it never changes) and
//! a target ENI's ingress rules (read at most once a minute: a launch storm
//! to one appliance reads them once, not once a create). Holds only the
//! `Instances` port.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tracing::warn;

use crate::domain::instance::Hypervisor;
use crate::ports::{AwsError, AwsResult, Ingress, Instances};

/// How long a target ENI's ingress rules are taken as read.
const INGRESS_FRESH_FOR: Duration = Duration::from_secs(60);

pub struct InstanceFacts {
    ec2: Arc<dyn Instances>,
    /// Instance type -> hypervisor, as EC2 said.
    hypervisors: Mutex<HashMap<String, Option<Hypervisor>>>,
    /// Target ENI -> its ingress rules and when they were read.
    ingress_read: Mutex<HashMap<String, (Instant, Option<Ingress>)>>,
}

impl InstanceFacts {
    pub fn new(ec2: Arc<dyn Instances>) -> Self {
        Self {
            ec2,
            hypervisors: Mutex::default(),
            ingress_read: Mutex::default(),
        }
    }

    /// The hypervisor of an instance type, asked of EC2 once per process:
    /// an instance type's hypervisor never changes.
    pub async fn hypervisor_of(&self, instance_type: &str) -> Result<Option<Hypervisor>, AwsError> {
        if let Some(known) = self.hypervisors.lock().ok().and_then(|t| t.get(instance_type).cloned()) {
            return Ok(known);
        }
        let hypervisor = self.ec2.hypervisor(instance_type).await?;
        if let Ok(mut known) = self.hypervisors.lock() {
            known.insert(instance_type.to_owned(), hypervisor.clone());
        }
        Ok(hypervisor)
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
