variable "store_id" {
  description = "Store identifier, e.g. \"store-001\"; prefixes job IDs."
  type        = string
  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,30}$", var.store_id))
    error_message = "store_id: lower-case letters, digits and dashes, starting with a letter (2–31 characters)."
  }
}

variable "nodes" {
  description = "The store's nodes by name. The first name in sort order creates the cluster; the others join it."
  type = map(object({
    address      = string
    bmc_endpoint = string
    mon          = optional(bool, true)
    mgr          = optional(bool, true)
    osd_devices  = optional(list(string), [])
    # The monitor's address when the node has several in the Ceph public network.
    mon_address = optional(string)
    # Wipe osd_devices that hold something (partitions, LVM, a filesystem) before their OSD:
    # their data is lost. Without it such a disk is an error.
    wipe_disks = optional(bool, false)
  }))
  validation {
    condition     = length(var.nodes) >= 1
    error_message = "nodes: at least one node."
  }
}

variable "image" {
  description = "The signed node image: the URL the BMC boots, and its signed manifest (path or URL)."
  type = object({
    url      = string
    manifest = string
  })
}

variable "cluster_name" {
  type    = string
  default = "edge"
}

variable "root_password" {
  description = <<-EOT
    root@pam's password on every node (write-only on Terraform ≥ 1.11: never in state). Its hash
    reaches each node in its first-boot seed; the provider talks to the nodes as root@pam with it
    (the image knows no API token; clustering and OSDs are root@pam's alone). Set the provider's
    pve.root_password to the same value: refresh and destroy use that one.
  EOT
  type        = string
  sensitive   = true
  validation {
    condition     = length(var.root_password) >= 16
    error_message = "root_password: at least 16 characters (its hash travels to the nodes in their seeds)."
  }
}

variable "dns" {
  type = object({
    servers = list(string)
    search  = string
  })
  default = { servers = ["10.0.0.53"], search = "store.example" }
}

variable "timezone" {
  type    = string
  default = "UTC"
}

variable "pools" {
  description = "Ceph pools by name."
  type = map(object({
    size        = optional(number, 3)
    min_size    = optional(number, 2)
    pg_num      = optional(number, 32)
    application = optional(string, "rbd")
  }))
  default = {}
}

variable "backup" {
  description = <<-EOT
    The store's backup chain on its PBS datastore; null for none. `pve_storage` (a PVE storage of
    type pbs, see docs/resources/pbs_job.md) adds the nightly guest backup. The off-site copy goes to
    `sync_remote_store` on another PBS: with `sync_direction = "push"` (the default; PBS 3.3 or
    later) the store's PBS pushes it through the remote `sync_remote`; with `"pull"` (any PBS,
    the way for PBS 3.0–3.2, which cannot push) the off-site PBS pulls it, nothing is created on
    the store, and the `offsite_pull` output describes the job to create there.
  EOT
  type = object({
    datastore         = string
    pve_storage       = optional(string)
    backup_schedule   = optional(string, "mon..sun 02:00")
    sync_remote       = optional(string)
    sync_remote_store = optional(string)
    sync_direction    = optional(string, "push")
    sync_schedule     = optional(string, "*-*-* 03:30")
    verify_schedule   = optional(string, "sat 03:00")
    prune_schedule    = optional(string, "daily")
    gc_schedule       = optional(string, "sun 04:00")
    keep_daily        = optional(number, 7)
    keep_weekly       = optional(number, 4)
    keep_monthly      = optional(number, 6)
  })
  default = null
  validation {
    condition     = var.backup == null ? true : contains(["push", "pull"], var.backup.sync_direction)
    error_message = "backup.sync_direction: \"push\" (PBS 3.3 or later) or \"pull\" (the off-site PBS pulls; any PBS)."
  }
  validation {
    condition     = var.backup == null ? true : (var.backup.sync_direction != "push" || var.backup.sync_remote_store == null || var.backup.sync_remote != null)
    error_message = "backup.sync_remote: pushing to sync_remote_store needs the remote (/config/remote on the store's PBS) to push through."
  }
}

variable "timeouts" {
  description = "Create timeout of each node (boot + install + configure)."
  type        = string
  default     = "30m"
}

variable "disk_boot_timeout" {
  description = "How long a powered-off node may take to answer from its own disk before it counts as blank and is re-imaged (the disaster-recovery path)."
  type        = string
  default     = "10m"
}

variable "hub" {
  description = "The WireGuard hub this store dials; null for none. The store side is set up on the first node over SSH (pinned host key)."
  type = object({
    endpoint       = string # host:port of the hub
    public_key     = string # the hub interface's public key
    allowed_ips    = list(string)
    interface      = optional(string, "wg0")
    store_host_key = optional(string, null) # default: the first node's ssh_host_key (from its seed)
    store_ssh_host = optional(string, null) # default: the first node's address
  })
  default = null
}
