//! The hub's state in PostgreSQL — the same engine the fleet already runs for Terraform state.
//! Everything the hub knows lives here, so any number of hub instances can serve the same
//! fleet: they share nothing but the database.
//!
//! Schema `edge_hub`:
//! - `stores`: the registry — name, region, the store's report-signing public key;
//! - `reports`: every verified report as received (the signed JSON kept whole: evidence);
//! - `channels`: per store, the last manifest published (version, release, the signed bytes
//!   served to the store);
//! - `rollouts`: each rollout's spec and the controller's state; one is `current`;
//! - `decisions`: what each step decided whenever the outcome changed — the rollout's history,
//!   with the gate's inputs and verdict per partition.
//!
//! A store also gets its own PostgreSQL role and a schema `tfstate_<store>` it owns, for its
//! Terraform state (`backend "pg"` with `schema_name`): its credentials can write that schema
//! and nothing else — not another store's state, not the hub's tables. Reports reach the hub
//! over HTTPS and are accepted only when signed by the store's registered key.
//!
//! A step runs in one transaction under an advisory lock, so two hub instances stepping at the
//! same moment take turns instead of publishing twice.

use std::collections::BTreeMap;

use edge_images::dsse::Envelope;
use edge_images::keys::{PublicKey, SecretKey};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use tokio_postgres::{Client, GenericClient, NoTls, Row};

use crate::agent::SignedReport;
use crate::evidence;
use crate::hub::{self, HubError, RegisteredStore};
use crate::rollout::{Decision, Report, Spec, State};
use crate::status_page::{ReportView, RolloutStatus, Sources};

