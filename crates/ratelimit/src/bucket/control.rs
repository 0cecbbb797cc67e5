//! The control side: the rate in force from configuration, adaptation and
//! server hints, pauses, and the feedback that drives them.

use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use super::{interval_of, lock, Bucket, TARGET};
use crate::adaptive::Adaptive;
use crate::limiter::{Feedback, Outcome};
use crate::rate::Rate;
use crate::status::{PauseCause, RateSource};

pub(super) struct Control {
    pub(super) configured: Rate,
    pub(super) adaptive: Adaptive,
    /// A server quota: at most this rate until this instant.
    pub(super) quota: Option<(f64, u64)>,
    pub(super) effective: f64,
    pub(super) source: RateSource,
    /// The last rate reported in a tracing event.
    pub(super) logged: f64,
    pub(super) pause_until: u64,
    pub(super) pause_cause: Option<PauseCause>,
}

impl Bucket {
    /// Switches to `interval` nanoseconds per permit without letting a
    /// burst through: the permits owed (the debt on the timeline, and each
    /// waiter's distance to its slot) are kept and re-spaced at the new
    /// rate. A faster rate moves waiters up only when `respace_faster` (an
    /// explicit `set_rate`); adaptive recovery applies to new bookings, so
    /// it never wakes anyone.
    ///
    /// A pause is a fixed instant, not permits owed: only what lies beyond
    /// `paused_until` is re-spaced.
    pub(super) fn set_interval(&self, interval: u64, respace_faster: bool, paused_until: u64) {
        let old = self.hot.rate.load().interval;
        if interval == old {
            return;
        }
        let faster = interval < old;
        let burst = self.hot.rate.load().burst;
        if faster && !respace_faster {
            self.store_rate(interval, burst);
            return;
        }
        let mut queue = lock(&self.queue);
        let base = self.now().max(paused_until);
        let ratio = interval as f64 / old as f64;
        let scale = |t: u64| {
            if t > base {
                base + ((t - base) as f64 * ratio).round() as u64
            } else {
                t
            }
        };
        self.hot.timeline.update(scale);
        self.store_rate(interval, burst);
        for entry in &mut queue.entries {
            entry.ready_at = scale(entry.ready_at);
            entry.cost = (entry.cost as f64 * ratio).round() as u64;
            if faster {
                if let Some(waker) = entry.waker.take() {
                    waker.wake();
                }
            }
        }
    }

    /// Applies the rate the control state calls for.
    pub(super) fn apply(&self, control: &mut Control, now: u64, respace_faster: bool) {
        let configured = control.configured.per_second();
        let (mut rate, mut source) =
            if control.adaptive.adapted() && control.adaptive.rate() < configured {
                (control.adaptive.rate(), RateSource::Adaptation)
            } else {
                (configured, RateSource::Configuration)
            };
        match control.quota {
            Some((quota, until)) if now < until && quota < rate => {
                rate = quota;
                source = RateSource::ServerHint;
            }
            Some((_, until)) if now >= until => control.quota = None,
            _ => {}
        }
        control.effective = rate;
        control.source = source;
        let changed = (rate - control.logged).abs() / control.logged;
        if changed >= 0.05 {
            tracing::debug!(target: TARGET, from = control.logged, to = rate, ?source, "rate changed");
            control.logged = rate;
        }
        let interval = self.clock.ticks_of_ns(interval_of(rate));
        self.set_interval(interval, respace_faster, control.pause_until);
    }

    pub(super) fn pause_until(
        &self,
        control: &mut Control,
        now: u64,
        delay: Duration,
        cause: PauseCause,
    ) {
        let delay = delay.min(self.max_pause);
        let until = now.saturating_add(self.ticks(delay));
        // A later answer never moves the pause earlier; repeats never stack.
        if until <= control.pause_until {
            return;
        }
        control.pause_until = until;
        control.pause_cause = Some(cause);
        control.adaptive.defer(self.seconds(until));
        tracing::warn!(target: TARGET, secs = delay.as_secs_f64(), %cause, "pausing every request");
        self.pause(until);
    }

