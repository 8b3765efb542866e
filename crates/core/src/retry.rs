//! The retry policy as arithmetic: whether a failure is worth retrying, and
//! how long to wait before the next attempt. Pure, so the planner and its
//! tests agree on every number.

use jiff::{SignedDuration, Timestamp};
use sha2::{Digest, Sha256};

use crate::api::{AttemptStatus, RetryPolicy};
use crate::reason::FailureReason;

/// How many attempts the policy allows without a person, for a failure like `failed`.
pub fn automatic_attempts(policy: Option<&RetryPolicy>, failed: &AttemptStatus) -> u32 {
    match policy {
        Some(p) if p.enabled && is_retryable(p, failed) => 1 + p.limit,
        _ => 1,
    }
}

/// A failure is retryable unless `retryOn` narrows retries and the failure
/// matches none of it. Reasons match as `FailureReason::matched_by` says
/// (an alias is its reason; `StartTimeout` matches every start failure).
pub fn is_retryable(policy: &RetryPolicy, failed: &AttemptStatus) -> bool {
    // A cancelled attempt is never retried, whatever the policy says.
    if failed.reason.as_deref() == Some(FailureReason::Cancelled.as_str()) {
        return false;
    }
    let Some(on) = &policy.retry_on else {
        return true;
    };
    let code_matches = failed
        .exit_code
        .is_some_and(|code| on.exit_codes.contains(&code));
    let reason_matches = failed
        .reason
        .as_deref()
        .is_some_and(|r| on.reasons.iter().any(|x| reason_matches(r, x)));
    code_matches || reason_matches
}

/// Whether the recorded reason `recorded` is matched by the listed `listed`.
fn reason_matches(recorded: &str, listed: &str) -> bool {
    match (FailureReason::parse(recorded), FailureReason::parse(listed)) {
        (Some(r), Some(l)) => r.matched_by(l),
        // A reason outside the vocabulary (an older status) matches itself only.
        _ => recorded == listed,
    }
}

/// The wait after the `failed_attempt`-th failure (1-based) before the next attempt.
/// `seed` makes jitter differ between steps yet stay the same on every
/// evaluation, so a restarted operator computes the same schedule.
pub fn delay_after(
    policy: &RetryPolicy,
    failed_attempt: u32,
    seed: &str,
    action: &str,
) -> SignedDuration {
    let base_ms = f64::from(policy.delay_seconds) * 1000.0;
    let factor = policy.backoff_factor.unwrap_or(1.0).max(1.0);
    let exponent = i32::try_from(failed_attempt.saturating_sub(1)).unwrap_or(i32::MAX);
    let cap_ms = policy.max_delay_seconds.map(|max| f64::from(max) * 1000.0);
    let mut ms = base_ms * factor.powi(exponent);
    if let Some(cap) = cap_ms {
        ms = ms.min(cap);
    }
    if let Some(pct) = policy.jitter_percent.filter(|p| *p > 0) {
        ms += ms * f64::from(pct.min(100)) / 100.0 * unit_fraction(seed, action, failed_attempt);
    }
    // The cap bounds the jittered delay too: `maxDelaySeconds` is the longest
    // wait a person can be promised. (The delay before jitter is already
    // capped, so this never shortens it.)
    if let Some(cap) = cap_ms {
        ms = ms.min(cap);
    }
    // Capped at a day, the schema's largest delay, so the cast is exact.
    SignedDuration::from_millis(ms.clamp(0.0, 86_400_000.0).round() as i64)
}

/// When the attempt after `failed` is due: `delay_after` its failure, counted
/// from when the operator first saw it fail (or `now` when that is not
/// recorded yet). The planner schedules with it and the shell's metrics
/// measure lateness against it, so both read one number.
pub fn due(
    policy: &RetryPolicy,
    failed: &AttemptStatus,
    seed: &str,
    action: &str,
    now: Timestamp,
) -> Timestamp {
    failed.failure_seen_at.unwrap_or(now) + delay_after(policy, failed.number, seed, action)
}

/// The wait before trying again to create a Job the API server refused for
/// now (quota, forbidden, throttled, its own error): 1 s after the first
/// refusal, doubling, at most a minute.
pub fn refusal_backoff(refusals: u32) -> SignedDuration {
    let exponent = refusals.saturating_sub(1).min(6);
    SignedDuration::from_secs((1i64 << exponent).min(60))
}

