# What a running store owns besides its nodes: Ceph pools and the PBS maintenance chain
# (10 resources with the defaults). Nodes are left out on purpose: edge_proxmox_node needs a BMC,
# and the fleet example is about many states, not bare metal (modules/store does that).

resource "edge_ceph_pool" "pool" {
  for_each = var.pools

  node              = var.node
  name              = each.key
  size              = each.value.size
  min_size          = each.value.min_size
  pg_num            = each.value.pg_num
  pg_autoscale_mode = "off"
  application       = each.value.application
}

resource "edge_pbs_job" "verify" {
  for_each = var.verify_schedules

  id       = "${var.store_id}-verify-${each.key}"
  schedule = each.value
  comment  = "${var.store_id}: verify backups (${each.key})"
  verify {
    store           = var.datastore
    ignore_verified = true
    outdated_after  = 30
  }
}

resource "edge_pbs_job" "prune" {
  for_each = var.prune

  id       = "${var.store_id}-prune-${each.key}"
  schedule = each.value.schedule
  comment  = "${var.store_id}: retention (${each.key})"
  prune {
    store        = var.datastore
    keep_daily   = each.value.keep_daily
    keep_weekly  = each.value.keep_weekly
    keep_monthly = each.value.keep_monthly
  }
}

resource "edge_pbs_job" "gc" {
  id       = var.datastore
  schedule = var.gc_schedule
  gc {}
}
