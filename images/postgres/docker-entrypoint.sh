#!/bin/bash
# Entrypoint of hasched/postgres: a test PostgreSQL with the official
# `postgres` image's environment contract (POSTGRES_PASSWORD, POSTGRES_USER,
# POSTGRES_DB, PGDATA), running Debian's PostgreSQL build as user postgres.
# On first start it initdb's PGDATA and opens password (scram-sha-256)
# logins from any address; the image is for tests, so the password has a
# well-known default.
set -euo pipefail

: "${PGDATA:=/var/lib/postgresql/data}"
: "${POSTGRES_USER:=postgres}"
: "${POSTGRES_PASSWORD:=hasched-test}"
: "${POSTGRES_DB:=$POSTGRES_USER}"

if [[ "${1:-}" != postgres ]]; then
	exec "$@"
fi

if [[ ! -s "$PGDATA/PG_VERSION" ]]; then
	mkdir -p "$PGDATA"
	chmod 0700 "$PGDATA"
	pwfile="$(mktemp)"
	printf '%s\n' "$POSTGRES_PASSWORD" >"$pwfile"
	initdb -D "$PGDATA" -U "$POSTGRES_USER" --pwfile="$pwfile" \
		--encoding=UTF8 --locale=C.UTF-8 \
		--auth-local=trust --auth-host=scram-sha-256 >/dev/null
	rm -f "$pwfile"
	{
		echo "host all all 0.0.0.0/0 scram-sha-256"
		echo "host all all ::/0 scram-sha-256"
	} >>"$PGDATA/pg_hba.conf"
	if [[ "$POSTGRES_DB" != postgres ]]; then
		# Single-user mode: no server, no port, before the real start.
		echo "CREATE DATABASE \"$POSTGRES_DB\" OWNER \"$POSTGRES_USER\";" |
			postgres --single -D "$PGDATA" -j postgres >/dev/null
	fi
fi

shift
exec postgres -D "$PGDATA" -c listen_addresses='*' \
	-c unix_socket_directories=/tmp "$@"
