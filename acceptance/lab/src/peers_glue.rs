//! Glue between the emulator's peer traits (`PoolBackend`, `Bmc`) and the real-peer modules
//! (`ceph`, `redfish`) written alongside.

use std::path::Path;

use crate::lab::{Bmc, PoolBackend};
use crate::state::LabState;

/// The peers a lab runs with: real Ceph for pools, a Redfish BMC for bare metal.
pub type Peers = (Option<Box<dyn PoolBackend>>, Option<Box<dyn Bmc>>);

pub fn start_peers(_dir: &Path, st: &LabState) -> anyhow::Result<Peers> {
    if st.options.ceph {
        anyhow::bail!("--ceph: the real Ceph peer is not wired into this build yet");
    }
    if st.options.redfish {
        anyhow::bail!("--redfish: the Redfish peer is not wired into this build yet");
    }
    Ok((None, None))
}

/// After `down`: stop peers whose pid files are still there (normally none).
pub fn stop_leftovers(_dir: &Path) {}
