//! The one table that classifies AWS errors, by code, for every adapter.

use std::future::Future;

use aws_sdk_ec2::config::http::HttpResponse;
use aws_sdk_ec2::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};

use crate::deadline;
use crate::ports::{AwsError, AwsResult, ErrorKind};

pub use crate::ports::THROTTLING;

/// The other codes that mean "try again later": a conflict, or a failure of
/// the service (which may have done the work all the same).
const TRANSIENT: &[&str] = &[
    "LimitExceededException",
    "TransactionConflictException",
    "InternalError",
    "InternalFailure",
    "InternalServerError",
    "InternalServerException",
    "ServiceUnavailable",
    "ServiceUnavailableException",
    "Unavailable",
];

const IN_USE: &[&str] = &[
    "TrafficMirrorTargetInUseException",
    "TrafficMirrorFilterInUse",
    "DependencyViolation",
];

pub fn kind_of(code: &str, http_status: u16) -> ErrorKind {
    if THROTTLING.contains(&code) || TRANSIENT.contains(&code) || http_status >= 500 {
        ErrorKind::Transient
    } else if code.ends_with(".NotFound") || code == "ResourceNotFoundException" {
        ErrorKind::NotFound
    } else if code == "ConditionalCheckFailedException" {
        ErrorKind::ConditionFailed
    } else if IN_USE.contains(&code) {
        ErrorKind::InUse
    } else if code.starts_with("TrafficMirror") && code.ends_with("LimitExceeded") {
        ErrorKind::Quota
    } else {
        ErrorKind::Rejected
    }
}

/// Turns any SDK error into our `AwsError`, keeping AWS's code and message.
pub fn classify<E>(err: SdkError<E, HttpResponse>) -> AwsError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match &err {
        SdkError::ServiceError(service) => {
            let code = service.err().code().unwrap_or("Unknown").to_owned();
            let status = service.raw().status().as_u16();
            let message = service
                .err()
                .message()
                .map(str::to_owned)
                .unwrap_or_else(|| format!("HTTP {status}"));
            let error = AwsError::new(kind_of(&code, status), code, message);
            // A 5xx says the service failed, not that nothing happened.
            if status >= 500 && !THROTTLING.contains(&error.code.as_str()) {
                error.in_doubt()
            } else {
                error
            }
        }
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => AwsError::new(
            ErrorKind::Transient,
            "NetworkError",
            DisplayErrorContext(&err).to_string(),
        )
        .in_doubt(),
        _ => AwsError::new(
            ErrorKind::Rejected,
            "RequestNotSent",
            DisplayErrorContext(&err).to_string(),
        ),
    }
}

/// Every SDK request is sent through this: within the invocation's time
/// budget (`deadline::bounded`, which also cuts the SDK's own retries short),
/// with its error classified.
pub trait WithinBudget<T, E>: Future<Output = Result<T, SdkError<E, HttpResponse>>> + Sized {
    fn within_budget(self) -> impl Future<Output = AwsResult<T>> + Send
    where
        Self: Send,
        T: Send;
}

impl<T, E, F> WithinBudget<T, E> for F
where
    F: Future<Output = Result<T, SdkError<E, HttpResponse>>>,
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    async fn within_budget(self) -> AwsResult<T>
    where
        Self: Send,
        T: Send,
    {
        deadline::bounded(operation_name::<E>(), async { self.await.map_err(classify) }).await
    }
}

/// `PutItem` from `aws_sdk_dynamodb::operation::put_item::PutItemError`.
fn operation_name<E>() -> &'static str {
    let full = std::any::type_name::<E>();
    let last = full.rsplit("::").next().unwrap_or(full);
    last.strip_suffix("Error").unwrap_or(last)
}

/// The next page of a paginated Describe or Query, within the budget.
pub async fn next_page<T, E>(
    call: &str,
    page: impl Future<Output = Option<Result<T, SdkError<E, HttpResponse>>>>,
) -> AwsResult<Option<T>>
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    deadline::bounded(call, async { page.await.transpose().map_err(classify) }).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_map_to_kinds() {
        assert_eq!(kind_of("RequestLimitExceeded", 503), ErrorKind::Transient);
        assert_eq!(kind_of("Anything", 500), ErrorKind::Transient);
        assert_eq!(
            kind_of("InvalidTrafficMirrorSessionId.NotFound", 400),
            ErrorKind::NotFound
        );
        assert_eq!(
            kind_of("TrafficMirrorSessionsPerInterfaceLimitExceeded", 400),
            ErrorKind::Quota
        );
        assert_eq!(kind_of("TrafficMirrorFilterInUse", 400), ErrorKind::InUse);
        assert_eq!(
            kind_of("ConditionalCheckFailedException", 400),
            ErrorKind::ConditionFailed
        );
        assert_eq!(kind_of("InvalidParameterValue", 400), ErrorKind::Rejected);
    }

    #[test]
    fn operations_are_named_from_their_error_type() {
        assert_eq!(
            operation_name::<aws_sdk_ec2::operation::create_traffic_mirror_session::CreateTrafficMirrorSessionError>(),
            "CreateTrafficMirrorSession"
        );
    }
}
