//! The hand-off between requests and the one writer of a group commit.
//!
//! Requests [`push`](GroupQueue::push) what they want recorded; the first
//! push into an idle queue is told to start a writer. The writer takes
//! everything waiting, records it, and asks for the [`next`](GroupQueue::next)
//! group; when there is none it stops, and the queue is idle again. The
//! emptiness check and the "idle" mark happen under one lock, so an item
//! pushed while the writer stops is never stranded: either the writer
//! sees it, or its pusher is told to start a new writer. A loom model
//! checks this (`RUSTFLAGS="--cfg steadfast_loom"`, see `.ci/run`).

#[cfg(steadfast_loom)]
use loom::sync::Mutex;
#[cfg(not(steadfast_loom))]
use std::sync::Mutex;

pub(crate) struct GroupQueue<T> {
    state: Mutex<State<T>>,
}

struct State<T> {
    waiting: Vec<T>,
    /// A writer is running: it will see what is pushed.
    writing: bool,
}

impl<T> GroupQueue<T> {
    pub(crate) fn new() -> Self {
        Self {
            state: Mutex::new(State {
                waiting: Vec::new(),
                writing: false,
            }),
        }
    }

    fn state(&self) -> impl std::ops::DerefMut<Target = State<T>> + '_ {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Queues `item`; `true` when no writer runs and the caller must start
    /// one (which begins with [`first`](Self::first)).
    pub(crate) fn push(&self, item: T) -> bool {
        let mut state = self.state();
        state.waiting.push(item);
        !std::mem::replace(&mut state.writing, true)
    }

    /// The writer's first group.
    pub(crate) fn first(&self) -> Vec<T> {
        std::mem::take(&mut self.state().waiting)
    }

    /// The writer's next group, or `None`: then the writer must stop, and
    /// the next push starts a new one.
    pub(crate) fn next(&self) -> Option<Vec<T>> {
        let mut state = self.state();
        if state.waiting.is_empty() {
            state.writing = false;
            None
        } else {
            Some(std::mem::take(&mut state.waiting))
        }
    }
}

#[cfg(all(test, steadfast_loom))]
mod loom_models {
    use super::*;
    use loom::sync::atomic::{AtomicUsize, Ordering::SeqCst};
    use loom::sync::Arc;

    /// Two requests push while writers come and go: every item is
    /// recorded exactly once, by at most one writer at a time.
    #[test]
    fn loom_no_item_is_stranded_or_recorded_twice() {
        loom::model(|| {
            let queue = Arc::new(GroupQueue::new());
            let recorded = Arc::new(AtomicUsize::new(0));
            let writers = Arc::new(AtomicUsize::new(0));
            let run = |queue: Arc<GroupQueue<u32>>,
                       recorded: Arc<AtomicUsize>,
                       writers: Arc<AtomicUsize>,
                       item: u32| {
                if queue.push(item) {
                    assert_eq!(writers.fetch_add(1, SeqCst), 0, "two writers at once");
                    let mut group = queue.first();
                    loop {
                        recorded.fetch_add(group.len(), SeqCst);
                        writers.fetch_sub(1, SeqCst);
                        match queue.next() {
                            Some(more) => {
                                writers.fetch_add(1, SeqCst);
                                group = more;
                            }
                            None => break,
                        }
                    }
                }
            };
            let other = {
                let (q, r, w) = (
                    Arc::clone(&queue),
                    Arc::clone(&recorded),
                    Arc::clone(&writers),
                );
                loom::thread::spawn(move || run(q, r, w, 2))
            };
            run(
                Arc::clone(&queue),
                Arc::clone(&recorded),
                Arc::clone(&writers),
                1,
            );
            other.join().expect("other");
            assert_eq!(recorded.load(SeqCst), 2, "an item was stranded or doubled");
            assert!(queue.next().is_none());
        });
    }
}
