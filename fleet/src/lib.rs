//! Fleet releases, the pull side's root of trust.
//!
//! - A **release** ([`release`]) is a content-addressed bundle of what a store applies: its root
//!   configuration and modules, `.terraform.lock.hcl`, the provider binary's digest and the digest
//!   of the signed node-image manifest it expects. Its id is the SHA-256 of its canonical
//!   `release.json`, which lists every file with its hash: a bundle that verifies is exactly the
//!   one that was named.
//! - A **channel manifest** ([`channel`]) says which release the stores of a channel run. It
//!   carries a version that only goes up (a store refuses an older one, and a different one under
//!   a version it has seen), an expiry (an expired manifest is an alarm, never a reason to tear
//!   anything down) and signatures by a threshold of distinct trusted keys — Nix-format Ed25519
//!   keys, the same keys and code as the node images (`edge-images`). A roll-back is a *newer*
//!   manifest naming the last good release, so Git, the hub and the stores never disagree.
//! - **A rollout** ([`rollout`]) moves a release through ordered partitions of stores, each
//!   opened only when the previous one passed its gate (reports, failure budget, soak), handing
//!   it to at most `max_in_flight` stores of a partition at once; failures over budget halt it
//!   and, if asked, revert the stores that were handed it. [`sim`] drives it with seeded
//!   simulated stores.
//! - **The store agent's cycle** ([`agent`]): poll, verify manifest and bundle, fetch the
//!   release's node image once into the store's cache ([`images`], served to the BMCs over the
//!   LAN), apply with the store's own Terraform inside its maintenance window ([`window`]), write
//!   a report signed with the store's key and post it to the hub.
//! - **Health checks** ([`health`]) after a successful apply and on every cycle after it: PVE
//!   quorum, Ceph health, WireGuard handshake age, last PBS backup, the booted image; combined
//!   into succeeded, failed or pending (no data).
//! - **Restore tests** ([`restore`]): each guest's latest PBS backup restored into an isolated
//!   scratch VM, started, checked, timed (RTO) and aged (RPO), then destroyed.
//! - **The hub** ([`hub`] decides; [`db`] keeps its state in PostgreSQL; [`serve`] is the
//!   service): verified reports in, the controller's decision, per-store channel manifests out;
//!   [`status_page`] shows where the rollout is, as `hub status` prints it.
//! - **Metrics** ([`metrics`]): the hub's and the agent's facts in the Prometheus exposition
//!   format, for the rules in `deploy/prometheus/` and the dashboard in `deploy/grafana/`.

pub mod agent;
pub mod audit;
pub mod channel;
pub mod db;
pub mod drift;
pub mod evidence;
pub mod files;
pub mod health;
pub mod hub;
pub mod images;
pub mod metrics;
pub mod release;
pub mod restore;
pub mod rollout;
pub mod serve;
pub mod sim;
pub mod status_page;
pub mod window;
