//! What `mirrorctl` takes on its command line, and how it ends.

use clap::{Args, Parser, Subcommand};

use crate::domain::model::MAX_LIFETIME_MINUTES;

#[derive(Parser, Debug)]
#[command(
    name = "mirrorctl",
    version,
    about = "See and steer one deployment's VPC Traffic Mirroring",
    after_help = "AWS settings come from the standard chain (AWS_PROFILE, AWS_REGION, AWS_ENDPOINT_URL, ...).\n\
                  Exit codes: 0 done, 1 an action failed, 2 bad input, 3 configuration or AWS unavailable, 4 aborted."
)]
pub struct Cli {
    /// The deployment's stack: its settings are read from the stack's function, so mirrorctl acts as it would.
    #[arg(long, global = true, env = "MIRRORCTL_STACK", conflicts_with_all = ["table", "bus"])]
    pub stack: Option<String>,
    /// The deployment's ledger table, without --stack (default: $TABLE_NAME, as the function has it).
    #[arg(long, global = true)]
    pub table: Option<String>,
    /// The event bus completion events go to, without --stack (default: $EVENT_BUS_NAME).
    #[arg(long, global = true)]
    pub bus: Option<String>,
    /// Print JSON, for scripts, instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
    /// The account to act in (12 digits): a member account of an organization hub, or the hub's own;
    /// default: the hub's own for create, any for list, show, remove and coverage.
    #[arg(long, global = true)]
    pub account: Option<String>,
    /// Do not ask before `remove --all` or a `sweep` that changes things (needed off a terminal).
    #[arg(long, global = true)]
    pub yes: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// This deployment's mirrors: instance, source ENI, target, filter, number, age, end, status, who and why.
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

impl Command {
    /// Whether the command may change EC2 or the ledger.
    pub(super) fn changes_things(&self) -> bool {
        match self {
            Command::Create(_) | Command::Remove(_) => true,
            Command::Sweep { dry_run } => !dry_run,
            Command::List | Command::Show { .. } | Command::Plan(_) | Command::Coverage => false,
        }
    }
}

#[derive(Args, Debug)]
pub struct CreateArgs {
    /// The ENI whose traffic is copied.
    #[arg(long)]
    pub source: String,
    /// Where it goes: eni-…, a Network Load Balancer ARN, vpce-…, tmt-… or pool:NAME (TARGET_POOLS).
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
    /// Why the traffic is mirrored (a ticket, an investigation); kept, tagged and announced.
    #[arg(long)]
    pub reason: Option<String>,
    /// How long the mirror runs: 90m, 4h, 2d (or minutes); it is removed when the time is up.
    #[arg(long = "for", value_name = "DURATION", value_parser = parse_minutes, conflicts_with = "until")]
    pub for_minutes: Option<u64>,
    /// When the mirror ends, RFC 3339 (2026-12-05T18:00:00Z).
    #[arg(long)]
    pub until: Option<String>,
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
    /// Why the mirrors end; kept and announced.
    #[arg(long)]
    pub reason: Option<String>,
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

/// `90m`, `4h`, `2d`, or a number of minutes, within a year.
pub(super) fn parse_minutes(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let (number, scale) = match text.char_indices().last() {
        Some((at, 'm')) => (&text[..at], 1),
        Some((at, 'h')) => (&text[..at], 60),
        Some((at, 'd')) => (&text[..at], 1440),
        _ => (text, 1),
    };
    number
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(scale))
        .filter(|minutes| (1..=MAX_LIFETIME_MINUTES).contains(minutes))
        .ok_or_else(|| format!("{text:?} is not a duration of 1 minute to a year, such as 90m, 4h or 2d"))
}
