//! terraform-provider-edge: the `edgeform/edge` Terraform provider.
//!
//! Layers, each knowing only the one below: `plugin` (tfplugin6 over gRPC, msgpack) →
//! `framework` (typed resources, plan logic) → `resources` → `clients` → the APIs.

pub mod clients;
pub mod framework;
pub mod plugin;
pub mod provider;
pub mod resources;
