//! The edge lab.
