//! The protocol's other verbs, written the way resources are: a trait with one typed serde
//! struct per configuration, and a handle that turns it into the value-level calls the server
//! makes. Data sources, ephemeral resources, list resources and actions; provider functions,
//! whose arguments are plain values, are in `function.rs`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use async_trait::async_trait;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::mpsc;

use crate::framework::convert::{from_typed, to_typed};
use crate::framework::diag::Diagnostics;
use crate::framework::resource::Ctx;
use crate::framework::schema::Schema;
use crate::framework::value::Value;

/// A successful call's value and the warnings that go with it (a warning never turns success
/// into failure, and is never lost to a log).
#[derive(Debug)]
pub struct Done<T> {
    pub value: T,
    pub warnings: Diagnostics,
}

impl<T> From<T> for Done<T> {
    fn from(value: T) -> Self {
        Done { value, warnings: Diagnostics::new() }
    }
}

impl<T> Done<T> {
    pub fn with_warnings(value: T, warnings: Diagnostics) -> Self {
        Done { value, warnings }
    }
}

/// Runs the typed validation of a configuration: a configuration that does not fit the struct
/// is a provider bug, reported as one.
fn validate_typed<S: DeserializeOwned>(config: &Value, check: impl FnOnce(&S, &mut Diagnostics)) -> Diagnostics {
    let mut d = Diagnostics::new();
    match to_typed::<S>(config) {
        Ok(c) => check(&c, &mut d),
        Err(e) => d.extend(e),
    }
    d
}

// ---------------------------------------------------------------------------------------------
// Data sources

/// A data source: reads something that exists, at plan time when its configuration is known.
#[async_trait]
pub trait DataSource: Send + Sync + 'static {
    /// Configuration and computed values in one struct, like a resource's `State`.
    type State: Serialize + DeserializeOwned + Send + Sync;
    fn type_name(&self) -> &'static str;
    fn schema(&self) -> Schema;
    fn validate(&self, _config: &Self::State, _diags: &mut Diagnostics) {}
    /// Returns the configuration with its computed values filled in.
    async fn read(&self, ctx: &Ctx, config: Self::State) -> Result<Done<Self::State>, Diagnostics>;
}

#[async_trait]
pub trait DynDataSource: Send + Sync {
    fn type_name(&self) -> &'static str;
    fn schema(&self) -> &Schema;
    fn validate(&self, config: &Value) -> Diagnostics;
    async fn read(&self, ctx: &Ctx, config: &Value) -> (Value, Diagnostics);
    /// A value of the schema's type through the typed struct and back (for the schema/struct
    /// consistency test).
    fn round_trip(&self, v: &Value) -> Result<Value, Diagnostics>;
}

pub struct DataSourceHandle<D: DataSource> {
    inner: D,
    schema: Schema,
}

impl<D: DataSource> DataSourceHandle<D> {
    pub fn new(inner: D) -> Self {
        let schema = inner.schema();
        DataSourceHandle { inner, schema }
    }
}

#[async_trait]
impl<D: DataSource> DynDataSource for DataSourceHandle<D> {
    fn type_name(&self) -> &'static str {
        self.inner.type_name()
    }
    fn schema(&self) -> &Schema {
        &self.schema
    }
    fn validate(&self, config: &Value) -> Diagnostics {
        validate_typed::<D::State>(config, |c, d| self.inner.validate(c, d))
    }
    async fn read(&self, ctx: &Ctx, config: &Value) -> (Value, Diagnostics) {
        let result = async {
            let cfg: D::State = to_typed(config)?;
            let done = self.inner.read(ctx, cfg).await?;
            Ok::<_, Diagnostics>((from_typed(&done.value, &self.schema.block)?, done.warnings))
        }
        .await;
        match result {
            Ok(v) => v,
            Err(d) => (Value::Null, d),
        }
    }
    fn round_trip(&self, v: &Value) -> Result<Value, Diagnostics> {
        from_typed(&to_typed::<D::State>(v)?, &self.schema.block)
    }
}

// ---------------------------------------------------------------------------------------------
// Ephemeral resources

/// What opening an ephemeral resource gives: the result Terraform hands to the configuration,
/// and what closing it needs (kept by Terraform for the run, never in plan or state).
pub struct Opened<S> {
    pub result: S,
    pub private: serde_json::Value,
    /// When Terraform must call `renew` if the run still needs the value; `None`: never.
    pub renew_at: Option<SystemTime>,
}

