//! `mirrorctl`: what a network team asks of a deployment, from a terminal or
//! a script. It builds the same `App` the function runs (`app::build`), from
//! the standard AWS settings (profile, Region, `AWS_ENDPOINT_URL`) and the
//! deployment's settings (`--stack`: the deployed function's own; else the
//! shell's variables as the function names them), so every create, remove
//! and sweep goes through the one code path: validation, the allow-lists,
//! the ledger's claims, pacing, rollback and completion events included.
//! Everything it changes is accountable to the caller's STS identity.
//!
//! Exit codes (`Exit`): 0 done; 1 an action failed (its message says why);
//! 2 bad input, nothing changed; 3 configuration or AWS unavailable, nothing
//! changed; 4 aborted at the confirmation, nothing changed.

mod args;
mod deployment;
mod output;

use crate::domain::account::AccountId;
use std::io::{IsTerminal, Write};
use std::sync::Arc;

use serde_json::{json, Map, Value};

pub use args::{Cli, Command, CreateArgs, Exit, RemoveArgs};
pub use deployment::{Deployment, Operator, CLI_PACE, STACK_FUNCTION};
use output::{printable, report, write_coverage, write_table};

use crate::contract::{Accountability, ActionResult, Requester, RequesterBasis, CREATE};
use crate::domain::clock::now_seconds;
use crate::domain::ids::{
    is_aws_id, is_instance_id, target_field_of, text_problem, MAX_REASON_CHARS, MAX_RESERVATION_ID_CHARS,
};
use crate::domain::model::{rfc3339, EniId, MirrorRequest, RemoveRequest};
use crate::handler::App;
use crate::metrics::Discard;
use crate::ports::LedgerRecord;

/// What a command works with.
struct Session<'a> {
    app: App,
    /// `--account`: only this account's mirrors, or a create in it.
    account: Option<AccountId>,
    deployment: Deployment,
    /// Who runs it, for a command that changes things.
    operator: Option<Operator>,
    region: String,
    as_json: bool,
    yes: bool,
    out: &'a mut dyn Write,
}

pub async fn run(cli: Cli, sdk: &aws_config::SdkConfig) -> Exit {
    let source = deployment::Source {
        stack: cli.stack.as_deref(),
        table: cli.table.as_deref(),
        bus: cli.bus.as_deref(),
    };
    let deployment = match deployment::settings(&source, sdk).await {
        Ok(deployment) => deployment,
        Err(err) => {
            eprintln!("mirrorctl: {}", printable(&err));
            return Exit::Unavailable;
        }
    };
    let mut operator = None;
    if cli.command.changes_things() {
        if !deployment.owner_named {
            eprintln!(
                "mirrorctl: the deployment's owner is not known (OWNER is not set{}): what mirrorctl made would not \
                 be the deployment's, so it changes nothing; pass --stack NAME (or set MIRRORCTL_STACK)",
                deployment
                    .stack
                    .as_deref()
                    .map(|s| format!(" on stack {s}'s function"))
                    .unwrap_or_default()
            );
            return Exit::Unavailable;
        }
        match deployment::operator(sdk).await {
            Ok(found) => operator = Some(found),
            Err(err) => {
                eprintln!("mirrorctl: {}; nothing was changed", printable(&err));
                return Exit::Unavailable;
            }
        }
    }
    let account = match cli.account.as_deref().map(|a| (a, AccountId::parse(a.trim()))) {
        None => None,
        Some((_, Some(account))) => Some(account),
        Some((text, None)) => {
            eprintln!(
                "mirrorctl: --account {:?} is not an AWS account id (12 digits); nothing was changed",
                printable(text)
            );
            return Exit::BadInput;
        }
    };
    let app = crate::app::build(sdk, &deployment.config).with_metric_sink(Arc::new(Discard));
    let mut stdout = std::io::stdout().lock();
    let mut session = Session {
        app,
        account,
        deployment,
        operator,
        region: sdk
            .region()
            .map(ToString::to_string)
            .unwrap_or_else(|| "an unknown Region".into()),
        as_json: cli.json,
        yes: cli.yes,
        out: &mut stdout,
    };
    match &cli.command {
        Command::List => list(&mut session, None).await,
        Command::Show { id } => list(&mut session, Some(id)).await,
        Command::Create(args) => create(&mut session, args, false).await,
        Command::Plan(args) => create(&mut session, args, true).await,
        Command::Remove(args) => remove(&mut session, args).await,
        Command::Sweep { dry_run } => sweep(&mut session, *dry_run, false).await,
        Command::Coverage => sweep(&mut session, true, true).await,
    }
}

