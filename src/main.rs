//! The Lambda entry point: read the configuration, build the AWS clients once,
//! and serve every source: direct invokes, SQS batches and EventBridge events.

use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::Value;
use tracing::Instrument;
use traffic_mirroring::{app, config::Config, deadline};

#[tokio::main]
async fn main() -> Result<(), Error> {
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        // The invocation span carries the request id onto every line.
        .with_current_span(true)
        .with_span_list(false)
        .without_time()
        .init();
    let config = Config::from_env()?;
    let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let app = app::build(&sdk, &config);
    let app = &app;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        let span = tracing::info_span!("invocation", request_id = %event.context.request_id);
        let deadline = deadline::from_unix_millis(event.context.deadline);
        deadline::within(deadline, app.invoke(event.payload))
            .instrument(span)
            .await
            .map_err(Error::from)
    }))
    .await
}
