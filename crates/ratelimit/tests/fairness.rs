//! FIFO order under load, and cancellation that loses no permit.

use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

use proptest::prelude::*;
use steadfast_ratelimit::{Acquire, TokenBucket};
use tokio::time::{Instant, Sleep};

/// Drives `waiters` on one task, polling them in *reverse* order at every
/// wake-up (so any waiter that could jump the queue would), dropping
/// waiter `i` at `cancels[i]` if it has not completed by then. Returns the
/// completions as (index, instant).
async fn drive(
    mut waiters: Vec<Option<Acquire<'_>>>,
    cancels: Vec<Option<Instant>>,
) -> Vec<(usize, Instant)> {
    let mut done = Vec::new();
    let mut timer: Option<Pin<Box<Sleep>>> = None;
    poll_fn(|cx| loop {
        let now = Instant::now();
        for (i, at) in cancels.iter().enumerate() {
            if at.is_some_and(|at| at <= now) {
                waiters[i] = None;
            }
        }
        for i in (0..waiters.len()).rev() {
            if let Some(waiter) = &mut waiters[i] {
                if let Poll::Ready(admission) = Pin::new(waiter).poll(cx) {
                    done.push((i, admission.expect("admitted").at));
                    waiters[i] = None;
                }
            }
        }
        if waiters.iter().all(Option::is_none) {
            return Poll::Ready(std::mem::take(&mut done));
        }
        let next_cancel = cancels
            .iter()
            .enumerate()
            .filter(|(i, _)| waiters[*i].is_some())
            .filter_map(|(_, at)| *at)
            .filter(|at| *at > now)
            .min();
        timer = next_cancel.map(|at| Box::pin(tokio::time::sleep_until(at)));
        let fired = match &mut timer {
            Some(sleep) => sleep.as_mut().poll(cx).is_ready(),
            None => false,
        };
        if !fired {
            return Poll::Pending;
        }
    })
    .await
}

#[tokio::test(start_paused = true)]
async fn a_thousand_waiters_are_served_in_order() {
    // 1,500/s: slots fall between the timer's millisecond ticks, so
    // several come due on one tick and only the order rule decides.
    let limiter = TokenBucket::new("1500/s".parse().expect("rate"));
    limiter.try_acquire(1).expect("drain");
    let waiters: Vec<_> = (0..1_000).map(|_| Some(limiter.acquire(1))).collect();
    let mut waiters = waiters;
    // Book in index order.
    for waiter in &mut waiters {
        poll_fn(|cx| {
            let _ = Pin::new(waiter.as_mut().expect("waiter")).poll(cx);
            Poll::Ready(())
        })
        .await;
    }
    assert_eq!(limiter.status().waiting, 1_000);
    let start = Instant::now();
    let done = drive(waiters, vec![None; 1_000]).await;
    let order: Vec<usize> = done.iter().map(|(i, _)| *i).collect();
    assert_eq!(order, (0..1_000).collect::<Vec<_>>(), "strict FIFO");
    assert!(done.windows(2).all(|w| w[0].1 <= w[1].1));
    let last = done.last().expect("last").1 - start;
    // Slot 1,000 is due at 1,000 × 666,667 ns; the timer adds < 1 ms.
    let due = Duration::from_nanos(1_000 * 666_667);
    assert!(
        last >= due && last < due + Duration::from_millis(1),
        "{last:?}"
    );
    assert_eq!(limiter.status().admitted, 1_001);
}

/// The reference model: waiter `i`'s slot is `(i + 1) × 100 ms`; a waiter
/// leaving before its slot moves every later waiter up by 100 ms.
fn model(cancels: &[Option<u64>]) -> Vec<(usize, u64)> {
    let mut slots: Vec<(usize, u64)> = (0..cancels.len())
        .map(|i| (i, (i as u64 + 1) * 100))
        .collect();
    let mut order: Vec<(u64, usize)> = cancels
        .iter()
        .enumerate()
        .filter_map(|(i, c)| c.map(|c| (c, i)))
        .collect();
    order.sort_unstable();
    for (at, who) in order {
        if let Some(pos) = slots.iter().position(|(i, slot)| *i == who && *slot > at) {
            slots.remove(pos);
            for (_, slot) in slots.iter_mut().skip(pos) {
                if *slot > at {
                    *slot -= 100;
                }
            }
        }
    }
    slots
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Dropping random waiters at random times: the rest keep their order,
    /// move up exactly as far as the slots handed back, and no permit is
    /// lost or made up.
    #[test]
    fn cancelling_random_waiters_keeps_order_and_permits(
        pattern in prop::collection::vec(prop::option::weighted(0.3, 0u64..40), 1..40)
    ) {
        // Cancel times fall between slots (…50 ms), so no tie to decide.
        let cancels: Vec<Option<u64>> = pattern.iter().map(|c| c.map(|k| k * 100 + 50)).collect();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .expect("runtime");
        let (done, admitted, next_free, elapsed) = runtime.block_on(async {
            let limiter = TokenBucket::new("10/s".parse().expect("rate"));
            limiter.try_acquire(1).expect("drain");
            let start = Instant::now();
            let mut waiters: Vec<_> = (0..cancels.len()).map(|_| Some(limiter.acquire(1))).collect();
            for waiter in &mut waiters {
                poll_fn(|cx| {
                    let _ = Pin::new(waiter.as_mut().expect("waiter")).poll(cx);
                    Poll::Ready(())
                })
                .await;
            }
            let at: Vec<Option<Instant>> = cancels
                .iter()
                .map(|c| c.map(|ms| start + Duration::from_millis(ms)))
                .collect();
            let done = drive(waiters, at).await;
            let done: Vec<(usize, u64)> = done
                .into_iter()
                .map(|(i, t)| (i, (t - start).as_millis() as u64))
                .collect();
            let status = limiter.status();
            (done, status.admitted, status.next_free, Instant::now() - start)
        });
        let expected = model(&cancels);
        prop_assert_eq!(&done, &expected);
        prop_assert_eq!(admitted, 1 + expected.len() as u64);
        // The timeline holds exactly the survivors' slots: the next free
        // one follows the last of them.
        let owed = Duration::from_millis(100 * (expected.len() as u64 + 1));
        prop_assert_eq!(next_free, owed.saturating_sub(elapsed));
    }
}