impl Session<'_> {
    /// Who asked, as STS proved it.
    fn requester(&self) -> Requester {
        match &self.operator {
            Some(operator) => Requester::new(operator.arn.clone(), RequesterBasis::StsCaller),
            None => Requester::unstated(),
        }
    }

    /// Before a change of everything: where it will happen, and a yes.
    /// Without a terminal, only `--yes` confirms.
    fn confirm(&self, what: &str) -> bool {
        if self.yes {
            return true;
        }
        let account = self.operator.as_ref().map_or("?", |o| o.account.as_str());
        eprintln!(
            "account {}, Region {}, stack {}, owner {}",
            printable(account),
            printable(&self.region),
            printable(
                self.deployment
                    .stack
                    .as_deref()
                    .unwrap_or("(none: settings from the environment)")
            ),
            printable(&self.deployment.config.owner)
        );
        let stdin = std::io::stdin();
        if !stdin.is_terminal() {
            eprintln!("mirrorctl: {what} needs --yes when not run on a terminal");
            return false;
        }
        eprint!("{what}? type yes: ");
        let mut answer = String::new();
        stdin.read_line(&mut answer).is_ok() && answer.trim() == "yes"
    }
}

fn matches(record: &LedgerRecord, id: &str) -> bool {
    [
        &record.session_id,
        &record.instance_id,
        &record.source_eni,
        &record.target_eni,
        &record.target_id,
        &record.target_key,
        &record.filter_id,
        &record.reservation_id,
    ]
    .iter()
    .any(|field| field.as_deref() == Some(id))
        || record.action_id == id
}

/// The account a record's mirror is in (the hub's own when it names none).
fn account_of(record: &LedgerRecord, home: Option<&AccountId>) -> Option<String> {
    record.account.as_ref().or(home).map(ToString::to_string)
}

fn row(record: &LedgerRecord, now: u64, home: Option<&AccountId>) -> Value {
    json!({
        "account": account_of(record, home),
        "sessionId": record.session_id,
        "instanceId": record.instance_id,
        "sourceEni": record.source_eni,
        "target": record.target_key.clone().or(record.target_id.clone()),
        "targetId": record.target_id,
        "filterId": record.filter_id,
        "sessionNumber": record.session_number,
        "reservationId": record.reservation_id,
        "actionId": record.action_id,
        "ageSeconds": now.saturating_sub(record.created_at),
        "expiresAt": record.ends_at.map(rfc3339),
        "status": record.status.map(|s| s.as_str()),
        "requestedBy": record.requested_by.as_ref().map(|r| &r.principal),
        "requestedByBasis": record.requested_by.as_ref().map(|r| r.basis.as_str()),
        "reason": record.reason,
    })
}

/// The deployment's mirrors, of `--account` only when it is given.
async fn mirrors(session: &Session<'_>) -> Result<Vec<LedgerRecord>, Exit> {
    let mut records = session.app.organization().mirrors().await.map_err(|err| {
        eprintln!("mirrorctl: could not read the ledger: {}", printable(&err.to_string()));
        Exit::Unavailable
    })?;
    if let Some(only) = &session.account {
        let home = session.deployment.config.accounts.home.as_ref();
        records.retain(|r| account_of(r, home).as_deref() == Some(only.as_str()));
    }
    Ok(records)
}

