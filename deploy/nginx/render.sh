#!/usr/bin/env bash
# Print the Pay Box nginx site (nginx/paybox.conf) with its @NAMES@ filled in (install.sh writes it to
# /etc/nginx/sites-available/paybox):
#   nginx/render.sh DOMAIN TLS_CERT TLS_KEY MAX_UPLOAD_MB APP_DIR SOAP_ALLOW_FILE
set -euo pipefail
if [ $# -ne 6 ]; then
    echo "usage: $0 DOMAIN TLS_CERT TLS_KEY MAX_UPLOAD_MB APP_DIR SOAP_ALLOW_FILE" >&2
    exit 2
fi
[[ "$4" =~ ^[0-9]+$ ]] || { echo "MAX_UPLOAD_MB must be a whole number of MiB, got '$4'" >&2; exit 2; }
[[ "$1" =~ ^[A-Za-z0-9.-]+$ ]] || { echo "DOMAIN '$1': letters, digits, dots and dashes only" >&2; exit 2; }
sed -e "s|@DOMAIN@|$1|g" -e "s|@TLS_CERT@|$2|g" -e "s|@TLS_KEY@|$3|g" -e "s|@MAX_UPLOAD_MB@|$4|g" \
    -e "s|@APP_DIR@|$5|g" -e "s|@SOAP_ALLOW_FILE@|$6|g" "$(dirname "${BASH_SOURCE[0]}")/paybox.conf"
