//! The adaptive controller: it finds the server's rate by bracketing it,
//! settles just under it, and probes above it rarely and by small steps.
//!
//! Two bounds: `good`, the highest rate that ran a full, busy window with
//! no throttle, and `bad`, the lowest rate that drew one. The rate in force
//! is `good`; every [`PROBE_REQUESTS`] requests it tries a little more
//! (2 %), and while probes pass, the steps grow (×3, up to +50 %) until
//! one fails; then it bisects between the bounds until they are within
//! [`TIGHT`]. A probe that fails costs one throttle and returns to `good`.
//!
//! A throttle at `good` itself means the server moved (or `good` was at
//! the very edge): the first drops the rate by [`EDGE`]; one at a rate not
//! yet confirmed cuts by [`BETA`], or straight to the rate the server was
//! seen admitting, if that is lower (on a strict server, sending 10 % too
//! fast halves what gets through, so the admitted rate is the better
//! estimate of the two).
//!
//! Pure arithmetic on times given in seconds, so it is tested without
//! clocks.

use std::collections::VecDeque;

/// The cut for a throttle at a rate not confirmed: at most `BETA` × the
/// rate in use.
pub(crate) const BETA: f64 = 0.7;
/// The cut for a throttle at a confirmed rate.
const EDGE: f64 = 0.05;
/// The first probe's step above `good`.
const FIRST_STEP: f64 = 0.02;
/// Each passed probe multiplies the next step by this...
const STEP_GROWTH: f64 = 2.0;
/// ...up to this.
const MAX_STEP: f64 = 0.5;
/// Bounds closer than this (relative) are settled: no bisecting.
const TIGHT: f64 = 0.03;
/// A window is clean after this many seconds with no throttle...
const CLEAN_SECONDS: f64 = 1.0;
/// ...and at least this many requests' worth of time.
const CLEAN_REQUESTS: f64 = 5.0;
/// ...or this many, near a rate that drew a throttle.
const EDGE_REQUESTS: f64 = 20.0;
/// Once settled, a probe every this many requests' worth of time: a failed
/// probe costs one throttle, so this bounds their share (1/80 = 1.25 %).
const PROBE_REQUESTS: f64 = 80.0;
/// A window counts only if the caller sent at least this share of the
/// rate: an idle caller proves nothing, and does not climb.
const UTILIZATION: f64 = 0.8;
/// Successes kept to estimate the server's admitted rate.
const SAMPLES: usize = 17;
/// Length of a send-rate measurement window, in seconds.
const SEND_WINDOW: f64 = 0.5;
/// Weight of the newest window in the smoothed send rate.
const SMOOTHING: f64 = 0.8;

/// The controller's state.
#[derive(Clone, Debug)]
pub(crate) struct Adaptive {
    ceiling: f64,
    floor: f64,
    rate: f64,
    enabled: bool,
    /// The highest rate seen clean since the last throttle at it.
    good: Option<f64>,
    /// The lowest rate that drew a throttle, until a faster one runs clean.
    bad: Option<f64>,
    /// The rate in force is a probe above `good`.
    probing: bool,
    /// The next probe's step, relative to `good`, when `bad` is unknown.
    step: f64,
    /// A settled controller probes again at this time.
    next_probe: f64,
    /// When the rate in force took effect (or the pause that followed ended).
    since: f64,
    /// Admissions counted at `since`.
    since_admitted: u64,
    /// The last cut: throttles of requests sent before it are stale.
    last_cut: f64,
    /// Times of the latest successes.
    successes: VecDeque<f64>,
    /// The running admission count, as last observed.
    admitted: u64,
    /// Measured send rate (permits/s), smoothed.
    measured: f64,
    window_start: f64,
    window_admitted: u64,
}

impl Adaptive {
    pub(crate) fn new(ceiling: f64, floor: f64) -> Self {
        Self {
            ceiling,
            floor: floor.min(ceiling),
            rate: ceiling,
            enabled: false,
            good: None,
            bad: None,
            probing: false,
            step: FIRST_STEP,
            next_probe: 0.0,
            since: 0.0,
            since_admitted: 0,
            last_cut: f64::NEG_INFINITY,
            successes: VecDeque::with_capacity(SAMPLES),
            admitted: 0,
            measured: 0.0,
            window_start: 0.0,
            window_admitted: 0,
        }
    }

    /// The rate now in force, permits per second.
    pub(crate) fn rate(&self) -> f64 {
        self.rate
    }

