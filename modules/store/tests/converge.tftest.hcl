# A whole store from powered-off lab machines: apply, then check the outputs users rely on.
# `terraform test` destroys everything at the end, which the driver then checks in the lab.

provider "edge" {}

run "converge" {
  command = apply

  assert {
    condition     = length(output.node_fingerprints) == 3 && alltrue([for fp in values(output.node_fingerprints) : length(fp) == 95])
    error_message = "every node has a pinned SHA-256 fingerprint (AB:CD:… form)"
  }
  assert {
    condition     = output.ceph_fsid != "" && output.pool_ids["vm-disks"] >= 0
    error_message = "the store has a Ceph cluster with the declared pool"
  }
  assert {
    condition     = contains(output.job_ids, "store-001-verify") && contains(output.job_ids, "store-001-prune")
    error_message = "the backup chain exists"
  }
  assert {
    condition     = alltrue([for v in values(output.booted_images) : v == "tftest-1"])
    error_message = "every node booted the verified image"
  }
  assert {
    condition     = startswith(output.cluster_ca_pem, "-----BEGIN CERTIFICATE-----")
    error_message = "the store's cluster CA is known"
  }
  assert {
    condition     = length(output.ssh_host_keys) == 3 && alltrue([for k in values(output.ssh_host_keys) : startswith(k, "ssh-ed25519 ")])
    error_message = "every node's SSH host key is known from its seed"
  }
}
