//! terraform-provider-edge: the `edgeform/edge` Terraform provider.
//!
//! Layers, each knowing only the one below: `plugin` (tfplugin6 over gRPC, msgpack) →
//! `framework` (typed verbs, plan logic) → `resources`, `data_sources`, `ephemeral`,
//! `list_resources`, `actions`, `functions` (gathered in `catalog`) → `clients` → the APIs.

pub mod actions;
pub mod catalog;
pub mod clients;
pub mod data_sources;
pub mod ephemeral;
pub mod framework;
pub mod functions;
pub mod list_resources;
pub mod plugin;
pub mod provider;
pub mod resources;
