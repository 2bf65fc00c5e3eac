//! The ledger's items: how a record, a claim item and a source item are
//! keyed and written as DynamoDB attributes, and read back. Pure; the
//! conditional-write protocols that use them are in the sibling modules.

use aws_sdk_dynamodb::types::AttributeValue;

use super::{Item, MIRROR_ENDING, MIRROR_ENDING_VALUE, MIRROR_ENDS_AT, PARTITION_KEY, TTL_ATTRIBUTE};
use crate::contract::{ActionResult, Requester, RequesterBasis};
use crate::domain::account::AccountId;
use crate::ports::{ActionKind, LedgerError, LedgerRecord, RecordStatus, SharedClaims, SharedKey};

pub(super) fn key_of(action_id: &str) -> AttributeValue {
    AttributeValue::S(format!("{ACTION_PREFIX}{action_id}"))
}

pub(super) const ACTION_PREFIX: &str = "action#";
pub(super) const TARGET_PREFIX: &str = "target#";
pub(super) const FILTER_PREFIX: &str = "filter#";
pub(super) const SOURCE_PREFIX: &str = "source#";
/// `instance#<id>`: the actions that mirrored an instance's ENIs, read
/// consistently, because when an instance terminates EC2 has already deleted
/// its sessions and the index may not show a record written a moment ago.
pub(super) const INSTANCE_PREFIX: &str = "instance#";

pub(super) fn shared_key(key: &SharedKey) -> AttributeValue {
    let prefix = match key {
        SharedKey::Target(_) => TARGET_PREFIX,
        SharedKey::Filter(_) => FILTER_PREFIX,
    };
    AttributeValue::S(format!("{prefix}{}", key.name()))
}

pub(super) fn source_key(eni: &str) -> AttributeValue {
    AttributeValue::S(format!("{SOURCE_PREFIX}{eni}"))
}

/// The attribute of a source item that holds who claimed a session number.
pub(super) fn number_attribute(number: u16) -> String {
    format!("n{number}")
}

pub(super) fn string_set(value: &str) -> AttributeValue {
    AttributeValue::Ss(vec![value.to_owned()])
}

pub(super) fn s(value: &str) -> AttributeValue {
    AttributeValue::S(value.to_owned())
}

pub(super) fn n(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

pub(super) fn iso(seconds: u64) -> AttributeValue {
    let time = aws_smithy_types::DateTime::from_secs(i64::try_from(seconds).unwrap_or(i64::MAX));
    s(&time
        .fmt(aws_smithy_types::date_time::Format::DateTime)
        .unwrap_or_default())
}

pub(super) fn kind_name(kind: ActionKind) -> &'static str {
    match kind {
        ActionKind::Create => "create",
        ActionKind::Remove => "remove",
    }
}

