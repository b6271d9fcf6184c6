//! The `Resource` trait every resource implements with typed state, and the adapter that turns
//! it into the value-level operations the protocol boundary calls.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::framework::convert::{from_typed, to_typed};
use crate::framework::diag::{AttrPath, Diagnostics};
use crate::framework::plan::{plan_block, strip_write_only, unknown_computed, unknown_volatile};
use crate::framework::schema::{IdentitySchema, Schema};
use crate::framework::value::Value;
use crate::provider::Clients;

/// What every resource call gets: the configured clients and the stop signal.
#[derive(Clone)]
pub struct Ctx {
    pub clients: Arc<Clients>,
    /// Cancelled when Terraform asks the provider to stop (StopProvider, Ctrl-C).
    pub stop: CancellationToken,
    /// Terraform ≥ 1.11 keeps write-only attributes out of plan and state; older versions
    /// store them like any sensitive attribute.
    pub write_only_supported: bool,
}

/// On Terraform < 1.11 a write-only attribute is stored in state (marked sensitive): say so.
pub fn check_write_only_unsupported(schema: &Schema, config: &Value) -> Diagnostics {
    let mut d = Diagnostics::new();
    for a in schema.block.attributes.iter().filter(|a| a.write_only) {
        if !config.attr(&a.name).is_null() {
            d.warn_at(
                AttrPath::root(&a.name),
                "Stored in state on this Terraform version",
                format!(
                    "{} is write-only on Terraform 1.11 and later. This Terraform version does not support \
                     write-only attributes, so the value is kept in state, marked sensitive.",
                    a.name
                ),
            );
        }
    }
    d
}

/// How an import names the object: the CLI / `import { id = … }` string, or an identity.
#[derive(Clone, Debug)]
pub enum ImportRequest {
    Id(String),
    Identity(BTreeMap<String, String>),
}

/// The planning context a resource's `modify_plan` works on. The generic logic has already
/// run: defaults, computed unknowns, force-new attributes.
pub struct PlanCtx<S> {
    /// `None` when creating.
    pub prior: Option<S>,
    /// The configuration; unknown values read as `None`.
    pub config: S,
    /// The configuration as values (to ask what is unknown).
    pub config_value: Value,
    planned: Value,
    pub requires_replace: Vec<AttrPath>,
    pub diags: Diagnostics,
    schema: Arc<Schema>,
}

impl<S: Serialize + DeserializeOwned> PlanCtx<S> {
    pub fn is_create(&self) -> bool {
        self.prior.is_none()
    }
    /// The planned state as the typed struct (unknown values read as `None`).
    pub fn planned(&self) -> Result<S, Diagnostics> {
        to_typed(&self.planned)
    }
    pub fn planned_value(&self) -> &Value {
        &self.planned
    }
    /// Marks a top-level attribute as known only after apply.
    pub fn set_unknown(&mut self, attr: &str) {
        if let Some(m) = self.planned.as_object_mut() {
            m.insert(attr.to_string(), Value::unknown());
        }
    }
    /// Sets a top-level attribute of the plan.
    pub fn set<T: Serialize>(&mut self, attr: &str, v: &T) -> Result<(), Diagnostics> {
        let ty = self
            .schema
            .block
            .attribute(attr)
            .map(|a| a.ty.clone())
            .ok_or_else(|| Diagnostics::error("Provider bug", format!("no attribute {attr}")))?;
        let j = serde_json::to_value(v).map_err(|e| Diagnostics::error("Provider bug", e.to_string()))?;
        if let Some(m) = self.planned.as_object_mut() {
            m.insert(attr.to_string(), crate::framework::convert::from_json(&j, &ty));
        }
        Ok(())
    }
    pub fn is_unknown_in_config(&self, attr: &str) -> bool {
        self.config_value.attr(attr).contains_unknown()
    }
    pub fn require_replace(&mut self, path: AttrPath) {
        if !self.requires_replace.contains(&path) {
            self.requires_replace.push(path);
        }
    }
}

