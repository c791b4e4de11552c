//! When a failing watch tries again, and when a refusal is taken as final.
//!
//! An API server that has just started answers 403 for a few seconds (its authorization caches
//! are not loaded yet), a token being rotated gives 401, and a kind whose CRD is being installed
//! gives 404: each is a refusal that usually goes away. So a refusal is retried like any other
//! error, with exponential backoff and jitter, and only a refusal that persists
//! ([`Policy::give_up_after`] of consecutive refusals, no success in between) is final. The
//! decision is a pure state machine with the clock passed in; the async shells only sleep and ask.

use std::time::{Duration, Instant};

/// What kind of failure a watch or a discovery request met.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// The API server refused: 401, 403, or 404 (the kind is not served, or not yet). The code.
    Refused(u16),
    /// Anything else (connection refused, timeouts, 5xx, 410 Gone): retried for ever.
    Other,
}

/// The codes that are refusals: transient at first, final when they persist.
pub fn is_refusal(code: u16) -> bool {
    matches!(code, 401 | 403 | 404)
}

impl Failure {
    pub fn of_status(code: u16) -> Failure {
        if is_refusal(code) {
            Failure::Refused(code)
        } else {
            Failure::Other
        }
    }

    pub fn of_kube(error: &kube::Error) -> Failure {
        match error {
            kube::Error::Api(status) => Failure::of_status(status.code),
            // Discovery answered, but the group/version does not serve the kind: a CRD not
            // installed yet reads like a 404.
            kube::Error::Discovery(_) => Failure::Refused(404),
            _ => Failure::Other,
        }
    }

    pub fn of_watcher(error: &kube::runtime::watcher::Error) -> Failure {
        use kube::runtime::watcher::Error as E;
        match error {
            E::InitialListFailed(e) | E::WatchStartFailed(e) | E::WatchFailed(e) => {
                Failure::of_kube(e)
            }
            E::WatchError(status) => Failure::of_status(status.code),
            E::NoResourceVersion => Failure::Other,
        }
    }
}

/// Backoff and give-up settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    /// The first delay; each failure in a row doubles it.
    pub first: Duration,
    /// The longest delay.
    pub max: Duration,
    /// Refusals for this long, with no success in between, are final.
    pub give_up_after: Duration,
}

impl Default for Policy {
    /// 1 s doubling to 60 s; five minutes of refusals outlast any API-server start-up (its 403s
    /// last seconds) and a CRD installation, yet a missing RBAC rule is reported the same hour.
    fn default() -> Self {
        Policy {
            first: Duration::from_secs(1),
            max: Duration::from_secs(60),
            give_up_after: Duration::from_secs(300),
        }
    }
}

/// What to do after a failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Try again after this long.
    Retry(Duration),
    /// The refusal (this code) has persisted: it is final. Given once per run of refusals; a
    /// caller that keeps going anyway gets [`Decision::Retry`] at the longest delay after it.
    GiveUp(u16),
}

/// The retry state of one watch (or one discovery request).
#[derive(Clone, Debug)]
pub struct Backoff {
    policy: Policy,
    /// Failures in a row since the last success.
    failures: u32,
    /// When the current run of refusals started (cleared by a success).
    refused_since: Option<Instant>,
    given_up: bool,
    /// Failed since it last delivered (or was re-established and stayed quiet): what it
    /// watches may have changed unseen.
    interrupted: bool,
    /// A retry delay [`crate::watch::next_event`] has yet to sleep: it returns at a watch's
    /// first failure, so that its caller can mark the gap, and sleeps on its next call.
    deferred: Option<Duration>,
    /// xorshift state for the jitter, seeded by the caller: no global random source.
    rng: u64,
}

impl Backoff {
    pub fn new(policy: Policy, seed: u64) -> Self {
        Backoff {
            policy,
            failures: 0,
            refused_since: None,
            given_up: false,
            interrupted: false,
            deferred: None,
            // xorshift must not start at 0.
            rng: seed | 1,
        }
    }

