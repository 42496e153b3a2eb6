#!/usr/bin/env bash
# Debian packages the tests use: unixODBC with the PostgreSQL, MariaDB, SQLite and FreeTDS drivers, Chromium
# and a CJK font (report screenshots); the MariaDB client headers that mysqlclient (the C MySQL/MariaDB driver)
# builds against. `--build` installs only those headers (what `make setup` needs).
set -euo pipefail
build=(libmariadb-dev pkg-config)
need=("${build[@]}" unixodbc odbc-postgresql odbc-mariadb libsqliteodbc tdsodbc chromium fonts-noto-cjk)
[ "${1:-}" = "--build" ] && need=("${build[@]}")
missing=()
for pkg in "${need[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if ! command -v apt-get >/dev/null 2>&1; then
  echo "system-deps: apt-get not available; install ${missing[*]} yourself (ODBC and browser tests need them)" >&2
  exit 0
fi
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo -n"
echo "system-deps: installing ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
