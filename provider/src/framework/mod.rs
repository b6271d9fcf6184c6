//! The small framework the resources share: values and schemas, typed conversion, the
//! `Resource` trait and the generic plan logic, and the other verbs (data sources, ephemeral
//! and list resources, actions, functions) written the same way. Knows nothing of gRPC or msgpack.

pub mod convert;
pub mod diag;
pub mod function;
pub mod plan;
pub mod resource;
pub mod round_trip;
pub mod schema;
pub mod timeouts;
pub mod value;
pub mod verbs;

pub use diag::{AttrPath, Diagnostics};
pub use resource::{Applied, Ctx, Failed, ImportRequest, PlanCtx, Resource, ResourceHandle};
pub use schema::{Attribute, Block, IdentityAttribute, IdentitySchema, NestedBlock, Nesting, Schema};
pub use timeouts::{Op, Timeouts};
pub use value::{Number, Type, Value};
pub use verbs::{
    Action, ActionHandle, Catalog, DataSource, DataSourceHandle, Done, EphemeralHandle, EphemeralResource, ListHandle,
    ListResource, Listed, Opened, Progress,
};
