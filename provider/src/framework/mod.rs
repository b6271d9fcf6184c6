//! The small framework the resources share: values and schemas, typed conversion, the
//! `Resource` trait and the generic plan logic. Knows nothing of gRPC or msgpack.

pub mod convert;
pub mod diag;
pub mod plan;
pub mod resource;
pub mod schema;
pub mod timeouts;
pub mod value;

pub use diag::{AttrPath, Diagnostics};
pub use resource::{Ctx, ImportRequest, PlanCtx, Resource, ResourceHandle};
pub use schema::{Attribute, Block, IdentityAttribute, IdentitySchema, NestedBlock, Nesting, Schema};
pub use timeouts::{Op, Timeouts};
pub use value::{Number, Type, Value};
