//! `mirrorctl`: what a network team asks of a deployment, from a terminal or
//! a script. It builds the same `App` the function runs (`app::build`), from
//! the standard AWS settings (profile, Region, `AWS_ENDPOINT_URL`) and the
//! function's environment variables (or flags), so every create, remove and
//! sweep goes through the one code path: validation, the ledger's claims,
//! pacing, rollback and completion events included.
//!
//! Exit codes (`Exit`): 0 done; 1 an action failed (its message says why);
//! 2 bad input, nothing changed; 3 configuration or AWS unavailable, nothing
//! changed; 4 aborted at the confirmation, nothing changed.

use std::io::{IsTerminal, Write};
use std::sync::Arc;

use clap::{Args, Parser, Subcommand};
use serde_json::{json, Map, Value};

use crate::config::{Config, EVENT_BUS_NAME, TABLE_NAME};
use crate::contract::{ActionResult, CREATE};
use crate::handler::App;
use crate::metrics::Discard;
use crate::mirroring::model::{MirrorRequest, RemoveRequest};
use crate::mirroring::now_seconds;
use crate::mirroring::validate::target_field_of;
use crate::ports::LedgerRecord;

#[derive(Parser, Debug)]
#[command(
    name = "mirrorctl",
    version,
    about = "See and steer one deployment's VPC Traffic Mirroring",
    after_help = "AWS settings come from the standard chain (AWS_PROFILE, AWS_REGION, AWS_ENDPOINT_URL, ...).\n\
                  Exit codes: 0 done, 1 an action failed, 2 bad input, 3 configuration or AWS unavailable, 4 aborted."
)]
pub struct Cli {
    /// The deployment's ledger table (default: $TABLE_NAME, as the function has it).
    #[arg(long, global = true)]
    pub table: Option<String>,
    /// The event bus completion events go to (default: $EVENT_BUS_NAME).
    #[arg(long, global = true)]
    pub bus: Option<String>,
    /// Print JSON, for scripts, instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// This deployment's mirrors: instance, source ENI, target, filter, number, reservation, age, status.
    List,
    /// The mirrors of one session, instance, ENI (source or target) or target.
    Show { id: String },
    /// Mirror an ENI to a target (the function's create: same checks, same ledger).
    Create(CreateArgs),
    /// What a create would do, asked of EC2 with DryRun; changes nothing.
    Plan(CreateArgs),
    /// Remove mirrors by session, instance, source ENI, target ENI, reservation, or all (teardown).
    Remove(RemoveArgs),
    /// Reconcile EC2, the ledger and the launch policy (as the schedule does).
    Sweep {
        /// Report only; change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// The launch policy's coverage: wanted, mirrored and missing ENIs, and why (changes nothing).
    Coverage,
}

#[derive(Args, Debug)]
pub struct CreateArgs {
    /// The ENI whose traffic is copied.
    #[arg(long)]
    pub source: String,
    /// Where it goes: eni-…, a Network Load Balancer ARN, vpce-… or tmt-….
    #[arg(long)]
    pub target: String,
    /// 1-32767; the lowest free one when not given.
    #[arg(long)]
    pub session_number: Option<String>,
    /// An existing filter (tmf-…) instead of one that mirrors everything.
    #[arg(long)]
    pub filter_id: Option<String>,
    #[arg(long)]
    pub reservation_id: Option<String>,
    /// The action id (the same id again is answered from the ledger); default: one of its own.
    #[arg(long)]
    pub action_id: Option<String>,
}

#[derive(Args, Debug, Default)]
pub struct RemoveArgs {
    #[arg(long)]
    pub session: Option<String>,
    #[arg(long)]
    pub instance: Option<String>,
    /// A source ENI: its mirrors.
    #[arg(long)]
    pub eni: Option<String>,
    /// A target ENI: every mirror to it, then the target.
    #[arg(long)]
    pub target: Option<String>,
    #[arg(long)]
    pub reservation: Option<String>,
    /// Everything of this deployment (before deleting its stack).
    #[arg(long)]
    pub all: bool,
    /// Do not ask before removing everything.
    #[arg(long)]
    pub yes: bool,
}

/// How `mirrorctl` ends; the process exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Done = 0,
    ActionFailed = 1,
    BadInput = 2,
    Unavailable = 3,
    Aborted = 4,
}

