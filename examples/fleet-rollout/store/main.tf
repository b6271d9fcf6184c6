# The root module every store's agent applies: one release of it is a bundle (this file, the
# module, the lock file and a tfvars file), built and signed at the hub. The agent runs it on
# the store with the store's own credentials:
#
#   EDGE_PVE_* / EDGE_PBS_*        the store's PVE node and PBS (the provider's environment)
#   TF_VAR_store_id, TF_VAR_datastore
#   PG_CONN_STR                    the store's own PostgreSQL role (it can write its state schema
#   PG_SCHEMA_NAME                 tfstate_<store> and nothing else)
#   PG_SKIP_SCHEMA_CREATION=true   (and _TABLE_, _INDEX_): the hub made the schema, its table and
#                                  index when it registered the store; the role may not create
#                                  anything outside its schema

terraform {
  required_version = ">= 1.4"
  required_providers {
    edge = { source = "edgeform/edge" }
  }
  backend "pg" {}
}

provider "edge" {}

variable "store_id" {
  type = string
}

variable "datastore" {
  type = string
}

variable "gc_schedule" {
  type    = string
  default = "sun 04:00"
}

variable "pools" {
  description = "Ceph pools; null keeps the module's defaults."
  type        = any
  default     = null
}

module "services" {
  source = "./modules/store-services"

  store_id    = var.store_id
  datastore   = var.datastore
  gc_schedule = var.gc_schedule
  pools       = var.pools
}

output "job_ids" { value = module.services.job_ids }
