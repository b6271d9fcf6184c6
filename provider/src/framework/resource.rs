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
use crate::framework::plan::{plan_block, strip_write_only, unknown_computed};
use crate::framework::schema::{IdentitySchema, Schema};
use crate::framework::value::Value;
use crate::framework::verbs::Done;
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
    /// Marks a top-level attribute as known only after apply. A name the schema lacks is a
    /// provider bug, reported as one (inserting it would send Terraform an object of another
    /// type).
    pub fn set_unknown(&mut self, attr: &str) -> Result<(), Diagnostics> {
        if self.schema.block.attribute(attr).is_none() {
            return Err(Diagnostics::error(
                "Provider bug",
                format!("the plan marks {attr:?} unknown, but the schema has no such attribute"),
            ));
        }
        if let Some(m) = self.planned.as_object_mut() {
            m.insert(attr.to_string(), Value::unknown());
        }
        Ok(())
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

/// A failed create or update, with the object as far as it got.
///
/// `partial: None` after a create means nothing was made, after an update that the prior state
/// still describes the object. `Some` is the state to record instead: after a create Terraform
/// records it as *tainted* (the next plan replaces it, `terraform destroy` removes it), so an
/// object the failed create made is never left behind unmanaged.
#[derive(Debug)]
pub struct Failed<S> {
    pub partial: Option<S>,
    pub diags: Diagnostics,
}

impl<S> Failed<S> {
    pub fn with_partial(partial: S, diags: Diagnostics) -> Self {
        Failed { partial: Some(partial), diags }
    }
}

/// `?` on a plain diagnostics result: failed, nothing made (or the prior state stands).
impl<S> From<Diagnostics> for Failed<S> {
    fn from(diags: Diagnostics) -> Self {
        Failed { partial: None, diags }
    }
}

/// What create and update return: the new state with its warnings, or how they failed.
pub type Applied<S> = Result<Done<S>, Failed<S>>;

/// A managed resource type, written with one serde struct `State` that holds configuration and
/// computed values alike (optional fields are `Option`). All resources have this shape.
///
/// Every operation returns its result with diagnostics: a warning goes with a success
/// ([`Done`]), it never has to pose as a failure.
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

    async fn create(&self, ctx: &Ctx, planned: Self::State, config: &Self::State) -> Applied<Self::State>;
    /// `None` when the object is gone (Terraform then plans to create it again). To keep the
    /// last known state (the remote system cannot be reached), return it unchanged with a
    /// warning saying so.
    async fn read(&self, ctx: &Ctx, state: Self::State) -> Result<Done<Option<Self::State>>, Diagnostics>;
    async fn update(
        &self,
        ctx: &Ctx,
        prior: Self::State,
        planned: Self::State,
        config: &Self::State,
    ) -> Applied<Self::State>;
    async fn delete(&self, ctx: &Ctx, prior: Self::State) -> Result<Done<()>, Diagnostics>;
    /// Returns enough state for `read` to fill in the rest.
    async fn import(&self, ctx: &Ctx, req: ImportRequest) -> Result<Done<Self::State>, Diagnostics>;

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
    /// A value of the schema's type through the typed `State` and back (for the schema/struct
    /// consistency test).
    fn round_trip(&self, v: &Value) -> Result<Value, Diagnostics>;
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
        if planned.is_null() {
            let result = async { self.inner.delete(ctx, to_typed(prior)?).await }.await;
            return match result {
                Ok(done) => (Value::Null, done.warnings),
                // A failed delete keeps the prior state: the object may still be there.
                Err(d) => (prior.clone(), d),
            };
        }
        let result: Applied<R::State> = async {
            let planned_t: R::State = to_typed(planned)?;
            let config_t: R::State = to_typed(config)?;
            if prior.is_null() {
                self.inner.create(ctx, planned_t, &config_t).await
            } else {
                self.inner.update(ctx, to_typed(prior)?, planned_t, &config_t).await
            }
        }
        .await;
        match result {
            Ok(done) => match self.to_value(ctx, &done.value) {
                Ok(v) => (v, done.warnings),
                Err(mut d) => {
                    d.extend(done.warnings);
                    (prior.clone(), d)
                }
            },
            // What the failed operation made is recorded (Terraform taints a created one).
            Err(Failed { partial: Some(s), mut diags }) => {
                if !diags.has_errors() {
                    diags.push_error("Provider bug", "an operation failed without saying why");
                }
                match self.to_value(ctx, &s) {
                    Ok(v) => (v, diags),
                    Err(d) => {
                        diags.extend(d);
                        (prior.clone(), diags)
                    }
                }
            }
            // Nothing made (create) or nothing known to have changed (update): the prior state.
            Err(Failed { partial: None, mut diags }) => {
                if !diags.has_errors() {
                    diags.push_error("Provider bug", "an operation failed without saying why");
                }
                (prior.clone(), diags)
            }
        }
    }

    async fn read(&self, ctx: &Ctx, state: &Value) -> (Value, Diagnostics) {
        if state.is_null() {
            return (Value::Null, Diagnostics::new());
        }
        let result: Result<(Value, Diagnostics), Diagnostics> = async {
            let done = self.inner.read(ctx, to_typed(state)?).await?;
            let v = match &done.value {
                Some(s) => self.to_value(ctx, s)?,
                None => Value::Null,
            };
            Ok((v, done.warnings))
        }
        .await;
        match result {
            Ok(r) => r,
            // Terraform keeps the prior state on an error; say the same.
            Err(d) => (state.clone(), d),
        }
    }

    async fn import(&self, ctx: &Ctx, req: ImportRequest) -> (Value, Diagnostics) {
        let result = async {
            let done = self.inner.import(ctx, req).await?;
            Ok::<_, Diagnostics>((self.to_value(ctx, &done.value)?, done.warnings))
        }
        .await;
        match result {
            Ok(r) => r,
            Err(d) => (Value::Null, d),
        }
    }

    fn upgrade_json(&self, from_version: i64, state: serde_json::Value) -> Result<Value, Diagnostics> {
        let migrated = self.inner.upgrade(from_version, state)?;
        Ok(crate::framework::convert::block_from_json(&migrated, &self.schema.block))
    }

    fn round_trip(&self, v: &Value) -> Result<Value, Diagnostics> {
        from_typed(&to_typed::<R::State>(v)?, &self.schema.block)
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;
    use crate::framework::schema::{Attribute, Block};
    use crate::framework::value::Type;

    /// A resource whose operations do what its `name` says.
    struct Scripted;

    #[derive(Clone, Debug, Default, Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct St {
        name: Option<String>,
        id: Option<String>,
    }

    fn made(name: &str) -> St {
        St { name: Some(name.into()), id: Some("made".into()) }
    }

    #[async_trait]
    impl Resource for Scripted {
        type State = St;
        fn type_name(&self) -> &'static str {
            "test_scripted"
        }
        fn schema(&self) -> Schema {
            Schema::new(
                0,
                Block::default()
                    .attr(Attribute::required("name", Type::String))
                    .attr(Attribute::computed("id", Type::String)),
            )
        }
        async fn modify_plan(&self, _ctx: &Ctx, plan: &mut PlanCtx<St>) -> Result<(), Diagnostics> {
            if plan.config.name.as_deref() == Some("bad-unknown") {
                plan.set_unknown("no_such_attribute")?;
            }
            Ok(())
        }
        async fn create(&self, _ctx: &Ctx, planned: St, _config: &St) -> Applied<St> {
            let name = planned.name.clone().unwrap_or_default();
            match name.as_str() {
                "half" => Err(Failed::with_partial(made(&name), Diagnostics::error("step 2 failed", "injected"))),
                "none" => Err(Diagnostics::error("step 1 failed", "injected").into()),
                "warn" => {
                    let mut w = Diagnostics::new();
                    w.warn("adopted", "it was there");
                    Ok(Done::with_warnings(made(&name), w))
                }
                _ => Ok(made(&name).into()),
            }
        }
        async fn read(&self, _ctx: &Ctx, state: St) -> Result<Done<Option<St>>, Diagnostics> {
            let mut w = Diagnostics::new();
            w.warn("unreachable", "kept the last known state");
            Ok(Done::with_warnings(Some(state), w))
        }
        async fn update(&self, _ctx: &Ctx, _prior: St, _planned: St, _config: &St) -> Applied<St> {
            Err(Diagnostics::error("update failed", "injected").into())
        }
        async fn delete(&self, _ctx: &Ctx, _prior: St) -> Result<Done<()>, Diagnostics> {
            Ok(().into())
        }
        async fn import(&self, _ctx: &Ctx, _req: ImportRequest) -> Result<Done<St>, Diagnostics> {
            Ok(made("imported").into())
        }
    }

    fn ctx() -> Ctx {
        Ctx { clients: Arc::new(Clients::default()), stop: CancellationToken::new(), write_only_supported: true }
    }

    fn cfg(name: &str) -> Value {
        Value::Object([("name".to_string(), Value::str(name)), ("id".to_string(), Value::Null)].into())
    }

    fn run<T>(f: impl std::future::Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread().build().expect("runtime").block_on(f)
    }

    #[test]
    fn a_failed_create_returns_what_it_made_with_the_error() {
        let h = ResourceHandle::new(Scripted);
        let (v, d) = run(h.apply(&ctx(), &Value::Null, &cfg("half"), &cfg("half")));
        assert!(d.has_errors(), "{d}");
        assert_eq!(v.attr("id"), &Value::str("made"), "the partial object is returned (Terraform taints it)");
        let (v, d) = run(h.apply(&ctx(), &Value::Null, &cfg("none"), &cfg("none")));
        assert!(d.has_errors() && v.is_null(), "nothing made: nothing recorded");
    }

    #[test]
    fn a_failed_update_without_partial_state_keeps_the_prior_one() {
        let h = ResourceHandle::new(Scripted);
        let prior = Value::Object([("name".to_string(), Value::str("a")), ("id".to_string(), Value::str("1"))].into());
        let (v, d) = run(h.apply(&ctx(), &prior, &cfg("b"), &cfg("b")));
        assert!(d.has_errors());
        assert_eq!(v, prior);
    }

    #[test]
    fn warnings_go_with_success() {
        let h = ResourceHandle::new(Scripted);
        let (v, d) = run(h.apply(&ctx(), &Value::Null, &cfg("warn"), &cfg("warn")));
        assert!(!d.has_errors() && d.0.len() == 1 && d.0[0].summary == "adopted", "{d}");
        assert_eq!(v.attr("id"), &Value::str("made"));
        let (back, d) = run(h.read(&ctx(), &v));
        assert_eq!(back, v, "read kept the state");
        assert!(!d.has_errors() && d.0[0].summary == "unreachable", "{d}");
    }

    #[test]
    fn set_unknown_on_a_name_the_schema_lacks_fails_the_plan() {
        let h = ResourceHandle::new(Scripted);
        let out = run(h.plan(&ctx(), &Value::Null, &cfg("bad-unknown"), &cfg("bad-unknown")));
        assert!(out.diags.has_errors(), "{}", out.diags);
        assert!(out.diags.to_string().contains("no_such_attribute"), "{}", out.diags);
        assert!(out.planned.attr("no_such_attribute").is_null(), "nothing inserted");
    }
}