async fn list(session: &mut Session<'_>, only: Option<&String>) -> Exit {
    let records = match mirrors(session).await {
        Ok(records) => records,
        Err(exit) => return exit,
    };
    let now = now_seconds();
    let home = session.deployment.config.accounts.home.clone();
    let rows: Vec<Value> = records
        .iter()
        .filter(|r| only.is_none_or(|id| matches(r, id)))
        .map(|r| row(r, now, home.as_ref()))
        .collect();
    if let Some(id) = only.filter(|_| rows.is_empty()) {
        eprintln!(
            "mirrorctl: nothing of this deployment's is mirrored for {}",
            printable(id)
        );
        return Exit::ActionFailed;
    }
    let written = if session.as_json {
        writeln!(session.out, "{}", Value::Array(rows))
    } else {
        // Every ENI with a session of ours is billed, requested or policy.
        let mirrored_enis: std::collections::BTreeSet<&str> = records
            .iter()
            .filter(|r| only.is_none_or(|id| matches(r, id)))
            .filter_map(|r| r.source_eni.as_deref())
            .collect();
        let hourly = mirrored_enis.len() as f64 * session.deployment.config.price_per_eni_hour;
        write_table(session.out, &rows)
            .and_then(|()| output::write_account_totals(session.out, &rows))
            .and_then(|()| output::write_cost(session.out, mirrored_enis.len(), hourly))
    };
    if written.is_err() {
        return Exit::Unavailable;
    }
    Exit::Done
}

async fn create(session: &mut Session<'_>, args: &CreateArgs, dry_run: bool) -> Exit {
    let mut params = Map::new();
    params.insert("type".into(), json!("CreateTrafficMirroringParams"));
    params.insert("sourceNicId".into(), json!(args.source));
    params.insert(target_field_of(&args.target).into(), json!(args.target));
    params.insert("sessionNumber".into(), json!(args.session_number));
    params.insert("trafficMirrorFilterId".into(), json!(args.filter_id));
    params.insert("reservationId".into(), json!(args.reservation_id));
    params.insert("reason".into(), json!(args.reason));
    params.insert("durationMinutes".into(), json!(args.for_minutes));
    params.insert("expiresAt".into(), json!(args.until));
    params.insert("dryRun".into(), json!(dry_run));
    params.insert(
        "accountId".into(),
        json!(session.account.as_ref().map(AccountId::as_str)),
    );
    let action_id = args
        .action_id
        .clone()
        .unwrap_or_else(|| format!("mirrorctl-{}-{}", now_seconds(), std::process::id()));
    let request = json!({"driverRequest": {"actions": [
        {"actionId": action_id, "type": CREATE, "actionParams": Value::Object(params)}
    ]}});
    let response = session.app.handle_as(&request, session.requester()).await;
    report(&response.driver_response.action_results, session.as_json, session.out)
}

/// A flag's value that must be an id of a kind, checked as the function
/// checks it; `Err` says why, and nothing was changed.
fn checked_id(value: &Option<String>, flag: &str, valid: impl Fn(&str) -> bool, kind: &str) -> Result<(), Exit> {
    match value {
        Some(v) if !valid(v) => {
            eprintln!(
                "mirrorctl: --{flag} {:?} is not {kind}; nothing was changed",
                printable(v)
            );
            Err(Exit::BadInput)
        }
        _ => Ok(()),
    }
}

