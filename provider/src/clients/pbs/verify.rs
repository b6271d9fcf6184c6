//! Running a verify job now: `POST /admin/verify/{id}/run` starts a `verificationjob` task
//! (proxmox-backup `src/api2/admin/verify.rs` `run_verification_job`); its log names the
//! snapshots that failed (`src/server/verify_job.rs` `do_verification_job`).

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{JobKind, PbsClient};
use crate::clients::http::{segment, Retry};
use crate::clients::{ApiErrorKind, ClientError};

/// The log line after which a failed verify task lists the snapshots and groups that failed,
/// one per line, each after a tab.
const FAILED_HEADING: &str = "Failed to verify the following snapshots/groups:";

impl PbsClient {
    /// Starts verify job `id` now; the task's UPID. A job that does not exist is
    /// [`ApiErrorKind::NotFound`] (PBS answers it with a 400 like any refusal: the job list
    /// decides). Sent once only: a repeat would start a second verification.
    pub async fn run_verify_job(&self, id: &str) -> Result<String, ClientError> {
        let path = format!("/admin/verify/{}/run", segment(id));
        match self.api.post(&path, &serde_json::json!({}), Retry::Once).await {
            Ok(upid) => Ok(upid),
            Err(e) if e.is(ApiErrorKind::InvalidParams) => match self.job_exists(JobKind::Verify, id).await {
                Ok(false) => Err(e.with_kind(ApiErrorKind::NotFound)),
                _ => Err(e),
            },
            Err(e) => Err(e),
        }
    }

    /// Waits until PBS task `upid` ends; a failed task is [`ClientError::TaskFailed`] with the
    /// end of its log.
    pub async fn wait_task(&self, upid: &str, deadline: Instant, stop: &CancellationToken) -> Result<(), ClientError> {
        self.api.wait_task(upid, deadline, stop, false).await
    }

    /// The whole log of task `upid` (each line with its time prefix), best effort.
    pub async fn task_log(&self, upid: &str) -> Vec<String> {
        self.api.task_log_tail(upid, usize::MAX).await
    }
}

/// What a verify task's log says: the snapshots it verified and those that failed.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct VerifyOutcome {
    /// `STORE:DIR` of every snapshot verified (not skipped).
    pub verified: Vec<String>,
    /// The snapshots (or groups) listed as failed.
    pub failed: Vec<String>,
}

impl VerifyOutcome {
    /// Reads a verify task's log lines (with or without PBS's `TIME: ` prefix).
    pub fn from_log(lines: &[String]) -> VerifyOutcome {
        let mut out = VerifyOutcome::default();
        let mut in_failed = false;
        for line in lines {
            let text = strip_time(line);
            if text == FAILED_HEADING {
                in_failed = true;
                continue;
            }
            if in_failed {
                match text.strip_prefix('\t') {
                    Some(dir) => {
                        out.failed.push(dir.trim().to_string());
                        continue;
                    }
                    None => in_failed = false,
                }
            }
            // `verify STORE:DIR` starts one snapshot; `verify STORE:DIR/FILE failed: …` and
            // `verify group …`/`verify datastore …` are other lines.
            if let Some(rest) = text.strip_prefix("verify ") {
                if !rest.starts_with("group ") && !rest.starts_with("datastore ") && !rest.contains(' ') {
                    out.verified.push(rest.to_string());
                }
            }
        }
        out
    }
}

/// A task log line without PBS's `2024-06-05T12:34:56+00:00: ` prefix.
fn strip_time(line: &str) -> &str {
    match line.split_once(": ") {
        Some((t, rest)) if t.len() >= 19 && t.as_bytes().get(4) == Some(&b'-') && t.contains('T') => rest,
        _ => line,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_verify_log_names_verified_and_failed_snapshots() {
        let log: Vec<String> = [
            "2024-06-05T12:34:56+00:00: starting task UPID:pbs:x",
            "2024-06-05T12:34:56+00:00: Starting datastore verify job 'store1:weekly'",
            "2024-06-05T12:34:56+00:00: verify datastore store1",
            "2024-06-05T12:34:56+00:00: found 2 groups",
            "2024-06-05T12:34:56+00:00: verify group store1:vm/100 (2 snapshots)",
            "2024-06-05T12:34:56+00:00: verify store1:vm/100/2023-11-14T22:13:20Z",
            "2024-06-05T12:34:56+00:00:   check drive-scsi0.img.fidx",
            "2024-06-05T12:34:56+00:00: verify store1:vm/100/2023-11-14T22:13:20Z/drive-scsi0.img.fidx failed: chunks could not be verified",
            "2024-06-05T12:34:56+00:00: SKIPPED: verify store1:vm/100/2023-11-13T22:13:20Z (recently verified)",
            "2024-06-05T12:34:56+00:00: verify store1:ct/101/2023-11-14T22:13:20Z",
            "2024-06-05T12:34:56+00:00: Failed to verify the following snapshots/groups:",
            "2024-06-05T12:34:56+00:00: \tvm/100/2023-11-14T22:13:20Z",
            "2024-06-05T12:34:57+00:00: TASK ERROR: verification failed - please check the log for details",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let o = VerifyOutcome::from_log(&log);
        assert_eq!(o.verified, ["store1:vm/100/2023-11-14T22:13:20Z", "store1:ct/101/2023-11-14T22:13:20Z"]);
        assert_eq!(o.failed, ["vm/100/2023-11-14T22:13:20Z"]);
        assert_eq!(VerifyOutcome::from_log(&[]), VerifyOutcome::default());
    }
}