/// Builds the deployment's `App` from flags and environment variables.
pub fn config(cli: &Cli) -> Result<Config, String> {
    let lookup = |name: &str| match name {
        TABLE_NAME if cli.table.is_some() => cli.table.clone(),
        EVENT_BUS_NAME if cli.bus.is_some() => cli.bus.clone(),
        other => std::env::var(other).ok(),
    };
    let mut config =
        Config::from_lookup(lookup).map_err(|e| format!("configuration: {e} (pass --table/--bus or set it)"))?;
    // A teardown of thousands from a laptop shares the account's EC2 budget
    // with everything else in it: paced unless told otherwise.
    config.mutating_calls_per_second = config.mutating_calls_per_second.or(Some(CLI_PACE));
    Ok(config)
}

/// Mutating EC2 calls a second when MUTATING_CALLS_PER_SECOND is not set.
pub const CLI_PACE: f64 = 5.0;

pub async fn run(cli: Cli, sdk: &aws_config::SdkConfig) -> Exit {
    let config = match config(&cli) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("mirrorctl: {err}");
            return Exit::Unavailable;
        }
    };
    let app = crate::app::build(sdk, &config).with_metric_sink(Arc::new(Discard));
    let mut out = std::io::stdout().lock();
    match &cli.command {
        Command::List => list(&app, None, cli.json, &mut out).await,
        Command::Show { id } => list(&app, Some(id), cli.json, &mut out).await,
        Command::Create(args) => create(&app, args, false, cli.json, &mut out).await,
        Command::Plan(args) => create(&app, args, true, cli.json, &mut out).await,
        Command::Remove(args) => remove(&app, args, cli.json, &mut out).await,
        Command::Sweep { dry_run } => sweep(&app, *dry_run, false, cli.json, &mut out).await,
        Command::Coverage => sweep(&app, true, true, cli.json, &mut out).await,
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

fn row(record: &LedgerRecord, now: u64) -> Value {
    json!({
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
        "status": record.status.map(|s| s.as_str()),
    })
}

async fn mirrors(app: &App) -> Result<Vec<LedgerRecord>, Exit> {
    app.mirrors().await.map_err(|err| {
        eprintln!("mirrorctl: could not read the ledger: {err}");
        Exit::Unavailable
    })
}

async fn list(app: &App, only: Option<&String>, as_json: bool, out: &mut dyn Write) -> Exit {
    let records = match mirrors(app).await {
        Ok(records) => records,
        Err(exit) => return exit,
    };
    let now = now_seconds();
    let rows: Vec<Value> = records
        .iter()
        .filter(|r| only.is_none_or(|id| matches(r, id)))
        .map(|r| row(r, now))
        .collect();
    if let Some(id) = only.filter(|_| rows.is_empty()) {
        eprintln!("mirrorctl: nothing of this deployment's is mirrored for {id}");
        return Exit::ActionFailed;
    }
    let written = if as_json {
        writeln!(out, "{}", Value::Array(rows))
    } else {
        write_table(out, &rows)
    };
    if written.is_err() {
        return Exit::Unavailable;
    }
    Exit::Done
}

fn write_table(out: &mut dyn Write, rows: &[Value]) -> std::io::Result<()> {
    const COLUMNS: [(&str, &str); 9] = [
        ("SESSION", "sessionId"),
        ("INSTANCE", "instanceId"),
        ("SOURCE", "sourceEni"),
        ("TARGET", "target"),
        ("FILTER", "filterId"),
        ("NUMBER", "sessionNumber"),
        ("RESERVATION", "reservationId"),
        ("AGE", "ageSeconds"),
        ("STATUS", "status"),
    ];
    let cell = |row: &Value, key: &str| match (&row[key], key) {
        (Value::Null, _) => "-".to_owned(),
        (Value::Number(n), "ageSeconds") => age(n.as_u64().unwrap_or_default()),
        (Value::String(s), _) => s.clone(),
        (other, _) => other.to_string(),
    };
    let widths: Vec<usize> = COLUMNS
        .iter()
        .map(|(title, key)| {
            rows.iter()
                .map(|r| cell(r, key).len())
                .chain([title.len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: Vec<String>| {
        cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_owned()
    };
    writeln!(out, "{}", line(COLUMNS.iter().map(|(t, _)| t.to_string()).collect()))?;
    for row in rows {
        writeln!(out, "{}", line(COLUMNS.iter().map(|(_, k)| cell(row, k)).collect()))?;
    }
    writeln!(out, "{} mirror{}", rows.len(), if rows.len() == 1 { "" } else { "s" })
}

fn age(seconds: u64) -> String {
    match seconds {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

async fn create(app: &App, args: &CreateArgs, dry_run: bool, as_json: bool, out: &mut dyn Write) -> Exit {
    let mut params = Map::new();
    params.insert("type".into(), json!("CreateTrafficMirroringParams"));
    params.insert("sourceNicId".into(), json!(args.source));
    params.insert(target_field_of(&args.target).into(), json!(args.target));
    params.insert("sessionNumber".into(), json!(args.session_number));
    params.insert("trafficMirrorFilterId".into(), json!(args.filter_id));
    params.insert("reservationId".into(), json!(args.reservation_id));
    params.insert("dryRun".into(), json!(dry_run));
    let action_id = args
        .action_id
        .clone()
        .unwrap_or_else(|| format!("mirrorctl-{}-{}", now_seconds(), std::process::id()));
    let request = json!({"driverRequest": {"actions": [
        {"actionId": action_id, "type": CREATE, "actionParams": Value::Object(params)}
    ]}});
    let response = app.handle(&request).await;
    report(&response.driver_response.action_results, as_json, out)
}

/// The removes a `remove` names; `Err` is bad input.
async fn removals(app: &App, args: &RemoveArgs) -> Result<Vec<MirrorRequest>, Exit> {
    let stamp = format!("{}-{}", now_seconds(), std::process::id());
    let by_session = |session: &str| {
        MirrorRequest::Remove(RemoveRequest {
            action_id: format!("mirrorctl-rm-{session}-{stamp}"),
            session_id: Some(session.to_owned()),
            target_eni: None,
            reservation_id: None,
            instance_id: None,
        })
    };
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
    let id_ok = |value: &str, prefix: &str| {
        value.starts_with(prefix)
            && value.len() > prefix.len()
            && value.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    };
    let check = |value: &Option<String>, prefix: &str, flag: &str| match value {
        Some(v) if !id_ok(v, prefix) => {
            eprintln!("mirrorctl: --{flag} {v:?} is not a {prefix}… id; nothing was changed");
            Err(Exit::BadInput)
        }
        _ => Ok(()),
    };
    check(&args.session, "tms-", "session")?;
    check(&args.instance, "i-", "instance")?;
    check(&args.eni, "eni-", "eni")?;
    check(&args.target, "eni-", "target")?;
    let request = |session_id, target_eni, reservation_id, instance_id| {
        MirrorRequest::Remove(RemoveRequest {
            action_id: format!("mirrorctl-rm-{stamp}"),
            session_id,
            target_eni,
            reservation_id,
            instance_id,
        })
    };
    if let Some(session) = &args.session {
        return Ok(vec![by_session(session)]);
    }
    if let Some(target) = &args.target {
        let eni = crate::mirroring::model::EniId::parse(target).ok_or(Exit::BadInput)?;
        return Ok(vec![request(None, Some(eni), None, None)]);
    }
    if let Some(reservation) = &args.reservation {
        return Ok(vec![request(None, None, Some(reservation.clone()), None)]);
    }
    if let Some(instance) = &args.instance {
        return Ok(vec![request(None, None, None, Some(instance.clone()))]);
    }
    // By source ENI, or everything: each mirror the ledger holds, by its session.
    let records = mirrors(app).await?;
    Ok(records
        .iter()
        .filter(|r| args.all || r.source_eni == args.eni)
        .filter_map(|r| r.session_id.as_deref())
        .map(by_session)
        .collect())
}

async fn remove(app: &App, args: &RemoveArgs, as_json: bool, out: &mut dyn Write) -> Exit {
    let requests = match removals(app, args).await {
        Ok(requests) => requests,
        Err(exit) => return exit,
    };
    if args.all {
        if requests.is_empty() {
            let _ = writeln!(
                out,
                "{}",
                if as_json {
                    "[]"
                } else {
                    "nothing of this deployment's to remove"
                }
            );
            return Exit::Done;
        }
        if !args.yes && std::io::stdin().is_terminal() {
            // What will go, before the question.
            let _ = list(app, None, false, &mut std::io::stderr()).await;
        }
        if !args.yes && !confirm(requests.len()) {
            eprintln!("mirrorctl: not confirmed; nothing was changed");
            return Exit::Aborted;
        }
    }
    let results = run_with_progress(app, requests).await;
    report(&results, as_json, out)
}

/// Asks on the terminal; without one (a script), only `--yes` confirms.
fn confirm(count: usize) -> bool {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        eprintln!("mirrorctl: removing everything needs --yes when not run on a terminal");
        return false;
    }
    eprint!("remove all {count} mirrors of this deployment, their filters and unused targets? type yes: ");
    let mut answer = String::new();
    stdin.read_line(&mut answer).is_ok() && answer.trim() == "yes"
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

fn report(results: &[ActionResult], as_json: bool, out: &mut dyn Write) -> Exit {
    let failed = results.iter().filter(|r| !r.success).count();
    let written = if as_json {
        writeln!(
            out,
            "{}",
            serde_json::to_string(results).unwrap_or_else(|_| "[]".into())
        )
    } else {
        results.iter().try_for_each(|r| {
            if r.success {
                writeln!(out, "ok      {}: {}", r.action_id, r.info_message)
            } else {
                writeln!(
                    out,
                    "failed  {}: {} ({})",
                    r.action_id,
                    r.error_message,
                    r.error_code.as_deref().unwrap_or("")
                )
            }
        })
    };
    match (written, failed) {
        (Err(_), _) => Exit::Unavailable,
        (Ok(()), 0) => Exit::Done,
        (Ok(()), _)
            if results
                .iter()
                .all(|r| r.error_code.as_deref() == Some("ValidationError")) =>
        {
            Exit::BadInput
        }
        (Ok(()), _) => Exit::ActionFailed,
    }
}

async fn sweep(app: &App, dry_run: bool, coverage_only: bool, as_json: bool, out: &mut dyn Write) -> Exit {
    let answer = match app.invoke(json!({"sweep": {"dryRun": dry_run}})).await {
        Ok(answer) => answer,
        Err(err) => {
            eprintln!("mirrorctl: {err}");
            return Exit::ActionFailed;
        }
    };
    let result = &answer["sweep"];
    let shown = if coverage_only {
        &result["sweep"]["policy"]["coverage"]
    } else {
        result
    };
    let written = if as_json {
        writeln!(out, "{shown}")
    } else if coverage_only {
        write_coverage(out, shown)
    } else {
        writeln!(
            out,
            "{}",
            result["infoMessage"]
                .as_str()
                .filter(|m| !m.is_empty())
                .or(result["errorMessage"].as_str())
                .unwrap_or_default()
        )
    };
    match (written, result["success"].as_bool()) {
        (Err(_), _) => Exit::Unavailable,
        (Ok(()), Some(true)) => Exit::Done,
        _ => Exit::ActionFailed,
    }
}

fn write_coverage(out: &mut dyn Write, coverage: &Value) -> std::io::Result<()> {
    for target in coverage["targets"].as_array().into_iter().flatten() {
        writeln!(
            out,
            "{}: {} wanted, {} mirrored",
            target["target"].as_str().unwrap_or_default(),
            target["wanted"],
            target["mirrored"]
        )?;
        for (label, list) in [
            ("missing", &target["missing"]),
            ("not delivering", &target["notDelivering"]),
        ] {
            for entry in list.as_array().into_iter().flatten() {
                writeln!(
                    out,
                    "  {label:<15} {} {}: {}",
                    entry["instanceId"].as_str().unwrap_or_default(),
                    entry["eni"].as_str().unwrap_or_default(),
                    entry["reason"].as_str().unwrap_or_default()
                )?;
            }
        }
    }
    for instance in coverage["notNitro"].as_array().into_iter().flatten() {
        writeln!(out, "not a Nitro type: {}", instance.as_str().unwrap_or_default())?;
    }
    writeln!(
        out,
        "{} wanted, {} mirrored, {} missing, {} not delivering",
        coverage["wanted"], coverage["mirrored"], coverage["missing"], coverage["notDelivering"]
    )
}