/// The removes a `remove` names; `Err` is bad input.
async fn removals(session: &Session<'_>, args: &RemoveArgs) -> Result<Vec<MirrorRequest>, Exit> {
    let named = [
        &args.session,
        &args.instance,
        &args.eni,
        &args.target,
        &args.reservation,
    ]
    .iter()
    .filter(|f| f.is_some())
    .count()
        + usize::from(args.all);
    if named != 1 {
        eprintln!(
            "mirrorctl: name exactly one of --session, --instance, --eni, --target, --reservation or --all; nothing \
             was changed"
        );
        return Err(Exit::BadInput);
    }
    checked_id(
        &args.session,
        "session",
        |v| is_aws_id(v, "tms-"),
        "a traffic mirror session id (tms-…)",
    )?;
    checked_id(&args.instance, "instance", is_instance_id, "an instance id (i-…)")?;
    let eni = |v: &str| EniId::parse(v).is_some();
    checked_id(&args.eni, "eni", eni, "a network interface id (eni-…)")?;
    checked_id(&args.target, "target", eni, "a network interface id (eni-…)")?;
    let printable_text = |v: &str| text_problem(v, MAX_RESERVATION_ID_CHARS).is_none();
    checked_id(
        &args.reservation,
        "reservation",
        printable_text,
        "a reservation id (at most 256 characters)",
    )?;
    let reason_ok = |v: &str| text_problem(v, MAX_REASON_CHARS).is_none();
    checked_id(
        &args.reason,
        "reason",
        reason_ok,
        "a reason (one line, at most 512 characters)",
    )?;
    let accountability = Accountability {
        requested_by: session.requester(),
        reason: args.reason.clone(),
    };
    let stamp = format!("{}-{}", now_seconds(), std::process::id());
    let request = |action_id: String, session_id, target_eni, reservation_id, instance_id| {
        MirrorRequest::Remove(RemoveRequest {
            account: session.account.clone(),
            action_id,
            session_id,
            target_eni,
            reservation_id,
            instance_id,
            accountability: accountability.clone(),
            expired: false,
        })
    };
    let by_session = |id: &str| {
        request(
            format!("mirrorctl-rm-{id}-{stamp}"),
            Some(id.to_owned()),
            None,
            None,
            None,
        )
    };
    let one = |session_id, target_eni, reservation_id, instance_id| {
        request(
            format!("mirrorctl-rm-{stamp}"),
            session_id,
            target_eni,
            reservation_id,
            instance_id,
        )
    };
    if let Some(id) = &args.session {
        return Ok(vec![by_session(id)]);
    }
    if let Some(eni) = args.target.as_deref().and_then(EniId::parse) {
        return Ok(vec![one(None, Some(eni), None, None)]);
    }
    if let Some(reservation) = &args.reservation {
        return Ok(vec![one(None, None, Some(reservation.clone()), None)]);
    }
    if let Some(instance) = &args.instance {
        return Ok(vec![one(None, None, None, Some(instance.clone()))]);
    }
    // By source ENI, or everything: each mirror the ledger holds, by its session.
    let records = mirrors(session).await?;
    Ok(records
        .iter()
        .filter(|r| args.all || r.source_eni == args.eni)
        .filter_map(|r| r.session_id.as_deref())
        .map(by_session)
        .collect())
}

async fn remove(session: &mut Session<'_>, args: &RemoveArgs) -> Exit {
    let requests = match removals(session, args).await {
        Ok(requests) => requests,
        Err(exit) => return exit,
    };
    if args.all {
        if requests.is_empty() {
            let nothing = if session.as_json {
                "[]"
            } else {
                "nothing of this deployment's to remove"
            };
            let _ = writeln!(session.out, "{nothing}");
            return Exit::Done;
        }
        if !session.yes && std::io::stdin().is_terminal() {
            // What will go, before the question.
            let records = mirrors(session).await.unwrap_or_default();
            let now = now_seconds();
            let home = session.deployment.config.accounts.home.clone();
            let rows: Vec<Value> = records.iter().map(|r| row(r, now, home.as_ref())).collect();
            let _ = write_table(&mut std::io::stderr(), &rows);
        }
        let question = format!(
            "remove all {} mirrors of this deployment, their filters and unused targets",
            requests.len()
        );
        if !session.confirm(&question) {
            eprintln!("mirrorctl: not confirmed; nothing was changed");
            return Exit::Aborted;
        }
    }
    let results = run_with_progress(&session.app, requests).await;
    report(&results, session.as_json, session.out)
}

/// Runs the requests in slices (each paced like the function), with a
/// progress bar on a terminal.
async fn run_with_progress(app: &App, requests: Vec<MirrorRequest>) -> Vec<ActionResult> {
    const SLICE: usize = 20;
    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = indicatif::ProgressBar::new(requests.len() as u64);
        if let Ok(style) = indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} {msg} ({eta} left)") {
            bar.set_style(style);
        }
        bar
    });
    let mut results = Vec::with_capacity(requests.len());
    let mut requests = requests.into_iter().peekable();
    while requests.peek().is_some() {
        let slice: Vec<MirrorRequest> = requests.by_ref().take(SLICE).collect();
        let done = app.run_requests(slice).await;
        if let Some(bar) = &bar {
            bar.inc(done.len() as u64);
        }
        results.extend(done);
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    results
}

