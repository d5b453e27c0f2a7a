#!/usr/bin/env bash
# Restore a Pay Box dump made by backup.sh into a NEW database (never over the live one), e.g. for the restore
# drill of deploy/README.md or before switching DATABASE_URL over after a loss:
#
#   deploy/restore.sh [--owner paybox] /var/backups/paybox/paybox-db-20270101T023000Z.dump \
#       "postgresql:///paybox_restored?host=/var/run/postgresql"
#
# The target database must not exist yet: it is created (owner: --owner ROLE, else the URL's user), the dump
# restored without the original owner and grants (--no-owner --no-acl; with --owner every object belongs to ROLE,
# as a database the application can use), in one transaction (all or nothing). Then the ledger's totals
# are printed, to compare with the live database (`deploy/restore.sh --totals URL` prints them for any database).
set -euo pipefail

totals() {
    psql --no-psqlrc --quiet --tuples-only --no-align --field-separator=' ' --set=ON_ERROR_STOP=1 \
        --dbname="$1" <<'SQL'
SELECT 'positions', count(*)::text FROM positions
UNION ALL SELECT 'payment_options', count(*)::text FROM payment_options
UNION ALL SELECT 'receipts', count(*)::text FROM receipts
UNION ALL SELECT 'events', count(*)::text FROM events
UNION ALL SELECT 'paid_cents', coalesce(sum(paid_cents), 0)::text FROM positions
UNION ALL SELECT 'receipts_cents', coalesce(sum(amount_cents), 0)::text FROM receipts
UNION ALL SELECT 'alembic_version', version_num FROM alembic_version;
SQL
}

if [ "${1-}" = "--totals" ]; then
    [ $# -eq 2 ] || { echo "usage: $0 --totals DATABASE_URL" >&2; exit 2; }
    totals "${2/postgresql+psycopg:/postgresql:}"
    exit 0
fi
owner=""
if [ "${1-}" = "--owner" ]; then
    owner=${2-}
    shift 2 || true
    [[ "$owner" =~ ^[A-Za-z0-9_]+$ ]] || { echo "--owner takes a role name" >&2; exit 2; }
fi
if [ $# -ne 2 ]; then
    echo "usage: $0 [--owner ROLE] DUMP_FILE NEW_DATABASE_URL   |   $0 --totals DATABASE_URL" >&2
    exit 2
fi
dump=$1
target=${2/postgresql+psycopg:/postgresql:}
[ -r "$dump" ] || { echo "$dump: not readable" >&2; exit 2; }

# postgresql://user@host:port/name?query → the server URL (database "postgres") and the name.
base=${target%%\?*}
query=""
[ "$base" != "$target" ] && query="?${target#*\?}"
name=${base##*/}
server="${base%/*}/postgres$query"
if ! [[ "$name" =~ ^[A-Za-z0-9_]+$ ]]; then
    echo "database name '$name': letters, digits and _ only" >&2
    exit 2
fi
exists=$(psql --no-psqlrc --tuples-only --no-align --set=ON_ERROR_STOP=1 --dbname="$server" \
    --command="SELECT 1 FROM pg_database WHERE datname = '$name'")
if [ "$exists" = "1" ]; then
    echo "database $name already exists: restore.sh only restores into a new database" >&2
    exit 1
fi
if [ -n "$owner" ]; then
    psql --no-psqlrc --quiet --set=ON_ERROR_STOP=1 --dbname="$server" \
        --command="CREATE DATABASE \"$name\" OWNER \"$owner\""
    pg_restore --no-owner --no-acl --role="$owner" --single-transaction --exit-on-error --dbname="$target" "$dump"
else
    psql --no-psqlrc --quiet --set=ON_ERROR_STOP=1 --dbname="$server" --command="CREATE DATABASE \"$name\""
    pg_restore --no-owner --no-acl --single-transaction --exit-on-error --dbname="$target" "$dump"
fi
echo "restored $dump into $name:"
totals "$target"
