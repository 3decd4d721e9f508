#!/bin/sh
# The project's test command (README): formatting, vet, and every test with
# the race detector, including e2e tests that drive the built binary. As
# root they also use real loop devices and kernel uevents; set
# DAXSTACK_REQUIRE_ROOT=1 to make those fail instead of skipping when they
# cannot run (CI does). The guest tests (guest/, build tag "guest") need
# real pmem under a real kernel and run only in scripts/vm-test.sh's VM,
# which CI runs after this.
set -eu
cd "$(dirname "$0")/.."
unformatted=$(gofmt -l . | grep -v '^vendor/' || true)
if [ -n "$unformatted" ]; then
	echo "gofmt needed on:" >&2
	echo "$unformatted" >&2
	exit 1
fi
go vet ./...
go test -race -count=1 -timeout 20m ./...