    /// Seeded from fresh hasher keys (std's, random per process and distinct per call) and the
    /// clock, so that watches that failed together (an API-server restart) do not retry together.
    pub fn seeded(policy: Policy) -> Self {
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos() as u64,
        );
        Backoff::new(policy, h.finish())
    }

    /// Failures in a row since the last success.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// Whether the current run of refusals has been given up.
    pub fn given_up(&self) -> bool {
        self.given_up
    }

    /// The watch delivered something: the failures are over. Returns whether it had been given
    /// up (its refusal, if reported, should be withdrawn).
    pub fn succeeded(&mut self) -> bool {
        let was = self.given_up;
        self.failures = 0;
        self.refused_since = None;
        self.given_up = false;
        self.interrupted = false;
        was
    }

    /// Whether the watch failed since it last delivered (or was re-established and stayed
    /// quiet, see [`Backoff::resumed`]).
    pub fn interrupted(&self) -> bool {
        self.interrupted
    }

    /// The watch is established again without delivering anything: nothing changed meanwhile.
    /// Its failures still count towards the next delay, since nothing proved it works.
    pub fn resumed(&mut self) {
        self.interrupted = false;
    }

    /// Keeps `delay` to be slept before the next try.
    pub fn defer(&mut self, delay: Duration) {
        self.deferred = Some(delay);
    }

    pub fn take_deferred(&mut self) -> Option<Duration> {
        self.deferred.take()
    }

    pub fn failed(&mut self, now: Instant, failure: Failure) -> Decision {
        self.failures = self.failures.saturating_add(1);
        self.interrupted = true;
        if let Failure::Refused(code) = failure {
            let since = *self.refused_since.get_or_insert(now);
            if !self.given_up && now.saturating_duration_since(since) >= self.policy.give_up_after {
                self.given_up = true;
                return Decision::GiveUp(code);
            }
        }
        Decision::Retry(self.delay())
    }

    /// `first * 2^(failures-1)`, capped, then "equal jitter": somewhere in its upper half, so
    /// the delay still grows but simultaneous failures spread out.
    fn delay(&mut self) -> Duration {
        let doublings = self.failures.saturating_sub(1).min(31);
        let full = self
            .policy
            .first
            .saturating_mul(1u32 << doublings)
            .min(self.policy.max);
        let fraction = (self.next_random() >> 11) as f64 / (1u64 << 53) as f64;
        full / 2 + full.div_f64(2.0).mul_f64(fraction)
    }

    fn next_random(&mut self) -> u64 {
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng = x;
        x
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    fn retry(d: Decision) -> Duration {
        match d {
            Decision::Retry(d) => d,
            other => panic!("expected a retry, got {other:?}"),
        }
    }

    #[test]
    fn delays_double_from_one_second_to_a_minute_with_jitter() {
        let mut b = Backoff::new(Policy::default(), 7);
        let t0 = Instant::now();
        let mut previous_cap = Duration::ZERO;
        for n in 0..12u32 {
            let d = retry(b.failed(t0, Failure::Other));
            let cap = secs(1u64 << n.min(6)).min(secs(60));
            assert!(
                d >= cap / 2 && d <= cap,
                "failure {n}: {d:?} not in [{:?}, {cap:?}]",
                cap / 2
            );
            assert!(cap >= previous_cap);
            previous_cap = cap;
        }
        // Jitter: two watches failing together do not wait alike.
        let mut a = Backoff::new(Policy::default(), 1);
        let mut c = Backoff::new(Policy::default(), 2);
        let waits_a: Vec<_> = (0..6)
            .map(|_| retry(a.failed(t0, Failure::Other)))
            .collect();
        let waits_c: Vec<_> = (0..6)
            .map(|_| retry(c.failed(t0, Failure::Other)))
            .collect();
        assert_ne!(waits_a, waits_c);
    }

    #[test]
    fn a_success_starts_the_delays_again() {
        let mut b = Backoff::new(Policy::default(), 3);
        let t0 = Instant::now();
        for _ in 0..10 {
            b.failed(t0, Failure::Other);
        }
        assert!(!b.succeeded());
        assert!(retry(b.failed(t0, Failure::Other)) <= secs(1));
    }

    #[test]
    fn refusals_during_an_api_server_start_are_retried() {
        // 403 for 20 s after a restart, then the watch lists again.
        let mut b = Backoff::new(Policy::default(), 11);
        let t0 = Instant::now();
        let mut t = t0;
        while t < t0 + secs(20) {
            t += retry(b.failed(t, Failure::Refused(403)));
        }
        assert!(!b.given_up());
        assert!(!b.succeeded(), "a watch that recovers reports nothing");
    }

    #[test]
    fn refusals_that_persist_are_given_up_once() {
        let mut b = Backoff::new(Policy::default(), 5);
        let t0 = Instant::now();
        let mut t = t0;
        let gave_up_at = loop {
            match b.failed(t, Failure::Refused(403)) {
                Decision::Retry(d) => t += d,
                Decision::GiveUp(code) => break (t, code),
            }
        };
        assert_eq!(gave_up_at.1, 403);
        assert!(gave_up_at.0 >= t0 + secs(300));
        assert!(gave_up_at.0 <= t0 + secs(360), "{:?}", gave_up_at.0 - t0);
        // Once: a caller that keeps trying waits the longest delay, with no second give-up.
        assert!(retry(b.failed(t + secs(60), Failure::Refused(403))) >= secs(30));
        // A success after the give-up says so, so the report can be withdrawn.
        assert!(b.succeeded());
        assert!(!b.given_up());
    }

    #[test]
    fn a_success_between_refusals_restarts_the_count() {
        let mut b = Backoff::new(Policy::default(), 9);
        let t0 = Instant::now();
        b.failed(t0, Failure::Refused(404));
        b.failed(t0 + secs(200), Failure::Refused(404));
        b.succeeded();
        // 400 s after the first refusal, but only 100 s into this run of them.
        retry(b.failed(t0 + secs(300), Failure::Refused(404)));
        retry(b.failed(t0 + secs(400), Failure::Refused(404)));
        assert_eq!(
            b.failed(t0 + secs(600), Failure::Refused(404)),
            Decision::GiveUp(404)
        );
    }

    #[test]
    fn other_errors_are_never_final() {
        let mut b = Backoff::new(Policy::default(), 13);
        let t0 = Instant::now();
        for h in 0..48 {
            retry(b.failed(t0 + secs(h * 3600), Failure::Other));
        }
        assert!(!b.given_up());
    }

    #[test]
    fn status_codes_are_classified() {
        assert_eq!(Failure::of_status(403), Failure::Refused(403));
        assert_eq!(Failure::of_status(401), Failure::Refused(401));
        assert_eq!(Failure::of_status(404), Failure::Refused(404));
        assert_eq!(Failure::of_status(410), Failure::Other);
        assert_eq!(Failure::of_status(500), Failure::Other);
        let forbidden = kube::runtime::watcher::Error::InitialListFailed(kube::Error::Api(
            Box::new(kube::core::Status::failure("forbidden", "Forbidden").with_code(403)),
        ));
        assert_eq!(Failure::of_watcher(&forbidden), Failure::Refused(403));
        let missing =
            kube::Error::Discovery(kube::error::DiscoveryError::MissingKind("Rollout".into()));
        assert_eq!(Failure::of_kube(&missing), Failure::Refused(404));
    }
}
