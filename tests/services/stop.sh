#!/usr/bin/env bash
# Stop the services started by tests/services/start.sh.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SERVICES=${CORRGD_SERVICES:-postgres}
for service in $SERVICES; do
    "$here/$service.sh" stop
done
