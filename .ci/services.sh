#!/usr/bin/env bash
# Services for the annotation tests: Debian's chromium (Playwright drives it; no browser
# download) and a local PostgreSQL server with a test role and database.
# Idempotent: installs only what is missing, starts the cluster only if it is down.
# Works when run (bash .ci/services.sh) and when sourced by .ci/run: it defines and calls one
# function, never `exit`s and exports nothing. It prints the URL the tests read from
# ALIGN_TEST_PG_URL, which .ci/run sets:
#   postgresql+psycopg://align:align@localhost:5432/align_test

align_ci_services() {
  local pg_user=align pg_password=align pg_db=align_test pg_port=5432 missing=()
  command -v chromium >/dev/null 2>&1 || missing+=(chromium)
  command -v pg_ctlcluster >/dev/null 2>&1 && ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || missing+=(postgresql)
  if [ "${#missing[@]}" -gt 0 ]; then
    echo "services: installing ${missing[*]}"
    local sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
  fi

  local version
  version="$(ls /usr/lib/postgresql | sort -V | tail -n 1)"
  if ! pg_lsclusters -h | awk -v v="$version" '$1 == v && $2 == "main"' | grep -q .; then
    pg_createcluster "$version" main --port "$pg_port" >/dev/null
  fi
  if ! pg_lsclusters -h | awk -v v="$version" '$1 == v && $2 == "main" && $4 == "online"' | grep -q .; then
    echo "services: starting PostgreSQL $version"
    pg_ctlcluster "$version" main start
  fi
  local tries=0
  until su postgres -s /bin/sh -c "pg_isready -q -p $pg_port"; do
    tries=$((tries + 1))
    if [ "$tries" -gt 30 ]; then echo "services: PostgreSQL did not become ready" >&2; return 1; fi
    sleep 1
  done

  su postgres -s /bin/sh -c "psql -q -p $pg_port -v ON_ERROR_STOP=1" <<SQL
DO \$\$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$pg_user') THEN
    CREATE ROLE $pg_user LOGIN PASSWORD '$pg_password' CREATEDB;
  END IF;
END \$\$;
SQL
  if ! su postgres -s /bin/sh -c "psql -p $pg_port -tAc \"SELECT 1 FROM pg_database WHERE datname = '$pg_db'\"" | grep -q 1; then
    su postgres -s /bin/sh -c "createdb -p $pg_port -O $pg_user $pg_db"
  fi
  echo "services: chromium at $(command -v chromium)"
  echo "services: PostgreSQL URL postgresql+psycopg://$pg_user:$pg_password@localhost:$pg_port/$pg_db"
}

align_ci_services
