//! The tfplugin6 `Provider` service: decodes requests, calls the framework, encodes answers.
//! Every failure becomes a diagnostic; nothing here panics on input from Terraform.

use std::collections::{BTreeMap, HashMap};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use futures::{Stream, StreamExt as _};
use tfplugin_proto::tfplugin6 as pb;
use tfplugin_proto::tfplugin6::provider_server::Provider;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};
use tracing::{debug, info, instrument};

use crate::framework::diag::Diagnostics;
use crate::framework::function::{Function, FunctionError};
use crate::framework::resource::{Ctx, DynResource, ImportRequest};
use crate::framework::value::Value;
use crate::framework::verbs::{DynAction, DynDataSource, DynEphemeral, DynList, Progress};
use crate::framework::Catalog;
use crate::plugin::wire;
use crate::provider::{self, Clients, ProviderConfig};

pub struct EdgeProvider {
    resources: HashMap<&'static str, Arc<dyn DynResource>>,
    data_sources: HashMap<&'static str, Arc<dyn DynDataSource>>,
    ephemeral: HashMap<&'static str, Arc<dyn DynEphemeral>>,
    lists: HashMap<&'static str, Arc<dyn DynList>>,
    actions: HashMap<&'static str, Arc<dyn DynAction>>,
    functions: HashMap<&'static str, Arc<dyn Function>>,
    clients: RwLock<Option<Arc<Clients>>>,
    stop: CancellationToken,
    provider_schema: crate::framework::schema::Schema,
    write_only_supported: AtomicBool,
}

type Rsp<T> = Result<Response<T>, Status>;

fn unknown(what: &str, type_name: &str) -> Diagnostics {
    Diagnostics::error(
        format!("Unknown {what} {type_name:?}"),
        format!("This provider does not have that {what}. Check the spelling and the provider version."),
    )
}

/// Looks a name up in one of the provider's tables.
fn find<'a, T: ?Sized>(
    table: &'a HashMap<&'static str, Arc<T>>,
    what: &str,
    name: &str,
) -> Result<&'a Arc<T>, Diagnostics> {
    table.get(name).ok_or_else(|| unknown(what, name))
}

/// The names of a table, sorted (GetMetadata lists them).
fn names<T: ?Sized>(table: &HashMap<&'static str, Arc<T>>) -> Vec<String> {
    let mut t: Vec<String> = table.keys().map(|k| k.to_string()).collect();
    t.sort_unstable();
    t
}

/// Schemas of a table by name (GetProviderSchema).
fn schemas<T: ?Sized>(
    table: &HashMap<&'static str, Arc<T>>,
    schema: impl Fn(&T) -> &crate::framework::schema::Schema,
) -> HashMap<String, pb::Schema> {
    table.iter().map(|(k, v)| (k.to_string(), wire::schema(schema(v)))).collect()
}

macro_rules! unsupported {
    ($resp:ty, $what:expr) => {
        Ok(Response::new(<$resp>::default_with_diags(Diagnostics::error(
            format!("{} are not supported", $what),
            "The edge provider does not offer this feature.",
        ))))
    };
}

/// Responses that carry only diagnostics (plus defaults).
trait WithDiags: Default {
    fn set_diags(&mut self, d: Vec<pb::Diagnostic>);
    fn default_with_diags(d: Diagnostics) -> Self {
        let mut s = Self::default();
        s.set_diags(wire::diagnostics(&d));
        s
    }
}
macro_rules! with_diags {
    ($($t:ty),* $(,)?) => { $( impl WithDiags for $t { fn set_diags(&mut self, d: Vec<pb::Diagnostic>) { self.diagnostics = d; } } )* };
}
with_diags!(
    pb::move_resource_state::Response,
    pb::read_data_source::Response,
    pb::generate_resource_config::Response,
    pb::validate_ephemeral_resource_config::Response,
    pb::open_ephemeral_resource::Response,
    pb::renew_ephemeral_resource::Response,
    pb::close_ephemeral_resource::Response,
    pb::validate_list_resource_config::Response,
    pb::validate_state_store::Response,
    pb::configure_state_store::Response,
    pb::write_state_bytes::Response,
    pb::lock_state::Response,
    pb::unlock_state::Response,
    pb::get_states::Response,
    pb::delete_state::Response,
    pb::plan_action::Response,
    pb::validate_action_config::Response,
    pb::validate_data_resource_config::Response,
    pb::upgrade_resource_identity::Response,
    pb::read_resource::Response,
    pb::plan_resource_change::Response,
    pb::apply_resource_change::Response,
    pb::import_resource_state::Response,
);