/// An organization's coverage: each account's last sweep report, and the
/// totals (a live sweep of every account would be a whole sweep's work).
async fn rollup(session: &mut Session<'_>) -> Exit {
    let rollup = match session.app.organization().rollup().await {
        Ok(rollup) => rollup,
        Err(err) => {
            eprintln!(
                "mirrorctl: could not read the accounts' reports: {}",
                printable(&err.to_string())
            );
            return Exit::Unavailable;
        }
    };
    let written = if session.as_json {
        writeln!(session.out, "{rollup}")
    } else {
        output::write_accounts(session.out, &rollup["accounts"]).and_then(|()| {
            let total = |name: &str| rollup["totals"][name].as_u64().unwrap_or_default();
            writeln!(
                session.out,
                "all accounts: {} wanted, {} mirrored, {} missing, {} not delivering (each account's last sweep; \
                 --account ID for one account now)",
                total("wanted"),
                total("mirrored"),
                total("missing"),
                total("notDelivering")
            )
        })
    };
    if written.is_err() {
        return Exit::Unavailable;
    }
    Exit::Done
}

async fn sweep(session: &mut Session<'_>, dry_run: bool, coverage_only: bool) -> Exit {
    if coverage_only && session.account.is_none() && session.deployment.config.accounts.spans_members() {
        return rollup(session).await;
    }
    if !dry_run && !session.confirm("sweep: repair drift, apply the launch policy and expire mirrors") {
        eprintln!("mirrorctl: not confirmed; nothing was changed");
        return Exit::Aborted;
    }
    let (result, report) = session.app.sweep(dry_run, session.account.as_ref()).await;
    // An organization's sweep reports each account's coverage too.
    let accounts = result.sweep.as_ref().and_then(|s| s.get("accounts")).cloned();
    let written = if coverage_only {
        // The coverage, typed; a sweep that could not list anything has none.
        let Some(coverage) = report.and_then(|r| r.policy).map(|p| p.coverage) else {
            eprintln!("mirrorctl: {}", printable(&result.error_message));
            return Exit::ActionFailed;
        };
        if session.as_json {
            let mut shown = serde_json::to_value(&coverage).unwrap_or_default();
            if let (Some(object), Some(accounts)) = (shown.as_object_mut(), accounts) {
                object.insert("accounts".into(), accounts);
            }
            writeln!(session.out, "{shown}")
        } else {
            write_coverage(session.out, &coverage)
                .and_then(|()| accounts.map_or(Ok(()), |a| output::write_accounts(session.out, &a)))
        }
    } else if session.as_json {
        writeln!(session.out, "{}", serde_json::to_value(&result).unwrap_or_default())
    } else {
        let message = if result.info_message.is_empty() {
            &result.error_message
        } else {
            &result.info_message
        };
        writeln!(session.out, "{}", printable(message))
    };
    match (written, result.success) {
        (Err(_), _) => Exit::Unavailable,
        (Ok(()), true) => Exit::Done,
        (Ok(()), false) => Exit::ActionFailed,
    }
}

#[cfg(test)]
mod tests {
    use super::args::parse_minutes;
    use super::*;

    #[test]
    fn durations_read_as_minutes_within_a_year() {
        assert_eq!(parse_minutes("90m"), Ok(90));
        assert_eq!(parse_minutes("4h"), Ok(240));
        assert_eq!(parse_minutes("2d"), Ok(2880));
        assert_eq!(parse_minutes("45"), Ok(45));
        for bad in ["0m", "366d", "4 hours", "h", "-5m", ""] {
            assert!(parse_minutes(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn only_creates_removes_and_real_sweeps_change_things() {
        assert!(Command::Sweep { dry_run: false }.changes_things());
        assert!(!Command::Sweep { dry_run: true }.changes_things());
        assert!(!Command::Coverage.changes_things() && !Command::List.changes_things());
    }
}
