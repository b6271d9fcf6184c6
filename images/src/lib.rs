//! Nix formats and signed image manifests.
