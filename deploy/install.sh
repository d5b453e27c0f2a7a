#!/usr/bin/env bash
# Install (or upgrade) Pay Box on a Debian 12 machine, from this checkout. Idempotent: run it again after a
# `git pull` to upgrade (code, dependencies, assets, migrations, units; settings and data are kept).
#
#   sudo deploy/install.sh --domain paybox.comune.example [--workers 2] [--env-file my.env]
#                          [--without-postgres] [--without-redis] [--without-nginx] [--no-start]
#
# What it does, in order (deploy/README.md explains each step and the manual equivalent):
#  1. apt packages: Python 3 + venv, PostgreSQL, Redis, nginx, npm (front-end packages), rsync, make, curl
#  2. the system user `paybox`; /opt/paybox/app (code, root-owned), /etc/paybox (settings), /var/lib/paybox (data),
#     /var/backups/paybox, /var/log/paybox
#  3. the code copied to /opt/paybox/app, its venv (.venv), pinned requirements, static assets (make assets)
#  4. /etc/paybox/paybox.env from deploy/paybox.env.example (or --env-file) on first install, with a fresh
#     SECRET_KEY and the local DATABASE_URL; it stops here (exit 3) while required pagoPA settings are empty
#  5. PostgreSQL role and database `paybox` (peer authentication), Redis, both enabled at boot
#  6. `flask db upgrade` (migrations), before any service runs the new code
#  7. systemd units (web socket + gunicorn, N RQ workers, the scheduler, the nightly backup), enabled at boot and
#     (re)started; nginx site with TLS (the snakeoil certificate until you install a real one)
#  8. waits for http://127.0.0.1:8000/readyz and runs `paybox doctor`
set -euo pipefail

SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
APP_DIR=/opt/paybox/app
ETC_DIR=/etc/paybox
ENV_FILE=$ETC_DIR/paybox.env
DATA_DIR=/var/lib/paybox
USER_NAME=paybox

DOMAIN=$(hostname -f 2>/dev/null || hostname)
WORKERS=2
ENV_SOURCE=""
WITH_POSTGRES=1
WITH_REDIS=1
WITH_NGINX=1
START=1

usage() { sed -n '2,9p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }

while [ $# -gt 0 ]; do
    case "$1" in
        --domain) DOMAIN=$2; shift 2 ;;
        --workers) WORKERS=$2; shift 2 ;;
        --env-file) ENV_SOURCE=$2; shift 2 ;;
        --without-postgres) WITH_POSTGRES=0; shift ;;
        --without-redis) WITH_REDIS=0; shift ;;
        --without-nginx) WITH_NGINX=0; shift ;;
        --no-start) START=0; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "install.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
    esac
done
[[ "$WORKERS" =~ ^[0-9]+$ ]] || { echo "install.sh: --workers takes a number" >&2; exit 2; }

step() { printf '\n==> %s\n' "$*"; }
have_systemd() { [ -d /run/systemd/system ]; }

