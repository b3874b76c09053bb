#!/usr/bin/env bash
# Installs Debian's PostgreSQL server (initdb, pg_ctl, postgres under /usr/lib/postgresql/*/bin)
# for the tests that start a throw-away server of their own (internal/pgtest). Starts no
# service: a policy-rc.d that refuses is in place for the install (Debian's containers have one
# already). Idempotent and quiet: nothing to do when initdb is there. Needs root otherwise.
set -euo pipefail

have() { command -v initdb >/dev/null 2>&1 || compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null; }
have && exit 0

if [ "$(id -u)" != 0 ]; then
  echo "install-postgres: PostgreSQL is not installed; run this as root (apt-get install postgresql)" >&2
  exit 1
fi
policy=/usr/sbin/policy-rc.d
added=
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\n# added by install-postgres.sh for the install only\nexit 101\n' >"$policy"
  chmod 755 "$policy"
  added=1
fi
cleanup() { if [ -n "$added" ]; then rm -f "$policy"; fi; }
trap cleanup EXIT

export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends postgresql >/dev/null
have || { echo "install-postgres: initdb is still missing after installing postgresql" >&2; exit 1; }