    /// Changes the configured rate (and burst) at runtime. What is owed is
    /// kept: permits taken at the old rate count against the new one, so
    /// a change never lets a burst through; waiters are re-spaced at the
    /// new rate. An adapted rate stays adapted, below the new ceiling.
    pub fn set_rate(&self, rate: Rate) {
        let mut control = lock(&self.control);
        control.configured = rate;
        control.adaptive.set_ceiling(rate.per_second());
        let now = self.now();
        let burst = self.hot.rate.load().burst;
        let interval = self.hot.rate.load().interval;
        self.store_rate(interval, rate.burst());
        if rate.burst() < burst {
            // A smaller burst: the permits beyond it are no longer free.
            let lost = u64::from(burst - rate.burst()) * interval;
            self.hot
                .timeline
                .update(|tat| tat.max(now.saturating_sub(u64::from(burst) * interval)) + lost);
        }
        self.apply(&mut control, now, true);
        tracing::info!(target: TARGET, %rate, "rate set");
    }

    /// Adapts to the server's answer:
    ///
    /// * a throttle lowers the rate: by 5 % if the rate had run clean
    ///   before, else to 0.7 × the rate in use or the rate the server was
    ///   seen admitting, whichever is lower; a failed probe goes back to
    ///   the last clean rate. A throttle of a request sent before the last
    ///   cut does nothing more (it answers the old rate);
    /// * a success, after a full busy window with no throttle, confirms the
    ///   rate; the limiter then probes above it by small steps (growing
    ///   while they pass, bisecting once one fails), and once settled again
    ///   every 80 requests' worth of time. Never above the configured
    ///   rate, and not at all while less than 80 % of the allowance is used
    ///   (see the crate's README, *The algorithm*);
    /// * a `Retry-After` pauses every caller until one shared instant
    ///   (capped at the maximum pause); a later answer never moves it
    ///   earlier and repeats never stack;
    /// * a quota holds the rate to `remaining / reset` until the reset, or
    ///   pauses until then when nothing remains.
    pub fn feedback(&self, feedback: &Feedback) {
        let shared = self;
        let now = shared.now();
        let mut control = lock(&shared.control);
        let admitted = shared.admitted_with(shared.hot.timeline.load());
        control.adaptive.observe(shared.seconds(now), admitted);
        match feedback.outcome {
            Outcome::Throttled => {
                shared.throttled.fetch_add(1, Relaxed);
                let sent = feedback
                    .sent_at
                    .map(|at| at.saturating_duration_since(shared.epoch).as_secs_f64());
                let stale = sent.is_some_and(|sent| sent < control.adaptive.last_cut());
                if shared.adaptive && !stale {
                    let before = control.effective;
                    let rate = control.adaptive.on_throttle(shared.seconds(now));
                    tracing::info!(target: TARGET, from = before, to = rate, "throttled by the server: rate cut");
                } else {
                    tracing::debug!(target: TARGET, stale, "throttled by the server");
                }
            }
            Outcome::Success if shared.adaptive => {
                control.adaptive.on_success(shared.seconds(now));
            }
            Outcome::Success | Outcome::Neutral => {}
        }
        match feedback.quota {
            Some((remaining, reset)) if remaining > 0 && !reset.is_zero() => {
                let until = now.saturating_add(shared.ticks(reset));
                control.quota = Some((remaining as f64 / reset.as_secs_f64(), until));
            }
            _ => {}
        }
        // The new rate first, then the pauses: a pause is an instant, not
        // something to re-space.
        shared.apply(&mut control, now, false);
        if let Some((0, reset)) = feedback.quota {
            shared.pause_until(&mut control, now, reset, PauseCause::QuotaExhausted);
        }
        if let Some(delay) = feedback.retry_after {
            shared.pause_until(&mut control, now, delay, PauseCause::RetryAfter);
        }
    }
}