impl EdgeProvider {
    pub fn new(catalog: Catalog, stop: CancellationToken) -> Self {
        EdgeProvider {
            resources: catalog.resources.into_iter().map(|r| (r.type_name(), r)).collect(),
            data_sources: catalog.data_sources.into_iter().map(|r| (r.type_name(), r)).collect(),
            ephemeral: catalog.ephemeral_resources.into_iter().map(|r| (r.type_name(), r)).collect(),
            lists: catalog.list_resources.into_iter().map(|r| (r.type_name(), r)).collect(),
            actions: catalog.actions.into_iter().map(|r| (r.type_name(), r)).collect(),
            functions: catalog.functions.into_iter().map(|f| (f.name(), f)).collect(),
            clients: RwLock::new(None),
            stop,
            provider_schema: provider::schema(),
            write_only_supported: AtomicBool::new(false),
        }
    }

    fn resource(&self, type_name: &str) -> Result<&Arc<dyn DynResource>, Diagnostics> {
        find(&self.resources, "resource type", type_name)
    }

    fn ctx(&self) -> Ctx {
        let clients = self.clients.read().ok().and_then(|c| c.clone()).unwrap_or_else(|| Arc::new(Clients::default()));
        Ctx {
            clients,
            stop: self.stop.clone(),
            write_only_supported: self.write_only_supported.load(Ordering::Relaxed),
        }
    }

    /// One `terraform query` call: the list resource names identities; the full object, when
    /// asked for, comes from the managed resource's own import and read (as `terraform import`
    /// would build it), so what is listed imports with no changes.
    async fn list(&self, r: &pb::list_resource::Request) -> Vec<pb::list_resource::Event> {
        let fail =
            |d: &Diagnostics| pb::list_resource::Event { diagnostic: wire::diagnostics(d), ..Default::default() };
        let found = (|| {
            let l = find(&self.lists, "list resource", &r.type_name)?;
            let res = self.resource(&r.type_name)?;
            let ids = res.identity_schema().ok_or_else(|| {
                Diagnostics::error("Provider bug", format!("{} is listed but has no identity schema", r.type_name))
            })?;
            let config = wire::decode(r.config.as_ref(), &l.schema().value_type(), "list configuration")?;
            Ok::<_, Diagnostics>((l, res, ids, config))
        })();
        let (l, res, ids, config) = match found {
            Ok(f) => f,
            Err(d) => return vec![fail(&d)],
        };
        let ctx = self.ctx();
        let (mut listed, diags) = l.list(&ctx, &config).await;
        let diags = under_config(diags);
        if let Ok(limit) = usize::try_from(r.limit) {
            if limit > 0 {
                listed.truncate(limit);
            }
        }
        let mut events = Vec::with_capacity(listed.len() + 1);
        if !diags.is_empty() {
            events.push(fail(&diags));
        }
        let ty = res.schema().value_type();
        for item in listed {
            let identity_value = Value::Object(
                ids.attributes
                    .iter()
                    .map(|a| {
                        (a.name.clone(), item.identity.get(&a.name).cloned().map(Value::String).unwrap_or(Value::Null))
                    })
                    .collect(),
            );
            let mut ev = pb::list_resource::Event {
                identity: wire::identity_data(Some(identity_value), Some(ids)),
                display_name: item.display_name.clone(),
                ..Default::default()
            };
            if r.include_resource_object {
                let (imported, mut d) = res.import(&ctx, ImportRequest::Identity(item.identity.clone())).await;
                let state = if d.has_errors() {
                    Value::Null
                } else {
                    let (state, rd) = res.read(&ctx, &imported).await;
                    d.extend(rd);
                    state
                };
                if !d.has_errors() && state.is_null() {
                    d.push_error(
                        format!("{} vanished while listed", item.display_name),
                        "It was listed but could not be read: run the query again.",
                    );
                }
                if !d.has_errors() {
                    ev.resource_object = wire::encode(&state, &ty).map_err(|e| d.extend(e)).ok();
                }
                ev.diagnostic = wire::diagnostics(&d);
            }
            events.push(ev);
        }
        events
    }

    fn capabilities() -> pb::ServerCapabilities {
        pb::ServerCapabilities {
            plan_destroy: true,
            get_provider_schema_optional: true,
            move_resource_state: false,
            generate_resource_config: false,
        }
    }
}

/// Terraform holds a list resource's configuration in the `config` block of its `list` block
/// and resolves a diagnostic's path from the `list` block: a list resource's paths (relative to
/// its configuration) start with `config`.
fn under_config(mut d: Diagnostics) -> Diagnostics {
    for x in &mut d.0 {
        if let Some(p) = &mut x.path {
            p.0.insert(0, crate::framework::diag::Step::Attr("config".into()));
        }
    }
    d
}

/// Decodes the prior state, the new (proposed or planned) state and the configuration of a change.
fn decode_change(
    ty: &crate::framework::value::Type,
    prior: Option<&pb::DynamicValue>,
    (new, new_name): (Option<&pb::DynamicValue>, &str),
    config: Option<&pb::DynamicValue>,
) -> Result<(Value, Value, Value), Diagnostics> {
    Ok((
        wire::decode(prior, ty, "prior state")?,
        wire::decode(new, ty, new_name)?,
        wire::decode(config, ty, "configuration")?,
    ))
}

