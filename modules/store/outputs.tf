output "node_fingerprints" {
  description = "TLS certificate fingerprint (SHA-256) pinned for each node."
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
    [for j in edge_pbs_job.verify : j.id],
    [for j in edge_pbs_job.prune : j.id],
    [for j in edge_pbs_job.gc : "gc:${j.id}"],
  )
}