# The value of KEY in the env file (KEY=value, optionally double-quoted).
env_value() {
    local line
    line=$(grep -E "^$1=" "$ENV_FILE" | tail -n 1 || true)
    line=${line#*=}
    line=${line%\"}
    printf '%s' "${line#\"}"
}

# Set KEY=VALUE in the env file (replacing an empty or commented line of it), keeping everything else.
env_set() {
    local key=$1 value=$2 tmp
    tmp=$(mktemp)
    if grep -qE "^#?$key=" "$ENV_FILE"; then
        awk -v k="$key" -v v="$value" 'BEGIN { done = 0 }
            $0 ~ "^#?" k "=" && !done { print k "=" v; done = 1; next } { print }' "$ENV_FILE" >"$tmp"
    else
        cp "$ENV_FILE" "$tmp"
        printf '%s=%s\n' "$key" "$value" >>"$tmp"
    fi
    cat "$tmp" >"$ENV_FILE"
    rm -f "$tmp"
}

if [ "$(id -u)" != 0 ]; then
    echo "install.sh: run as root (sudo)" >&2
    exit 1
fi
if ! grep -qs 'VERSION_ID="12"' /etc/os-release; then
    echo "install.sh: written for Debian 12; continuing on $(. /etc/os-release; echo "$PRETTY_NAME")" >&2
fi

step "1. apt packages"
packages=(python3 python3-venv python3-dev rsync make curl ca-certificates npm postgresql-client logrotate)
[ "$WITH_POSTGRES" = 1 ] && packages+=(postgresql)
[ "$WITH_REDIS" = 1 ] && packages+=(redis-server)
[ "$WITH_NGINX" = 1 ] && packages+=(nginx ssl-cert)
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends "${packages[@]}"

step "2. user and directories"
if ! id "$USER_NAME" >/dev/null 2>&1; then
    adduser --system --group --home "$DATA_DIR" --shell /usr/sbin/nologin "$USER_NAME"
fi
install -d -o root -g root -m 0755 /opt/paybox "$APP_DIR"
install -d -o root -g "$USER_NAME" -m 0750 "$ETC_DIR"
install -d -o "$USER_NAME" -g "$USER_NAME" -m 0750 "$DATA_DIR" "$DATA_DIR/notices" "$DATA_DIR/imports" /var/log/paybox
install -d -o "$USER_NAME" -g "$USER_NAME" -m 0700 /var/backups/paybox

step "3. code, venv, assets in $APP_DIR"
if [ "$SRC" != "$APP_DIR" ]; then
    rsync -a --delete --exclude .git --exclude .venv --exclude node_modules --exclude 'instance/*' \
        --exclude static/vendor --exclude .pytest_cache --exclude '__pycache__' "$SRC/" "$APP_DIR/"
fi
[ -x "$APP_DIR/.venv/bin/python" ] || python3 -m venv "$APP_DIR/.venv"
# `make install assets`: pinned requirements, npm packages (package-lock.json), fingerprinted static files.
rm -f "$APP_DIR/.venv/.installed"
make -C "$APP_DIR" install assets
"$APP_DIR/.venv/bin/python" -m compileall -q "$APP_DIR/portal" "$APP_DIR/wsgi.py" "$APP_DIR/gunicorn.conf.py"
install -m 0755 "$APP_DIR/deploy/paybox" /usr/local/bin/paybox

step "4. settings in $ENV_FILE"
if [ ! -e "$ENV_FILE" ]; then
    install -o root -g "$USER_NAME" -m 0640 "${ENV_SOURCE:-$APP_DIR/deploy/paybox.env.example}" "$ENV_FILE"
    echo "created $ENV_FILE"
fi
if [ -z "$(env_value SECRET_KEY)" ]; then
    env_set SECRET_KEY "$(python3 -c 'import secrets; print(secrets.token_urlsafe(48))')"
fi
if [ -z "$(env_value DATABASE_URL)" ] && [ "$WITH_POSTGRES" = 1 ]; then
    env_set DATABASE_URL "postgresql://$USER_NAME@/$USER_NAME?host=/var/run/postgresql"
fi
[ -n "$(env_value PAYBOX_PUBLIC_URL)" ] || env_set PAYBOX_PUBLIC_URL "https://$DOMAIN"
[ -n "$(env_value NOTICES_DIR)" ] || env_set NOTICES_DIR "$DATA_DIR/notices"
[ -n "$(env_value IMPORTS_DIR)" ] || env_set IMPORTS_DIR "$DATA_DIR/imports"
[ -n "$(env_value REDIS_URL)" ] || env_set REDIS_URL "redis://127.0.0.1:6379/0"
missing=()
if [ "$(env_value PAYBOX_ENV)" = production ]; then
    for key in DATABASE_URL REDIS_URL PAGOPA_GPD_URL PAGOPA_RECEIPTS_URL PAGOPA_CHECKOUT_URL PAGOPA_FDR_URL \
               PAGOPA_API_KEY PAGOPA_BROKER_ID PAGOPA_STATION_ID; do
        [ -n "$(env_value "$key")" ] || missing+=("$key")
    done
fi
if [ ${#missing[@]} -gt 0 ]; then
    echo "install.sh: fill in ${missing[*]} in $ENV_FILE (from the intermediary), then run install.sh again" >&2
    exit 3
fi

start_service() {
    if have_systemd; then
        systemctl enable --now "$@"
    else
        # A container without systemd as PID 1: start the daemons directly (enabling is done below anyway).
        for service in "$@"; do
            case "$service" in
                postgresql)
                    version=$(find /etc/postgresql -mindepth 1 -maxdepth 1 -printf '%f\n' | sort -V | tail -n 1)
                    pg_ctlcluster "$version" main start || true ;;
                redis-server) redis-server /etc/redis/redis.conf --daemonize yes || true ;;
                nginx) nginx || nginx -s reload ;;
            esac
        done
    fi
}

step "5. PostgreSQL and Redis"
if [ "$WITH_POSTGRES" = 1 ]; then
    start_service postgresql
    for _ in $(seq 1 30); do pg_isready -q && break; sleep 1; done
    if ! runuser -u postgres -- psql -tAc "SELECT 1 FROM pg_roles WHERE rolname = '$USER_NAME'" | grep -q 1; then
        runuser -u postgres -- createuser "$USER_NAME"
    fi
    if ! runuser -u postgres -- psql -tAc "SELECT 1 FROM pg_database WHERE datname = '$USER_NAME'" | grep -q 1; then
        runuser -u postgres -- createdb --owner="$USER_NAME" --encoding=UTF8 "$USER_NAME"
    fi
    # The trigram index on debtors' names needs pg_trgm (a trusted extension, but created here once anyway).
    runuser -u postgres -- psql -q -d "$USER_NAME" -c 'CREATE EXTENSION IF NOT EXISTS pg_trgm'
fi
if [ "$WITH_REDIS" = 1 ]; then
    start_service redis-server
fi

step "6. migrations"
/usr/local/bin/paybox db upgrade

step "7. services"
install -m 0644 "$APP_DIR"/deploy/systemd/*.service "$APP_DIR"/deploy/systemd/*.socket \
    "$APP_DIR"/deploy/systemd/*.target "$APP_DIR"/deploy/systemd/*.timer /etc/systemd/system/
install -m 0644 "$APP_DIR/deploy/systemd/paybox.tmpfiles" /etc/tmpfiles.d/paybox.conf
install -m 0644 "$APP_DIR/deploy/logrotate" /etc/logrotate.d/paybox
systemd-tmpfiles --create /etc/tmpfiles.d/paybox.conf
units=(paybox.target paybox-web.socket paybox-web.service paybox-scheduler.service paybox-backup.timer)
for n in $(seq 1 "$WORKERS"); do units+=("paybox-worker@$n.service"); done
if have_systemd; then
    systemctl daemon-reload
    systemctl enable "${units[@]}"
    if [ "$START" = 1 ]; then
        # Upgrades: the migrations ran above; now every process moves to the new code. The web socket stays open
        # meanwhile (calls queue), workers finish their current job first (deploy/README.md, "Upgrades").
        systemctl start paybox-web.socket  # never restarted: it holds the calls while gunicorn restarts
        systemctl restart paybox-web.service paybox-scheduler.service
        for n in $(seq 1 "$WORKERS"); do systemctl restart "paybox-worker@$n.service"; done
        systemctl start paybox-backup.timer
    fi
else
    # Offline enabling (a chroot or a container image being built): the symlinks systemctl enable would make.
    systemctl enable "${units[@]}" 2>/dev/null || echo "systemd is not running: units installed, not enabled" >&2
fi

if [ "$WITH_NGINX" = 1 ]; then
    [ -e /etc/nginx/paybox-soap-allow.conf ] || install -m 0644 "$APP_DIR/deploy/nginx/soap-allow.conf" \
        /etc/nginx/paybox-soap-allow.conf
    cert=/etc/ssl/certs/ssl-cert-snakeoil.pem
    key=/etc/ssl/private/ssl-cert-snakeoil.key
    if [ -e "/etc/letsencrypt/live/$DOMAIN/fullchain.pem" ]; then
        cert=/etc/letsencrypt/live/$DOMAIN/fullchain.pem
        key=/etc/letsencrypt/live/$DOMAIN/privkey.pem
    fi
    upload=$(env_value MAX_UPLOAD_MB)
    "$APP_DIR/deploy/nginx/render.sh" "$DOMAIN" "$cert" "$key" "${upload:-64}" "$APP_DIR" \
        /etc/nginx/paybox-soap-allow.conf >/etc/nginx/sites-available/paybox
    ln -sf /etc/nginx/sites-available/paybox /etc/nginx/sites-enabled/paybox
    nginx -t
    if have_systemd; then systemctl enable nginx; systemctl reload-or-restart nginx; else start_service nginx; fi
fi

if [ "$START" = 1 ] && have_systemd; then
    step "8. readiness"
    ready=""
    for _ in $(seq 1 60); do
        if ready=$(curl -fsS http://127.0.0.1:8000/readyz 2>/dev/null); then break; fi
        ready=""
        sleep 2
    done
    if [ -z "$ready" ]; then
        curl -sS http://127.0.0.1:8000/readyz >&2 || true
        echo "install.sh: Pay Box is not ready; see journalctl -u paybox-web -u paybox-scheduler" >&2
        exit 1
    fi
    echo "$ready"
    /usr/local/bin/paybox doctor || echo "install.sh: doctor found problems (above): fix them in $ENV_FILE" >&2
fi
echo "Pay Box is installed in $APP_DIR; settings: $ENV_FILE; see $APP_DIR/deploy/README.md"
