# Bad module inputs are stopped at plan time with the module's own messages, before any
# provider call. Run by acceptance/tests/store_module.rs (`terraform test` against the edge lab);
# the lab's facts (nodes, image, passwords) come in through -var-file.

provider "edge" {}

run "store_id_must_be_a_dns_label" {
  command = plan
  variables {
    store_id = "Store_001"
  }
  expect_failures = [var.store_id]
}

run "a_store_has_nodes" {
  command = plan
  variables {
    nodes = {}
  }
  expect_failures = [var.nodes]
}

run "the_plan_wires_the_store" {
  command = plan

  # The first node (sort order) creates the cluster; the others join it through its address,
  # trusting it through the cluster's CA.
  assert {
    condition     = edge_proxmox_node.first.name == "pve1" && edge_proxmox_node.first.cluster.create == true
    error_message = "pve1 must create the cluster"
  }
  assert {
    condition     = alltrue([for m in edge_proxmox_node.member : m.cluster.join == edge_proxmox_node.first.address])
    error_message = "every other node joins through the first"
  }
  assert {
    condition     = length(edge_ceph_pool.pool) == 1 && edge_ceph_pool.pool["vm-disks"].node == "pve1"
    error_message = "pools are created through the first node"
  }
  assert {
    condition     = edge_pbs_job.verify[0].id == "store-001-verify" && edge_pbs_job.prune[0].id == "store-001-prune"
    error_message = "job ids are prefixed with the store id"
  }
  assert {
    condition     = length(edge_wireguard_peer.hub) == 0
    error_message = "no tunnel without a hub"
  }
}

run "a_hub_adds_the_tunnel" {
  command = plan
  variables {
    hub = {
      endpoint       = "hub.example.net:51820"
      public_key     = "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg="
      allowed_ips    = ["10.99.0.0/16"]
      store_host_key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"
    }
  }
  assert {
    condition     = edge_wireguard_peer.hub[0].endpoint == "hub.example.net:51820" && edge_wireguard_peer.hub[0].persistent_keepalive == 25
    error_message = "the store dials the hub with a keepalive (stores sit behind NAT)"
  }
  assert {
    condition     = edge_wireguard_peer.hub[0].ssh.host == edge_proxmox_node.first.address
    error_message = "the tunnel lives on the first node"
  }
}

run "the_backup_chain_grows_with_its_inputs" {
  command = plan
  variables {
    backup = {
      datastore         = "store1"
      pve_storage       = "pbs-store1"
      sync_remote       = "central"
      sync_remote_store = "edge-001"
    }
  }
  assert {
    condition     = edge_pbs_job.backup[0].backup.storage == "pbs-store1" && edge_pbs_job.backup[0].backup.all == true
    error_message = "the nightly backup goes to the PBS storage"
  }
  assert {
    condition     = edge_pbs_job.sync[0].sync.remote == "central" && edge_pbs_job.sync[0].sync.sync_direction == "push"
    error_message = "the off-site copy pushes to the remote"
  }
}

run "pbs_before_3_3_gets_its_copy_pulled" {
  command = plan
  variables {
    backup = {
      datastore         = "store1"
      sync_remote_store = "edge-001"
      sync_direction    = "pull"
    }
  }
  assert {
    condition     = length(edge_pbs_job.sync) == 0
    error_message = "pull: nothing to create on the store"
  }
  assert {
    condition     = output.offsite_pull.store == "edge-001" && output.offsite_pull.remote_store == "store1" && output.offsite_pull.id == "store-001-offsite"
    error_message = "pull: the output describes the off-site PBS's job"
  }
}

run "sync_direction_is_push_or_pull" {
  command = plan
  variables {
    backup = {
      datastore      = "store1"
      sync_direction = "both"
    }
  }
  expect_failures = [var.backup]
}
