output "pool_ids" {
  description = "Ceph pool numbers by name."
  value       = { for k, p in edge_ceph_pool.pool : k => p.id }
}

output "job_ids" {
  description = "PBS job IDs of the store's maintenance chain."
  value = concat(
    [for j in edge_pbs_job.verify : j.id],
    [for j in edge_pbs_job.prune : j.id],
    ["gc:${edge_pbs_job.gc.id}"],
  )
}