/// Key of the advisory lock a step holds ("edgeform hub step" in ASCII, truncated to i64).
const STEP_LOCK: i64 = 0x6564_6765_6875_6273;

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("PostgreSQL: {0}")]
    Pg(#[from] tokio_postgres::Error),
    #[error("{0}")]
    Hub(#[from] HubError),
    #[error("store name {0:?}: use lower-case letters, digits and '-' (at most 40), starting with a letter or digit")]
    StoreName(String),
    #[error("{0}")]
    Invalid(String),
    #[error("no rollout has been started (edge-fleet hub start --spec …)")]
    NoRollout,
}

const SCHEMA: &str = r#"
create schema if not exists edge_hub;
create table if not exists edge_hub.stores (
  name text primary key,
  region text not null,
  report_key text not null,
  registered_at timestamptz not null default now()
);
create table if not exists edge_hub.reports (
  id bigserial primary key,
  store text not null references edge_hub.stores(name),
  received_at timestamptz not null default now(),
  version bigint not null,
  release text not null,
  outcome text not null,
  reported_at text not null,
  signed jsonb not null
);
create index if not exists reports_by_store on edge_hub.reports (store, id desc);
create table if not exists edge_hub.channels (
  store text primary key references edge_hub.stores(name),
  version bigint not null,
  release text not null,
  manifest text not null,
  published_at timestamptz not null default now()
);
create table if not exists edge_hub.rollouts (
  release text primary key,
  spec jsonb not null,
  state jsonb,
  current boolean not null default false,
  started_at timestamptz not null default now()
);
alter table edge_hub.rollouts add column if not exists status jsonb;
create unique index if not exists one_current_rollout on edge_hub.rollouts (current) where current;
-- Each store's nightly evidence record, as the store signed it (DSSE); one per store and UTC day,
-- the latest collected wins. `edge-fleet audit write --database` makes the day's file from them.
create table if not exists edge_hub.evidence (
  store text not null references edge_hub.stores(name),
  day date not null,
  collected_at timestamptz not null,
  received_at timestamptz not null default now(),
  record jsonb not null,
  envelope jsonb not null,
  primary key (store, day)
);
create table if not exists edge_hub.decisions (
  id bigserial primary key,
  at timestamptz not null default now(),
  release text not null,
  actions jsonb not null,
  status jsonb not null
);
"#;

/// What a report upload came to.
#[derive(Debug, PartialEq, Eq)]
pub enum Upload {
    Accepted,
    /// Not signed by a registered store's key, or older than what the store already reported
    /// (a replay): the reason, for the HTTP answer and the log.
    Refused(String),
}

pub struct Db {
    client: Client,
}

impl Db {
    /// Connects (the connection's I/O runs as a task on the current tokio runtime).
    pub async fn connect(conn: &str) -> Result<Self, DbError> {
        let (client, connection) = tokio_postgres::connect(conn, NoTls).await?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::error!(error = %e, "PostgreSQL connection ended");
            }
        });
        Ok(Self { client })
    }

    /// Creates the hub's schema if it is not there (idempotent; every instance may run it).
    pub async fn migrate(&self) -> Result<(), DbError> {
        // Serialised: two instances creating the same tables at once would race in the catalog.
        self.client.execute("select pg_advisory_lock($1)", &[&(STEP_LOCK - 1)]).await?;
        let r = self.client.batch_execute(SCHEMA).await;
        self.client.execute("select pg_advisory_unlock($1)", &[&(STEP_LOCK - 1)]).await?;
        Ok(r?)
    }

    /// Registers a store (or updates its region and key) and gives it a role and a schema of
    /// its own for its Terraform state; returns the role's name.
    pub async fn register(&self, store: &RegisteredStore) -> Result<String, DbError> {
        edge_images::keys::PublicKey::parse(&store.key).map_err(|_| HubError::Key(store.name.clone()))?;
        let ident = store_ident(&store.name)?;
        let (role, schema) = (format!("edge_store_{ident}"), format!("tfstate_{ident}"));
        self.client
            .execute(
                "insert into edge_hub.stores (name, region, report_key) values ($1, $2, $3)
                 on conflict (name) do update set region = excluded.region, report_key = excluded.report_key",
                &[&store.name, &store.region, &store.key],
            )
            .await?;
        // Identifiers cannot be bound as parameters; `store_ident` allows only [a-z0-9_].
        let exists = self.client.query_opt("select 1 from pg_roles where rolname = $1", &[&role]).await?.is_some();
        if !exists {
            self.client.batch_execute(&format!("create role {role} login")).await?;
        }
        // Terraform's pg backend (internal/backend/remote-state/pg/backend.go, `configure`)
        // would create the schema, a sequence in `public` and its table and index itself; the
        // store's role may not create anything outside its schema, so they are made here, as
        // Terraform makes them, and the agent runs with PG_SKIP_{SCHEMA,TABLE,INDEX}_CREATION.
        self.client
            .batch_execute(&format!(
                "create schema if not exists {schema} authorization {role};
                 create sequence if not exists public.global_states_id_seq as bigint;
                 create table if not exists {schema}.states (
                   id bigint not null default nextval('public.global_states_id_seq') primary key,
                   name text unique,
                   data text);
                 create unique index if not exists states_by_name on {schema}.states (name);
                 alter table {schema}.states owner to {role};
                 grant usage on schema public to {role};
                 grant usage, select on sequence public.global_states_id_seq to {role};
                 revoke all on schema edge_hub from {role};
                 revoke create on schema public from public;"
            ))
            .await?;
        Ok(role)
    }

    pub async fn stores(&self) -> Result<Vec<RegisteredStore>, DbError> {
        registry(&self.client).await
    }

    /// Makes `spec` the current rollout (its stores must all be registered). Starting the
    /// rollout that is already current changes nothing; a spec edited under the same release
    /// replaces the old one and keeps its state.
    pub async fn start(&mut self, spec: &Spec) -> Result<(), DbError> {
        let stores = self.stores().await?;
        spec.assign(&hub::inventory(&stores)).map_err(HubError::from)?;
        let json = json(spec)?;
        let tx = self.client.transaction().await?;
        tx.execute("select pg_advisory_xact_lock($1)", &[&STEP_LOCK]).await?;
        tx.execute("update edge_hub.rollouts set current = false where current and release <> $1", &[&spec.release])
            .await?;
        tx.execute(
            "insert into edge_hub.rollouts (release, spec, current) values ($1, $2, true)
             on conflict (release) do update set spec = excluded.spec, current = true",
            &[&spec.release, &json],
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Stores a report if the store's registered key signed it and it is not older than the
    /// store's latest (a replayed report cannot turn a failure back into a success).
    pub async fn upload(&self, signed: &SignedReport) -> Result<Upload, DbError> {
        let Some(name) = signed.report.get("store").and_then(|v| v.as_str()) else {
            return Ok(Upload::Refused("the report names no store".into()));
        };
        let Some(row) = self.client.query_opt(&format!("{SELECT_STORES} where name = $1"), &[&name]).await? else {
            return Ok(Upload::Refused(format!("{name}: not a registered store")));
        };
        let store = store_of(&row);
        let report = match hub::verify_report(&store, signed) {
            Ok(r) => r,
            Err(why) => return Ok(Upload::Refused(why)),
        };
        let last = self
            .client
            .query_opt(
                "select version, reported_at from edge_hub.reports where store = $1 order by id desc limit 1",
                &[&store.name],
            )
            .await?;
        let version = i64::try_from(report.version).map_err(|_| DbError::Invalid("version out of range".into()))?;
        if let Some(last) = last {
            let (v, at): (i64, String) = (last.get(0), last.get(1));
            // As times, not strings: RFC 3339 fractions vary in length ("…:48.4Z", "…:48.45Z").
            let when = |s: &str| OffsetDateTime::parse(s, &Rfc3339).ok();
            let Some(reported) = when(&report.at) else {
                return Ok(Upload::Refused(format!("{}: report time {:?} is not RFC 3339", store.name, report.at)));
            };
            if (version, Some(reported)) < (v, when(&at)) {
                return Ok(Upload::Refused(format!(
                    "{}: report for version {version} at {} is older than the one on record (version {v} at {at})",
                    store.name, report.at
                )));
            }
        }
        let (outcome, signed_json) = (json(&report.outcome)?, json(signed)?);
        self.client
            .execute(
                "insert into edge_hub.reports (store, version, release, outcome, reported_at, signed)
                 values ($1, $2, $3, $4, $5, $6)",
                &[
                    &store.name,
                    &version,
                    &report.release,
                    &outcome.as_str().unwrap_or_default(),
                    &report.at,
                    &signed_json,
                ],
            )
            .await?;
        Ok(Upload::Accepted)
    }

    /// Stores a store's signed evidence record if the store's registered key signed it; a
    /// record collected earlier the same day than the one on file is refused.
    pub async fn upload_evidence(&self, env: &Envelope) -> Result<Upload, DbError> {
        let Some(name) = evidence::claimed_store(env) else {
            return Ok(Upload::Refused("not a signed evidence record naming its store".into()));
        };
        let Some(row) = self.client.query_opt(&format!("{SELECT_STORES} where name = $1"), &[&name]).await? else {
            return Ok(Upload::Refused(format!("{name}: not a registered store")));
        };
        let store = store_of(&row);
        let key = PublicKey::parse(&store.key).map_err(|e| DbError::Invalid(format!("{name}: registered key: {e}")))?;
        let rec = match evidence::verify_record(env, &store.name, &key) {
            Ok(r) => r,
            Err(why) => return Ok(Upload::Refused(why)),
        };
        let Ok(at) = OffsetDateTime::parse(&rec.collected_at, &Rfc3339) else {
            return Ok(Upload::Refused(format!("{name}: collected_at {:?} is not RFC 3339", rec.collected_at)));
        };
        let n = self
            .client
            .execute(
                "insert into edge_hub.evidence (store, day, collected_at, record, envelope) values ($1, $2, $3, $4, $5)
                 on conflict (store, day) do update set collected_at = excluded.collected_at, record = excluded.record,
                   envelope = excluded.envelope, received_at = now()
                 where edge_hub.evidence.collected_at < excluded.collected_at",
                &[&store.name, &at.to_offset(time::UtcOffset::UTC).date(), &at, &json(&rec)?, &json(env)?],
            )
            .await?;
        if n == 0 {
            return Ok(Upload::Refused(format!("{name}: a record collected later that day is on file")));
        }
        Ok(Upload::Accepted)
    }

    /// The evidence records of `day` (UTC), one per store that sent one.
    pub async fn evidence_on(&self, day: time::Date) -> Result<Vec<evidence::StoreEvidence>, DbError> {
        let rows =
            self.client.query("select record from edge_hub.evidence where day = $1 order by store", &[&day]).await?;
        rows.iter().map(|r| parse(r.get(0))).collect()
    }

    /// The signed manifest last published for `store`, as served.
    pub async fn manifest(&self, store: &str) -> Result<Option<String>, DbError> {
        Ok(self
            .client
            .query_opt("select manifest from edge_hub.channels where store = $1", &[&store])
            .await?
            .map(|r| r.get(0)))
    }

    /// One step of the current rollout: reports in, decision, manifests out — in one
    /// transaction under the step lock.
    pub async fn step(
        &mut self,
        keys: &[SecretKey],
        lifetime: time::Duration,
        now: OffsetDateTime,
    ) -> Result<hub::Step, DbError> {
        let tx = self.client.transaction().await?;
        tx.execute("select pg_advisory_xact_lock($1)", &[&STEP_LOCK]).await?;
        let Some(row) = tx.query_opt("select spec, state from edge_hub.rollouts where current", &[]).await? else {
            return Err(DbError::NoRollout);
        };
        let spec: Spec = serde_json::from_value(row.get(0)).map_err(|e| DbError::Invalid(format!("spec: {e}")))?;
        let state: Option<State> = row
            .get::<_, Option<serde_json::Value>>(1)
            .map(serde_json::from_value)
            .transpose()
            .map_err(|e| DbError::Invalid(format!("state: {e}")))?;
        let registry = registry(&tx).await?;
        // Reports were verified on upload; the latest per store is what the gate reads. One
        // probe of `reports_by_store` per registered store (every report's store is one): the
        // step costs the same however much history the table keeps. (`distinct on (store)` over
        // the table sorted every report ever received: ~170 ms of PostgreSQL per step at
        // 100,000 reports, bench/hub.)
        let mut reports = BTreeMap::new();
        for r in tx
            .query(
                "select s.name, r.release, r.outcome from edge_hub.stores s
                 cross join lateral (select release, outcome from edge_hub.reports
                   where store = s.name order by id desc limit 1) r",
                &[],
            )
            .await?
        {
            let outcome: String = r.get(2);
            let outcome = serde_json::from_value(serde_json::Value::String(outcome))
                .map_err(|e| DbError::Invalid(format!("report outcome: {e}")))?;
            reports.insert(r.get::<_, String>(0), Report { release: r.get(1), outcome });
        }
        let channels = channels(&tx).await?;
        let step = hub::decide(&spec, &registry, state, &reports, &channels, keys, lifetime, now)?;
        for p in &step.published {
            let version = i64::try_from(p.version).map_err(|_| DbError::Invalid("version out of range".into()))?;
            let manifest = String::from_utf8_lossy(&p.manifest.to_json()).into_owned();
            tx.execute(
                "insert into edge_hub.channels (store, version, release, manifest) values ($1, $2, $3, $4)
                 on conflict (store) do update set version = excluded.version, release = excluded.release,
                 manifest = excluded.manifest, published_at = now()",
                &[&p.store, &version, &p.release, &manifest],
            )
            .await?;
        }
        let state = json(&step.decision.state)?;
        // The status of every step (a verdict's clock moves each tick); the history only on change.
        let status = json(&step.decision.status)?;
        tx.execute(
            "update edge_hub.rollouts set state = $1, status = $2 where release = $3",
            &[&state, &status, &spec.release],
        )
        .await?;
        log_decision(&tx, &spec.release, &step.decision).await?;
        tx.commit().await?;
        Ok(step)
    }

    /// The current rollout: its release and every partition's status as of the last step.
    pub async fn current(&self) -> Result<Option<(String, Vec<crate::rollout::PartitionStatus>)>, DbError> {
        let Some(row) =
            self.client.query_opt("select release, status from edge_hub.rollouts where current", &[]).await?
        else {
            return Ok(None);
        };
        let status: Option<serde_json::Value> = row.get(1);
        Ok(Some((row.get(0), status.map(parse).transpose()?.unwrap_or_default())))
    }

    /// What the hub's `/metrics` exposes ([`crate::metrics`]): per registered store its latest
    /// report's arrival, the release of its latest succeeded report and its latest evidence
    /// record; and the current rollout's spec and status. One probe per store of
    /// `reports_by_store` and of the evidence key, as the step reads reports.
    pub async fn fleet_view(&self) -> Result<crate::metrics::FleetView, DbError> {
        let mut stores = Vec::new();
        for r in self
            .client
            .query(
                "select s.name, s.region, l.received_at, ok.release, e.record from edge_hub.stores s
                 left join lateral (select received_at from edge_hub.reports
                   where store = s.name order by id desc limit 1) l on true
                 left join lateral (select release from edge_hub.reports
                   where store = s.name and outcome = 'succeeded' order by id desc limit 1) ok on true
                 left join lateral (select record from edge_hub.evidence
                   where store = s.name order by day desc limit 1) e on true
                 order by s.name",
                &[],
            )
            .await?
        {
            stores.push(crate::metrics::StoreSeen {
                name: r.get(0),
                region: r.get(1),
                last_report: r.get(2),
                running: r.get(3),
                evidence: r.get::<_, Option<serde_json::Value>>(4).map(parse).transpose()?,
            });
        }
        let rollout =
            match self.client.query_opt("select spec, status from edge_hub.rollouts where current", &[]).await? {
                Some(row) => Some((
                    parse(row.get(0))?,
                    row.get::<_, Option<serde_json::Value>>(1).map(parse).transpose()?.unwrap_or_default(),
                )),
                None => None,
            };
        Ok(crate::metrics::FleetView { stores, rollout })
    }

    /// The current rollout as `edge-fleet hub status` prints it and the hub's status page shows
    /// it ([`crate::status_page`]): the spec, every partition's status as of the last step and
    /// when it opened, passed or halted, each store's channel and reports, the step that halted
    /// it, and the last `history` decisions. `None`: no rollout started.
    pub async fn rollout_status(&self, history: i64) -> Result<Option<RolloutStatus>, DbError> {
        let Some(row) = self
            .client
            .query_opt("select release, spec, state, status, started_at from edge_hub.rollouts where current", &[])
            .await?
        else {
            return Ok(None);
        };
        let release: String = row.get(0);
        let spec: Spec = parse(row.get(1))?;
        let mut src = Sources {
            state: row.get::<_, Option<serde_json::Value>>(2).map(parse).transpose()?,
            status: row.get::<_, Option<serde_json::Value>>(3).map(parse).transpose()?.unwrap_or_default(),
            registry: registry(&self.client).await?,
            channels: channels(&self.client).await?,
            ..Sources::default()
        };
        // Per store its latest report, and its latest on this release (one probe each of
        // `reports_by_store`, as the step reads them).
        for r in self
            .client
            .query(
                "select s.name, l.release, l.outcome, l.reported_at, l.detail, n.outcome, n.reported_at, n.detail
                 from edge_hub.stores s
                 left join lateral (select release, outcome, reported_at, signed->'report'->'detail' as detail
                   from edge_hub.reports where store = s.name order by id desc limit 1) l on true
                 left join lateral (select outcome, reported_at, signed->'report'->'detail' as detail
                   from edge_hub.reports where store = s.name and release = $1 order by id desc limit 1) n on true",
                &[&release],
            )
            .await?
        {
            let store: String = r.get(0);
            let view = |release: String, at: usize| -> Result<Option<ReportView>, DbError> {
                let Some(outcome) = r.get::<_, Option<String>>(at) else { return Ok(None) };
                Ok(Some(ReportView {
                    release,
                    outcome: parse(serde_json::Value::String(outcome))?,
                    at: r.get(at + 1),
                    detail: r.get::<_, Option<serde_json::Value>>(at + 2).map(parse).transpose()?.unwrap_or_default(),
                }))
            };
            if let Some(v) = view(r.get::<_, Option<String>>(1).unwrap_or_default(), 2)? {
                src.last.insert(store.clone(), v);
            }
            if let Some(v) = view(release.clone(), 5)? {
                src.on_release.insert(store, v);
            }
        }
        // When each partition first showed each phase (the decisions record every change).
        for r in self
            .client
            .query(
                "select p->>'name', case jsonb_typeof(p->'phase') when 'string' then p->>'phase'
                   else (select min(k) from jsonb_object_keys(p->'phase') k) end, min(d.at)
                 from edge_hub.decisions d cross join lateral jsonb_array_elements(d.status) p
                 where d.release = $1 group by 1, 2",
                &[&release],
            )
            .await?
        {
            if let (Some(name), Some(phase)) = (r.get::<_, Option<String>>(0), r.get::<_, Option<String>>(1)) {
                src.phase_since.insert((name, phase), r.get(2));
            }
        }
        // The step that stopped it: its verdicts are the reason (later ones only count the way back).
        src.halted = match self
            .client
            .query_opt(
                "select d.at, d.status from edge_hub.decisions d where d.release = $1 and exists
                   (select 1 from jsonb_array_elements(d.status) p where p->>'phase' in ('halted', 'reverted'))
                 order by d.id limit 1",
                &[&release],
            )
            .await?
        {
            Some(r) => Some((r.get(0), parse(r.get(1))?)),
            None => None,
        };
        src.history = self.history(history).await?.into_iter().map(|(at, _, d)| (at, d)).collect();
        let status =
            RolloutStatus::assemble(spec, row.get(4), src, OffsetDateTime::now_utc()).map_err(HubError::from)?;
        Ok(Some(status))
    }

    /// The current rollout's recorded decisions, newest first: one per change of a partition's
    /// phase or counts, with what it published.
    pub async fn history(&self, limit: i64) -> Result<Vec<(OffsetDateTime, String, Decision)>, DbError> {
        let rows = self
            .client
            .query(
                "select d.at, d.release, d.actions, d.status, r.state from edge_hub.decisions d
                 join edge_hub.rollouts r on r.release = d.release and r.current
                 order by d.id desc limit $1",
                &[&limit],
            )
            .await?;
        rows.iter()
            .map(|r| {
                let decision =
                    Decision { actions: parse(r.get(2))?, status: parse(r.get(3))?, state: parse(r.get(4))? };
                Ok((r.get(0), r.get(1), decision))
            })
            .collect()
    }

    /// Every decision recorded on `day` (UTC), of any rollout, oldest first: the day's page of
    /// the audit file.
    pub async fn decisions_on(&self, day: time::Date) -> Result<Vec<serde_json::Value>, DbError> {
        let rows = self
            .client
            .query(
                "select to_json(d.at)::text, d.release, d.actions, d.status from edge_hub.decisions d
                 where (d.at at time zone 'UTC')::date = $1 order by d.id",
                &[&day],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| {
                let at: String = r.get(0);
                serde_json::json!({
                    "at": at.trim_matches('"'), "release": r.get::<_, String>(1),
                    "actions": r.get::<_, serde_json::Value>(2), "status": r.get::<_, serde_json::Value>(3),
                })
            })
            .collect())
    }
}

