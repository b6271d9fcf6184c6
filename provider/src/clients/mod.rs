//! Typed clients for the systems the resources manage (PVE, PBS, Redfish, SSH). Resources call
//! these; clients never see Terraform types.

pub mod ssh;
