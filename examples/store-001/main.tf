# The demo store: three nodes from powered-off bare metal, a Ceph pool, the PBS maintenance chain.
# `make demo` fills terraform.tfvars.json from the edge lab and the provider settings from the
# environment.

terraform {
  required_providers {
    edge = { source = "edgeform/edge" }
  }
}

# PVE is reached as root@pam: the image knows no API token. Endpoints, certificates and the
# other settings come from the environment (EDGE_PBS_*, EDGE_REDFISH_*, EDGE_TRUSTED_IMAGE_KEYS).
provider "edge" {
  pve = { root_password = var.root_password }
}

variable "nodes" {
  type = map(object({
    address      = string
    bmc_endpoint = string
  }))
}
variable "image" {
  type = object({ url = string, manifest = string })
}
variable "root_password" {
  type      = string
  sensitive = true
}
variable "datastore" {
  type = string
}
variable "disk_boot_timeout" {
  description = "How long a powered-off node may take to come back from its disk before it is re-imaged."
  type        = string
  default     = "10m"
}

module "store_001" {
  source = "../../modules/store"

  store_id      = "store-001"
  image         = var.image
  root_password = var.root_password
  timezone      = "Europe/Berlin"
  dns           = { servers = ["10.0.0.53", "10.0.0.54"], search = "store-001.example" }
  timeouts      = "10m"

  disk_boot_timeout = var.disk_boot_timeout

  nodes = { for name, n in var.nodes : name => {
    address      = n.address
    bmc_endpoint = n.bmc_endpoint
    osd_devices  = ["/dev/sdb"]
  } }

  pools = {
    "vm-disks" = { size = 3, min_size = 2, pg_num = 32 }
  }

  backup = { datastore = var.datastore }
}

output "node_fingerprints" { value = module.store_001.node_fingerprints }
output "booted_images" { value = module.store_001.booted_images }
output "pool_ids" { value = module.store_001.pool_ids }
output "ceph_fsid" { value = module.store_001.ceph_fsid }
output "job_ids" { value = module.store_001.job_ids }
output "cluster_ca_pem" { value = module.store_001.cluster_ca_pem }