/// A managed resource type, written with one serde struct `State` that holds configuration and
/// computed values alike (optional fields are `Option`). All resources have this shape.
#[async_trait]
pub trait Resource: Send + Sync + 'static {
    type State: Serialize + DeserializeOwned + Send + Sync + Clone;

    /// The resource type name, e.g. `edge_ceph_pool`.
    fn type_name(&self) -> &'static str;
    fn schema(&self) -> Schema;
    fn identity_schema(&self) -> Option<IdentitySchema> {
        None
    }
    /// Identity of an object, from its state (required when `identity_schema` is `Some`).
    fn identity(&self, _state: &Self::State) -> Option<BTreeMap<String, String>> {
        None
    }

    /// Checks a configuration offline. Unknown values read as `None`: check only what is known.
    fn validate(&self, _config: &Self::State, _diags: &mut Diagnostics) {}

    /// Adjusts the generic plan (remote checks, derived values, extra replacements).
    async fn modify_plan(&self, _ctx: &Ctx, _plan: &mut PlanCtx<Self::State>) -> Result<(), Diagnostics> {
        Ok(())
    }

    async fn create(&self, ctx: &Ctx, planned: Self::State, config: &Self::State) -> Result<Self::State, Diagnostics>;
    /// `Ok(None)` when the object is gone (Terraform then plans to create it again).
    async fn read(&self, ctx: &Ctx, state: Self::State) -> Result<Option<Self::State>, Diagnostics>;
    async fn update(
        &self,
        ctx: &Ctx,
        prior: Self::State,
        planned: Self::State,
        config: &Self::State,
    ) -> Result<Self::State, Diagnostics>;
    async fn delete(&self, ctx: &Ctx, prior: Self::State) -> Result<(), Diagnostics>;
    /// Returns enough state for `read` to fill in the rest.
    async fn import(&self, ctx: &Ctx, req: ImportRequest) -> Result<Self::State, Diagnostics>;

    /// Migrates raw state JSON written by schema `from_version` to the current schema.
    fn upgrade(&self, from_version: i64, _state: serde_json::Value) -> Result<serde_json::Value, Diagnostics> {
        Err(Diagnostics::error(
            "Unsupported state version",
            format!("{} has no migration from schema version {from_version}", self.type_name()),
        ))
    }
}

/// Whether the value at `path`, or any value on the way to it, is unknown.
fn touches_unknown(root: &Value, path: &AttrPath) -> bool {
    use crate::framework::diag::Step;
    let mut v = root;
    for step in &path.0 {
        if v.is_unknown() {
            return true;
        }
        let next = match (step, v) {
            (Step::Attr(a), Value::Object(m)) => m.get(a),
            (Step::Key(k), Value::Map(m) | Value::Object(m)) => m.get(k),
            (Step::Index(i), Value::List(l) | Value::Tuple(l) | Value::Set(l)) => {
                usize::try_from(*i).ok().and_then(|i| l.get(i))
            }
            _ => None,
        };
        match next {
            Some(n) => v = n,
            None => return false,
        }
    }
    v.contains_unknown()
}

/// The outcome of planning one change.
pub struct PlanOutcome {
    pub planned: Value,
    pub requires_replace: Vec<AttrPath>,
    pub diags: Diagnostics,
}

/// Value-level operations; implemented for every [`Resource`] by [`ResourceHandle`].
#[async_trait]
pub trait DynResource: Send + Sync {
    fn type_name(&self) -> &'static str;
    fn schema(&self) -> &Schema;
    fn identity_schema(&self) -> Option<&IdentitySchema>;
    fn identity_of(&self, state: &Value) -> Option<Value>;
    fn validate(&self, config: &Value) -> Diagnostics;
    async fn plan(&self, ctx: &Ctx, prior: &Value, proposed: &Value, config: &Value) -> PlanOutcome;
    async fn apply(&self, ctx: &Ctx, prior: &Value, planned: &Value, config: &Value) -> (Value, Diagnostics);
    async fn read(&self, ctx: &Ctx, state: &Value) -> (Value, Diagnostics);
    async fn import(&self, ctx: &Ctx, req: ImportRequest) -> (Value, Diagnostics);
    fn upgrade_json(&self, from_version: i64, state: serde_json::Value) -> Result<Value, Diagnostics>;
}

/// Wraps a typed [`Resource`] with its schema computed once.
pub struct ResourceHandle<R: Resource> {
    inner: R,
    schema: Arc<Schema>,
    identity: Option<IdentitySchema>,
}

impl<R: Resource> ResourceHandle<R> {
    pub fn new(inner: R) -> Self {
        let schema = Arc::new(inner.schema());
        let identity = inner.identity_schema();
        ResourceHandle { inner, schema, identity }
    }

    fn to_value(&self, ctx: &Ctx, s: &R::State) -> Result<Value, Diagnostics> {
        let mut v = from_typed(s, &self.schema.block)?;
        if ctx.write_only_supported {
            strip_write_only(&self.schema.block, &mut v);
        }
        Ok(v)
    }
}

