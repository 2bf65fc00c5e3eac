//! `MemoryLedger`: the ledger's records, claims and session numbers, in memory.

use std::collections::BTreeMap;
use std::sync::Mutex;

use async_trait::async_trait;
use traffic_mirroring::ports::*;

use super::Faults;

#[derive(Default)]
struct LedgerState {
    records: BTreeMap<String, (LedgerRecord, u64)>,
    shared: BTreeMap<SharedKey, SharedClaims>,
    sources: BTreeMap<String, BTreeMap<u16, String>>,
    /// Each account's last sweep report, and when.
    reports: BTreeMap<String, (serde_json::Value, u64)>,
}

/// The ledger, in memory: every call is one atomic step, as each DynamoDB
/// conditional write is. Leases are ignored (nothing here outlives a test).
#[derive(Default)]
pub struct MemoryLedger {
    state: Mutex<LedgerState>,
    faults: Faults,
}

impl MemoryLedger {
    /// The next call named `call` (the port method's name) fails with `error`.
    pub fn fail_next(&self, call: &str, error: AwsError) {
        self.faults.arm(call, error);
    }

    pub fn record(&self, action_id: &str) -> Option<LedgerRecord> {
        let state = self.state.lock().expect("state");
        state.records.get(action_id).map(|(r, _)| r.clone())
    }

    /// Changes a record behind the deployment's back, as a person editing
    /// the table (or an earlier version writing it) would; its version moves on.
    pub fn rewrite(&self, action_id: &str, change: impl FnOnce(&mut LedgerRecord)) {
        let mut state = self.state.lock().expect("state");
        let (record, version) = state.records.get_mut(action_id).expect("a record to rewrite");
        change(record);
        *version += 1;
        record.version = *version;
    }

    /// Whether no item was ever written (or all were lost).
    pub fn is_empty(&self) -> bool {
        let state = self.state.lock().expect("state");
        state.records.is_empty() && state.shared.is_empty() && state.sources.is_empty()
    }

    /// Deletes every item, as a lost table would.
    pub fn empty(&self) {
        let mut state = self.state.lock().expect("state");
        *state = LedgerState::default();
    }

    /// Claim items that still name a resource, a maker or a user, and
    /// session numbers still claimed: what a finished test should not leave.
    pub fn claims_left(&self) -> Vec<String> {
        let state = self.state.lock().expect("state");
        let shared = state
            .shared
            .values()
            .filter(|c| c.resource_id.is_some() || c.maker.is_some() || !c.users.is_empty())
            .map(|c| format!("{}: {:?}", c.key.name(), c));
        let numbers = state
            .sources
            .iter()
            .flat_map(|(eni, numbers)| numbers.iter().map(move |(n, a)| format!("{eni} #{n} by {a}")));
        shared.chain(numbers).collect()
    }

    fn enter(&self, call: &str) -> Result<std::sync::MutexGuard<'_, LedgerState>, LedgerError> {
        self.faults.take(call)?;
        Ok(self.state.lock().expect("state"))
    }
}

#[async_trait]
impl ActionRecords for MemoryLedger {
    async fn claim(&self, record: &LedgerRecord, _lease_seconds: u64) -> Result<Claim, LedgerError> {
        let mut state = self.enter("claim")?;
        let (attempt, version) = match state.records.get(&record.action_id) {
            None => (0, 0),
            Some((existing, version)) if existing.status == Some(RecordStatus::Failed) => (existing.attempt, *version),
            Some((existing, _)) => {
                return Ok(match (&existing.status, &existing.result) {
                    (Some(RecordStatus::Pending), _) | (_, None) => Claim::InProgress,
                    (_, Some(result)) => Claim::Finished(Box::new(result.clone())),
                });
            }
        };
        // What the DynamoDB claim writes (an `UpdateItem` that sets these
        // attributes), over what a failed record held: no more.
        let mut claimed = state
            .records
            .get(&record.action_id)
            .map(|(existing, _)| existing.clone())
            .unwrap_or_else(|| LedgerRecord {
                created_at: record.updated_at,
                ..LedgerRecord::default()
            });
        claimed.action_id = record.action_id.clone();
        claimed.kind = Some(record.kind.unwrap_or(ActionKind::Create));
        claimed.status = Some(RecordStatus::Pending);
        claimed.updated_at = record.updated_at;
        for (field, value) in [
            (&mut claimed.source_eni, &record.source_eni),
            (&mut claimed.target_eni, &record.target_eni),
            (&mut claimed.target_key, &record.target_key),
            (&mut claimed.filter_key, &record.filter_key),
            (&mut claimed.reservation_id, &record.reservation_id),
            (&mut claimed.instance_id, &record.instance_id),
            (&mut claimed.pool, &record.pool),
            (&mut claimed.placed_because, &record.placed_because),
            (&mut claimed.reason, &record.reason),
        ] {
            if value.is_some() {
                field.clone_from(value);
            }
        }
        if record.requested_by.is_some() {
            claimed.requested_by.clone_from(&record.requested_by);
        }
        claimed.account.clone_from(&record.account);
        claimed.attempt = attempt;
        claimed.version = version + 1;
        state.records.insert(record.action_id.clone(), (claimed, version + 1));
        Ok(Claim::Granted {
            attempt,
            version: version + 1,
        })
    }

