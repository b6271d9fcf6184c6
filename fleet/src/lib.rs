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
//!   opened only when the previous one passed its gate (reports, failure budget, soak); failures
//!   over budget halt it and, if asked, revert every opened partition. [`sim`] drives it with
//!   seeded simulated stores.
//! - **The store agent's cycle** ([`agent`]): poll, verify manifest and bundle, apply with the
//!   store's own Terraform, write a report signed with the store's key.
//! - **A hub step on files** ([`hub`]): verified reports in, the controller's decision, per-store
//!   channel manifests out.

pub mod agent;
pub mod channel;
pub mod files;
pub mod hub;
pub mod release;
pub mod rollout;
pub mod sim;