/// A number in [0, 1) derived from its inputs alone.
fn unit_fraction(seed: &str, action: &str, attempt: u32) -> f64 {
    let digest = Sha256::new()
        .chain_update(seed.as_bytes())
        .chain_update([0])
        .chain_update(action.as_bytes())
        .chain_update(attempt.to_be_bytes())
        .finalize();
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest[..8]);
    (u64::from_be_bytes(bytes) >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{Outcome, RetryOn};

    fn failed(code: Option<i32>, reason: &str) -> AttemptStatus {
        AttemptStatus {
            number: 1,
            outcome: Outcome::Failed,
            exit_code: code,
            reason: Some(reason.into()),
            ..Default::default()
        }
    }

    #[test]
    fn default_policy_waits_fifteen_seconds_three_times() {
        let p = RetryPolicy::default();
        assert_eq!(automatic_attempts(Some(&p), &failed(Some(1), "Error")), 4);
        for k in 1..=3 {
            assert_eq!(
                delay_after(&p, k, "uid", "a"),
                SignedDuration::from_secs(15)
            );
        }
    }

    #[test]
    fn no_policy_or_disabled_means_one_attempt() {
        let f = failed(Some(1), "Error");
        assert_eq!(automatic_attempts(None, &f), 1);
        let p = RetryPolicy {
            enabled: false,
            ..Default::default()
        };
        assert_eq!(automatic_attempts(Some(&p), &f), 1);
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let p = RetryPolicy {
            delay_seconds: 2,
            backoff_factor: Some(2.0),
            max_delay_seconds: Some(5),
            ..Default::default()
        };
        let secs: Vec<i64> = (1..=4)
            .map(|k| delay_after(&p, k, "s", "a").as_millis() as i64)
            .collect();
        assert_eq!(secs, vec![2000, 4000, 5000, 5000]);
    }

    #[test]
    fn jitter_only_lengthens_and_is_stable() {
        let p = RetryPolicy {
            delay_seconds: 10,
            jitter_percent: Some(50),
            ..Default::default()
        };
        for k in 1..=10 {
            let d = delay_after(&p, k, "seed", "a");
            assert!(d >= SignedDuration::from_secs(10) && d <= SignedDuration::from_secs(15));
            assert_eq!(d, delay_after(&p, k, "seed", "a"));
        }
        assert_ne!(delay_after(&p, 1, "x", "a"), delay_after(&p, 1, "y", "a"));
    }

    #[test]
    fn refusals_back_off_up_to_a_minute() {
        let secs: Vec<i64> = [1, 2, 3, 4, 7, 8, 100]
            .iter()
            .map(|n| refusal_backoff(*n).as_secs())
            .collect();
        assert_eq!(secs, vec![1, 2, 4, 8, 60, 60, 60]);
    }

    #[test]
    fn jitter_never_exceeds_the_cap() {
        let p = RetryPolicy {
            delay_seconds: 10,
            max_delay_seconds: Some(10),
            jitter_percent: Some(100),
            ..Default::default()
        };
        for k in 1..=10 {
            assert_eq!(
                delay_after(&p, k, "seed", "a"),
                SignedDuration::from_secs(10)
            );
        }
    }

    proptest::proptest! {
        #[test]
        fn delay_stays_between_the_base_and_the_cap(
            delay in 0u32..100, extra in 0u32..200, factor in 1.0f64..10.0,
            jitter in 0u32..=100, k in 1u32..12, seed in "[a-z0-9]{1,12}",
        ) {
            let max = delay + extra;
            let p = RetryPolicy {
                delay_seconds: delay,
                backoff_factor: Some(factor),
                max_delay_seconds: Some(max),
                jitter_percent: Some(jitter),
                ..Default::default()
            };
            let d = delay_after(&p, k, &seed, "a");
            proptest::prop_assert!(d <= SignedDuration::from_secs(i64::from(max)), "{d:?} over {max}s");
            proptest::prop_assert!(d >= SignedDuration::from_secs(i64::from(delay)), "{d:?} under {delay}s");
        }
    }

    #[test]
    fn retry_on_narrows_what_is_retried() {
        let p = RetryPolicy {
            retry_on: Some(RetryOn {
                exit_codes: vec![75],
                reasons: vec!["DeadlineExceeded".into()],
            }),
            ..Default::default()
        };
        assert!(is_retryable(&p, &failed(Some(75), "Error")));
        assert!(is_retryable(&p, &failed(None, "DeadlineExceeded")));
        assert!(!is_retryable(&p, &failed(Some(1), "Error")));
        assert!(!is_retryable(
            &RetryPolicy::default(),
            &failed(None, "Cancelled")
        ));
        assert_eq!(automatic_attempts(Some(&p), &failed(Some(1), "Error")), 1);
    }

    #[test]
    fn start_timeout_matches_every_start_failure_and_aliases_their_reason() {
        let on = |reasons: &[&str]| RetryPolicy {
            retry_on: Some(RetryOn {
                exit_codes: vec![],
                reasons: reasons.iter().map(|r| r.to_string()).collect(),
            }),
            ..Default::default()
        };
        let timeout = on(&["StartTimeout"]);
        for r in [
            "StartTimeout",
            "ImagePullBackOff",
            "Unschedulable",
            "FailedCreate",
        ] {
            assert!(is_retryable(&timeout, &failed(None, r)), "{r}");
        }
        assert!(!is_retryable(&timeout, &failed(Some(1), "Error")));
        assert!(is_retryable(
            &on(&["ErrImagePull"]),
            &failed(None, "ImagePullBackOff")
        ));
        assert!(!is_retryable(
            &on(&["ImagePullBackOff"]),
            &failed(None, "StartTimeout")
        ));
        // A reason outside the vocabulary matches only itself.
        assert!(!is_retryable(&on(&["Error"]), &failed(None, "Weird")));
    }
}
