#!/usr/bin/env bash
# Make sure the services the tests talk to are up. This machine kind starts PostgreSQL;
# if it has stopped, start it again. Later capabilities add Prometheus and Chromium here.
set -euo pipefail

pg_up() { pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; }
if ! pg_up; then
  echo "PostgreSQL is not answering on 127.0.0.1:5432; starting it" >&2
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
  for _ in $(seq 1 30); do pg_up && break; sleep 1; done
fi
pg_up || { echo "PostgreSQL is still down: the integration tests need it at 127.0.0.1:5432" >&2; exit 1; }
