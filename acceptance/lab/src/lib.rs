//! The edge lab: a schema-checked Proxmox VE + PBS store emulator with real peers attached.
//! See README.md for the CLI, lab.json, the admin API and the fidelity rules.

pub mod acme;
pub mod admin;
pub mod api;
pub mod artifacts;
pub mod ceph;
pub mod cli;
pub mod formats;
pub mod http;
pub mod lab;
pub mod model;
pub mod pbs;
pub mod peers_glue;
pub mod peers_util;
pub mod pki;
pub mod profile;
pub mod pve;
pub mod redfish;
pub mod routes;
pub mod schema;
pub mod schemagen;
pub mod seed;
pub mod serve;
pub mod state;