#[async_trait]
impl<R: Resource> DynResource for ResourceHandle<R> {
    fn type_name(&self) -> &'static str {
        self.inner.type_name()
    }
    fn schema(&self) -> &Schema {
        &self.schema
    }
    fn identity_schema(&self) -> Option<&IdentitySchema> {
        self.identity.as_ref()
    }

    fn identity_of(&self, state: &Value) -> Option<Value> {
        let ids = self.identity.as_ref()?;
        if state.is_null() {
            return None;
        }
        let typed: R::State = to_typed(state).ok()?;
        let map = self.inner.identity(&typed)?;
        Some(Value::Object(
            ids.attributes
                .iter()
                .map(|a| (a.name.clone(), map.get(&a.name).cloned().map(Value::String).unwrap_or(Value::Null)))
                .collect(),
        ))
    }

    fn validate(&self, config: &Value) -> Diagnostics {
        let mut diags = Diagnostics::new();
        match to_typed::<R::State>(config) {
            Ok(cfg) => self.inner.validate(&cfg, &mut diags),
            Err(d) => diags.extend(d),
        }
        // The typed view reads unknown values as absent, so a check like "name is required
        // with create" can fire on a value that is merely not known yet (a module variable
        // during validation). A diagnostic about an unknown value is premature: drop it; the
        // same check runs again when the value is known.
        diags.0.retain(|d| d.path.as_ref().is_none_or(|p| !touches_unknown(config, p)));
        diags
    }

    async fn plan(&self, ctx: &Ctx, prior: &Value, proposed: &Value, config: &Value) -> PlanOutcome {
        let mut diags = Diagnostics::new();
        // Destroy: nothing to plan.
        if proposed.is_null() {
            return PlanOutcome { planned: Value::Null, requires_replace: vec![], diags };
        }
        let prior_opt = (!prior.is_null()).then_some(prior);
        let mut replace = Vec::new();
        let mut planned = plan_block(
            &self.schema.block,
            prior_opt,
            proposed,
            config,
            &AttrPath::default(),
            &mut replace,
            ctx.write_only_supported,
        );
        if !replace.is_empty() {
            unknown_computed(&self.schema.block, config, &mut planned);
        } else if let Some(prior) = prior_opt {
            unknown_volatile(&self.schema.block, prior, config, &mut planned);
        }
        let typed = (|| -> Result<_, Diagnostics> {
            let prior_t = match prior_opt {
                Some(p) => Some(to_typed::<R::State>(p)?),
                None => None,
            };
            Ok((prior_t, to_typed::<R::State>(config)?))
        })();
        let (prior_t, config_t) = match typed {
            Ok(t) => t,
            Err(d) => return PlanOutcome { planned, requires_replace: replace, diags: d },
        };
        let mut pctx = PlanCtx {
            prior: prior_t,
            config: config_t,
            config_value: config.clone(),
            planned,
            requires_replace: replace,
            diags: Diagnostics::new(),
            schema: self.schema.clone(),
        };
        if let Err(d) = self.inner.modify_plan(ctx, &mut pctx).await {
            diags.extend(d);
        }
        diags.extend(std::mem::take(&mut pctx.diags));
        // Replacing makes every computed value unknown, also after modify_plan's changes.
        if !pctx.requires_replace.is_empty() {
            unknown_computed(&self.schema.block, config, &mut pctx.planned);
        }
        if ctx.write_only_supported {
            strip_write_only(&self.schema.block, &mut pctx.planned);
        }
        PlanOutcome { planned: pctx.planned, requires_replace: pctx.requires_replace, diags }
    }

    async fn apply(&self, ctx: &Ctx, prior: &Value, planned: &Value, config: &Value) -> (Value, Diagnostics) {
        let result: Result<Value, Diagnostics> = async {
            if planned.is_null() {
                let prior_t: R::State = to_typed(prior)?;
                self.inner.delete(ctx, prior_t).await?;
                return Ok(Value::Null);
            }
            let planned_t: R::State = to_typed(planned)?;
            let config_t: R::State = to_typed(config)?;
            let new = if prior.is_null() {
                self.inner.create(ctx, planned_t, &config_t).await?
            } else {
                let prior_t: R::State = to_typed(prior)?;
                self.inner.update(ctx, prior_t, planned_t, &config_t).await?
            };
            self.to_value(ctx, &new)
        }
        .await;
        match result {
            Ok(v) => (v, Diagnostics::new()),
            // A failed create leaves nothing; a failed update or delete keeps the prior state,
            // so nothing is lost or half-written.
            Err(d) => (prior.clone(), d),
        }
    }

    async fn read(&self, ctx: &Ctx, state: &Value) -> (Value, Diagnostics) {
        if state.is_null() {
            return (Value::Null, Diagnostics::new());
        }
        let result: Result<Value, Diagnostics> = async {
            let typed: R::State = to_typed(state)?;
            match self.inner.read(ctx, typed).await? {
                Some(s) => self.to_value(ctx, &s),
                None => Ok(Value::Null),
            }
        }
        .await;
        match result {
            Ok(v) => (v, Diagnostics::new()),
            Err(d) => (state.clone(), d),
        }
    }

    async fn import(&self, ctx: &Ctx, req: ImportRequest) -> (Value, Diagnostics) {
        match self.inner.import(ctx, req).await.and_then(|s| self.to_value(ctx, &s)) {
            Ok(v) => (v, Diagnostics::new()),
            Err(d) => (Value::Null, d),
        }
    }

    fn upgrade_json(&self, from_version: i64, state: serde_json::Value) -> Result<Value, Diagnostics> {
        let migrated = self.inner.upgrade(from_version, state)?;
        Ok(crate::framework::convert::block_from_json(&migrated, &self.schema.block))
    }
}