fn ok<T>(t: T) -> Rsp<T> {
    Ok(Response::new(t))
}

#[tonic::async_trait]
impl Provider for EdgeProvider {
    async fn get_metadata(&self, _r: Request<pb::get_metadata::Request>) -> Rsp<pb::get_metadata::Response> {
        ok(pb::get_metadata::Response {
            server_capabilities: Some(Self::capabilities()),
            resources: names(&self.resources)
                .into_iter()
                .map(|type_name| pb::get_metadata::ResourceMetadata { type_name })
                .collect(),
            data_sources: names(&self.data_sources)
                .into_iter()
                .map(|type_name| pb::get_metadata::DataSourceMetadata { type_name })
                .collect(),
            ephemeral_resources: names(&self.ephemeral)
                .into_iter()
                .map(|type_name| pb::get_metadata::EphemeralMetadata { type_name })
                .collect(),
            list_resources: names(&self.lists)
                .into_iter()
                .map(|type_name| pb::get_metadata::ListResourceMetadata { type_name })
                .collect(),
            actions: names(&self.actions)
                .into_iter()
                .map(|type_name| pb::get_metadata::ActionMetadata { type_name })
                .collect(),
            functions: names(&self.functions)
                .into_iter()
                .map(|name| pb::get_metadata::FunctionMetadata { name })
                .collect(),
            ..Default::default()
        })
    }

    async fn get_provider_schema(
        &self,
        _r: Request<pb::get_provider_schema::Request>,
    ) -> Rsp<pb::get_provider_schema::Response> {
        ok(pb::get_provider_schema::Response {
            provider: Some(wire::schema(&self.provider_schema)),
            resource_schemas: schemas(&self.resources, |r| r.schema()),
            data_source_schemas: schemas(&self.data_sources, |r| r.schema()),
            ephemeral_resource_schemas: schemas(&self.ephemeral, |r| r.schema()),
            list_resource_schemas: schemas(&self.lists, |r| r.schema()),
            action_schemas: self
                .actions
                .iter()
                .map(|(k, a)| (k.to_string(), pb::ActionSchema { schema: Some(wire::schema(a.schema())) }))
                .collect(),
            functions: self.functions.iter().map(|(k, f)| (k.to_string(), wire::function(&f.signature()))).collect(),
            server_capabilities: Some(Self::capabilities()),
            ..Default::default()
        })
    }

    async fn validate_provider_config(
        &self,
        r: Request<pb::validate_provider_config::Request>,
    ) -> Rsp<pb::validate_provider_config::Response> {
        let r = r.into_inner();
        let diags = (|| {
            let v = wire::decode(r.config.as_ref(), &self.provider_schema.value_type(), "provider configuration")?;
            let cfg: ProviderConfig = crate::framework::convert::to_typed(&v)?;
            let mut d = Diagnostics::new();
            provider::validate(&cfg, &mut d);
            Ok::<_, Diagnostics>(d)
        })()
        .unwrap_or_else(|d| d);
        ok(pb::validate_provider_config::Response { diagnostics: wire::diagnostics(&diags) })
    }

    async fn validate_resource_config(
        &self,
        r: Request<pb::validate_resource_config::Request>,
    ) -> Rsp<pb::validate_resource_config::Response> {
        let r = r.into_inner();
        let diags = (|| {
            let res = self.resource(&r.type_name)?;
            let v = wire::decode(r.config.as_ref(), &res.schema().value_type(), "resource configuration")?;
            let write_only_ok = r.client_capabilities.is_some_and(|c| c.write_only_attributes_allowed);
            let mut d = res.validate(&v);
            if !write_only_ok {
                d.extend(crate::framework::resource::check_write_only_unsupported(res.schema(), &v));
            }
            Ok::<_, Diagnostics>(d)
        })()
        .unwrap_or_else(|d| d);
        ok(pb::validate_resource_config::Response { diagnostics: wire::diagnostics(&diags) })
    }

    async fn validate_data_resource_config(
        &self,
        r: Request<pb::validate_data_resource_config::Request>,
    ) -> Rsp<pb::validate_data_resource_config::Response> {
        let r = r.into_inner();
        let diags = (|| {
            let ds = find(&self.data_sources, "data source", &r.type_name)?;
            let v = wire::decode(r.config.as_ref(), &ds.schema().value_type(), "data source configuration")?;
            Ok::<_, Diagnostics>(ds.validate(&v))
        })()
        .unwrap_or_else(|d| d);
        ok(pb::validate_data_resource_config::Response { diagnostics: wire::diagnostics(&diags) })
    }

