//! AWS account ids, and which accounts a deployment may act in.

use std::collections::BTreeSet;
use std::fmt;

/// Error codes of the refusals (a failed action's `errorCode`).
pub const ACCOUNT_NOT_ALLOWED: &str = "AccountNotAllowed";
pub const MEMBER_ACCOUNT_UNREACHABLE: &str = "MemberAccountUnreachable";

/// A 12-digit AWS account id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AccountId(String);

impl AccountId {
    /// `None` unless `text` is exactly 12 ASCII digits.
    pub fn parse(text: &str) -> Option<Self> {
        (text.len() == 12 && text.bytes().all(|b| b.is_ascii_digit())).then(|| Self(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The prefix that scopes a member account's keys in the shared ledger
    /// (`<account>/`): no ENI id, ARN, endpoint id or rule-set key starts
    /// with twelve digits and a slash.
    pub fn scope_prefix(&self) -> String {
        format!("{}/", self.0)
    }
}

impl fmt::Display for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The accounts one deployment acts in: its own (the hub's) and the
/// members `MEMBER_ACCOUNTS` lists. Everything else is refused.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccountSet {
    /// The deployment's own account; `None` when not configured (a single
    /// account deployment that never names accounts).
    pub home: Option<AccountId>,
    pub members: BTreeSet<AccountId>,
}

/// Where an action runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reach {
    Home,
    Member(AccountId),
}

impl AccountSet {
    /// Where an action naming `account` (or none: the deployment's own) runs;
    /// `None` when the deployment may not act there.
    pub fn reach(&self, account: Option<&AccountId>) -> Option<Reach> {
        match account {
            None => Some(Reach::Home),
            Some(a) if self.home.as_ref() == Some(a) => Some(Reach::Home),
            Some(a) if self.members.contains(a) => Some(Reach::Member(a.clone())),
            Some(_) => None,
        }
    }

    /// Whether this deployment acts in any account but its own.
    pub fn spans_members(&self) -> bool {
        !self.members.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(text: &str) -> AccountId {
        AccountId::parse(text).expect("a 12-digit id")
    }

    #[test]
    fn only_twelve_digits_are_an_account() {
        for bad in [
            "",
            "12345678901",
            "1234567890123",
            "12345678901a",
            " 123456789012",
            "１２３４５６７８９０１２",
        ] {
            assert_eq!(AccountId::parse(bad), None, "{bad:?}");
        }
        assert_eq!(id("012345678901").as_str(), "012345678901");
    }

    #[test]
    fn an_action_reaches_home_a_listed_member_or_nothing() {
        let set = AccountSet {
            home: Some(id("111111111111")),
            members: [id("222222222222")].into(),
        };
        assert_eq!(set.reach(None), Some(Reach::Home));
        assert_eq!(set.reach(Some(&id("111111111111"))), Some(Reach::Home));
        assert_eq!(
            set.reach(Some(&id("222222222222"))),
            Some(Reach::Member(id("222222222222")))
        );
        assert_eq!(set.reach(Some(&id("333333333333"))), None);
        // Without a known home, naming any account but a member is refused.
        let unknown_home = AccountSet::default();
        assert_eq!(unknown_home.reach(Some(&id("111111111111"))), None);
    }
}