/// The whole record as an item. Absent optional fields are left out, which
/// also keeps the indexes sparse: only creates carry ENIs and session ids.
pub(super) fn to_item(record: &LedgerRecord, expires_at: Option<u64>) -> Item {
    let mut item = Item::new();
    item.insert("version".into(), n(record.version));
    if let Some(at) = expires_at {
        item.insert(TTL_ATTRIBUTE.into(), n(at));
    }
    item.insert(PARTITION_KEY.into(), key_of(&record.action_id));
    item.insert("actionId".into(), s(&record.action_id));
    if let Some(kind) = record.kind {
        item.insert("kind".into(), s(kind_name(kind)));
    }
    if let Some(status) = record.status {
        item.insert("status".into(), s(status.as_str()));
    }
    item.insert("attempt".into(), n(record.attempt));
    if let Some(account) = &record.account {
        item.insert("account".into(), s(account.as_str()));
    }
    let optional = [
        ("sourceEni", &record.source_eni),
        ("targetEni", &record.target_eni),
        ("targetKey", &record.target_key),
        ("pool", &record.pool),
        ("placedBecause", &record.placed_because),
        ("targetId", &record.target_id),
        ("filterKey", &record.filter_key),
        ("filterId", &record.filter_id),
        ("sessionId", &record.session_id),
        ("reservationId", &record.reservation_id),
        ("instanceId", &record.instance_id),
    ];
    for (name, value) in optional {
        if let Some(value) = value {
            item.insert(name.into(), s(value));
        }
    }
    item.insert("targetCreated".into(), AttributeValue::Bool(record.target_created));
    item.insert(
        "ruleIds".into(),
        AttributeValue::L(record.rule_ids.iter().map(|id| s(id)).collect()),
    );
    if let Some(number) = record.session_number {
        item.insert("sessionNumber".into(), n(number));
    }
    if let Some(vni) = record.virtual_network_id {
        item.insert("virtualNetworkId".into(), n(vni));
    }
    if let Some(result) = &record.result {
        item.insert("result".into(), s(&serde_json::to_string(result).unwrap_or_default()));
    }
    if let Some(requester) = &record.requested_by {
        item.insert("requestedBy".into(), s(&requester.principal));
        item.insert("requestedByBasis".into(), s(requester.basis.as_str()));
    }
    if let Some(reason) = &record.reason {
        item.insert("reason".into(), s(reason));
    }
    if let Some(ends_at) = record.ends_at {
        item.insert(MIRROR_ENDS_AT.into(), n(ends_at));
        item.insert("mirrorEndsAtIso".into(), iso(ends_at));
        // Only a mirror that may still exist is listed by the end index.
        if record.status.is_some_and(|status| status.holds_resources()) {
            item.insert(MIRROR_ENDING.into(), s(MIRROR_ENDING_VALUE));
        }
    }
    item.insert("createdAt".into(), n(record.created_at));
    item.insert("updatedAt".into(), n(record.updated_at));
    item.insert("createdAtIso".into(), iso(record.created_at));
    item.insert("updatedAtIso".into(), iso(record.updated_at));
    item
}

pub(super) fn from_item(item: &Item) -> Result<LedgerRecord, LedgerError> {
    let action_id = text(item, "actionId").unwrap_or_default();
    let corrupt = |what: &str| LedgerError::Corrupt(action_id.clone(), what.to_owned());
    let number = |name: &str| -> Result<Option<i64>, LedgerError> {
        match item.get(name) {
            None => Ok(None),
            Some(AttributeValue::N(v)) => v.parse().map(Some).map_err(|_| corrupt(name)),
            Some(_) => Err(corrupt(name)),
        }
    };
    let kind = match text(item, "kind").as_deref() {
        Some("create") => Some(ActionKind::Create),
        Some("remove") => Some(ActionKind::Remove),
        None => None,
        Some(_) => return Err(corrupt("kind")),
    };
    let status = match text(item, "status") {
        Some(status) => Some(RecordStatus::parse(&status).ok_or_else(|| corrupt("status"))?),
        None => None,
    };
    let result = match text(item, "result") {
        Some(json) => Some(serde_json::from_str::<ActionResult>(&json).map_err(|_| corrupt("result"))?),
        None => None,
    };
    let rule_ids = match item.get("ruleIds") {
        Some(AttributeValue::L(ids)) => ids.iter().filter_map(|v| v.as_s().ok().cloned()).collect(),
        _ => Vec::new(),
    };
    Ok(LedgerRecord {
        kind,
        status,
        attempt: number("attempt")?
            .and_then(|a| u32::try_from(a).ok())
            .unwrap_or_default(),
        version: number("version")?
            .and_then(|v| u64::try_from(v).ok())
            .unwrap_or_default(),
        account: text(item, "account").and_then(|a| AccountId::parse(&a)),
        source_eni: text(item, "sourceEni"),
        target_eni: text(item, "targetEni"),
        target_key: text(item, "targetKey"),
        target_id: text(item, "targetId"),
        target_created: matches!(item.get("targetCreated"), Some(AttributeValue::Bool(true))),
        pool: text(item, "pool"),
        placed_because: text(item, "placedBecause"),
        filter_key: text(item, "filterKey"),
        filter_id: text(item, "filterId"),
        rule_ids,
        session_id: text(item, "sessionId"),
        session_number: number("sessionNumber")?.and_then(|v| u16::try_from(v).ok()),
        virtual_network_id: number("virtualNetworkId")?.and_then(|v| i32::try_from(v).ok()),
        reservation_id: text(item, "reservationId"),
        instance_id: text(item, "instanceId"),
        requested_by: text(item, "requestedBy").map(|principal| Requester {
            principal,
            basis: text(item, "requestedByBasis")
                .and_then(|basis| RequesterBasis::parse(&basis))
                .unwrap_or(RequesterBasis::Stated),
        }),
        reason: text(item, "reason"),
        ends_at: number(MIRROR_ENDS_AT)?.and_then(|v| u64::try_from(v).ok()),
        result,
        created_at: number("createdAt")?
            .and_then(|v| u64::try_from(v).ok())
            .unwrap_or_default(),
        updated_at: number("updatedAt")?
            .and_then(|v| u64::try_from(v).ok())
            .unwrap_or_default(),
        action_id,
    })
}