    #[instrument(skip_all, fields(type_name = %r.get_ref().type_name, version = r.get_ref().version))]
    async fn upgrade_resource_state(
        &self,
        r: Request<pb::upgrade_resource_state::Request>,
    ) -> Rsp<pb::upgrade_resource_state::Response> {
        let r = r.into_inner();
        let result = (|| {
            let res = self.resource(&r.type_name)?;
            let schema = res.schema();
            let ty = schema.value_type();
            let raw = r.raw_state.unwrap_or_default();
            if raw.json.is_empty() {
                if !raw.flatmap.is_empty() {
                    return Err(Diagnostics::error(
                        "Legacy flatmap state is not supported",
                        "This state was written by Terraform 0.11 or older; refresh it with a supported Terraform first.",
                    ));
                }
                return wire::encode(&Value::Null, &ty);
            }
            let value = if r.version == schema.version {
                crate::plugin::codec::from_json(&raw.json, &ty)
                    .map_err(|e| Diagnostics::error("Could not read the stored state", format!("{e}")))?
            } else if r.version > schema.version {
                return Err(Diagnostics::error(
                    "State was written by a newer provider",
                    format!(
                        "The state of this {} has schema version {}, this provider knows up to {}. Use the newer provider.",
                        r.type_name, r.version, schema.version
                    ),
                ));
            } else {
                let j: serde_json::Value = serde_json::from_slice(&raw.json)
                    .map_err(|e| Diagnostics::error("Could not read the stored state", e.to_string()))?;
                res.upgrade_json(r.version, j)?
            };
            wire::encode(&value, &ty)
        })();
        let (upgraded_state, diags) = match result {
            Ok(v) => (Some(v), Diagnostics::new()),
            Err(d) => (None, d),
        };
        ok(pb::upgrade_resource_state::Response { upgraded_state, diagnostics: wire::diagnostics(&diags) })
    }

    async fn get_resource_identity_schemas(
        &self,
        _r: Request<pb::get_resource_identity_schemas::Request>,
    ) -> Rsp<pb::get_resource_identity_schemas::Response> {
        ok(pb::get_resource_identity_schemas::Response {
            identity_schemas: self
                .resources
                .iter()
                .filter_map(|(k, r)| r.identity_schema().map(|s| (k.to_string(), wire::identity_schema(s))))
                .collect(),
            diagnostics: vec![],
        })
    }

    async fn upgrade_resource_identity(
        &self,
        r: Request<pb::upgrade_resource_identity::Request>,
    ) -> Rsp<pb::upgrade_resource_identity::Response> {
        let r = r.into_inner();
        let result = (|| {
            let res = self.resource(&r.type_name)?;
            let schema = res.identity_schema().ok_or_else(|| {
                Diagnostics::error("Resource has no identity", format!("{} does not support identities", r.type_name))
            })?;
            if r.version != schema.version {
                return Err(Diagnostics::error(
                    "Unsupported identity version",
                    format!("identity version {} (this provider writes {})", r.version, schema.version),
                ));
            }
            let raw = r.raw_identity.unwrap_or_default();
            let v = crate::plugin::codec::from_json(&raw.json, &schema.value_type())
                .map_err(|e| Diagnostics::error("Could not read the stored identity", e.to_string()))?;
            Ok(pb::ResourceIdentityData { identity_data: Some(wire::encode(&v, &schema.value_type())?) })
        })();
        match result {
            Ok(id) => ok(pb::upgrade_resource_identity::Response { upgraded_identity: Some(id), diagnostics: vec![] }),
            Err(d) => ok(WithDiags::default_with_diags(d)),
        }
    }

    #[instrument(skip_all, fields(terraform_version = %r.get_ref().terraform_version))]
    async fn configure_provider(
        &self,
        r: Request<pb::configure_provider::Request>,
    ) -> Rsp<pb::configure_provider::Response> {
        let r = r.into_inner();
        let write_only = r.client_capabilities.is_some_and(|c| c.write_only_attributes_allowed);
        self.write_only_supported.store(write_only, Ordering::Relaxed);
        let diags = (|| {
            let v = wire::decode(r.config.as_ref(), &self.provider_schema.value_type(), "provider configuration")?;
            let cfg: ProviderConfig = crate::framework::convert::to_typed(&v)?;
            // The one place the provider's EDGE_* variables are read (interpreted in provider.rs).
            let env = |k: &str| std::env::var(k).ok();
            let cfg = provider::with_env(cfg, &env);
            let settings = provider::Settings::from_env(&env);
            let mut d = Diagnostics::new();
            let clients = provider::configure(cfg, settings, &mut d);
            if !d.has_errors() {
                if let Ok(mut slot) = self.clients.write() {
                    *slot = Some(Arc::new(clients));
                }
            }
            Ok::<_, Diagnostics>(d)
        })()
        .unwrap_or_else(|d| d);
        info!("provider configured");
        ok(pb::configure_provider::Response { diagnostics: wire::diagnostics(&diags) })
    }

