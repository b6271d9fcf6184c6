//! PVE worker tasks: the polling itself is the shared core's ([`ApiClient::wait_task`]).
//!
//! [`ApiClient::wait_task`]: crate::clients::http::ApiClient::wait_task

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::PveClient;
use crate::clients::ClientError;

/// What a mutating PVE call returns: a task UPID for long work, or nothing.
pub type MaybeUpid = Option<String>;

impl PveClient {
    /// Waits until task `upid` ends (see [`ApiClient::wait_task`]).
    ///
    /// [`ApiClient::wait_task`]: crate::clients::http::ApiClient::wait_task
    pub async fn wait_task(&self, upid: &str, deadline: Instant, stop: &CancellationToken) -> Result<(), ClientError> {
        self.api.wait_task(upid, deadline, stop, false).await
    }

    /// [`PveClient::wait_task`] for a task that restarts the API it is polled through (cluster
    /// create and join): a reset connection, a 401 while `/etc/pve` is remounted, a certificate
    /// not yet trusted are waited out until `deadline`.
    pub async fn wait_task_through_restart(
        &self,
        upid: &str,
        deadline: Instant,
        stop: &CancellationToken,
    ) -> Result<(), ClientError> {
        self.api.wait_task(upid, deadline, stop, true).await
    }

    /// Waits for the task if the call started one.
    pub async fn wait_maybe(
        &self,
        upid: MaybeUpid,
        deadline: Instant,
        stop: &CancellationToken,
    ) -> Result<(), ClientError> {
        match upid.filter(|u| u.starts_with("UPID:")) {
            Some(u) => self.wait_task(&u, deadline, stop).await,
            None => Ok(()),
        }
    }
}
