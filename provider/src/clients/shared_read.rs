//! Reads that the resources of one Terraform run share: Terraform refreshes every resource with
//! its own `ReadResource` call, at the same time, so five pools on one node would each list the
//! node's pools. A [`SharedReads`] lets them share one answer — but only while nothing can have
//! changed it from inside this process:
//!
//! - one fetch at a time per key: who asks while it is under way waits for its answer (an error
//!   too, so a dark site costs one timeout, not one per resource);
//! - an answer is kept only while the client has written nothing (its write stamp, which also
//!   moves when a task wait ends) and the provider has not been configured again (a new run,
//!   e.g. the next command of a debug-attached provider), and for at most `max_age`;
//! - while one of the client's writes is under way, every read goes to the server on its own.
//!
//! So an apply never reads its own change from before the change, and a plan never sees an
//! answer older than its own run.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::OnceCell;

use crate::clients::ClientError;

/// Bumped by every `ConfigureProvider`: a process Terraform reattaches to serves several runs.
static RUN: AtomicU64 = AtomicU64::new(0);

/// Starts a new run: nothing read before it is shared after it.
pub fn new_run() {
    RUN.fetch_add(1, Ordering::SeqCst);
}

type Flight<T> = Arc<OnceCell<Result<Arc<T>, ClientError>>>;

struct Slot<T> {
    /// The run and the client's write stamp when the fetch started.
    stamp: (u64, u64),
    started: Instant,
    flight: Flight<T>,
}

/// Answers shared by key (e.g. the node name), see the module docs.
pub struct SharedReads<T> {
    slots: Mutex<HashMap<String, Slot<T>>>,
    max_age: Duration,
}

impl<T> std::fmt::Debug for SharedReads<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedReads").field("max_age", &self.max_age).finish_non_exhaustive()
    }
}

impl<T> SharedReads<T> {
    pub fn new(max_age: Duration) -> Self {
        SharedReads { slots: Mutex::new(HashMap::new()), max_age }
    }

    /// The answer for `key`: a shared one if it is still good, else `fetch`'s (shared from now
    /// on). `write_stamp` is the client's ([`crate::clients::http::ApiClient::write_stamp`]):
    /// `None` (a write under way) reads alone and keeps nothing.
    pub async fn get<F, Fut>(&self, key: &str, write_stamp: Option<u64>, fetch: F) -> Result<Arc<T>, ClientError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, ClientError>>,
    {
        let Some(epoch) = write_stamp else { return fetch().await.map(Arc::new) };
        let stamp = (RUN.load(Ordering::SeqCst), epoch);
        let flight = {
            let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
            match slots.get(key) {
                // A failed fetch is shared only with those who waited for it; later callers try again.
                Some(s)
                    if s.stamp == stamp
                        && s.started.elapsed() < self.max_age
                        && !matches!(s.flight.get(), Some(Err(_))) =>
                {
                    tracing::trace!(key, "shared read: reusing this run's answer");
                    Arc::clone(&s.flight)
                }
                _ => {
                    let flight: Flight<T> = Arc::new(OnceCell::new());
                    slots.insert(key.to_string(), Slot { stamp, started: Instant::now(), flight: Arc::clone(&flight) });
                    flight
                }
            }
        };
        // If the caller that started the fetch goes away, the next waiter fetches with its own.
        flight.get_or_init(|| async { fetch().await.map(Arc::new) }).await.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    /// The run counter is process-wide: these tests take turns so that one's `new_run` cannot
    /// split another's shared fetch.
    static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

    fn err() -> ClientError {
        ClientError::Transport { method: "GET".into(), path: "/x".into(), connect: true, message: "refused".into() }
    }

    #[tokio::test]
    async fn concurrent_readers_share_one_fetch() {
        let _serial = SERIAL.lock().await;
        let shared = SharedReads::<u32>::new(Duration::from_secs(60));
        let calls = AtomicUsize::new(0);
        let fetch = || async {
            calls.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(20)).await;
            Ok(7)
        };
        let (a, b, c) = tokio::join!(
            shared.get("pve1", Some(0), fetch),
            shared.get("pve1", Some(0), fetch),
            shared.get("pve1", Some(0), fetch)
        );
        assert_eq!((*a.unwrap(), *b.unwrap(), *c.unwrap()), (7, 7, 7));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        // Another key is another read.
        shared.get("pve2", Some(0), fetch).await.unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_write_a_new_run_or_age_ends_sharing() {
        let _serial = SERIAL.lock().await;
        let shared = SharedReads::<u32>::new(Duration::from_secs(60));
        let calls = AtomicUsize::new(0);
        let fetch = || async { Ok(calls.fetch_add(1, Ordering::SeqCst) as u32) };
        assert_eq!(*shared.get("n", Some(4), fetch).await.unwrap(), 0);
        assert_eq!(*shared.get("n", Some(4), fetch).await.unwrap(), 0, "same stamp: shared");
        assert_eq!(*shared.get("n", None, fetch).await.unwrap(), 1, "a write under way: read alone");
        assert_eq!(*shared.get("n", Some(6), fetch).await.unwrap(), 2, "written since: fetched again");
        assert_eq!(*shared.get("n", Some(6), fetch).await.unwrap(), 2);
        new_run();
        assert_eq!(*shared.get("n", Some(6), fetch).await.unwrap(), 3, "configured again: fetched again");

        let young = SharedReads::<u32>::new(Duration::ZERO);
        assert_eq!(*young.get("n", Some(0), fetch).await.unwrap(), 4);
        assert_eq!(*young.get("n", Some(0), fetch).await.unwrap(), 5, "too old: fetched again");
    }

    #[tokio::test]
    async fn waiters_share_a_failure_later_callers_retry() {
        let _serial = SERIAL.lock().await;
        let shared = SharedReads::<u32>::new(Duration::from_secs(60));
        let calls = AtomicUsize::new(0);
        let failing = || async {
            calls.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(20)).await;
            Err(err())
        };
        let (a, b) = tokio::join!(shared.get("n", Some(0), failing), shared.get("n", Some(0), failing));
        assert!(a.is_err_and(|e| e.is_unreachable()) && b.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 1, "one timeout for everyone who waited");
        assert_eq!(*shared.get("n", Some(0), || async { Ok(1) }).await.unwrap(), 1, "a later caller tries again");
    }
}
