//! Retry policies: how many attempts a step gets and how long it waits between them.
//!
//! This module computes delays and holds the table of named policies; it does not sleep or
//! persist anything (the step executor does both, so a crash during backoff resumes correctly).

use crate::engine::registry::RetrySpec;
use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

/// How a step is retried after a transient error.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RetryPolicy {
    /// Total attempts, the first one included. `1` means no retry.
    pub attempts: u32,
    /// Delay before the second attempt (before jitter).
    #[serde(with = "millis")]
    pub initial: Duration,
    /// Upper bound of any delay.
    #[serde(with = "millis")]
    pub max: Duration,
    /// Growth of the delay from one attempt to the next.
    pub multiplier: f64,
    /// Full jitter: each delay is drawn uniformly from zero to the computed delay.
    pub jitter: bool,
}

impl RetryPolicy {
    /// The built-in `"transient"` policy: 4 attempts, exponential backoff from 1 s to 20 s, full
    /// jitter.
    pub const TRANSIENT: RetryPolicy = RetryPolicy {
        attempts: 4,
        initial: Duration::from_secs(1),
        max: Duration::from_secs(20),
        multiplier: 2.0,
        jitter: true,
    };

    /// The built-in `"none"` policy: one attempt.
    pub const NONE: RetryPolicy = RetryPolicy {
        attempts: 1,
        initial: Duration::ZERO,
        max: Duration::ZERO,
        multiplier: 1.0,
        jitter: false,
    };

    /// The delay after failed attempt number `attempt` (1-based), before jitter.
    pub fn base_delay(&self, attempt: u32) -> Duration {
        let exp = self
            .multiplier
            .max(1.0)
            .powi(attempt.saturating_sub(1).min(64) as i32);
        let secs = (self.initial.as_secs_f64() * exp).min(self.max.as_secs_f64());
        Duration::try_from_secs_f64(secs).unwrap_or(self.max)
    }

    /// The delay after failed attempt number `attempt`, jitter applied, never shorter than a
    /// retry-after the error asked for.
    pub fn delay(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        let base = self.base_delay(attempt);
        let delay = if self.jitter {
            base.mul_f64(fastrand::f64())
        } else {
            base
        };
        match retry_after {
            Some(floor) => delay.max(floor),
            None => delay,
        }
    }
}

/// The named policies (`retry = "transient"`), tunable at run time.
#[derive(Clone, Debug)]
pub struct RetryPolicies {
    named: HashMap<String, RetryPolicy>,
}

impl Default for RetryPolicies {
    fn default() -> Self {
        let mut named = HashMap::new();
        named.insert("transient".to_owned(), RetryPolicy::TRANSIENT);
        named.insert("none".to_owned(), RetryPolicy::NONE);
        RetryPolicies { named }
    }
}

impl RetryPolicies {
    /// Replaces (or adds) a named policy.
    pub fn set(&mut self, name: impl Into<String>, policy: RetryPolicy) {
        self.named.insert(name.into(), policy);
    }

    /// The policy of that name.
    pub fn get(&self, name: &str) -> Option<&RetryPolicy> {
        self.named.get(name)
    }

    /// The policy a step declared: a named one from this table (settings may have tuned it), an
    /// inline one as written. An unknown name (the macro only allows known ones) falls back to
    /// `transient`.
    pub fn resolve(&self, spec: &RetrySpec) -> RetryPolicy {
        match *spec {
            RetrySpec::Named(name) => self.get(name).cloned().unwrap_or_else(|| {
                tracing::warn!(policy = name, "unknown retry policy; using `transient`");
                RetryPolicy::TRANSIENT
            }),
            RetrySpec::Inline {
                attempts,
                initial_ms,
                max_ms,
                multiplier,
                jitter,
            } => RetryPolicy {
                attempts,
                initial: Duration::from_millis(initial_ms),
                max: Duration::from_millis(max_ms),
                multiplier,
                jitter,
            },
        }
    }
}

/// `4 attempts, 1s to 20s ×2 with jitter`, or `one attempt`.
impl fmt::Display for RetryPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.attempts <= 1 {
            return f.write_str("one attempt");
        }
        write!(
            f,
            "{} attempts, {} to {} ×{}{}",
            self.attempts,
            humantime::format_duration(self.initial),
            humantime::format_duration(self.max),
            self.multiplier,
            if self.jitter { " with jitter" } else { "" }
        )
    }
}

mod millis {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis() as u64)
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_millis(u64::deserialize(d)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transient_policy_grows_and_caps() {
        let p = RetryPolicy::TRANSIENT;
        assert_eq!(p.base_delay(1), Duration::from_secs(1));
        assert_eq!(p.base_delay(2), Duration::from_secs(2));
        assert_eq!(p.base_delay(3), Duration::from_secs(4));
        assert_eq!(p.base_delay(10), Duration::from_secs(20));
        for _ in 0..100 {
            assert!(p.delay(3, None) <= Duration::from_secs(4));
        }
        assert!(p.delay(1, Some(Duration::from_secs(7))) >= Duration::from_secs(7));
    }
}
