//! The adaptive controller against a simulated server whose capacity
//! changes: it settles near the capacity, and few requests get 429.

use std::time::Duration;

use steadfast_ratelimit::{Feedback, RateSource, TokenBucket};
use tokio::time::Instant;

/// A server that admits `capacity` requests per second (GCRA, with a
/// burst of half a second's worth) and answers 429 above it.
struct Server {
    capacity: f64,
    tat: f64,
}

impl Server {
    fn handle(&mut self, now: f64) -> bool {
        let interval = 1.0 / self.capacity;
        let tolerance = 0.5;
        let next = self.tat.max(now) + interval;
        if next - now <= tolerance + 1e-9 {
            self.tat = next;
            true
        } else {
            false
        }
    }
}

struct Log {
    /// (seconds since start, answered 200)
    requests: Vec<(f64, bool)>,
}

impl Log {
    fn goodput(&self, from: f64, to: f64) -> f64 {
        let ok = self
            .requests
            .iter()
            .filter(|(t, ok)| *ok && *t >= from && *t < to)
            .count();
        ok as f64 / (to - from)
    }

    fn throttled_share(&self, from: f64, to: f64) -> f64 {
        let window: Vec<_> = self
            .requests
            .iter()
            .filter(|(t, _)| *t >= from && *t < to)
            .collect();
        window.iter().filter(|(_, ok)| !ok).count() as f64 / window.len() as f64
    }
}

#[tokio::test(start_paused = true)]
async fn settles_near_the_servers_capacity_as_it_changes() {
    // The user allows 100/s; the server takes 40, then 20, then 40 again.
    let limiter = TokenBucket::new("100/s".parse().expect("rate"));
    let phases = [(0.0, 40.0), (180.0, 20.0), (360.0, 40.0)];
    let end = 540.0;
    let mut server = Server {
        capacity: phases[0].1,
        tat: 0.0,
    };
    let start = Instant::now();
    let mut log = Log {
        requests: Vec::new(),
    };
    loop {
        let admission = limiter.acquire(1).await.expect("acquire");
        let now = (admission.at - start).as_secs_f64();
        if now >= end {
            break;
        }
        server.capacity = phases
            .iter()
            .rev()
            .find(|(from, _)| now >= *from)
            .expect("phase")
            .1;
        let ok = server.handle(now);
        log.requests.push((now, ok));
        let feedback = if ok {
            Feedback::success()
        } else {
            Feedback::throttled()
        };
        limiter.feedback(&feedback.sent_at(admission.at));
    }
    for (i, (from, capacity)) in phases.iter().enumerate() {
        let to = phases.get(i + 1).map_or(end, |(next, _)| *next);
        // Settled within 60 s: every 10 s window after that is within
        // 10 % of the capacity.
        let mut t = from + 60.0;
        while t + 10.0 <= to {
            let goodput = log.goodput(t, t + 10.0);
            assert!(
                (goodput - capacity).abs() <= 0.1 * capacity,
                "phase {i} (capacity {capacity}/s): {goodput:.1}/s in [{t}, {})",
                t + 10.0
            );
            t += 10.0;
        }
        let share = log.throttled_share(from + 60.0, to);
        assert!(
            share < 0.05,
            "phase {i}: {:.1} % got 429 after settling",
            share * 100.0
        );
        eprintln!(
            "phase {i}: capacity {capacity}/s, goodput {:.1}/s, 429s {:.2} %",
            log.goodput(from + 60.0, to),
            share * 100.0
        );
    }
    let status = limiter.status();
    assert_eq!(status.source, RateSource::Adaptation);
    assert!(status.effective <= 100.0);
    assert!(status.throttled > 0);
}

#[tokio::test(start_paused = true)]
async fn never_above_the_ceiling_and_no_climb_while_idle() {
    let limiter = TokenBucket::new("10/s".parse().expect("rate"));
    let start = Instant::now();
    // Busy at the full rate, then one throttle.
    for _ in 0..50 {
        let admission = limiter.acquire(1).await.expect("acquire");
        limiter.feedback(&Feedback::success().sent_at(admission.at));
    }
    limiter.feedback(&Feedback::throttled());
    let cut = limiter.status().effective;
    assert!(cut < 10.0 * 0.75, "cut to {cut}");
    // Now the caller sends one request every two seconds for two minutes,
    // all successful: far below its allowance, so the rate stays put.
    while Instant::now() - start < Duration::from_secs(120) {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let admission = limiter.acquire(1).await.expect("acquire");
        limiter.feedback(&Feedback::success().sent_at(admission.at));
        assert!(limiter.status().effective <= cut + 1e-9);
    }
    // Busy again: it recovers, but never above the ceiling.
    for _ in 0..2_000 {
        let admission = limiter.acquire(1).await.expect("acquire");
        limiter.feedback(&Feedback::success().sent_at(admission.at));
        assert!(limiter.status().effective <= 10.0);
    }
    let status = limiter.status();
    assert_eq!(status.effective, 10.0);
    assert_eq!(status.source, RateSource::Configuration);
}

#[tokio::test(start_paused = true)]
async fn a_throttle_for_a_request_sent_before_the_cut_does_not_cut_again() {
    let limiter = TokenBucket::new("10/s burst 10".parse().expect("rate"));
    let sent = limiter.acquire(1).await.expect("acquire").at;
    tokio::time::advance(Duration::from_millis(10)).await;
    limiter.feedback(&Feedback::throttled().sent_at(sent));
    let once = limiter.status().effective;
    tokio::time::advance(Duration::from_millis(10)).await;
    // Nine more answers to requests sent at the old rate: no further cuts.
    for _ in 0..9 {
        limiter.feedback(&Feedback::throttled().sent_at(sent));
    }
    assert_eq!(limiter.status().effective, once);
    assert_eq!(limiter.status().throttled, 10);
}
