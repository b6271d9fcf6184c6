terraform {
  required_version = ">= 1.3"
  required_providers {
    edge = { source = "edgeform/edge" }
  }
}
