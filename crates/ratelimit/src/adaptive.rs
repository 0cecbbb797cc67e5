//! The adaptive controller: multiplicative decrease on throttling, CUBIC
//! recovery, modelled on AWS's adaptive retry mode. Pure arithmetic on
//! times given in seconds, so it is tested without clocks.

/// The cut on throttling: the new rate is `BETA` × the rate in use.
pub(crate) const BETA: f64 = 0.7;
/// CUBIC's scaling constant (AWS: 0.4).
pub(crate) const SCALE: f64 = 0.4;
/// At low rates the recovery to the old rate spans at least this many
/// requests (see [`Cubic::on_throttle`]).
const RECOVERY_REQUESTS: f64 = 10.0;
/// Length of a send-rate measurement window, in seconds (AWS: 0.5).
const WINDOW: f64 = 0.5;
/// Weight of the newest window in the smoothed send rate (AWS: 0.8).
const SMOOTHING: f64 = 0.8;
/// Below this fraction of its allowance, the caller is "not using it" and
/// the rate does not climb.
const UTILIZATION: f64 = 0.5;

/// CUBIC state: off until the first throttle, then following
/// `SCALE·(t − t_throttle − K)³ + w_max`.
#[derive(Clone, Debug)]
pub(crate) struct Cubic {
    ceiling: f64,
    floor: f64,
    rate: f64,
    enabled: bool,
    w_max: f64,
    k: f64,
    /// The curve's scale: [`SCALE`], or smaller at low rates.
    c: f64,
    last_throttle: f64,
    /// Measured send rate (permits/s), smoothed.
    measured: f64,
    /// The send rate of the last full window alone.
    last_sample: f64,
    window_start: f64,
    window_admitted: u64,
}