    /// Whether a throttle has been seen (the rate then adapts).
    pub(crate) fn adapted(&self) -> bool {
        self.enabled
    }

    /// When the last cut happened (seconds), to ignore the throttles of
    /// requests sent before it.
    pub(crate) fn last_cut(&self) -> f64 {
        self.last_cut
    }

    /// The bounds found so far: (highest clean, lowest throttled).
    #[cfg(test)]
    pub(crate) fn bounds(&self) -> (Option<f64>, Option<f64>) {
        (self.good, self.bad)
    }

    /// A new ceiling (the user's rate); the rate never exceeds it.
    pub(crate) fn set_ceiling(&mut self, ceiling: f64) {
        self.ceiling = ceiling;
        self.floor = self.floor.min(ceiling);
        self.good = self.good.map(|good| good.min(ceiling));
        self.rate = if self.enabled {
            self.rate.min(ceiling)
        } else {
            ceiling
        };
    }

    /// Feeds the running count of admitted permits, closing measurement
    /// windows of [`SEND_WINDOW`] seconds.
    pub(crate) fn observe(&mut self, now: f64, admitted: u64) {
        self.admitted = admitted;
        let elapsed = now - self.window_start;
        if elapsed >= SEND_WINDOW {
            let sent = admitted.saturating_sub(self.window_admitted) as f64 / elapsed;
            self.measured = if self.measured == 0.0 {
                sent
            } else {
                SMOOTHING * sent + (1.0 - SMOOTHING) * self.measured
            };
            self.window_start = now;
            self.window_admitted = admitted;
        }
    }

    /// The rate the server was seen admitting: one over the median gap
    /// between the latest successes (a pause or an idle spell is one long
    /// gap, and the median ignores it).
    fn admitted_rate(&self) -> Option<f64> {
        if self.successes.len() < 5 {
            return None;
        }
        let mut gaps: Vec<f64> = self
            .successes
            .iter()
            .zip(self.successes.iter().skip(1))
            .map(|(a, b)| b - a)
            .collect();
        gaps.sort_by(f64::total_cmp);
        let median = gaps[gaps.len() / 2];
        (median > 0.0).then(|| 1.0 / median)
    }

    fn switch(&mut self, now: f64, rate: f64) {
        self.rate = rate.clamp(self.floor, self.ceiling);
        self.since = now;
        self.since_admitted = self.admitted;
    }

    /// How long a settled controller runs before probing again.
    fn probe_wait(&self) -> f64 {
        PROBE_REQUESTS / self.rate.max(f64::MIN_POSITIVE)
    }

    /// A throttle at `now` (not stale): lower the rate, and learn.
    pub(crate) fn on_throttle(&mut self, now: f64) -> f64 {
        let first = !self.enabled;
        self.enabled = true;
        self.last_cut = now;
        if self.probing {
            // The probe failed: back to the rate known to pass.
            self.probing = false;
            let good = self.good.unwrap_or(self.rate * (1.0 - EDGE));
            self.bad = Some(self.bad.map_or(self.rate, |bad| bad.min(self.rate)));
            self.step = FIRST_STEP;
            self.switch(now, good);
            let wide = self.bad.is_some_and(|bad| bad > good * (1.0 + TIGHT));
            // Bisect at once while the bracket is wide; else wait.
            self.next_probe = if wide { now } else { now + self.probe_wait() };
            return self.rate;
        }
        let in_use = if first && self.measured > 0.0 {
            self.measured.min(self.rate)
        } else {
            self.rate
        };
        self.bad = Some(in_use);
        self.step = FIRST_STEP;
        let cut = if self.good.is_some_and(|good| in_use >= good) {
            // The confirmed rate drew a throttle: at the edge, or the
            // server slowed down. A small step first.
            in_use * (1.0 - EDGE)
        } else {
            let admitted = self.admitted_rate().unwrap_or(f64::INFINITY);
            (in_use * BETA).min(admitted)
        };
        self.good = None;
        self.switch(now, cut);
        self.next_probe = now;
        self.rate
    }

    /// The recovery starts when a pause ends: time spent paused says
    /// nothing about the server.
    pub(crate) fn defer(&mut self, until: f64) {
        if self.enabled && until > self.since {
            self.since = until;
            self.since_admitted = self.admitted;
        }
    }

