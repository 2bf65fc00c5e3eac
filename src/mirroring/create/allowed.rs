//! The allow-lists: a create whose destination or source this deployment
//! does not allow is refused before anything is claimed or changed.

use super::super::model;
use super::super::{AllowList, Failure, NOT_ALLOWED};
use super::Creates;

impl Creates {
    fn every_member_allowed(&self, target: &model::TargetSpec, allowed: &std::collections::BTreeSet<String>) -> bool {
        let model::TargetSpec::Pool(pool) = target else {
            return false;
        };
        self.deployment
            .fleet
            .pools
            .get(pool)
            .is_some_and(|members| members.iter().all(|m| allowed.contains(&m.to_string())))
    }

    /// Refuses a create whose destination or source this deployment does not
    /// allow, before anything is claimed or changed.
    pub(crate) async fn check_allowed(&self, request: &model::CreateRequest) -> Result<(), Failure> {
        let refuse = |message: String| Failure::refused(NOT_ALLOWED, message, false);
        let destination = request.target.to_string();
        match &self.deployment.allowed.targets {
            AllowList::Nothing => {
                return Err(refuse(format!(
                    "this deployment allows no destination yet, so {destination} is refused: set ALLOWED_TARGETS \
                     (the AllowedTargets parameter) to the destinations it may mirror to, or * for any; nothing was \
                     created"
                )))
            }
            // A pool is allowed when named, or when every member is.
            AllowList::Only(targets)
                if !targets.contains(&destination) && !self.every_member_allowed(&request.target, targets) =>
            {
                return Err(refuse(format!(
                    "{destination} is not among the destinations this deployment may mirror to (ALLOWED_TARGETS); \
                     nothing was created"
                )));
            }
            _ => {}
        }
        let sources = match &self.deployment.allowed.sources {
            AllowList::Any => return Ok(()),
            AllowList::Nothing => {
                return Err(refuse(format!(
                    "this deployment allows no source yet, so {} is refused: set ALLOWED_SOURCES (the \
                     AllowedSources parameter) to the VPCs or subnets whose traffic it may mirror, or * for any; \
                     nothing was created",
                    request.source_eni
                )))
            }
            AllowList::Only(sources) => sources,
        };
        let source = request.source_eni.as_str();
        let interface = self
            .instances
            .interface(source)
            .await
            .map_err(|err| Failure::aws(format!("looking up {source}"), &err))?;
        let Some(interface) = interface else {
            return Err(Failure::refused(
                "InvalidNetworkInterfaceID.NotFound",
                format!("the source network interface {source} does not exist; nothing was created"),
                false,
            ));
        };
        let places = [interface.subnet_id, interface.vpc_id];
        if places.iter().flatten().any(|place| sources.contains(place)) {
            Ok(())
        } else {
            Err(refuse(format!(
                "{source} is not in a VPC or subnet whose traffic this deployment may mirror (ALLOWED_SOURCES); \
                 nothing was created"
            )))
        }
    }
}
