//! What of the account's one listing is this deployment's: the sweep acts
//! only on that, and on an earlier version's resources its ledger knows.

use super::super::{ownership_of, Ownership};
use crate::mirroring::watch::Account;
use crate::ports::{MirrorFilter, MirrorSession, MirrorTarget};

/// What EC2 holds under our tag.
pub(super) struct Owned {
    pub(super) sessions: Vec<MirrorSession>,
    pub(super) filters: Vec<MirrorFilter>,
    pub(super) targets: Vec<MirrorTarget>,
    /// Ids of what an earlier version made (the legacy owner value).
    pub(super) legacy: Vec<String>,
}

/// What of the account's listing is this deployment's, and an earlier
/// version's (by the ownership tag), read once.
pub(super) fn owned_in(owner: &str, account: &Account, filters: Vec<MirrorFilter>) -> Owned {
    let mut owned = Owned {
        sessions: Vec::new(),
        filters: Vec::new(),
        targets: Vec::new(),
        legacy: Vec::new(),
    };
    for session in &account.sessions {
        match ownership_of(owner, &session.tags) {
            Ownership::Ours => owned.sessions.push(session.clone()),
            Ownership::Legacy => owned.legacy.push(session.id.clone()),
            _ => {}
        }
    }
    for filter in filters {
        match ownership_of(owner, &filter.tags) {
            Ownership::Ours => owned.filters.push(filter),
            Ownership::Legacy => owned.legacy.push(filter.id),
            _ => {}
        }
    }
    for target in &account.targets {
        match ownership_of(owner, &target.tags) {
            Ownership::Ours => owned.targets.push(target.clone()),
            Ownership::Legacy => owned.legacy.push(target.id.clone()),
            _ => {}
        }
    }
    owned
}
