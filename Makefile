# Thin entry points; the logic lives in Rust and in scripts/.
#   make demo   converge a whole store in the embedded edge lab (fresh machine: installs what it needs)
#   make test   install what the suite needs, build once, run every test
SHELL := /bin/bash
CARGO ?= cargo
VERSION := 0.1.0
PLUGIN_DIR ?= $(HOME)/.terraform.d/plugins/registry.terraform.io/edgeform/edge/$(VERSION)/linux_amd64

.PHONY: demo test deps build lint install bench clean

deps:
	scripts/install-deps.sh

build:
	$(CARGO) build --workspace --bins

demo: deps
	scripts/demo.sh

# One build of every binary and test target, then the whole suite against it, then a check
# that it left no process or network namespace behind (scripts/test.sh).
test: deps
	$(CARGO) build --workspace --bins --tests
	CARGO=$(CARGO) scripts/test.sh

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

# Installs the provider where Terraform looks for local plugins (implied local mirror).
install:
	$(CARGO) build --release -p terraform-provider-edge
	install -D -m 0755 target/release/terraform-provider-edge $(PLUGIN_DIR)/terraform-provider-edge_v$(VERSION)
	@echo "installed edgeform/edge $(VERSION) into $(PLUGIN_DIR)"

bench:
	bench/run-all.sh

clean:
	$(CARGO) clean
