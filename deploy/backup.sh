#!/usr/bin/env bash
# Pay Box backup: a pg_dump (custom format) of the database and a tarball of NOTICES_DIR into BACKUP_DIR, named by
# UTC time; files older than BACKUP_RETENTION_DAYS are removed afterwards (the newest dump is always kept).
# Run daily by paybox-backup.timer, or by hand: sudo -u paybox /opt/paybox/app/deploy/backup.sh
#
# Settings come from the environment, else from PAYBOX_ENV_FILE (default /etc/paybox/paybox.env):
#   DATABASE_URL (required), NOTICES_DIR, BACKUP_DIR (/var/backups/paybox), BACKUP_RETENTION_DAYS (14),
#   IMPORTS_DIR, BACKUP_NOTICES (1: archive NOTICES_DIR and IMPORTS_DIR too; 0: the database only)
# Exit status non-zero when anything failed (the timer's unit then shows "failed"; a half-written file is removed).
set -euo pipefail

ENV_FILE=${PAYBOX_ENV_FILE:-/etc/paybox/paybox.env}

# The value of KEY: the environment first, then the env file (KEY=value, optionally double-quoted; never executed).
setting() {
    local key=$1 default=${2-}
    if [ -n "${!key-}" ]; then
        printf '%s' "${!key}"
        return
    fi
    if [ -r "$ENV_FILE" ]; then
        local line
        line=$(grep -E "^${key}=" "$ENV_FILE" | tail -n 1 || true)
        if [ -n "$line" ]; then
            line=${line#*=}
            line=${line%\"}
            line=${line#\"}
            if [ -n "$line" ]; then
                printf '%s' "$line"
                return
            fi
        fi
    fi
    printf '%s' "$default"
}

log() { printf '%s backup: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$*" >&2; }

DATABASE_URL=$(setting DATABASE_URL)
NOTICES_DIR=$(setting NOTICES_DIR)
IMPORTS_DIR=$(setting IMPORTS_DIR)
BACKUP_DIR=$(setting BACKUP_DIR /var/backups/paybox)
RETENTION=$(setting BACKUP_RETENTION_DAYS 14)
WITH_NOTICES=$(setting BACKUP_NOTICES 1)

if [ -z "$DATABASE_URL" ]; then
    log "DATABASE_URL is not set (environment or $ENV_FILE)"
    exit 2
fi
case "$DATABASE_URL" in
    postgresql*|postgres:*) ;;
    *) log "DATABASE_URL is not PostgreSQL: copy the SQLite file with 'sqlite3 FILE .backup DEST' instead"; exit 2 ;;
esac
# SQLAlchemy's driver suffix means nothing to libpq.
DATABASE_URL=${DATABASE_URL/postgresql+psycopg:/postgresql:}
if ! [[ "$RETENTION" =~ ^[0-9]+$ ]]; then
    log "BACKUP_RETENTION_DAYS must be a number of days, got '$RETENTION'"
    exit 2
fi

umask 077
mkdir -p "$BACKUP_DIR"
# One backup at a time (a slow dump still running when the next timer fires).
exec 9>"$BACKUP_DIR/.lock"
if ! flock -n 9; then
    log "another backup is running"
    exit 1
fi

stamp=$(date -u +%Y%m%dT%H%M%SZ)
dump="$BACKUP_DIR/paybox-db-$stamp.dump"
partial=""
trap '[ -n "$partial" ] && rm -f "$partial"' EXIT

partial="$dump.partial"
log "dumping the database to $dump"
pg_dump --format=custom --compress=6 --no-password --file="$partial" --dbname="$DATABASE_URL"
# A dump pg_restore cannot list is no backup.
pg_restore --list "$partial" >/dev/null
mv "$partial" "$dump"
partial=""
log "database: $(du -h "$dump" | cut -f1)"

# The notices' files and the uploaded bill-run files (kept with their reports), each as a tarball.
archive_dir() {  # NAME DIR
    [ -n "$2" ] && [ -d "$2" ] || return 0
    archive="$BACKUP_DIR/paybox-$1-$stamp.tar.gz"
    partial="$archive.partial"
    log "archiving $2 to $archive"
    tar --create --gzip --file="$partial" --directory="$(dirname "$2")" "$(basename "$2")"
    mv "$partial" "$archive"
    partial=""
    log "$1: $(du -h "$archive" | cut -f1)"
}
if [ "$WITH_NOTICES" = "1" ]; then
    archive_dir notices "$NOTICES_DIR"
    archive_dir imports "$IMPORTS_DIR"
fi

# Retention: older files go, but never the dump just written.
find "$BACKUP_DIR" -maxdepth 1 -type f \( -name 'paybox-db-*.dump' -o -name 'paybox-notices-*.tar.gz' -o -name 'paybox-imports-*.tar.gz' \) \
    -mtime +"$RETENTION" ! -name "*-$stamp.*" -print -delete | sed 's/^/removed /' >&2
log "done"
