//! Generated code for the Terraform plugin protocol (tfplugin6, version 6.10) and go-plugin's
//! controller and stdio services. Nothing else lives here: the protocol boundary that uses these
//! types is `terraform-provider-edge`'s `plugin` module.
#![allow(clippy::all, clippy::pedantic, missing_docs)]

/// Terraform plugin protocol 6.10.
pub mod tfplugin6 {
    tonic::include_proto!("tfplugin6");
}

/// go-plugin's GRPCController and GRPCStdio services.
pub mod plugin {
    tonic::include_proto!("plugin");
}

/// The protocol version this crate speaks.
pub const PROTOCOL_VERSION: (u32, u32) = (6, 10);
