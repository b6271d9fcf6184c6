output "node_fingerprints" {
  description = "TLS certificate fingerprint (SHA-256) each node presents (signed by the cluster's CA)."
  value = merge(
    { (edge_proxmox_node.first.name) = edge_proxmox_node.first.tls_fingerprint },
    { for k, n in edge_proxmox_node.member : k => n.tls_fingerprint },
  )
}

output "booted_images" {
  description = "The verified image each node booted."
  value = merge(
    { (edge_proxmox_node.first.name) = edge_proxmox_node.first.image_version },
    { for k, n in edge_proxmox_node.member : k => n.image_version },
  )
}

output "pool_ids" {
  value = { for k, p in edge_ceph_pool.pool : k => p.id }
}

output "job_ids" {
  value = concat(
    [for j in edge_pbs_job.backup : j.id],
    [for j in edge_pbs_job.sync : j.id],
    [for j in edge_pbs_job.verify : j.id],
    [for j in edge_pbs_job.prune : j.id],
    [for j in edge_pbs_job.gc : "gc:${j.id}"],
  )
}

output "offsite_pull" {
  description = "With backup.sync_direction = \"pull\": the sync job to create on the off-site PBS (an edge_pbs_job there, pulling from a remote that points at this store's PBS); null otherwise."
  value = try(var.backup.sync_direction, null) == "pull" && try(var.backup.sync_remote_store, null) != null ? {
    id           = "${var.store_id}-offsite"
    store        = var.backup.sync_remote_store
    remote_store = var.backup.datastore
    schedule     = var.backup.sync_schedule
  } : null
}

output "ceph_fsid" {
  description = "The store's Ceph cluster."
  value       = edge_proxmox_node.first.ceph_fsid
}

output "tunnel" {
  description = "The store's end of the hub tunnel: its public key (for the hub's peer) and health as of the last refresh; null without a hub."
  value = var.hub == null ? null : {
    public_key       = edge_wireguard_peer.hub[0].node_public_key
    latest_handshake = edge_wireguard_peer.hub[0].latest_handshake
    rx_bytes         = edge_wireguard_peer.hub[0].rx_bytes
    tx_bytes         = edge_wireguard_peer.hub[0].tx_bytes
  }
}

output "cluster_ca_pem" {
  description = "The store cluster's CA (PEM): what the provider verifies every node against."
  value       = edge_proxmox_node.first.cluster_ca_pem
}

output "ssh_host_keys" {
  description = "Each node's SSH host public key, made by the provider in its first-boot seed (pin these, e.g. in known_hosts)."
  value = merge(
    { (edge_proxmox_node.first.name) = edge_proxmox_node.first.ssh_host_key },
    { for k, n in edge_proxmox_node.member : k => n.ssh_host_key },
  )
}
