//! Which deployment `mirrorctl` acts for, and who is running it. With
//! `--stack` (or `MIRRORCTL_STACK`) the settings are the deployed function's
//! own, read from its configuration, so the command line acts exactly as the
//! function would (table, bus, owner, allow-lists, defaults); without it,
//! from the shell's variables as the function names them.

use std::collections::HashMap;

use aws_config::SdkConfig;

use crate::config::{Config, EVENT_BUS_NAME, OWNER, TABLE_NAME};

/// The function's logical id in `infra/template.yaml`.
pub const STACK_FUNCTION: &str = "TrafficMirroringFunction";

/// Mutating EC2 calls a second when MUTATING_CALLS_PER_SECOND is not set:
/// a teardown of thousands from a laptop shares the account's EC2 budget.
pub const CLI_PACE: f64 = 5.0;

#[derive(Debug, Clone)]
pub struct Deployment {
    pub config: Config,
    /// The stack the settings were read from.
    pub stack: Option<String>,
    /// Whether the settings name the deployment's owner (`OWNER`): without
    /// it, what `mirrorctl` made would not be the deployment's, so it
    /// changes nothing.
    pub owner_named: bool,
}

/// Who runs `mirrorctl`, as STS says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operator {
    pub arn: String,
    pub account: String,
}

/// Where the settings come from: the flags and the shell, or a stack.
pub struct Source<'a> {
    pub stack: Option<&'a str>,
    pub table: Option<&'a str>,
    pub bus: Option<&'a str>,
}

pub async fn settings(source: &Source<'_>, sdk: &SdkConfig) -> Result<Deployment, String> {
    let variables: HashMap<String, String> = match source.stack {
        Some(stack) => stack_variables(stack, sdk).await?,
        None => std::env::vars().collect(),
    };
    let lookup = |name: &str| match name {
        TABLE_NAME if source.table.is_some() => source.table.map(str::to_owned),
        EVENT_BUS_NAME if source.bus.is_some() => source.bus.map(str::to_owned),
        other => variables.get(other).cloned(),
    };
    let owner_named = lookup(OWNER).is_some_and(|owner| !owner.trim().is_empty());
    let mut config = Config::from_lookup(lookup).map_err(|e| match source.stack {
        Some(stack) => format!("stack {stack}'s function: {e}"),
        None => format!("configuration: {e} (pass --stack, or --table/--bus, or set it)"),
    })?;
    config.mutating_calls_per_second = config.mutating_calls_per_second.or(Some(CLI_PACE));
    Ok(Deployment {
        config,
        stack: source.stack.map(str::to_owned),
        owner_named,
    })
}

/// The deployed function's environment: CloudFormation names the function
/// of the stack, Lambda has its variables.
async fn stack_variables(stack: &str, sdk: &SdkConfig) -> Result<HashMap<String, String>, String> {
    let cloudformation = aws_sdk_cloudformation::Client::new(sdk);
    let resource = cloudformation
        .describe_stack_resource()
        .stack_name(stack)
        .logical_resource_id(STACK_FUNCTION)
        .send()
        .await
        .map_err(|e| {
            format!(
                "could not find the function of stack {stack}: {}",
                aws_sdk_cloudformation::error::DisplayErrorContext(e)
            )
        })?;
    let function = resource
        .stack_resource_detail()
        .and_then(|detail| detail.physical_resource_id())
        .ok_or_else(|| format!("stack {stack} has no {STACK_FUNCTION} yet"))?
        .to_owned();
    let lambda = aws_sdk_lambda::Client::new(sdk);
    let configuration = lambda
        .get_function_configuration()
        .function_name(&function)
        .send()
        .await
        .map_err(|e| {
            format!(
                "could not read the configuration of function {function}: {}",
                aws_sdk_lambda::error::DisplayErrorContext(e)
            )
        })?;
    Ok(configuration
        .environment()
        .and_then(|environment| environment.variables())
        .cloned()
        .unwrap_or_default())
}

/// The caller's identity: what a create or remove from the terminal is
/// accountable to (`requestedBy`), and the account a confirmation names.
pub async fn operator(sdk: &SdkConfig) -> Result<Operator, String> {
    let identity = aws_sdk_sts::Client::new(sdk)
        .get_caller_identity()
        .send()
        .await
        .map_err(|e| {
            format!(
                "could not tell who you are (sts:GetCallerIdentity): {}",
                aws_sdk_sts::error::DisplayErrorContext(e)
            )
        })?;
    match (identity.arn(), identity.account()) {
        (Some(arn), Some(account)) => Ok(Operator {
            arn: arn.to_owned(),
            account: account.to_owned(),
        }),
        _ => Err("sts:GetCallerIdentity answered without an ARN or account".into()),
    }
}
