#!/usr/bin/env bash
# Start every service the `services` tests need and print their `export` lines:
#   eval "$(tests/services/start.sh)"
# Each service is tests/services/<name>.sh with start|stop; add new ones to SERVICES.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SERVICES=${CORRGD_SERVICES:-postgres}
for service in $SERVICES; do
    "$here/$service.sh" start
done