    async fn save(&self, record: &mut LedgerRecord) -> Result<(), LedgerError> {
        let mut state = self.enter("save")?;
        let stored = state.records.get(&record.action_id).map(|(_, v)| *v).unwrap_or(0);
        if stored != record.version {
            return Err(LedgerError::Conflict(record.action_id.clone()));
        }
        record.version += 1;
        state
            .records
            .insert(record.action_id.clone(), (record.clone(), record.version));
        Ok(())
    }

    async fn adopt(&self, record: &LedgerRecord) -> Result<bool, LedgerError> {
        let mut state = self.enter("adopt")?;
        if state.records.contains_key(&record.action_id) {
            return Ok(false);
        }
        let mut adopted = record.clone();
        adopted.version = 1;
        state.records.insert(record.action_id.clone(), (adopted, 1));
        Ok(true)
    }

    async fn get(&self, action_id: &str) -> Result<Option<LedgerRecord>, LedgerError> {
        let state = self.enter("get")?;
        Ok(state.records.get(action_id).map(|(r, _)| r.clone()))
    }

    async fn find(&self, query: &LedgerQuery) -> Result<Vec<LedgerRecord>, LedgerError> {
        let state = self.enter("find")?;
        let wanted = |r: &LedgerRecord| match query {
            LedgerQuery::Session(id) => r.session_id.as_ref() == Some(id),
            LedgerQuery::TargetEni(eni) => r.target_eni.as_ref() == Some(eni),
            LedgerQuery::SourceEni(eni) => r.source_eni.as_ref() == Some(eni),
            LedgerQuery::Reservation(id) => r.reservation_id.as_ref() == Some(id),
            LedgerQuery::Instance(id) => r.instance_id.as_ref() == Some(id),
        };
        Ok(state
            .records
            .values()
            .map(|(r, _)| r)
            .filter(|r| wanted(r))
            .cloned()
            .collect())
    }
}

#[async_trait]
impl SharedResources for MemoryLedger {
    async fn join_shared(&self, key: &SharedKey, action_id: &str, limit: usize, _: u64) -> Result<Slot, LedgerError> {
        let mut state = self.enter("join_shared")?;
        let claims = state.shared.entry(key.clone()).or_insert_with(|| SharedClaims {
            key: key.clone(),
            resource_id: None,
            maker: None,
            users: Vec::new(),
        });
        let me = action_id.to_owned();
        if let Some(id) = claims.resource_id.clone() {
            if claims.users.contains(&me) {
                return Ok(Slot::Joined(id));
            }
            if claims.users.len() >= limit {
                return Ok(Slot::Full(claims.users.len()));
            }
            claims.users.push(me);
            return Ok(Slot::Joined(id));
        }
        match &claims.maker {
            Some(maker) if *maker != me => Ok(Slot::Busy),
            _ => {
                claims.maker = Some(me.clone());
                if !claims.users.contains(&me) {
                    claims.users.push(me);
                }
                Ok(Slot::Make)
            }
        }
    }

    async fn shared_made(&self, key: &SharedKey, action_id: &str, resource_id: &str) -> Result<(), LedgerError> {
        let mut state = self.enter("shared_made")?;
        match state.shared.get_mut(key) {
            Some(claims) if claims.maker.as_deref() == Some(action_id) => {
                claims.maker = None;
                claims.resource_id = Some(resource_id.to_owned());
                Ok(())
            }
            _ => Err(AwsError::new(
                ErrorKind::ConditionFailed,
                "ConditionalCheckFailedException",
                "not the maker",
            )
            .into()),
        }
    }

