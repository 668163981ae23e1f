#!/bin/sh
# Creates Temporal's two PostgreSQL databases and brings their schemas to the version that matches this
# admin-tools image (and so the server image of the same version). Runs in the `temporal-schema` one-shot
# before the server starts, on every `docker compose up`: a database that already has a schema only gets the
# versioned updates it lacks, so upgrading the images is "change both tags, `up` again".
#
# Env: POSTGRES_SEEDS, DB_PORT, POSTGRES_USER, SQL_PASSWORD (read by temporal-sql-tool itself, so the password
# never appears in a process list), DBNAME, VISIBILITY_DBNAME.
set -eu

: "${POSTGRES_SEEDS:?POSTGRES_SEEDS must name the Temporal database host}"
: "${POSTGRES_USER:?POSTGRES_USER must be set}"
: "${SQL_PASSWORD:?SQL_PASSWORD must be set}"
port="${DB_PORT:-5432}"
schema_root=/etc/temporal/schema/postgresql/v12

sql_tool() {
  temporal-sql-tool --plugin postgres12 --ep "$POSTGRES_SEEDS" -p "$port" -u "$POSTGRES_USER" "$@"
}

# True when the database already carries a schema version. setup-schema is only run on a database without one,
# so a re-run can never reset the recorded version (and make update-schema replay migrations).
has_schema() {
  command -v psql >/dev/null 2>&1 || return 1
  PGPASSWORD="$SQL_PASSWORD" psql -h "$POSTGRES_SEEDS" -p "$port" -U "$POSTGRES_USER" -d "$1" -tAc \
    'select count(*) from schema_version' 2>/dev/null | grep -q '^[1-9]'
}

for entry in "${DBNAME:-temporal}:temporal" "${VISIBILITY_DBNAME:-temporal_visibility}:visibility"; do
  db="${entry%%:*}"
  kind="${entry#*:}"
  echo "temporal-schema: database $db ($kind)"
  sql_tool --db "$db" create
  if ! has_schema "$db"; then
    sql_tool --db "$db" setup-schema -v 0.0
  fi
  sql_tool --db "$db" update-schema -d "$schema_root/$kind/versioned"
done
echo 'temporal-schema: done'