pub(super) fn text(item: &Item, name: &str) -> Option<String> {
    item.get(name).and_then(|v| v.as_s().ok()).cloned()
}

pub(super) fn users_of(item: &Item) -> Vec<String> {
    match item.get("users") {
        Some(AttributeValue::Ss(users)) => users.clone(),
        _ => Vec::new(),
    }
}

pub(super) fn shared_claims_from(key: SharedKey, item: &Item) -> SharedClaims {
    SharedClaims {
        key,
        resource_id: text(item, "resourceId"),
        maker: text(item, "maker"),
        users: users_of(item),
    }
}

pub(super) fn numbers_from(item: &Item) -> Vec<(u16, String)> {
    let mut numbers: Vec<(u16, String)> = item
        .iter()
        .filter_map(|(name, value)| {
            let number = name.strip_prefix('n')?.parse().ok()?;
            Some((number, value.as_s().ok()?.clone()))
        })
        .collect();
    numbers.sort();
    numbers
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_survives_the_round_trip_through_an_item() {
        let record = LedgerRecord {
            action_id: "a1".into(),
            kind: Some(ActionKind::Create),
            status: Some(RecordStatus::Active),
            attempt: 2,
            version: 4,
            account: AccountId::parse("222222222222"),
            source_eni: Some("eni-0000000a".into()),
            target_eni: Some("eni-0000000b".into()),
            target_key: Some("eni-0000000b".into()),
            pool: Some("pool:appliances".into()),
            placed_because: Some("in the source's zone".into()),
            target_id: Some("tmt-1".into()),
            target_created: true,
            filter_key: Some("rules-1".into()),
            filter_id: Some("tmf-1".into()),
            rule_ids: vec!["tmfr-1".into(), "tmfr-2".into()],
            session_id: Some("tms-1".into()),
            session_number: Some(3),
            virtual_network_id: Some(77),
            reservation_id: Some("r".into()),
            instance_id: Some("i-1".into()),
            result: Some(ActionResult {
                action_id: "a1".into(),
                success: true,
                ..ActionResult::default()
            }),
            requested_by: Some(Requester::new("sqs:AIDA1", RequesterBasis::SqsSender)),
            reason: Some("INC-1234".into()),
            ends_at: Some(1_700_003_600),
            created_at: 1_700_000_000,
            updated_at: 1_700_000_001,
        };
        let item = to_item(&record, None);
        assert_eq!(
            item.get(MIRROR_ENDING),
            Some(&s(MIRROR_ENDING_VALUE)),
            "a live mirror with an end is listed"
        );
        assert_eq!(from_item(&item).expect("readable"), record);
    }

    #[test]
    fn only_a_mirror_that_may_still_exist_is_in_the_end_index() {
        let ended = LedgerRecord {
            action_id: "a1".into(),
            status: Some(RecordStatus::Removed),
            ends_at: Some(1_700_003_600),
            ..LedgerRecord::default()
        };
        let item = to_item(&ended, Some(1_800_000_000));
        assert_eq!(item.get(MIRROR_ENDING), None);
        assert_eq!(
            from_item(&item).expect("readable").ends_at,
            Some(1_700_003_600),
            "the end is kept for people"
        );
    }

    #[test]
    fn an_unknown_status_is_reported_not_guessed() {
        let mut item = to_item(
            &LedgerRecord {
                action_id: "x".into(),
                ..LedgerRecord::default()
            },
            None,
        );
        item.insert("status".into(), s("exploded"));
        assert!(matches!(from_item(&item), Err(LedgerError::Corrupt(id, field)) if id == "x" && field == "status"));
    }
}
