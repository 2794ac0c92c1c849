//! What `#[derive(Classify)]` decides for each form of marking.

use flow_runtime as flow;
use flow_runtime::{Classify, ErrorClass};
use std::io;
use std::time::Duration;

#[derive(Debug, flow::Classify)]
#[allow(dead_code)] // the payloads are for Debug only
enum ApiError {
    #[flow(transient)]
    Unavailable,
    #[flow(transient, retry_after = "1m30s")]
    RateLimited,
    #[flow(transient)]
    Throttled {
        #[flow(retry_after)]
        wait: Duration,
    },
    #[flow(transient)]
    Busy(#[flow(retry_after)] Option<Duration>),
    #[flow(permanent)]
    Invalid(String),
    NotFound,
    #[flow(transparent)]
    Io(io::Error),
    #[flow(transparent)]
    Nested {
        inner: Box<ApiError>,
    },
}

#[derive(Debug, flow::Classify)]
#[flow(transient, retry_after = "500ms")]
struct Overloaded;

#[derive(Debug, flow::Classify)]
struct Rejected {
    _reason: String,
}

#[derive(Debug, flow::Classify)]
#[flow(transparent)]
struct Wrapped(io::Error);

#[test]
fn transient_variants_are_transient_without_a_delay() {
    assert_eq!(ApiError::Unavailable.class(), ErrorClass::Transient);
    assert_eq!(ApiError::Unavailable.retry_after(), None);
}

#[test]
fn unmarked_and_permanent_variants_are_permanent() {
    for error in [ApiError::NotFound, ApiError::Invalid("no email".into())] {
        assert_eq!(error.class(), ErrorClass::Permanent);
        assert_eq!(error.retry_after(), None);
    }
    let rejected = Rejected {
        _reason: "no".into(),
    };
    assert_eq!(rejected.class(), ErrorClass::Permanent);
}

#[test]
fn constant_retry_after_is_returned() {
    assert_eq!(ApiError::RateLimited.class(), ErrorClass::Transient);
    assert_eq!(
        ApiError::RateLimited.retry_after(),
        Some(Duration::from_secs(90))
    );
    assert_eq!(Overloaded.class(), ErrorClass::Transient);
    assert_eq!(Overloaded.retry_after(), Some(Duration::from_millis(500)));
}

#[test]
fn field_retry_after_is_read_from_the_value() {
    let throttled = ApiError::Throttled {
        wait: Duration::from_secs(7),
    };
    assert_eq!(throttled.class(), ErrorClass::Transient);
    assert_eq!(throttled.retry_after(), Some(Duration::from_secs(7)));
    let busy = ApiError::Busy(Some(Duration::from_millis(250)));
    assert_eq!(busy.retry_after(), Some(Duration::from_millis(250)));
    assert_eq!(ApiError::Busy(None).retry_after(), None);
    assert_eq!(ApiError::Busy(None).class(), ErrorClass::Transient);
}

#[test]
fn transparent_delegates_to_the_field() {
    let timed_out = ApiError::Io(io::Error::from(io::ErrorKind::TimedOut));
    let denied = ApiError::Io(io::Error::from(io::ErrorKind::PermissionDenied));
    assert_eq!(timed_out.class(), ErrorClass::Transient);
    assert_eq!(denied.class(), ErrorClass::Permanent);

    let nested = ApiError::Nested {
        inner: Box::new(ApiError::RateLimited),
    };
    assert_eq!(nested.class(), ErrorClass::Transient);
    assert_eq!(nested.retry_after(), Some(Duration::from_secs(90)));

    let reset = Wrapped(io::Error::from(io::ErrorKind::ConnectionReset));
    let missing = Wrapped(io::Error::from(io::ErrorKind::NotFound));
    assert_eq!(reset.class(), ErrorClass::Transient);
    assert_eq!(missing.class(), ErrorClass::Permanent);
    assert_eq!(reset.retry_after(), None);
}