    /// A success at `now`: after a full, busy, clean window the rate in
    /// force is confirmed, and the controller may probe above it.
    pub(crate) fn on_success(&mut self, now: f64) -> f64 {
        if self.successes.len() == SAMPLES {
            self.successes.pop_front();
        }
        self.successes.push_back(now);
        if !self.enabled || now < self.since {
            return self.rate;
        }
        let elapsed = now - self.since;
        let rate = self.rate;
        // Close to a rate that drew a throttle, a pass must be a long one:
        // jitter in the network lets a few requests through at a rate the
        // server does not sustain.
        let near_bad = self.bad.is_some_and(|bad| rate >= bad * (1.0 - TIGHT));
        let requests = if near_bad {
            EDGE_REQUESTS
        } else {
            CLEAN_REQUESTS
        };
        if elapsed < CLEAN_SECONDS.max(requests / rate) {
            return rate;
        }
        let sent = self.admitted.saturating_sub(self.since_admitted) as f64;
        if sent < UTILIZATION * rate * elapsed {
            // Not busy enough to prove anything: start the window again.
            self.switch(now, rate);
            return rate;
        }
        // A clean window at `rate`.
        self.good = Some(rate);
        if self.bad.is_some_and(|bad| bad <= rate) {
            self.bad = None;
        }
        if rate >= self.ceiling {
            self.probing = false;
            self.switch(now, rate);
            return rate;
        }
        if !self.probing && now < self.next_probe {
            self.switch(now, rate);
            return rate;
        }
        let next = match self.bad {
            Some(bad) if bad > rate * (1.0 + TIGHT) => (rate * bad).sqrt(),
            Some(bad) if !self.probing => {
                // Settled, and time to look again: just past the old bound,
                // so a pass proves the server sped up (and starts a climb)
                // while a fail costs one throttle, as any probe.
                (rate * (1.0 + FIRST_STEP)).max(bad * (1.0 + FIRST_STEP / 2.0))
            }
            Some(_) => {
                // Settled between tight bounds: probe again later.
                self.probing = false;
                self.next_probe = now + self.probe_wait();
                self.switch(now, rate);
                return rate;
            }
            None => {
                let next = rate * (1.0 + self.step);
                self.step = (self.step * STEP_GROWTH).min(MAX_STEP);
                next
            }
        };
        self.probing = true;
        self.switch(now, next);
        self.rate
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9 * b.abs().max(1.0)
    }

    /// Runs `controller` busy at its rate from `from` to `to`, with a
    /// server of capacity `capacity` that throttles anything above it
    /// (strictly), in steps of one request.
    fn drive(
        adaptive: &mut Adaptive,
        admitted: &mut u64,
        from: f64,
        to: f64,
        capacity: f64,
    ) -> u32 {
        let mut now = from;
        let mut throttles = 0;
        while now < to {
            now += 1.0 / adaptive.rate();
            *admitted += 1;
            adaptive.observe(now, *admitted);
            if adaptive.rate() > capacity {
                throttles += 1;
                adaptive.on_throttle(now);
            } else {
                adaptive.on_success(now);
            }
        }
        throttles
    }

    #[test]
    fn off_until_the_first_throttle() {
        let mut adaptive = Adaptive::new(10.0, 0.1);
        assert_eq!(adaptive.on_success(100.0), 10.0);
        assert!(!adaptive.adapted());
    }

    #[test]
    fn the_first_cut_goes_to_the_admitted_rate_when_that_is_lower() {
        let mut adaptive = Adaptive::new(12.0, 0.1);
        // 12/s sent, every third admitted: the server takes 4/s.
        for i in 0..24 {
            let now = f64::from(i) / 12.0;
            adaptive.observe(now, u64::try_from(i).expect("small"));
            if i % 3 == 0 {
                adaptive.on_success(now);
            }
        }
        let cut = adaptive.on_throttle(2.0);
        assert!(close(cut, 4.0), "{cut}");
        // With no estimate, BETA × the rate in use.
        let mut blind = Adaptive::new(12.0, 0.1);
        assert!(close(blind.on_throttle(1.0), 12.0 * BETA));
    }

