//! Waiting, in one place. Every wait for something that changes on its own (a task, power, a
//! booting node, a cluster forming, a certificate swap) is a [`poll_until`]: probe, and if not
//! there yet, sleep with exponential [`Backoff`], until the operation's deadline — or until
//! Terraform asks the provider to stop. The retries of a single call (HTTP, Redfish, SSH
//! connect) sleep through the same [`Backoff`] ([`Backoff::wait`]). Nothing else in the crate
//! sleeps, so no wait is a fixed sleep and every one honours `timeouts`.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// How often a long wait says it is still waiting.
const PROGRESS_EVERY: Duration = Duration::from_secs(10);

/// Delays that grow from `first` by a factor (2 unless [`Backoff::growth`] says otherwise) up to
/// `max`: quick to notice a fast change, few requests for a slow one. [`Backoff::fixed`]
/// replaces them by one interval (bench/converge's fixed-poll baseline).
#[derive(Clone, Debug)]
pub struct Backoff {
    next: Duration,
    max: Duration,
    /// Growth per step as numerator / denominator.
    growth: (u32, u32),
    fixed: Option<Duration>,
}

impl Backoff {
    pub fn new(first: Duration, max: Duration) -> Backoff {
        Backoff { next: first, max, growth: (2, 1), fixed: None }
    }

    /// Grows by `num / den` per step instead of doubling.
    pub fn growth(mut self, num: u32, den: u32) -> Backoff {
        self.growth = (num, den.max(1));
        self
    }

    /// Polls at `interval` instead of backing off, when given.
    pub fn fixed(mut self, interval: Option<Duration>) -> Backoff {
        self.fixed = interval;
        self
    }

    /// Returns the next delay and grows the one after it.
    fn step(&mut self) -> Duration {
        if let Some(d) = self.fixed {
            return d;
        }
        let d = self.next;
        let (num, den) = self.growth;
        self.next = (self.next * num / den).min(self.max);
        d
    }

    /// Sleeps the next delay. For the retries of one call, which the call's own attempt count
    /// and timeouts bound; a wait with a deadline is a [`poll_until`].
    pub async fn wait(&mut self) {
        tokio::time::sleep(self.step()).await;
    }
}

/// What one probe of a [`poll_until`] saw.
#[derive(Debug)]
pub enum Probe<T, E> {
    /// The wait is over.
    Ready(T),
    /// Not yet; what was seen instead (the timeout reports the last one).
    NotYet(String),
    /// A failure no waiting mends: the wait ends with it.
    Fail(E),
}

/// Why a [`poll_until`] ended without its value.
#[derive(Debug)]
pub enum PollError<E> {
    /// The deadline passed; `last` is what the last probe saw.
    Timeout { after: Duration, last: String },
    /// Terraform asked the provider to stop.
    Cancelled,
    /// A probe failed for good.
    Failed(E),
}

/// Probes until it reports [`Probe::Ready`] or [`Probe::Fail`], sleeping with `backoff` in
/// between. A wait uses its whole budget: the last sleep is cut to `deadline`, the probe runs
/// once more there, and only then does the wait time out. `stop` ends a sleep at once. `what`
/// names the wait in the progress lines logged every ten seconds.
pub async fn poll_until<T, E, F, Fut>(
    deadline: Instant,
    stop: &CancellationToken,
    what: &str,
    mut backoff: Backoff,
    mut probe: F,
) -> Result<T, PollError<E>>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Probe<T, E>>,
{
    let start = Instant::now();
    let mut reported = start;
    loop {
        let last = match probe().await {
            Probe::Ready(v) => return Ok(v),
            Probe::NotYet(last) => last,
            Probe::Fail(e) => return Err(PollError::Failed(e)),
        };
        let now = Instant::now();
        if now >= deadline {
            return Err(PollError::Timeout { after: now - start, last });
        }
        if now - reported >= PROGRESS_EVERY {
            tracing::info!(what, waited = ?(now - start), %last, "still waiting");
            reported = now;
        }
        let pause = backoff.step().min(deadline - now);
        tokio::select! {
            biased;
            _ = stop.cancelled() => return Err(PollError::Cancelled),
            _ = tokio::time::sleep(pause) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn delays_grow_to_the_cap_or_stay_fixed() {
        let mut b = Backoff::new(25 * MS, 100 * MS);
        let d: Vec<_> = (0..5).map(|_| b.step()).collect();
        assert_eq!(d, [25 * MS, 50 * MS, 100 * MS, 100 * MS, 100 * MS]);
        let mut b = Backoff::new(50 * MS, 1000 * MS).growth(3, 2);
        let d: Vec<_> = (0..3).map(|_| b.step()).collect();
        assert_eq!(d, [50 * MS, 75 * MS, 112_500 * Duration::from_micros(1)]);
        let mut b = Backoff::new(25 * MS, 100 * MS).fixed(Some(1000 * MS));
        assert_eq!((b.step(), b.step()), (1000 * MS, 1000 * MS));
        assert_eq!(Backoff::new(25 * MS, 100 * MS).fixed(None).step(), 25 * MS);
    }

    #[tokio::test(start_paused = true)]
    async fn polls_until_ready() {
        let stop = CancellationToken::new();
        let mut n = 0;
        let r = poll_until(Instant::now() + Duration::from_secs(60), &stop, "test", Backoff::new(MS, 10 * MS), || {
            n += 1;
            let n = n;
            async move {
                if n < 4 {
                    Probe::<_, Infallible>::NotYet(format!("probe {n}"))
                } else {
                    Probe::Ready(n)
                }
            }
        })
        .await;
        assert!(matches!(r, Ok(4)), "{r:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn the_last_probe_is_at_the_deadline() {
        let stop = CancellationToken::new();
        let start = Instant::now();
        let deadline = start + 250 * MS;
        let mut at = Vec::new();
        let r = poll_until(deadline, &stop, "test", Backoff::new(100 * MS, 100 * MS), || {
            at.push(Instant::now() - start);
            async { Probe::<(), Infallible>::NotYet("not yet".into()) }
        })
        .await;
        assert_eq!(at, [Duration::ZERO, 100 * MS, 200 * MS, 250 * MS]);
        match r {
            Err(PollError::Timeout { after, last }) => assert_eq!((after, last.as_str()), (250 * MS, "not yet")),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_failure_or_stop_ends_the_wait() {
        let stop = CancellationToken::new();
        let far = Instant::now() + Duration::from_secs(3600);
        let r = poll_until(far, &stop, "test", Backoff::new(MS, MS), || async { Probe::<(), _>::Fail("broken") }).await;
        assert!(matches!(r, Err(PollError::Failed("broken"))), "{r:?}");
        stop.cancel();
        let r =
            poll_until(far, &stop, "test", Backoff::new(Duration::from_secs(60), Duration::from_secs(60)), || async {
                Probe::<(), Infallible>::NotYet("waiting".into())
            })
            .await;
        assert!(matches!(r, Err(PollError::Cancelled)), "{r:?}");
    }
}
