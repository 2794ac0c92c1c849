//! Every supported form of `#[derive(Classify)]` compiles.
use flow_runtime as flow;
use std::time::Duration;

#[derive(Debug, flow::Classify)]
pub enum ApiError {
    #[flow(transient)]
    Unavailable,
    #[flow(transient, retry_after = "5s")]
    RateLimited,
    #[flow(transient)]
    Throttled {
        #[flow(retry_after)]
        wait: Duration,
        message: String,
    },
    #[flow(transient)]
    Busy(#[flow(retry_after)] Option<Duration>),
    #[flow(permanent)]
    Invalid(String),
    NotFound,
    #[flow(transparent)]
    Io(std::io::Error),
    #[flow(transparent)]
    Boxed { inner: Box<ApiError> },
}

#[derive(Debug, flow::Classify)]
#[flow(transient)]
pub struct Timeout;

#[derive(Debug, flow::Classify)]
#[flow(transient, retry_after = "1m")]
pub struct Overloaded {
    pub service: String,
}

#[derive(Debug, flow::Classify)]
#[flow(transparent)]
pub struct Wrapped(std::io::Error);

#[derive(Debug, flow::Classify)]
pub struct Rejected {
    pub reason: String,
}

#[derive(Debug, flow::Classify)]
pub enum Never {}

#[derive(Debug, flow::Classify)]
pub enum Generic<E> {
    #[flow(transparent)]
    Inner(E),
    #[flow(transient)]
    Retry,
}

fn main() {
    use flow::Classify;
    let _ = ApiError::Unavailable.class();
    let _ = Timeout.retry_after();
    let _ = Generic::<std::io::Error>::Retry.class();
}