/// An ephemeral resource (Terraform ≥ 1.10): opened for one run, closed at its end.
#[async_trait]
pub trait EphemeralResource: Send + Sync + 'static {
    type State: Serialize + DeserializeOwned + Send + Sync;
    fn type_name(&self) -> &'static str;
    fn schema(&self) -> Schema;
    fn validate(&self, _config: &Self::State, _diags: &mut Diagnostics) {}
    async fn open(&self, ctx: &Ctx, config: Self::State) -> Result<Done<Opened<Self::State>>, Diagnostics>;
    /// Extends the value's life; the default says it cannot be renewed.
    async fn renew(
        &self,
        _ctx: &Ctx,
        _private: serde_json::Value,
    ) -> Result<(serde_json::Value, Option<SystemTime>), Diagnostics> {
        Err(Diagnostics::error(
            format!("{} cannot be renewed", self.type_name()),
            "Its lifetime is fixed when it is opened: give it a longer one.",
        ))
    }
    async fn close(&self, ctx: &Ctx, private: serde_json::Value) -> Result<Done<()>, Diagnostics>;
}

/// The value-level view of an opened ephemeral resource.
pub struct OpenedValue {
    pub result: Value,
    pub private: Vec<u8>,
    pub renew_at: Option<SystemTime>,
}

#[async_trait]
pub trait DynEphemeral: Send + Sync {
    fn type_name(&self) -> &'static str;
    fn schema(&self) -> &Schema;
    fn validate(&self, config: &Value) -> Diagnostics;
    async fn open(&self, ctx: &Ctx, config: &Value) -> (Option<OpenedValue>, Diagnostics);
    async fn renew(&self, ctx: &Ctx, private: &[u8]) -> (Option<(Vec<u8>, Option<SystemTime>)>, Diagnostics);
    async fn close(&self, ctx: &Ctx, private: &[u8]) -> Diagnostics;
    /// Closes what this process opened and Terraform has not closed (called when Terraform
    /// shuts the provider down); returns how many it closed cleanly and how many it tried.
    async fn close_leftovers(&self) -> (usize, usize);
    /// A value of the schema's type through the typed struct and back (for the schema/struct
    /// consistency test).
    fn round_trip(&self, v: &Value) -> Result<Value, Diagnostics>;
}

/// Wraps a typed [`EphemeralResource`] and remembers what it opened until Terraform closes it.
///
/// Terraform 1.15 skips closing ephemeral resources when the run fails (the close is
/// downstream of the failed node, and the end-of-walk close of the rest never reaches the
/// provider), so what is still open at shutdown is closed then, for every ephemeral resource
/// alike. A killed process closes nothing: each resource must expire by itself.
pub struct EphemeralHandle<E: EphemeralResource> {
    inner: E,
    schema: Schema,
    open: Mutex<Vec<(Ctx, Vec<u8>)>>,
}

impl<E: EphemeralResource> EphemeralHandle<E> {
    pub fn new(inner: E) -> Self {
        let schema = inner.schema();
        EphemeralHandle { inner, schema, open: Mutex::new(Vec::new()) }
    }
    fn opened(&self) -> std::sync::MutexGuard<'_, Vec<(Ctx, Vec<u8>)>> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn private_from_bytes(b: &[u8]) -> Result<serde_json::Value, Diagnostics> {
    if b.is_empty() {
        return Ok(serde_json::Value::Null);
    }
    serde_json::from_slice(b).map_err(|e| {
        Diagnostics::error(
            "Could not read the ephemeral resource's private data",
            format!("{e}. This is a bug in the provider."),
        )
    })
}

fn private_to_bytes(v: &serde_json::Value) -> Vec<u8> {
    if v.is_null() {
        return vec![];
    }
    serde_json::to_vec(v).unwrap_or_default()
}

