//! Error classification: whether a failed attempt is worth retrying.
//!
//! The class lives in the error's type (`Classify`), never in its message, so validation errors are
//! never retried by accident. This module owns the trait, its derive's contract, the `std::io::Error`
//! impl and `Failure`, the plain wrapper for errors that have no type of their own.

use std::error::Error as StdError;
use std::fmt;
use std::time::Duration;

pub use crate::store::ErrorClass;

/// Tells flow whether an error is worth retrying.
///
/// Derive it for your error enums and mark the retryable variants; anything unmarked is permanent:
///
/// ```
/// use flow_runtime as flow;
///
/// #[derive(Debug, flow::Classify)]
/// enum SyncError {
///     #[flow(transient)]
///     Unavailable,
///     #[flow(transient, retry_after = "5s")]
///     RateLimited,
///     Invalid(String),
/// }
///
/// use flow::{Classify, ErrorClass};
/// assert_eq!(SyncError::Unavailable.class(), ErrorClass::Transient);
/// assert_eq!(SyncError::Invalid("no email".into()).class(), ErrorClass::Permanent);
/// assert_eq!(SyncError::RateLimited.retry_after(), Some(std::time::Duration::from_secs(5)));
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` does not implement `flow::Classify`, so flow cannot tell a transient error from a permanent one",
    label = "the error type of a retried step must implement `flow::Classify`",
    note = "derive it with `#[derive(flow::Classify)]` and mark retryable variants `#[flow(transient)]`, wrap the error in `flow::Failure`, or give the step `retry = \"none\"`"
)]
pub trait Classify {
    /// The class of this error.
    fn class(&self) -> ErrorClass;

    /// How long the other side asked us to wait before the next attempt (a `Retry-After`), if it
    /// did. The retry policy waits at least this long.
    fn retry_after(&self) -> Option<Duration> {
        None
    }
}

impl<T: Classify + ?Sized> Classify for Box<T> {
    fn class(&self) -> ErrorClass {
        (**self).class()
    }
    fn retry_after(&self) -> Option<Duration> {
        (**self).retry_after()
    }
}

/// Timeouts and connection failures are transient; everything else (not found, permission
/// denied, invalid data, ...) is permanent.
impl Classify for std::io::Error {
    fn class(&self) -> ErrorClass {
        use std::io::ErrorKind::*;
        match self.kind() {
            TimedOut | ConnectionRefused | ConnectionReset | ConnectionAborted | NotConnected
            | BrokenPipe | Interrupted | WouldBlock | UnexpectedEof | AddrInUse
            | AddrNotAvailable | HostUnreachable | NetworkUnreachable | NetworkDown
            | ResourceBusy => ErrorClass::Transient,
            _ => ErrorClass::Permanent,
        }
    }
}

/// A classified error for code whose error type has no class of its own.
///
/// ```
/// use flow_runtime::{Failure, ResultExt};
///
/// fn parse(s: &str) -> Result<u32, Failure> {
///     s.parse::<u32>().permanent()
/// }
/// assert!(parse("x").is_err());
/// let busy = Failure::transient(std::io::Error::other("busy"));
/// assert_eq!(busy.to_string(), "busy");
/// ```
pub struct Failure {
    class: ErrorClass,
    retry_after: Option<Duration>,
    source: Box<dyn StdError + Send + Sync + 'static>,
}

impl Failure {
    /// Wraps an error that a retry may cure.
    pub fn transient(error: impl Into<Box<dyn StdError + Send + Sync + 'static>>) -> Self {
        Failure {
            class: ErrorClass::Transient,
            retry_after: None,
            source: error.into(),
        }
    }

    /// Wraps an error that a retry cannot cure.
    pub fn permanent(error: impl Into<Box<dyn StdError + Send + Sync + 'static>>) -> Self {
        Failure {
            class: ErrorClass::Permanent,
            retry_after: None,
            source: error.into(),
        }
    }

    /// Asks the retry policy to wait at least `delay` before the next attempt.
    pub fn with_retry_after(mut self, delay: Duration) -> Self {
        self.retry_after = Some(delay);
        self
    }

    /// The wrapped error.
    pub fn inner(&self) -> &(dyn StdError + Send + Sync + 'static) {
        &*self.source
    }
}

impl fmt::Debug for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Failure")
            .field("class", &self.class)
            .field("retry_after", &self.retry_after)
            .field("source", &self.source)
            .finish()
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.source, f)
    }
}

impl StdError for Failure {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        Some(&*self.source)
    }
}

impl Classify for Failure {
    fn class(&self) -> ErrorClass {
        self.class
    }
    fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }
}

/// Classifies the error of a `Result` in place: `call().transient()?`.
pub trait ResultExt<T> {
    /// Marks the error as transient.
    fn transient(self) -> Result<T, Failure>;
    /// Marks the error as permanent.
    fn permanent(self) -> Result<T, Failure>;
}

impl<T, E: Into<Box<dyn StdError + Send + Sync + 'static>>> ResultExt<T> for Result<T, E> {
    fn transient(self) -> Result<T, Failure> {
        self.map_err(Failure::transient)
    }
    fn permanent(self) -> Result<T, Failure> {
        self.map_err(Failure::permanent)
    }
}

/// The error of an attempt that ran past the step's `timeout`. It is transient.
///
/// A step with a `timeout` needs an error type that can hold this one
/// (`impl From<flow::StepTimeout> for MyError`), so that the last timed-out attempt can be reported
/// to the workflow as an ordinary step error.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the attempt timed out after {:?}", .after)]
pub struct StepTimeout {
    /// The step's per-attempt limit.
    pub after: Duration,
}

/// A timed-out attempt wrapped as a transient `Failure`, so steps returning `Failure` can have a
/// `timeout`.
/// A failure as recorded for replay: its class, retry-after and message (the source error's
/// type is not kept; a replayed failure displays the same text).
#[derive(serde::Serialize, serde::Deserialize)]
struct RecordedFailure {
    class: ErrorClass,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    retry_after_ms: Option<u64>,
    message: String,
}

impl serde::Serialize for Failure {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        RecordedFailure {
            class: self.class,
            retry_after_ms: self.retry_after.map(|d| d.as_millis() as u64),
            message: self.source.to_string(),
        }
        .serialize(serializer)
    }
}

impl<'de> serde::Deserialize<'de> for Failure {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let recorded = RecordedFailure::deserialize(deserializer)?;
        Ok(Failure {
            class: recorded.class,
            retry_after: recorded.retry_after_ms.map(Duration::from_millis),
            source: recorded.message.into(),
        })
    }
}

impl From<StepTimeout> for Failure {
    fn from(timeout: StepTimeout) -> Self {
        Failure::transient(timeout)
    }
}

impl Classify for StepTimeout {
    fn class(&self) -> ErrorClass {
        ErrorClass::Transient
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_errors_are_classified_by_kind() {
        let t = std::io::Error::from(std::io::ErrorKind::TimedOut);
        let p = std::io::Error::from(std::io::ErrorKind::PermissionDenied);
        assert_eq!(t.class(), ErrorClass::Transient);
        assert_eq!(p.class(), ErrorClass::Permanent);
    }
}
