//! The tfplugin6 `Provider` service: decodes requests, calls the framework, encodes answers.
//! Every failure becomes a diagnostic; nothing here panics on input from Terraform.

use std::collections::{BTreeMap, HashMap};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use futures::Stream;
use tfplugin_proto::tfplugin6 as pb;
use tfplugin_proto::tfplugin6::provider_server::Provider;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};
use tracing::{debug, info, instrument};

use crate::framework::diag::Diagnostics;
use crate::framework::resource::{Ctx, DynResource, ImportRequest};
use crate::framework::value::Value;
use crate::plugin::wire;
use crate::provider::{self, Clients, ProviderConfig};

pub struct EdgeProvider {
    resources: HashMap<&'static str, Arc<dyn DynResource>>,
    clients: RwLock<Option<Arc<Clients>>>,
    stop: CancellationToken,
    provider_schema: crate::framework::schema::Schema,
    write_only_supported: AtomicBool,
}

type Rsp<T> = Result<Response<T>, Status>;

fn unknown_type(type_name: &str) -> Diagnostics {
    Diagnostics::error(
        format!("Unknown resource type {type_name:?}"),
        "This provider does not have that resource type. Check the spelling and the provider version.",
    )
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
    pub fn new(resources: Vec<Arc<dyn DynResource>>, stop: CancellationToken) -> Self {
        EdgeProvider {
            resources: resources.into_iter().map(|r| (r.type_name(), r)).collect(),
            clients: RwLock::new(None),
            stop,
            provider_schema: provider::schema(),
            write_only_supported: AtomicBool::new(false),
        }
    }

    fn resource(&self, type_name: &str) -> Result<&Arc<dyn DynResource>, Diagnostics> {
        self.resources.get(type_name).ok_or_else(|| unknown_type(type_name))
    }

    fn ctx(&self) -> Ctx {
        let clients = self.clients.read().ok().and_then(|c| c.clone()).unwrap_or_else(|| Arc::new(Clients::default()));
        Ctx {
            clients,
            stop: self.stop.clone(),
            write_only_supported: self.write_only_supported.load(Ordering::Relaxed),
        }
    }

    fn sorted_types(&self) -> Vec<&'static str> {
        let mut t: Vec<_> = self.resources.keys().copied().collect();
        t.sort_unstable();
        t
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
            resources: self
                .sorted_types()
                .into_iter()
                .map(|t| pb::get_metadata::ResourceMetadata { type_name: t.to_string() })
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
            resource_schemas: self.resources.iter().map(|(k, r)| (k.to_string(), wire::schema(r.schema()))).collect(),
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
        ok(WithDiags::default_with_diags(Diagnostics::error(
            format!("Unknown data source {:?}", r.into_inner().type_name),
            "This provider has no data sources.",
        )))
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

    async fn read_data_source(&self, r: Request<pb::read_data_source::Request>) -> Rsp<pb::read_data_source::Response> {
        ok(WithDiags::default_with_diags(Diagnostics::error(
            format!("Unknown data source {:?}", r.into_inner().type_name),
            "This provider has no data sources.",
        )))
    }

    async fn generate_resource_config(
        &self,
        _r: Request<pb::generate_resource_config::Request>,
    ) -> Rsp<pb::generate_resource_config::Response> {
        unsupported!(pb::generate_resource_config::Response, "Generated configurations")
    }

    async fn validate_ephemeral_resource_config(
        &self,
        _r: Request<pb::validate_ephemeral_resource_config::Request>,
    ) -> Rsp<pb::validate_ephemeral_resource_config::Response> {
        unsupported!(pb::validate_ephemeral_resource_config::Response, "Ephemeral resources")
    }
    async fn open_ephemeral_resource(
        &self,
        _r: Request<pb::open_ephemeral_resource::Request>,
    ) -> Rsp<pb::open_ephemeral_resource::Response> {
        unsupported!(pb::open_ephemeral_resource::Response, "Ephemeral resources")
    }
    async fn renew_ephemeral_resource(
        &self,
        _r: Request<pb::renew_ephemeral_resource::Request>,
    ) -> Rsp<pb::renew_ephemeral_resource::Response> {
        unsupported!(pb::renew_ephemeral_resource::Response, "Ephemeral resources")
    }
    async fn close_ephemeral_resource(
        &self,
        _r: Request<pb::close_ephemeral_resource::Request>,
    ) -> Rsp<pb::close_ephemeral_resource::Response> {
        unsupported!(pb::close_ephemeral_resource::Response, "Ephemeral resources")
    }

    type ListResourceStream = Pin<Box<dyn Stream<Item = Result<pb::list_resource::Event, Status>> + Send>>;
    async fn list_resource(&self, _r: Request<pb::list_resource::Request>) -> Rsp<Self::ListResourceStream> {
        let ev = pb::list_resource::Event {
            diagnostic: wire::diagnostics(&Diagnostics::error(
                "List resources are not supported",
                "The edge provider does not offer this feature.",
            )),
            ..Default::default()
        };
        Ok(Response::new(Box::pin(futures::stream::iter([Ok(ev)]))))
    }
    async fn validate_list_resource_config(
        &self,
        _r: Request<pb::validate_list_resource_config::Request>,
    ) -> Rsp<pb::validate_list_resource_config::Response> {
        unsupported!(pb::validate_list_resource_config::Response, "List resources")
    }

    async fn get_functions(&self, _r: Request<pb::get_functions::Request>) -> Rsp<pb::get_functions::Response> {
        ok(pb::get_functions::Response::default())
    }
    async fn call_function(&self, r: Request<pb::call_function::Request>) -> Rsp<pb::call_function::Response> {
        ok(pb::call_function::Response {
            result: None,
            error: Some(pb::FunctionError {
                text: format!("The edge provider has no function {:?}.", r.into_inner().name),
                function_argument: None,
            }),
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

    async fn plan_action(&self, _r: Request<pb::plan_action::Request>) -> Rsp<pb::plan_action::Response> {
        unsupported!(pb::plan_action::Response, "Actions")
    }
    type InvokeActionStream = Pin<Box<dyn Stream<Item = Result<pb::invoke_action::Event, Status>> + Send>>;
    async fn invoke_action(&self, _r: Request<pb::invoke_action::Request>) -> Rsp<Self::InvokeActionStream> {
        let ev = pb::invoke_action::Event {
            r#type: Some(pb::invoke_action::event::Type::Completed(pb::invoke_action::event::Completed {
                diagnostics: wire::diagnostics(&Diagnostics::error(
                    "Actions are not supported",
                    "The edge provider does not offer this feature.",
                )),
            })),
        };
        Ok(Response::new(Box::pin(futures::stream::iter([Ok(ev)]))))
    }
    async fn validate_action_config(
        &self,
        _r: Request<pb::validate_action_config::Request>,
    ) -> Rsp<pb::validate_action_config::Response> {
        unsupported!(pb::validate_action_config::Response, "Actions")
    }

    async fn stop_provider(&self, _r: Request<pb::stop_provider::Request>) -> Rsp<pb::stop_provider::Response> {
        info!("StopProvider: cancelling in-flight work");
        self.stop.cancel();
        ok(pb::stop_provider::Response { error: String::new() })
    }
}