    #[instrument(skip_all, fields(type_name = %r.get_ref().type_name))]
    async fn read_resource(&self, r: Request<pb::read_resource::Request>) -> Rsp<pb::read_resource::Response> {
        let r = r.into_inner();
        let res = match self.resource(&r.type_name) {
            Ok(res) => res,
            Err(d) => return ok(WithDiags::default_with_diags(d)),
        };
        let ty = res.schema().value_type();
        let (new_state, mut diags) = match wire::decode(r.current_state.as_ref(), &ty, "current state") {
            Ok(state) => res.read(&self.ctx(), &state).await,
            Err(d) => (Value::Null, d),
        };
        let encoded = wire::encode(&new_state, &ty).map_err(|d| diags.extend(d)).ok();
        debug!(gone = new_state.is_null(), "read");
        ok(pb::read_resource::Response {
            new_identity: wire::identity_data(res.identity_of(&new_state), res.identity_schema()),
            new_state: encoded,
            diagnostics: wire::diagnostics(&diags),
            private: r.private,
            deferred: None,
        })
    }

    #[instrument(skip_all, fields(type_name = %r.get_ref().type_name))]
    async fn plan_resource_change(
        &self,
        r: Request<pb::plan_resource_change::Request>,
    ) -> Rsp<pb::plan_resource_change::Response> {
        let r = r.into_inner();
        let res = match self.resource(&r.type_name) {
            Ok(res) => res,
            Err(d) => return ok(WithDiags::default_with_diags(d)),
        };
        let ty = res.schema().value_type();
        let decoded = decode_change(
            &ty,
            r.prior_state.as_ref(),
            (r.proposed_new_state.as_ref(), "proposed state"),
            r.config.as_ref(),
        );
        let (prior, proposed, config) = match decoded {
            Ok(t) => t,
            Err(d) => return ok(WithDiags::default_with_diags(d)),
        };
        let out = res.plan(&self.ctx(), &prior, &proposed, &config).await;
        let mut diags = out.diags;
        let planned_state = wire::encode(&out.planned, &ty).map_err(|d| diags.extend(d)).ok();
        let planned_identity = if out.planned.contains_unknown() && !prior.is_null() {
            wire::identity_data(res.identity_of(&prior), res.identity_schema())
        } else {
            wire::identity_data(res.identity_of(&out.planned), res.identity_schema())
        };
        ok(pb::plan_resource_change::Response {
            planned_state,
            requires_replace: out.requires_replace.iter().map(wire::path).collect(),
            planned_private: r.prior_private,
            diagnostics: wire::diagnostics(&diags),
            legacy_type_system: false,
            deferred: None,
            planned_identity,
        })
    }

    #[instrument(skip_all, fields(type_name = %r.get_ref().type_name))]
    async fn apply_resource_change(
        &self,
        r: Request<pb::apply_resource_change::Request>,
    ) -> Rsp<pb::apply_resource_change::Response> {
        let r = r.into_inner();
        let res = match self.resource(&r.type_name) {
            Ok(res) => res,
            Err(d) => return ok(WithDiags::default_with_diags(d)),
        };
        let ty = res.schema().value_type();
        let decoded =
            decode_change(&ty, r.prior_state.as_ref(), (r.planned_state.as_ref(), "planned state"), r.config.as_ref());
        let (prior, planned, config) = match decoded {
            Ok(t) => t,
            Err(d) => return ok(WithDiags::default_with_diags(d)),
        };
        let (new_state, mut diags) = res.apply(&self.ctx(), &prior, &planned, &config).await;
        let encoded = wire::encode(&new_state, &ty).map_err(|d| diags.extend(d)).ok();
        ok(pb::apply_resource_change::Response {
            new_identity: wire::identity_data(res.identity_of(&new_state), res.identity_schema()),
            new_state: encoded,
            private: r.planned_private,
            diagnostics: wire::diagnostics(&diags),
            legacy_type_system: false,
        })
    }