    #[test]
    fn it_settles_within_the_tight_bound_under_the_capacity_and_probes_rarely() {
        let mut adaptive = Adaptive::new(30.0, 0.1);
        let mut admitted = 0;
        adaptive.on_throttle(0.0);
        drive(&mut adaptive, &mut admitted, 0.0, 60.0, 10.0);
        let settled = adaptive.rate();
        assert!(
            (10.0 * (1.0 - TIGHT)..=10.0).contains(&settled),
            "{settled}"
        );
        // Settled: one probe (and so at most one throttle) per 80 requests.
        let throttles = drive(&mut adaptive, &mut admitted, 60.0, 300.0, 10.0);
        let requests = 240.0 * 10.0;
        assert!(
            f64::from(throttles) <= requests / PROBE_REQUESTS + 1.0,
            "{throttles}"
        );
        assert!(adaptive.rate() >= 10.0 * (1.0 - TIGHT));
    }

    #[test]
    fn it_finds_a_faster_server_within_the_probe_wait_and_a_few_windows() {
        let mut adaptive = Adaptive::new(100.0, 0.1);
        let mut admitted = 0;
        adaptive.on_throttle(0.0);
        drive(&mut adaptive, &mut admitted, 0.0, 60.0, 10.0);
        drive(&mut adaptive, &mut admitted, 60.0, 90.0, 20.0);
        assert!(
            adaptive.rate() >= 20.0 * (1.0 - TIGHT),
            "{}",
            adaptive.rate()
        );
        // And a slower one at once.
        drive(&mut adaptive, &mut admitted, 90.0, 100.0, 10.0);
        assert!(
            adaptive.rate() <= 10.0 && adaptive.rate() >= 9.0,
            "{}",
            adaptive.rate()
        );
    }

    #[test]
    fn never_above_the_ceiling_nor_below_the_floor() {
        let mut adaptive = Adaptive::new(10.0, 2.0);
        for i in 0..50 {
            let rate = adaptive.on_throttle(f64::from(i));
            assert!((2.0..=10.0).contains(&rate), "{rate}");
        }
        assert_eq!(adaptive.rate(), 2.0);
        let mut admitted = 0;
        drive(&mut adaptive, &mut admitted, 50.0, 200.0, 1000.0);
        assert_eq!(adaptive.rate(), 10.0);
    }

    #[test]
    fn a_pause_delays_the_window() {
        let mut adaptive = Adaptive::new(100.0, 0.1);
        let cut = adaptive.on_throttle(10.0);
        adaptive.defer(20.0);
        adaptive.observe(19.5, 1_000);
        assert_eq!(adaptive.on_success(19.5), cut, "paused: nothing learnt");
        assert_eq!(adaptive.since, 20.0);
    }

    #[test]
    fn does_not_climb_while_the_allowance_goes_unused() {
        let mut adaptive = Adaptive::new(100.0, 0.1);
        adaptive.observe(0.0, 0);
        adaptive.observe(1.0, 50);
        let cut = adaptive.on_throttle(1.0); // 35/s
                                             // The caller now sends 4/s: far below its allowance.
        let mut admitted = 50;
        for step in 1..=240 {
            let now = 1.0 + f64::from(step) * 0.25;
            admitted += 1;
            adaptive.observe(now, admitted);
            assert!(
                adaptive.on_success(now) <= cut,
                "step {step}: {}",
                adaptive.rate()
            );
        }
        assert_eq!(
            adaptive.bounds().0,
            None,
            "no window was busy enough to count"
        );
    }

    proptest::proptest! {
        #[test]
        fn any_sequence_of_answers_keeps_the_rate_between_floor_and_ceiling(
            ceiling in 0.01_f64..1_000.0,
            floor_share in 0.0_f64..1.0,
            events in proptest::collection::vec((0.0_f64..2.0, 0_u8..4, 0_u64..50), 1..400),
        ) {
            let floor = ceiling * floor_share;
            let mut adaptive = Adaptive::new(ceiling, floor);
            let (mut now, mut admitted) = (0.0, 0);
            for (dt, kind, sent) in events {
                now += dt;
                admitted += sent;
                adaptive.observe(now, admitted);
                let rate = match kind {
                    0 => adaptive.on_throttle(now),
                    1 => { adaptive.defer(now + dt); adaptive.rate() }
                    _ => adaptive.on_success(now),
                };
                proptest::prop_assert!(rate.is_finite());
                proptest::prop_assert!(rate >= floor.min(ceiling) - 1e-9 && rate <= ceiling + 1e-9, "{rate} not in [{floor}, {ceiling}]");
                if let (Some(good), Some(bad)) = adaptive.bounds() {
                    proptest::prop_assert!(good < bad, "good {good} ≥ bad {bad}");
                }
            }
        }
    }
}
