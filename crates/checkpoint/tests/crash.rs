//! Crashes: SIGKILL mid-record, the lock across processes, and damaged
//! files (proptest).
