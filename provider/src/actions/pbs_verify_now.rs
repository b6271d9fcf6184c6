//! `edge_pbs_verify_now`: runs a PBS verify job now (the job an `edge_pbs_job` with a
//! `verify {}` block manages, by id), waits for its task and reports what it found. A
//! verification that finds a damaged snapshot is an error naming the job and the snapshots.

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::clients::pbs::{PbsClient, VerifyOutcome};
use crate::clients::{self, ApiErrorKind, ClientError};
use crate::framework::timeouts::parse_duration;
use crate::framework::{Action, Attribute, Block, Ctx, Diagnostics, Done, Progress, Schema, Type};
use crate::path;

/// How long a verification may take unless `timeout` says otherwise: it reads every chunk of
/// every snapshot it checks, which on a large datastore takes hours.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2 * 3600);

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub job: Option<String>,
    pub timeout: Option<String>,
}

pub struct PbsVerifyNow;

/// PBS's job id schema (`JOB_ID_SCHEMA`: `PROXMOX_SAFE_ID_REGEX`, 3 to 32 characters).
pub fn check_job_id(id: &str) -> Result<(), String> {
    let safe = id.chars().next().is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
        && id.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
    if !(3..=32).contains(&id.len()) {
        return Err(format!("{id:?} is not a PBS job id: it must be 3 to 32 characters long."));
    }
    if !safe {
        return Err(format!(
            "{id:?} is not a PBS job id: use letters, digits, '_', '.' and '-', starting with a letter, digit or '_'."
        ));
    }
    Ok(())
}

fn pbs(ctx: &Ctx) -> Result<std::sync::Arc<PbsClient>, Diagnostics> {
    let cfg = ctx.clients.pbs.as_ref().filter(|c| c.endpoint.is_some()).ok_or_else(|| {
        Diagnostics::error(
            "PBS API not configured",
            "edge_pbs_verify_now runs a job on PBS: configure the provider's pbs block (or EDGE_PBS_* variables).",
        )
    })?;
    clients::pbs(cfg).map_err(|e| Diagnostics::error("Cannot set up the PBS client", e.to_string()))
}

#[async_trait]
impl Action for PbsVerifyNow {
    type Config = Config;

    fn type_name(&self) -> &'static str {
        "edge_pbs_verify_now"
    }

    fn schema(&self) -> Schema {
        Schema::new(
            0,
            Block::new(
                "Runs a PBS verify job now, waits for it and reports the outcome: the snapshots verified, and as an \
                 error the ones that failed.",
            )
            .attr(
                Attribute::required("job", Type::String)
                    .describe("Id of the verify job (`edge_pbs_job.<name>.id` of a job with a `verify {}` block)."),
            )
            .attr(Attribute::optional("timeout", Type::String).describe(
                "How long to wait for the verification, e.g. \"30m\" (default \"2h\"). When it runs out the task goes on on PBS.",
            )),
        )
    }

    fn validate(&self, c: &Config, d: &mut Diagnostics) {
        if let Some(id) = &c.job {
            if let Err(e) = check_job_id(id) {
                d.error_at(path!["job"], "Invalid verify job id", e);
            }
        }
        if let Some(t) = &c.timeout {
            match parse_duration(t) {
                Ok(v) if v.is_zero() => d.error_at(
                    path!["timeout"],
                    "Invalid timeout",
                    "The timeout must be longer than zero, e.g. \"30m\".",
                ),
                Ok(_) => {}
                Err(e) => d.error_at(path!["timeout"], "Invalid timeout", e),
            }
        }
    }

    /// The job itself is not looked up here: the `edge_pbs_job` that makes it may be created in
    /// the same apply (an `action_trigger` on its `after_create`).
    async fn plan(&self, ctx: &Ctx, _config: Config) -> Result<Done<()>, Diagnostics> {
        pbs(ctx)?;
        Ok(().into())
    }

    async fn invoke(&self, ctx: &Ctx, c: Config, progress: &Progress) -> Result<Done<()>, Diagnostics> {
        let job = c.job.clone().unwrap_or_default();
        let timeout = c.timeout.as_deref().and_then(|t| parse_duration(t).ok()).unwrap_or(DEFAULT_TIMEOUT);
        let pbs = pbs(ctx)?;
        progress.report(format!("Starting PBS verify job {job:?}"));
        let upid = pbs.run_verify_job(&job).await.map_err(|e| match e.kind() {
            Some(ApiErrorKind::NotFound) => Diagnostics::at(
                path!["job"],
                format!("No verify job {job:?}"),
                format!(
                    "PBS has no verify job {job:?}. Create it with an edge_pbs_job that has a verify {{}} block, or use \
                     the id of one that exists (PBS said: {e})."
                ),
            ),
            _ => Diagnostics::error(format!("Could not start verify job {job:?}"), e.to_string()),
        })?;
        progress.report(format!("Verify job {job:?} is running as task {upid}"));
        let waited = pbs.wait_task(&upid, Instant::now() + timeout, &ctx.stop).await;
        match waited {
            Ok(()) => {
                let outcome = VerifyOutcome::from_log(&pbs.task_log(&upid).await);
                progress.report(format!(
                    "Verify job {job:?} finished: {} snapshot(s) verified, none failed",
                    outcome.verified.len()
                ));
                Ok(().into())
            }
            Err(ClientError::TaskFailed { exitstatus, .. }) => {
                let outcome = VerifyOutcome::from_log(&pbs.task_log(&upid).await);
                let failed = if outcome.failed.is_empty() {
                    "(the task log names none; read it on PBS)".to_string()
                } else {
                    outcome.failed.join(", ")
                };
                progress.report(format!(
                    "Verify job {job:?} failed: {} snapshot(s) verified, {} failed",
                    outcome.verified.len(),
                    outcome.failed.len()
                ));
                Err(Diagnostics::error(
                    format!("Verify job {job:?} failed"),
                    format!(
                        "PBS task {upid} ended with: {exitstatus}. Snapshots that failed verification: {failed}. \
                         Their data is damaged or missing in the datastore: take a new backup of these guests, and \
                         check the datastore's disks."
                    ),
                ))
            }
            Err(e @ ClientError::Timeout { .. }) => Err(Diagnostics::at(
                path!["timeout"],
                format!("Verify job {job:?} did not finish in time"),
                format!("{e}. Raise timeout (now {:?}) or let the task finish on PBS.", timeout),
            )),
            Err(e) => Err(Diagnostics::error(format!("Waiting for verify job {job:?} failed"), e.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_ids_follow_pbs() {
        assert!(check_job_id("weekly-verify").is_ok());
        assert!(check_job_id("v1").is_err());
        assert!(check_job_id("-lead").is_err());
        assert!(check_job_id("has space").is_err());
        assert!(check_job_id(&"x".repeat(33)).is_err());
    }
}
