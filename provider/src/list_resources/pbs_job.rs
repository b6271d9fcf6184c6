//! `list "edge_pbs_job"`: a store's backup chain as `edge_pbs_job` models it, each job with the
//! identity (`kind`, `id`) it imports by: PVE vzdump jobs (`GET /cluster/backup`), PBS sync,
//! verify and prune jobs (`GET /config/sync|verify|prune`, push sync jobs included) and the
//! datastores that have a garbage-collection schedule (`GET /config/datastore`, kind `gc`, id
//! the datastore).

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::clients::pbs::JobKind;
use crate::clients::{ApiErrorKind, ClientError};
use crate::framework::{AttrPath, Attribute, Block, Ctx, Diagnostics, Done, ListResource, Listed, Schema, Type};
use crate::path;
use crate::resources::pve_client;

/// The `config { … }` of `list "edge_pbs_job"`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub kinds: Option<Vec<String>>,
    pub id_prefix: Option<String>,
}

pub struct PbsJobs;

const KINDS: [&str; 5] = ["backup", "sync", "verify", "prune", "gc"];

#[async_trait]
impl ListResource for PbsJobs {
    type Config = Config;

    fn type_name(&self) -> &'static str {
        "edge_pbs_job"
    }

    fn schema(&self) -> Schema {
        Schema::new(
            0,
            Block::new(
                "Lists a store's backup-chain jobs for `terraform query` and adoption with `-generate-config-out`: \
                 PVE backup jobs through the provider's `pve` block, PBS sync, verify and prune jobs and \
                 datastores with a garbage-collection schedule through its `pbs` block.",
            )
            .attr(Attribute::optional("kinds", Type::list(Type::String)).describe(
                "Only these kinds: `backup`, `sync`, `verify`, `prune`, `gc`. Default: every kind whose API the \
                 provider is configured for (`backup` needs `pve`, the others `pbs`).",
            ))
            .attr(Attribute::optional("id_prefix", Type::String).describe("Only jobs whose ID starts with this.")),
        )
    }

    fn validate(&self, c: &Config, d: &mut Diagnostics) {
        for (i, k) in c.kinds.iter().flatten().enumerate() {
            if !KINDS.contains(&k.as_str()) {
                d.error_at(path!["kinds", i], "Unknown job kind", format!("{k:?}: use one of {}", KINDS.join(", ")));
            }
        }
    }

    async fn list(&self, ctx: &Ctx, c: Config) -> Result<Done<Vec<Listed>>, Diagnostics> {
        let explicit = c.kinds.is_some();
        let wanted: Vec<&str> = match &c.kinds {
            Some(k) => KINDS.iter().copied().filter(|x| k.iter().any(|w| w == x)).collect(),
            None => KINDS
                .iter()
                .copied()
                .filter(|k| if *k == "backup" { ctx.clients.pve.is_some() } else { ctx.clients.pbs.is_some() })
                .collect(),
        };
        if wanted.is_empty() && !explicit {
            return Err(Diagnostics::error(
                "Neither PVE nor PBS configured",
                "Listing jobs needs the provider's pve block (backup jobs) or pbs block (sync, verify, prune, gc), \
                 or their EDGE_PVE_* / EDGE_PBS_* variables.",
            ));
        }
        let mut found: Vec<(&str, String, String)> = vec![];
        if wanted.contains(&"backup") {
            let pve = pve_client(ctx, None, "Listing backup jobs").map_err(|d| at_kinds(d, explicit))?;
            for j in pve.backup_jobs().await.map_err(|e| list_error("PVE backup jobs", e))? {
                let Some(id) = j.id else { continue };
                let what = j.storage.map(|s| format!("backup to {s}")).unwrap_or_else(|| "backup".into());
                found.push(("backup", id, what));
            }
        }
        let pbs_kinds: Vec<&str> = wanted.iter().copied().filter(|k| *k != "backup").collect();
        if !pbs_kinds.is_empty() {
            let cfg = ctx.clients.pbs.as_ref().ok_or_else(|| {
                at_kinds(
                    Diagnostics::error(
                        "PBS API not configured",
                        format!(
                            "Listing {} jobs needs the provider's pbs block or EDGE_PBS_* variables.",
                            pbs_kinds.join("/")
                        ),
                    ),
                    explicit,
                )
            })?;
            let pbs = crate::clients::pbs(cfg)
                .map_err(|e| Diagnostics::error("Cannot set up the PBS client", e.to_string()))?;
            for (kind, jk) in [("sync", JobKind::Sync), ("verify", JobKind::Verify), ("prune", JobKind::Prune)] {
                if pbs_kinds.contains(&kind) {
                    let ids = pbs.job_ids(jk).await.map_err(|e| list_error(&format!("PBS {kind} jobs"), e))?;
                    found.extend(ids.into_iter().map(|id| (kind, id, format!("PBS {kind} job"))));
                }
            }
            if pbs_kinds.contains(&"gc") {
                for ds in pbs.datastores().await.map_err(|e| list_error("PBS datastores", e))? {
                    // A datastore without a schedule has no gc job to adopt.
                    let (Some(name), Some(_)) = (ds.name, ds.gc_schedule.filter(|s| !s.is_empty())) else { continue };
                    found.push(("gc", name, "garbage collection".into()));
                }
            }
        }
        let mut listed: Vec<Listed> = found
            .into_iter()
            .filter(|(_, id, _)| c.id_prefix.as_ref().is_none_or(|p| id.starts_with(p.as_str())))
            .map(|(kind, id, what)| Listed {
                display_name: format!("{kind}/{id} ({what})"),
                identity: [("kind".to_string(), kind.to_string()), ("id".to_string(), id)].into(),
            })
            .collect();
        listed.sort_by(|a, b| a.display_name.cmp(&b.display_name));
        tracing::debug!(listed = listed.len(), "backup-chain jobs listed");
        Ok(listed.into())
    }
}

/// A missing API is the `kinds` attribute's fault when the user named the kinds.
fn at_kinds(d: Diagnostics, explicit: bool) -> Diagnostics {
    if !explicit {
        return d;
    }
    let mut out = Diagnostics::new();
    for x in d.0 {
        out.error_at(AttrPath::root("kinds"), x.summary, x.detail);
    }
    out
}

fn list_error(what: &str, e: ClientError) -> Diagnostics {
    let hint = match e.kind() {
        Some(ApiErrorKind::Forbidden) => " The API token needs audit rights (PVE: Sys.Audit on /; PBS: Audit on /).",
        Some(ApiErrorKind::Unauthorized) => {
            " Check the provider's api_token (or its EDGE_PVE_* / EDGE_PBS_* variable)."
        }
        _ => "",
    };
    Diagnostics::error(format!("Cannot list {what}"), format!("{e}.{hint}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_kind_points_at_its_index() {
        let mut d = Diagnostics::new();
        PbsJobs.validate(&Config { kinds: Some(vec!["sync".into(), "snapshot".into()]), id_prefix: None }, &mut d);
        assert_eq!(d.0.len(), 1);
        assert_eq!(d.0[0].path.as_ref().map(|p| p.to_string()).as_deref(), Some("kinds[1]"));
        assert!(d.0[0].detail.contains("backup, sync, verify, prune, gc"), "{:?}", d.0[0]);
    }
}
