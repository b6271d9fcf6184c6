# One store: nodes from bare metal (the first creates the cluster, the others join it), the
# Ceph pools on the resulting cluster, the WireGuard tunnel to the hub, and the PBS maintenance
# chain. Ordering comes from the references between resources, not from depends_on lists to keep
# in sync by hand. Trust flows from the first node: each node is pinned to the seed the provider
# made for its first boot, then trusted through the cluster's CA (`cluster_ca_pem`), which the
# members, the pools and the backup job use — a rebuilt store needs no re-pinning.

locals {
  names   = sort(keys(var.nodes))
  first   = local.names[0]
  members = toset(slice(local.names, 1, length(local.names)))
  # The cluster's API as the pools and the backup job reach it: the first node, verified against
  # the cluster's CA (a rebuild brings a new CA in the same apply).
  pve = {
    endpoint = "https://${edge_proxmox_node.first.address}:8006"
    ca_pem   = edge_proxmox_node.first.cluster_ca_pem
  }
}

resource "edge_proxmox_node" "first" {
  name              = local.first
  address           = var.nodes[local.first].address
  root_password     = var.root_password
  timezone          = var.timezone
  disk_boot_timeout = var.disk_boot_timeout

  image {
    url      = var.image.url
    manifest = var.image.manifest
  }
  bmc {
    endpoint = var.nodes[local.first].bmc_endpoint
  }
  dns {
    servers = var.dns.servers
    search  = var.dns.search
  }
  cluster {
    name   = var.cluster_name
    create = true
  }
  ceph {
    mon         = var.nodes[local.first].mon
    mgr         = var.nodes[local.first].mgr
    osd_devices = var.nodes[local.first].osd_devices
    mon_address = var.nodes[local.first].mon_address
    wipe        = var.nodes[local.first].wipe_disks
  }
  timeouts {
    create = var.timeouts
  }
}

resource "edge_proxmox_node" "member" {
  for_each = local.members

  name              = each.key
  address           = var.nodes[each.key].address
  root_password     = var.root_password
  timezone          = var.timezone
  disk_boot_timeout = var.disk_boot_timeout

  image {
    url      = var.image.url
    manifest = var.image.manifest
  }
  bmc {
    endpoint = var.nodes[each.key].bmc_endpoint
  }
  dns {
    servers = var.dns.servers
    search  = var.dns.search
  }
  # Joins run one at a time (the provider serialises them per cluster).
  cluster {
    join   = edge_proxmox_node.first.address
    ca_pem = edge_proxmox_node.first.cluster_ca_pem
  }
  ceph {
    mon         = var.nodes[each.key].mon
    mgr         = var.nodes[each.key].mgr
    osd_devices = var.nodes[each.key].osd_devices
    mon_address = var.nodes[each.key].mon_address
    wipe        = var.nodes[each.key].wipe_disks
  }
  timeouts {
    create = var.timeouts
  }
}

resource "edge_ceph_pool" "pool" {
  for_each = var.pools

  # Pools need the whole cluster's OSDs: created through the first node once every member is in.
  node        = edge_proxmox_node.first.name
  ceph_fsid   = edge_proxmox_node.first.ceph_fsid # a rebuilt cluster gets its pools back in the same apply
  pve         = local.pve
  name        = each.key
  size        = each.value.size
  min_size    = each.value.min_size
  pg_num      = each.value.pg_num
  application = each.value.application

  depends_on = [edge_proxmox_node.member]
}

# The store's end of the tunnel, on the gateway node (the first). The node generates its own key;
# `tunnel_public_key` is what the hub's peer for this store needs.
resource "edge_wireguard_peer" "hub" {
  count = var.hub == null ? 0 : 1

  ssh = {
    host     = coalesce(var.hub.store_ssh_host, var.nodes[local.first].address)
    host_key = coalesce(var.hub.store_host_key, edge_proxmox_node.first.ssh_host_key)
  }
  interface            = var.hub.interface
  public_key           = var.hub.public_key
  endpoint             = var.hub.endpoint
  allowed_ips          = var.hub.allowed_ips
  persistent_keepalive = 25 # stores sit behind NAT

  depends_on = [edge_proxmox_node.first]
}

# Nightly backup of every guest to PBS, through the PVE storage that points at the datastore.
resource "edge_pbs_job" "backup" {
  count    = try(var.backup.pve_storage, null) == null ? 0 : 1
  id       = "${var.store_id}-nightly"
  schedule = var.backup.backup_schedule
  comment  = "${var.store_id}: all guests to PBS"
  pve      = local.pve
  backup {
    storage = var.backup.pve_storage
    all     = true
    mode    = "snapshot"
  }

  depends_on = [edge_proxmox_node.member]
}

# Off-site copy: push the datastore to a central PBS (PBS 3.3+). With sync_direction = "pull"
# the central PBS pulls instead (output offsite_pull): PBS before 3.3 cannot push.
resource "edge_pbs_job" "sync" {
  count    = try(var.backup.sync_remote, null) != null && try(var.backup.sync_direction, "push") == "push" ? 1 : 0
  id       = "${var.store_id}-offsite"
  schedule = var.backup.sync_schedule
  comment  = "${var.store_id}: off-site copy"
  sync {
    store          = var.backup.datastore
    remote         = var.backup.sync_remote
    remote_store   = var.backup.sync_remote_store
    sync_direction = "push"
  }
}

resource "edge_pbs_job" "verify" {
  count    = var.backup == null ? 0 : 1
  id       = "${var.store_id}-verify"
  schedule = var.backup.verify_schedule
  comment  = "${var.store_id}: verify backups"
  verify {
    store           = var.backup.datastore
    ignore_verified = true
    outdated_after  = 30
  }
}

resource "edge_pbs_job" "prune" {
  count    = var.backup == null ? 0 : 1
  id       = "${var.store_id}-prune"
  schedule = var.backup.prune_schedule
  comment  = "${var.store_id}: retention"
  prune {
    store        = var.backup.datastore
    keep_daily   = var.backup.keep_daily
    keep_weekly  = var.backup.keep_weekly
    keep_monthly = var.backup.keep_monthly
  }
}

resource "edge_pbs_job" "gc" {
  count    = var.backup == null ? 0 : 1
  id       = var.backup.datastore
  schedule = var.backup.gc_schedule
  gc {}
}