#[async_trait]
impl<E: EphemeralResource> DynEphemeral for EphemeralHandle<E> {
    fn type_name(&self) -> &'static str {
        self.inner.type_name()
    }
    fn schema(&self) -> &Schema {
        &self.schema
    }
    fn validate(&self, config: &Value) -> Diagnostics {
        validate_typed::<E::State>(config, |c, d| self.inner.validate(c, d))
    }
    async fn open(&self, ctx: &Ctx, config: &Value) -> (Option<OpenedValue>, Diagnostics) {
        let result = async {
            let cfg: E::State = to_typed(config)?;
            let done = self.inner.open(ctx, cfg).await?;
            let opened = OpenedValue {
                result: from_typed(&done.value.result, &self.schema.block)?,
                private: private_to_bytes(&done.value.private),
                renew_at: done.value.renew_at,
            };
            Ok::<_, Diagnostics>((opened, done.warnings))
        }
        .await;
        match result {
            Ok((o, w)) => {
                self.opened().push((ctx.clone(), o.private.clone()));
                (Some(o), w)
            }
            Err(d) => (None, d),
        }
    }
    async fn renew(&self, ctx: &Ctx, private: &[u8]) -> (Option<(Vec<u8>, Option<SystemTime>)>, Diagnostics) {
        let result = async {
            let (p, at) = self.inner.renew(ctx, private_from_bytes(private)?).await?;
            Ok::<_, Diagnostics>((private_to_bytes(&p), at))
        }
        .await;
        match result {
            Ok(r) => (Some(r), Diagnostics::new()),
            Err(d) => (None, d),
        }
    }
    async fn close(&self, ctx: &Ctx, private: &[u8]) -> Diagnostics {
        {
            let mut open = self.opened();
            if let Some(i) = open.iter().position(|(_, p)| p == private) {
                open.remove(i);
            }
        }
        let result = async { self.inner.close(ctx, private_from_bytes(private)?).await }.await;
        match result {
            Ok(done) => done.warnings,
            Err(d) => d,
        }
    }
    async fn close_leftovers(&self) -> (usize, usize) {
        let left = std::mem::take(&mut *self.opened());
        let mut closed = 0;
        for (ctx, private) in &left {
            let d = self.close(ctx, private).await;
            if d.is_empty() {
                closed += 1;
            } else {
                tracing::warn!(
                    ephemeral = self.type_name(),
                    problem = %d.to_string().trim(),
                    "could not close what Terraform left open"
                );
            }
        }
        (closed, left.len())
    }
    fn round_trip(&self, v: &Value) -> Result<Value, Diagnostics> {
        from_typed(&to_typed::<E::State>(v)?, &self.schema.block)
    }
}

// ---------------------------------------------------------------------------------------------
// List resources

/// One object a list resource found: what `terraform query` shows, and the identity the
/// managed resource of the same type imports it by.
#[derive(Clone, Debug, PartialEq)]
pub struct Listed {
    pub display_name: String,
    pub identity: BTreeMap<String, String>,
}

/// A list resource (Terraform ≥ 1.14, `terraform query`): enumerates the objects of a managed
/// resource type. Only identities are listed here; the full object, when Terraform asks for it,
/// comes from the managed resource's own import and read (one path for both).
#[async_trait]
pub trait ListResource: Send + Sync + 'static {
    /// The `config { … }` of a `list` block.
    type Config: Serialize + DeserializeOwned + Send + Sync;
    /// The managed resource type it lists (the same name).
    fn type_name(&self) -> &'static str;
    fn schema(&self) -> Schema;
    fn validate(&self, _config: &Self::Config, _diags: &mut Diagnostics) {}
    async fn list(&self, ctx: &Ctx, config: Self::Config) -> Result<Done<Vec<Listed>>, Diagnostics>;
}

#[async_trait]
pub trait DynList: Send + Sync {
    fn type_name(&self) -> &'static str;
    fn schema(&self) -> &Schema;
    fn validate(&self, config: &Value) -> Diagnostics;
    async fn list(&self, ctx: &Ctx, config: &Value) -> (Vec<Listed>, Diagnostics);
    /// A value of the schema's type through the typed struct and back (for the schema/struct
    /// consistency test).
    fn round_trip(&self, v: &Value) -> Result<Value, Diagnostics>;
}

pub struct ListHandle<L: ListResource> {
    inner: L,
    schema: Schema,
}

impl<L: ListResource> ListHandle<L> {
    pub fn new(inner: L) -> Self {
        let schema = inner.schema();
        ListHandle { inner, schema }
    }
}

#[async_trait]
impl<L: ListResource> DynList for ListHandle<L> {
    fn type_name(&self) -> &'static str {
        self.inner.type_name()
    }
    fn schema(&self) -> &Schema {
        &self.schema
    }
    fn validate(&self, config: &Value) -> Diagnostics {
        validate_typed::<L::Config>(config, |c, d| self.inner.validate(c, d))
    }
    async fn list(&self, ctx: &Ctx, config: &Value) -> (Vec<Listed>, Diagnostics) {
        let result = async {
            let cfg: L::Config = to_typed(config)?;
            self.inner.list(ctx, cfg).await
        }
        .await;
        match result {
            Ok(done) => (done.value, done.warnings),
            Err(d) => (vec![], d),
        }
    }
    fn round_trip(&self, v: &Value) -> Result<Value, Diagnostics> {
        from_typed(&to_typed::<L::Config>(v)?, &self.schema.block)
    }
}