/// Records the decision when it differs from the last one recorded for the rollout: the
/// history shows every change (a gate met, a partition opened, a halt) without a row per tick.
async fn log_decision(tx: &tokio_postgres::Transaction<'_>, release: &str, d: &Decision) -> Result<(), DbError> {
    let (actions, status) = (json(&d.actions)?, json(&d.status)?);
    let last = tx
        .query_opt("select status from edge_hub.decisions where release = $1 order by id desc limit 1", &[&release])
        .await?;
    let same = last.is_some_and(|r| phases_and_counts(&r.get(0)) == phases_and_counts(&status));
    if !same || !d.actions.is_empty() {
        tx.execute(
            "insert into edge_hub.decisions (release, actions, status) values ($1, $2, $3)",
            &[&release, &actions, &status],
        )
        .await?;
    }
    Ok(())
}

/// What makes a decision worth a history row: each partition's phase and counts (a verdict's
/// text changes every tick while soaking, "soaking, 41 s left").
fn phases_and_counts(status: &serde_json::Value) -> Vec<serde_json::Value> {
    status
        .as_array()
        .map(|a| {
            a.iter()
                .map(|s| {
                    let mut s = s.clone();
                    if let Some(o) = s.as_object_mut() {
                        o.remove("verdict");
                        // The phase's `since` stays: it changes only when the phase does.
                    }
                    s
                })
                .collect()
        })
        .unwrap_or_default()
}

