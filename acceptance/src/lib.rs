//! Acceptance harness: real Terraform in a temp dir against the freshly built provider.