// ---------------------------------------------------------------------------------------------
// Actions

/// Where an action reports how it is getting on (each message is one progress event in
/// Terraform's output).
#[derive(Clone)]
pub struct Progress(mpsc::UnboundedSender<String>);

impl Progress {
    pub fn new() -> (Progress, mpsc::UnboundedReceiver<String>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Progress(tx), rx)
    }
    pub fn report(&self, msg: impl Into<String>) {
        let msg = msg.into();
        tracing::info!(progress = %msg);
        // Terraform may have gone (the run was cancelled): the work's own outcome still counts.
        let _ = self.0.send(msg);
    }
}

/// An action (Terraform ≥ 1.14): an operation that is not a resource, run by
/// `terraform apply -invoke=action.<type>.<name>` or from a resource's lifecycle.
#[async_trait]
pub trait Action: Send + Sync + 'static {
    type Config: Serialize + DeserializeOwned + Send + Sync;
    fn type_name(&self) -> &'static str;
    fn schema(&self) -> Schema;
    fn validate(&self, _config: &Self::Config, _diags: &mut Diagnostics) {}
    /// Checks at plan time what can be checked without acting (the default checks nothing).
    async fn plan(&self, _ctx: &Ctx, _config: Self::Config) -> Result<Done<()>, Diagnostics> {
        Ok(().into())
    }
    async fn invoke(&self, ctx: &Ctx, config: Self::Config, progress: &Progress) -> Result<Done<()>, Diagnostics>;
}

#[async_trait]
pub trait DynAction: Send + Sync {
    fn type_name(&self) -> &'static str;
    fn schema(&self) -> &Schema;
    fn validate(&self, config: &Value) -> Diagnostics;
    async fn plan(&self, ctx: &Ctx, config: &Value) -> Diagnostics;
    async fn invoke(&self, ctx: &Ctx, config: &Value, progress: &Progress) -> Diagnostics;
    /// A value of the schema's type through the typed struct and back (for the schema/struct
    /// consistency test).
    fn round_trip(&self, v: &Value) -> Result<Value, Diagnostics>;
}

pub struct ActionHandle<A: Action> {
    inner: A,
    schema: Schema,
}

impl<A: Action> ActionHandle<A> {
    pub fn new(inner: A) -> Self {
        let schema = inner.schema();
        ActionHandle { inner, schema }
    }
}

fn done_diags(r: Result<Done<()>, Diagnostics>) -> Diagnostics {
    match r {
        Ok(done) => done.warnings,
        Err(d) => d,
    }
}

#[async_trait]
impl<A: Action> DynAction for ActionHandle<A> {
    fn type_name(&self) -> &'static str {
        self.inner.type_name()
    }
    fn schema(&self) -> &Schema {
        &self.schema
    }
    fn validate(&self, config: &Value) -> Diagnostics {
        validate_typed::<A::Config>(config, |c, d| self.inner.validate(c, d))
    }
    async fn plan(&self, ctx: &Ctx, config: &Value) -> Diagnostics {
        done_diags(async { self.inner.plan(ctx, to_typed(config)?).await }.await)
    }
    async fn invoke(&self, ctx: &Ctx, config: &Value, progress: &Progress) -> Diagnostics {
        done_diags(async { self.inner.invoke(ctx, to_typed(config)?, progress).await }.await)
    }
    fn round_trip(&self, v: &Value) -> Result<Value, Diagnostics> {
        from_typed(&to_typed::<A::Config>(v)?, &self.schema.block)
    }
}

/// Everything the provider serves, by verb (built once in `crate::catalog`).
#[derive(Default)]
pub struct Catalog {
    pub resources: Vec<Arc<dyn crate::framework::resource::DynResource>>,
    pub data_sources: Vec<Arc<dyn DynDataSource>>,
    pub ephemeral_resources: Vec<Arc<dyn DynEphemeral>>,
    pub list_resources: Vec<Arc<dyn DynList>>,
    pub actions: Vec<Arc<dyn DynAction>>,
    pub functions: Vec<Arc<dyn crate::framework::function::Function>>,
}