    async fn leave_shared(&self, key: &SharedKey, action_id: &str) -> Result<(Option<String>, usize), LedgerError> {
        let mut state = self.enter("leave_shared")?;
        let Some(claims) = state.shared.get_mut(key) else {
            return Ok((None, 0));
        };
        claims.users.retain(|u| u != action_id);
        if claims.maker.as_deref() == Some(action_id) {
            claims.maker = None;
        }
        Ok((claims.resource_id.clone(), claims.users.len()))
    }

    async fn retire_shared(&self, key: &SharedKey, resource_id: &str) -> Result<bool, LedgerError> {
        let mut state = self.enter("retire_shared")?;
        let retire = state
            .shared
            .get(key)
            .is_some_and(|c| c.resource_id.as_deref() == Some(resource_id) && c.users.is_empty() && c.maker.is_none());
        if retire {
            state.shared.remove(key);
        }
        Ok(retire)
    }

    async fn restore_shared(&self, key: &SharedKey, resource_id: &str) -> Result<(), LedgerError> {
        let mut state = self.enter("restore_shared")?;
        state.shared.entry(key.clone()).or_insert_with(|| SharedClaims {
            key: key.clone(),
            resource_id: Some(resource_id.to_owned()),
            maker: None,
            users: Vec::new(),
        });
        Ok(())
    }

    async fn shared(&self, key: &SharedKey) -> Result<Option<SharedClaims>, LedgerError> {
        let state = self.enter("shared")?;
        Ok(state.shared.get(key).cloned())
    }
}

#[async_trait]
impl SessionNumbers for MemoryLedger {
    async fn claim_number(
        &self,
        source_eni: &str,
        number: u16,
        action_id: &str,
        limit: usize,
    ) -> Result<NumberClaim, LedgerError> {
        let mut state = self.enter("claim_number")?;
        let numbers = state.sources.entry(source_eni.to_owned()).or_default();
        let free = match numbers.get(&number) {
            Some(holder) => holder == action_id,
            None => numbers.len() < limit,
        };
        if !free {
            return Ok(NumberClaim::Refused(numbers.keys().copied().collect()));
        }
        numbers.insert(number, action_id.to_owned());
        Ok(NumberClaim::Claimed)
    }

    async fn numbers(&self, source_eni: &str) -> Result<Vec<(u16, String)>, LedgerError> {
        let state = self.enter("numbers")?;
        Ok(state
            .sources
            .get(source_eni)
            .map(|numbers| numbers.iter().map(|(n, a)| (*n, a.clone())).collect())
            .unwrap_or_default())
    }

    async fn release_number(&self, source_eni: &str, number: u16, action_id: &str) -> Result<(), LedgerError> {
        let mut state = self.enter("release_number")?;
        if let Some(numbers) = state.sources.get_mut(source_eni) {
            if numbers.get(&number).map(String::as_str) == Some(action_id) {
                numbers.remove(&number);
            }
        }
        Ok(())
    }
}

#[async_trait]
impl Scans for MemoryLedger {
    async fn contents(&self) -> Result<LedgerContents, LedgerError> {
        let state = self.enter("contents")?;
        Ok(LedgerContents {
            records: state.records.values().map(|(r, _)| r.clone()).collect(),
            shared: state.shared.values().cloned().collect(),
            sources: state
                .sources
                .iter()
                .map(|(eni, numbers)| SourceClaims {
                    source_eni: eni.clone(),
                    numbers: numbers.iter().map(|(n, a)| (*n, a.clone())).collect(),
                })
                .collect(),
            ..LedgerContents::default()
        })
    }

    async fn ending_by(&self, at: u64) -> Result<Vec<String>, LedgerError> {
        let state = self.enter("ending_by")?;
        Ok(state
            .records
            .values()
            .filter(|(r, _)| r.status.is_some_and(|s| s.holds_resources()) && r.ends_at.is_some_and(|end| end <= at))
            .map(|(r, _)| r.action_id.clone())
            .collect())
    }
}

#[async_trait]
impl AccountReports for MemoryLedger {
    async fn save_report(&self, account: &str, report: &serde_json::Value, at: u64) -> Result<(), LedgerError> {
        let mut state = self.enter("save_report")?;
        state.reports.insert(account.to_owned(), (report.clone(), at));
        Ok(())
    }

    async fn reports(&self, accounts: &[String]) -> Result<Vec<(String, serde_json::Value, u64)>, LedgerError> {
        let state = self.enter("reports")?;
        Ok(accounts
            .iter()
            .filter_map(|a| state.reports.get(a).map(|(r, at)| (a.clone(), r.clone(), *at)))
            .collect())
    }
}
