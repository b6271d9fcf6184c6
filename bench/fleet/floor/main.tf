# The floor for bench/fleet: the same shape as examples/fleet/modules/store-services (5 pools,
# 2 verify, 2 prune, 1 gc per store; the same for_each maps and attribute values) as
# terraform_data resources — Terraform's built-in, in-process provider, whose refresh reads nothing.

variable "store_id" {
  type = string
}

variable "datastore" {
  type = string
}

locals {
  pools = {
    "vm-disks"  = { size = 3, min_size = 2, pg_num = 32, application = "rbd" }
    "ct-disks"  = { size = 3, min_size = 2, pg_num = 32, application = "rbd" }
    "images"    = { size = 3, min_size = 2, pg_num = 16, application = "rbd" }
    "scratch"   = { size = 2, min_size = 1, pg_num = 16, application = "rbd" }
    "cephfs-md" = { size = 3, min_size = 2, pg_num = 16, application = "cephfs" }
  }
  verify = { weekly = "sat 03:00", monthly = "sat *-1..7 15:00" }
  prune = {
    daily   = { schedule = "daily", keep_daily = 7, keep_weekly = 4, keep_monthly = null }
    archive = { schedule = "sun 05:00", keep_daily = null, keep_weekly = null, keep_monthly = 12 }
  }
}

resource "terraform_data" "pool" {
  for_each = local.pools
  input    = merge(each.value, { node = "pve1", name = each.key, pg_autoscale_mode = "off" })
}

resource "terraform_data" "verify" {
  for_each = local.verify
  input = {
    id       = "${var.store_id}-verify-${each.key}"
    schedule = each.value
    comment  = "${var.store_id}: verify backups (${each.key})"
    verify   = { store = var.datastore, ignore_verified = true, outdated_after = 30 }
  }
}

resource "terraform_data" "prune" {
  for_each = local.prune
  input = {
    id       = "${var.store_id}-prune-${each.key}"
    schedule = each.value.schedule
    comment  = "${var.store_id}: retention (${each.key})"
    prune    = merge(each.value, { store = var.datastore })
  }
}

resource "terraform_data" "gc" {
  input = { id = var.datastore, schedule = "sun 04:00" }
}