    #[instrument(skip_all, fields(type_name = %r.get_ref().type_name))]
    async fn import_resource_state(
        &self,
        r: Request<pb::import_resource_state::Request>,
    ) -> Rsp<pb::import_resource_state::Response> {
        let r = r.into_inner();
        let res = match self.resource(&r.type_name) {
            Ok(res) => res,
            Err(d) => return ok(WithDiags::default_with_diags(d)),
        };
        let ty = res.schema().value_type();
        let req = match (&r.identity, res.identity_schema()) {
            (Some(id), Some(schema)) if r.id.is_empty() => {
                match wire::decode(id.identity_data.as_ref(), &schema.value_type(), "identity") {
                    Ok(v) => ImportRequest::Identity(
                        v.as_object()
                            .map(|m| {
                                m.iter().filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_string()))).collect()
                            })
                            .unwrap_or_else(BTreeMap::new),
                    ),
                    Err(d) => return ok(WithDiags::default_with_diags(d)),
                }
            }
            _ => ImportRequest::Id(r.id.clone()),
        };
        let (state, mut diags) = res.import(&self.ctx(), req).await;
        let mut imported = vec![];
        if !diags.has_errors() {
            match wire::encode(&state, &ty) {
                Ok(dv) => imported.push(pb::import_resource_state::ImportedResource {
                    type_name: r.type_name.clone(),
                    state: Some(dv),
                    private: vec![],
                    identity: wire::identity_data(res.identity_of(&state), res.identity_schema()),
                }),
                Err(d) => diags.extend(d),
            }
        }
        ok(pb::import_resource_state::Response {
            imported_resources: imported,
            diagnostics: wire::diagnostics(&diags),
            deferred: None,
        })
    }

    async fn move_resource_state(
        &self,
        _r: Request<pb::move_resource_state::Request>,
    ) -> Rsp<pb::move_resource_state::Response> {
        unsupported!(pb::move_resource_state::Response, "Moves between resource types")
    }

    #[instrument(skip_all, fields(type_name = %r.get_ref().type_name))]
    async fn read_data_source(&self, r: Request<pb::read_data_source::Request>) -> Rsp<pb::read_data_source::Response> {
        let r = r.into_inner();
        let ds = match find(&self.data_sources, "data source", &r.type_name) {
            Ok(ds) => ds,
            Err(d) => return ok(WithDiags::default_with_diags(d)),
        };
        let ty = ds.schema().value_type();
        let (state, mut diags) = match wire::decode(r.config.as_ref(), &ty, "data source configuration") {
            Ok(config) => ds.read(&self.ctx(), &config).await,
            Err(d) => (Value::Null, d),
        };
        let state = if diags.has_errors() { None } else { wire::encode(&state, &ty).map_err(|d| diags.extend(d)).ok() };
        ok(pb::read_data_source::Response { state, diagnostics: wire::diagnostics(&diags), deferred: None })
    }

    async fn generate_resource_config(
        &self,
        _r: Request<pb::generate_resource_config::Request>,
    ) -> Rsp<pb::generate_resource_config::Response> {
        unsupported!(pb::generate_resource_config::Response, "Generated configurations")
    }

    async fn validate_ephemeral_resource_config(
        &self,
        r: Request<pb::validate_ephemeral_resource_config::Request>,
    ) -> Rsp<pb::validate_ephemeral_resource_config::Response> {
        let r = r.into_inner();
        let diags = (|| {
            let e = find(&self.ephemeral, "ephemeral resource", &r.type_name)?;
            let v = wire::decode(r.config.as_ref(), &e.schema().value_type(), "ephemeral resource configuration")?;
            Ok::<_, Diagnostics>(e.validate(&v))
        })()
        .unwrap_or_else(|d| d);
        ok(pb::validate_ephemeral_resource_config::Response { diagnostics: wire::diagnostics(&diags) })
    }

    #[instrument(skip_all, fields(type_name = %r.get_ref().type_name))]
    async fn open_ephemeral_resource(
        &self,
        r: Request<pb::open_ephemeral_resource::Request>,
    ) -> Rsp<pb::open_ephemeral_resource::Response> {
        let r = r.into_inner();
        let e = match find(&self.ephemeral, "ephemeral resource", &r.type_name) {
            Ok(e) => e,
            Err(d) => return ok(WithDiags::default_with_diags(d)),
        };
        let ty = e.schema().value_type();
        let (opened, mut diags) = match wire::decode(r.config.as_ref(), &ty, "ephemeral resource configuration") {
            Ok(config) => e.open(&self.ctx(), &config).await,
            Err(d) => (None, d),
        };
        let Some(opened) = opened else { return ok(WithDiags::default_with_diags(diags)) };
        let result = wire::encode(&opened.result, &ty).map_err(|d| diags.extend(d)).ok();
        ok(pb::open_ephemeral_resource::Response {
            diagnostics: wire::diagnostics(&diags),
            renew_at: opened.renew_at.map(wire::timestamp),
            result,
            private: Some(opened.private),
            deferred: None,
        })
    }

    async fn renew_ephemeral_resource(
        &self,
        r: Request<pb::renew_ephemeral_resource::Request>,
    ) -> Rsp<pb::renew_ephemeral_resource::Response> {
        let r = r.into_inner();
        let e = match find(&self.ephemeral, "ephemeral resource", &r.type_name) {
            Ok(e) => e,
            Err(d) => return ok(WithDiags::default_with_diags(d)),
        };
        let (renewed, diags) = e.renew(&self.ctx(), r.private.as_deref().unwrap_or_default()).await;
        let (private, renew_at) = match renewed {
            Some((p, at)) => (Some(p), at.map(wire::timestamp)),
            None => (r.private, None),
        };
        ok(pb::renew_ephemeral_resource::Response { diagnostics: wire::diagnostics(&diags), renew_at, private })
    }

    #[instrument(skip_all, fields(type_name = %r.get_ref().type_name))]
    async fn close_ephemeral_resource(
        &self,
        r: Request<pb::close_ephemeral_resource::Request>,
    ) -> Rsp<pb::close_ephemeral_resource::Response> {
        let r = r.into_inner();
        let diags = match find(&self.ephemeral, "ephemeral resource", &r.type_name) {
            Ok(e) => e.close(&self.ctx(), r.private.as_deref().unwrap_or_default()).await,
            Err(d) => d,
        };
        ok(pb::close_ephemeral_resource::Response { diagnostics: wire::diagnostics(&diags) })
    }

    type ListResourceStream = Pin<Box<dyn Stream<Item = Result<pb::list_resource::Event, Status>> + Send>>;
    #[instrument(skip_all, fields(type_name = %r.get_ref().type_name))]
    async fn list_resource(&self, r: Request<pb::list_resource::Request>) -> Rsp<Self::ListResourceStream> {
        let r = r.into_inner();
        let events = self.list(&r).await;
        Ok(Response::new(Box::pin(futures::stream::iter(events.into_iter().map(Ok)))))
    }
    async fn validate_list_resource_config(
        &self,
        r: Request<pb::validate_list_resource_config::Request>,
    ) -> Rsp<pb::validate_list_resource_config::Response> {
        let r = r.into_inner();
        let diags = (|| {
            let l = find(&self.lists, "list resource", &r.type_name)?;
            let v = wire::decode(r.config.as_ref(), &l.schema().value_type(), "list configuration")?;
            Ok::<_, Diagnostics>(under_config(l.validate(&v)))
        })()
        .unwrap_or_else(|d| d);
        ok(pb::validate_list_resource_config::Response { diagnostics: wire::diagnostics(&diags) })
    }

    async fn get_functions(&self, _r: Request<pb::get_functions::Request>) -> Rsp<pb::get_functions::Response> {
        ok(pb::get_functions::Response {
            functions: self.functions.iter().map(|(k, f)| (k.to_string(), wire::function(&f.signature()))).collect(),
            diagnostics: vec![],
        })
    }
    #[instrument(skip_all, fields(name = %r.get_ref().name))]
    async fn call_function(&self, r: Request<pb::call_function::Request>) -> Rsp<pb::call_function::Response> {
        let r = r.into_inner();
        let result = (|| {
            let f = self.functions.get(r.name.as_str()).ok_or_else(|| FunctionError {
                text: format!("The edge provider has no function {:?}.", r.name),
                argument: None,
            })?;
            let sig = f.signature();
            if r.arguments.len() != sig.parameters.len() {
                return Err(FunctionError {
                    text: format!("{} takes {} arguments, got {}", r.name, sig.parameters.len(), r.arguments.len()),
                    argument: None,
                });
            }
            let mut args = Vec::with_capacity(r.arguments.len());
            for (i, (a, p)) in r.arguments.iter().zip(&sig.parameters).enumerate() {
                let v = wire::decode(Some(a), &p.ty, p.name).map_err(|d| FunctionError::at(i, d.to_string()))?;
                if v.is_null() && !p.allow_null {
                    return Err(FunctionError::at(i, format!("{} must not be null", p.name)));
                }
                args.push(v);
            }
            let out = f.call(&args)?;
            wire::encode(&out, &sig.returns).map_err(|d| FunctionError { text: d.to_string(), argument: None })
        })();
        ok(match result {
            Ok(v) => pb::call_function::Response { result: Some(v), error: None },
            Err(e) => pb::call_function::Response {
                result: None,
                error: Some(pb::FunctionError {
                    text: e.text,
                    function_argument: e.argument.and_then(|i| i64::try_from(i).ok()),
                }),
            },
        })
    }

    async fn validate_state_store_config(
        &self,
        _r: Request<pb::validate_state_store::Request>,
    ) -> Rsp<pb::validate_state_store::Response> {
        unsupported!(pb::validate_state_store::Response, "State stores")
    }
    async fn configure_state_store(
        &self,
        _r: Request<pb::configure_state_store::Request>,
    ) -> Rsp<pb::configure_state_store::Response> {
        unsupported!(pb::configure_state_store::Response, "State stores")
    }
    type ReadStateBytesStream = Pin<Box<dyn Stream<Item = Result<pb::read_state_bytes::Response, Status>> + Send>>;
    async fn read_state_bytes(&self, _r: Request<pb::read_state_bytes::Request>) -> Rsp<Self::ReadStateBytesStream> {
        let rsp = pb::read_state_bytes::Response {
            diagnostics: wire::diagnostics(&Diagnostics::error(
                "State stores are not supported",
                "The edge provider does not offer this feature.",
            )),
            ..Default::default()
        };
        Ok(Response::new(Box::pin(futures::stream::iter([Ok(rsp)]))))
    }
    async fn write_state_bytes(
        &self,
        _r: Request<tonic::Streaming<pb::write_state_bytes::RequestChunk>>,
    ) -> Rsp<pb::write_state_bytes::Response> {
        unsupported!(pb::write_state_bytes::Response, "State stores")
    }
    async fn lock_state(&self, _r: Request<pb::lock_state::Request>) -> Rsp<pb::lock_state::Response> {
        unsupported!(pb::lock_state::Response, "State stores")
    }
    async fn unlock_state(&self, _r: Request<pb::unlock_state::Request>) -> Rsp<pb::unlock_state::Response> {
        unsupported!(pb::unlock_state::Response, "State stores")
    }
    async fn get_states(&self, _r: Request<pb::get_states::Request>) -> Rsp<pb::get_states::Response> {
        unsupported!(pb::get_states::Response, "State stores")
    }
    async fn delete_state(&self, _r: Request<pb::delete_state::Request>) -> Rsp<pb::delete_state::Response> {
        unsupported!(pb::delete_state::Response, "State stores")
    }

    #[instrument(skip_all, fields(action = %r.get_ref().action_type))]
    async fn plan_action(&self, r: Request<pb::plan_action::Request>) -> Rsp<pb::plan_action::Response> {
        let r = r.into_inner();
        let diags = match find(&self.actions, "action", &r.action_type) {
            Ok(a) => match wire::decode(r.config.as_ref(), &a.schema().value_type(), "action configuration") {
                // An action configured with values known only after apply is checked when invoked.
                Ok(config) if config.contains_unknown() => Diagnostics::new(),
                Ok(config) => a.plan(&self.ctx(), &config).await,
                Err(d) => d,
            },
            Err(d) => d,
        };
        ok(pb::plan_action::Response { diagnostics: wire::diagnostics(&diags), deferred: None })
    }
    type InvokeActionStream = Pin<Box<dyn Stream<Item = Result<pb::invoke_action::Event, Status>> + Send>>;
    #[instrument(skip_all, fields(action = %r.get_ref().action_type))]
    async fn invoke_action(&self, r: Request<pb::invoke_action::Request>) -> Rsp<Self::InvokeActionStream> {
        use pb::invoke_action::event::{Completed, Progress as Step, Type};
        let r = r.into_inner();
        let completed = |d: &Diagnostics| pb::invoke_action::Event {
            r#type: Some(Type::Completed(Completed { diagnostics: wire::diagnostics(d) })),
        };
        let action = match find(&self.actions, "action", &r.action_type) {
            Ok(a) => a.clone(),
            Err(d) => return Ok(Response::new(Box::pin(futures::stream::iter([Ok(completed(&d))])))),
        };
        let config = match wire::decode(r.config.as_ref(), &action.schema().value_type(), "action configuration") {
            Ok(c) => c,
            Err(d) => return Ok(Response::new(Box::pin(futures::stream::iter([Ok(completed(&d))])))),
        };
        // The action runs on its own task; its progress messages stream to Terraform as they
        // come, and the stream ends with its outcome.
        let (progress, rx) = Progress::new();
        let ctx = self.ctx();
        let outcome = tokio::spawn(async move { action.invoke(&ctx, &config, &progress).await });
        let steps = tokio_stream::wrappers::UnboundedReceiverStream::new(rx)
            .map(|message| Ok(pb::invoke_action::Event { r#type: Some(Type::Progress(Step { message })) }));
        let end = futures::stream::once(async move {
            let d =
                outcome.await.unwrap_or_else(|e| Diagnostics::error("Action failed", format!("provider task: {e}")));
            Ok(completed(&d))
        });
        Ok(Response::new(Box::pin(steps.chain(end))))
    }
    async fn validate_action_config(
        &self,
        r: Request<pb::validate_action_config::Request>,
    ) -> Rsp<pb::validate_action_config::Response> {
        let r = r.into_inner();
        let diags = (|| {
            let a = find(&self.actions, "action", &r.type_name)?;
            let v = wire::decode(r.config.as_ref(), &a.schema().value_type(), "action configuration")?;
            Ok::<_, Diagnostics>(a.validate(&v))
        })()
        .unwrap_or_else(|d| d);
        ok(pb::validate_action_config::Response { diagnostics: wire::diagnostics(&diags) })
    }

    async fn stop_provider(&self, _r: Request<pb::stop_provider::Request>) -> Rsp<pb::stop_provider::Response> {
        info!("StopProvider: cancelling in-flight work");
        self.stop.cancel();
        ok(pb::stop_provider::Response { error: String::new() })
    }
}