const SELECT_STORES: &str = "select name, region, report_key from edge_hub.stores";

/// The registry by name, on the connection or inside a step's transaction.
async fn registry(c: &impl GenericClient) -> Result<Vec<RegisteredStore>, DbError> {
    Ok(c.query(&format!("{SELECT_STORES} order by name"), &[]).await?.iter().map(store_of).collect())
}

/// Per store: the last manifest version published and the release it names.
async fn channels(c: &impl GenericClient) -> Result<BTreeMap<String, (u64, String)>, DbError> {
    let mut out = BTreeMap::new();
    for r in c.query("select store, version, release from edge_hub.channels", &[]).await? {
        let v: i64 = r.get(1);
        out.insert(r.get::<_, String>(0), (u64::try_from(v).unwrap_or(0), r.get::<_, String>(2)));
    }
    Ok(out)
}

fn store_of(r: &Row) -> RegisteredStore {
    RegisteredStore { name: r.get(0), region: r.get(1), key: r.get(2) }
}

fn json<T: serde::Serialize + ?Sized>(v: &T) -> Result<serde_json::Value, DbError> {
    serde_json::to_value(v).map_err(|e| DbError::Invalid(e.to_string()))
}

fn parse<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> Result<T, DbError> {
    serde_json::from_value(v).map_err(|e| DbError::Invalid(e.to_string()))
}

/// `store-001` → `store_001`: the part of a role and schema name that comes from the store.
pub fn store_ident(name: &str) -> Result<String, DbError> {
    let ok = !name.is_empty()
        && name.len() <= 40
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !ok {
        return Err(DbError::StoreName(name.to_string()));
    }
    Ok(name.replace('-', "_"))
}