impl Cubic {
    pub(crate) fn new(ceiling: f64, floor: f64) -> Self {
        Self {
            ceiling,
            floor: floor.min(ceiling),
            rate: ceiling,
            enabled: false,
            w_max: ceiling,
            k: 0.0,
            c: SCALE,
            last_throttle: f64::NEG_INFINITY,
            measured: 0.0,
            last_sample: 0.0,
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
    pub(crate) fn last_throttle(&self) -> f64 {
        self.last_throttle
    }

    /// The smoothed send rate.
    #[cfg(test)]
    pub(crate) fn measured(&self) -> f64 {
        self.measured
    }

    /// A new ceiling (the user's rate); the rate never exceeds it.
    pub(crate) fn set_ceiling(&mut self, ceiling: f64) {
        self.ceiling = ceiling;
        self.floor = self.floor.min(ceiling);
        self.rate = if self.enabled {
            self.rate.min(ceiling)
        } else {
            ceiling
        };
    }

    /// Feeds the running count of admitted permits, closing measurement
    /// windows of [`WINDOW`] seconds.
    pub(crate) fn observe(&mut self, now: f64, admitted: u64) {
        let elapsed = now - self.window_start;
        if elapsed >= WINDOW {
            let sent = admitted.saturating_sub(self.window_admitted) as f64 / elapsed;
            self.measured = if self.measured == 0.0 {
                sent
            } else {
                SMOOTHING * sent + (1.0 - SMOOTHING) * self.measured
            };
            self.last_sample = sent;
            self.window_start = now;
            self.window_admitted = admitted;
        }
    }

    /// A throttle at `now`: cut to `BETA` × the rate in use (the measured
    /// send rate, if lower than the allowance) and restart the curve.
    pub(crate) fn on_throttle(&mut self, now: f64) -> f64 {
        let in_use = if self.measured > 0.0 {
            self.measured.min(self.rate)
        } else {
            self.rate
        };
        self.enabled = true;
        self.w_max = in_use;
        // AWS's K is the time the curve takes back to w_max. In absolute
        // units it is too short at low rates (0.5 s at Figma's 10/min,
        // where requests are 6 s apart): stretch it to at least
        // RECOVERY_REQUESTS intervals, and scale the curve to match, so it
        // still starts at BETA × w_max. At 2/s and above nothing changes.
        let k = (in_use * (1.0 - BETA) / SCALE).cbrt();
        self.k = k.max(RECOVERY_REQUESTS / in_use.max(f64::MIN_POSITIVE));
        self.c = in_use * (1.0 - BETA) / (self.k * self.k * self.k);
        self.last_throttle = now;
        self.rate = (in_use * BETA).clamp(self.floor, self.ceiling);
        self.rate
    }

    /// The recovery starts when a pause ends: time spent paused says
    /// nothing about the server, so it does not count toward the curve.
    pub(crate) fn defer(&mut self, until: f64) {
        if self.enabled && until > self.last_throttle {
            self.last_throttle = until;
        }
    }

    /// A success at `now`: follow the curve, but never above the ceiling,
    /// never more than twice the measured send rate, and not at all while
    /// the caller uses less than half its allowance.
    pub(crate) fn on_success(&mut self, now: f64) -> f64 {
        if !self.enabled || now < self.last_throttle {
            return self.rate;
        }
        let t = now - self.last_throttle - self.k;
        let curve = (self.c * t * t * t + self.w_max).clamp(self.floor, self.ceiling);
        // "In use" by the smoothed rate and the latest window both, so the
        // smoothing's lag after a busy spell does not count as use.
        let in_use = self.measured.min(self.last_sample);
        self.rate = if in_use >= UTILIZATION * self.rate {
            curve.min(2.0 * self.measured).max(self.floor)
        } else {
            curve.min(self.rate)
        };
        self.rate
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9 * b.abs().max(1.0)
    }

    #[test]
    fn off_until_the_first_throttle() {
        let mut cubic = Cubic::new(10.0, 0.1);
        assert_eq!(cubic.on_success(100.0), 10.0);
        assert!(!cubic.adapted());
    }

    #[test]
    fn cuts_by_beta_and_recovers_to_w_max_at_k() {
        let mut cubic = Cubic::new(100.0, 0.1);
        // Measured: 40/s sent, under the 100/s allowance.
        cubic.observe(0.0, 0);
        cubic.observe(1.0, 40);
        assert!(close(cubic.measured(), 40.0));
        assert!(close(cubic.on_throttle(1.0), 28.0), "0.7 × 40");
        let k = (40.0_f64 * 0.3 / 0.4).cbrt();
        cubic.observe(1.5, 54); // 28/s: at least half the allowance
        let at_k = cubic.on_success(1.0 + k);
        assert!(close(at_k, 40.0_f64.min(2.0 * cubic.measured())), "{at_k}");
        // Concave before K, convex after.
        let mut cubic2 = Cubic::new(100.0, 0.1);
        cubic2.observe(0.0, 0);
        cubic2.observe(1.0, 40);
        cubic2.on_throttle(1.0);
        cubic2.measured = 1000.0; // no send-rate cap for this check
        cubic2.last_sample = 1000.0;
        let a = cubic2.on_success(1.0 + k / 2.0);
        let b = cubic2.on_success(1.0 + k);
        let c = cubic2.on_success(1.0 + 1.5 * k);
        assert!(28.0 < a && a < b && b < c && c <= 100.0, "{a} {b} {c}");
        assert!(close(b, 40.0));
    }

    #[test]
    fn never_above_the_ceiling_nor_below_the_floor() {
        let mut cubic = Cubic::new(10.0, 2.0);
        cubic.measured = 1000.0;
        cubic.last_sample = 1000.0;
        for i in 0..50 {
            let rate = cubic.on_throttle(f64::from(i));
            assert!((2.0..=10.0).contains(&rate), "{rate}");
        }
        assert_eq!(cubic.rate(), 2.0);
        assert_eq!(cubic.on_success(1e6), 10.0);
    }

    #[test]
    fn low_rates_recover_over_ten_requests_not_half_a_second() {
        // Figma's 10/min: after a cut, back to w_max only after ten
        // intervals (60 s), concave all the way.
        let mut cubic = Cubic::new(10.0 / 60.0, 0.001);
        cubic.measured = 10.0 / 60.0;
        cubic.last_sample = 10.0 / 60.0;
        let cut = cubic.on_throttle(0.0);
        assert!(close(cut, 0.7 * 10.0 / 60.0));
        // Five seconds in (not even one interval): still well below.
        let early = cubic.on_success(5.0);
        assert!(early < 0.8 * 10.0 / 60.0, "{early}");
        let later = cubic.on_success(30.0);
        assert!(early < later && later < 10.0 / 60.0, "{later}");
        assert!(close(cubic.on_success(60.0), 10.0 / 60.0));
        // At 40/s the stretch does not apply: AWS's K.
        let mut fast = Cubic::new(100.0, 0.1);
        fast.measured = 40.0;
        fast.last_sample = 40.0;
        fast.on_throttle(0.0);
        assert!(close(fast.k, (40.0_f64 * 0.3 / 0.4).cbrt()));
        assert!(close(fast.c, SCALE));
    }

    #[test]
    fn a_pause_delays_the_recovery() {
        let mut cubic = Cubic::new(100.0, 0.1);
        cubic.measured = 1000.0;
        cubic.last_sample = 1000.0;
        let cut = cubic.on_throttle(10.0);
        cubic.defer(20.0);
        assert_eq!(cubic.on_success(19.0), cut, "paused: no recovery yet");
        let mut undeferred = Cubic::new(100.0, 0.1);
        undeferred.measured = 1000.0;
        undeferred.last_sample = 1000.0;
        undeferred.on_throttle(10.0);
        // One second after the pause is like one second after the cut.
        assert!(close(cubic.on_success(21.0), undeferred.on_success(11.0)));
    }

    #[test]
    fn does_not_climb_while_the_allowance_goes_unused() {
        let mut cubic = Cubic::new(100.0, 0.1);
        cubic.observe(0.0, 0);
        cubic.observe(1.0, 50);
        let cut = cubic.on_throttle(1.0); // 35/s
                                          // The caller now sends 5/s: far below half of 35/s.
        let mut admitted = 50;
        for step in 1..=120 {
            let now = 1.0 + f64::from(step) * 0.5;
            admitted += 2; // 2 permits per half second = 4/s... under 17.5
            cubic.observe(now, admitted);
            assert!(
                cubic.on_success(now) <= cut,
                "step {step}: {}",
                cubic.rate()
            );
        }
    }
}
