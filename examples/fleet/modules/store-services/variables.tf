variable "store_id" {
  description = "Store identifier, e.g. \"store-001\"; prefixes job IDs and comments."
  type        = string
  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,20}$", var.store_id))
    error_message = "store_id: lower-case letters, digits and dashes, starting with a letter (2–21 characters)."
  }
}

variable "node" {
  description = "The PVE node whose API manages the store's Ceph pools."
  type        = string
  default     = "pve1"
}

variable "datastore" {
  description = "The store's PBS datastore."
  type        = string
  default     = "store1"
}

variable "pools" {
  description = "Ceph pools by name (null: the defaults below)."
  nullable    = false
  type = map(object({
    size        = optional(number, 3)
    min_size    = optional(number, 2)
    pg_num      = optional(number, 32)
    application = optional(string, "rbd")
  }))
  default = {
    "vm-disks"  = {}
    "ct-disks"  = {}
    "images"    = { pg_num = 16 }
    "scratch"   = { size = 2, min_size = 1, pg_num = 16 }
    "cephfs-md" = { pg_num = 16, application = "cephfs" }
  }
}

variable "verify_schedules" {
  description = "PBS verify jobs: name suffix => calendar event."
  type        = map(string)
  default     = { weekly = "sat 03:00", monthly = "sat *-1..7 15:00" }
}

variable "prune" {
  description = "PBS prune jobs: name suffix => schedule and retention."
  type = map(object({
    schedule     = string
    keep_daily   = optional(number)
    keep_weekly  = optional(number)
    keep_monthly = optional(number)
  }))
  default = {
    daily   = { schedule = "daily", keep_daily = 7, keep_weekly = 4 }
    archive = { schedule = "sun 05:00", keep_monthly = 12 }
  }
}

variable "gc_schedule" {
  description = "Garbage collection of the datastore."
  type        = string
  default     = "sun 04:00"
}
