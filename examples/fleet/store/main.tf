# The root module of ONE store. Every store of the fleet runs this same configuration in its own
# Terraform workspace of the `pg` backend, so each store has its own state and its own lock:
#
#   export PG_CONN_STR=postgres://…/fleet       # the backend (partial configuration below)
#   export EDGE_PVE_ENDPOINT=… EDGE_PBS_ENDPOINT=… (and the tokens/fingerprints) of store-042
#   TF_WORKSPACE=store-042 terraform apply
#
# fleet.sh does exactly that for every store of an edge lab.

terraform {
  required_version = ">= 1.3"
  required_providers {
    edge = { source = "edgeform/edge" }
  }
  # conn_str comes from PG_CONN_STR (or -backend-config), so no credentials live in the code.
  # All stores share one schema; each store is one workspace (one row of its `states` table,
  # locked with its own PostgreSQL advisory lock).
  backend "pg" {
    schema_name = "edge_fleet"
  }
}

# Endpoints, tokens and pinned fingerprints of this store's PVE node and PBS come from the
# environment (EDGE_PVE_*, EDGE_PBS_*), its datastore from TF_VAR_datastore: the same code
# serves every store.
provider "edge" {}

variable "datastore" {
  description = "The store's PBS datastore (from its inventory entry, like the endpoints)."
  type        = string
}

variable "gc_schedule" {
  description = "Garbage collection of the store's datastore."
  type        = string
  default     = "sun 04:00"
}

module "services" {
  source = "../modules/store-services"

  # The workspace name is the store ID. `default` is not a store: "" fails the module's
  # store_id validation instead of quietly converging a store called "default".
  store_id    = terraform.workspace == "default" ? "" : terraform.workspace
  datastore   = var.datastore
  gc_schedule = var.gc_schedule
}

output "store_id" { value = terraform.workspace }
output "pool_ids" { value = module.services.pool_ids }
output "job_ids" { value = module.services.job_ids }
