#!/usr/bin/env bash
# `make test` after the build: every test of the workspace, then a check that the run left
# nothing behind. Every process the tests start inherits EDGE_TEST_RUN (Ceph daemons, the BMC
# emulator, sshd, wireguard-go, PostgreSQL, labs); whatever still carries it afterwards, or a
# test network namespace still listed, is a leak that would tax the rest of a CI machine's run.
set -uo pipefail
cd "$(dirname "$0")/.."
export EDGE_TEST_RUN="edge-test-$$-$(date +%s)"
"${CARGO:-cargo}" test --workspace --no-fail-fast "$@"
rc=$?
env -u EDGE_TEST_RUN scripts/check-leftovers.sh "$EDGE_TEST_RUN" || rc=1
exit $rc
