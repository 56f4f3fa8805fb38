#!/usr/bin/env python3
"""Writes the three systems' configurations for one load, from one list of devices.

Every system polls the same registers of the same simulator: device d is slave 10 + d on bus
d % 10 (the TCP server on port BASE + d % 10), 50 big-endian f32 values in holding registers
0..99, read as one 100-register request every second, and every value is stored.

    gen.py --devices 20 --base-port 15020 --out DIR

writes DIR/cems/cems.toml, DIR/nodered/{settings.js,flows.json,schema.sql} and
DIR/tb/{tb_gateway.json,modbus.json,logs.json}.
"""

import argparse
import json
import os

BUSES = 10
FLOATS = 50  # per device: registers 0..99


def devices(n, base_port):
    for d in range(n):
        yield {"name": f"d{d}", "slave": 10 + d, "bus": d % BUSES, "port": base_port + d % BUSES}


def cems(out, n, base_port, ui_port):
    """cems-gateway: the full daemon (status page on loopback), buffer in SQLite (one row per
    value); no outlet, so no statistics and no uplink, as the peers have none."""
    lines = [
        "[site]",
        'mn = "PEERS000000001"',
        'pw = "123456"',
        "[storage]",
        f'path = "{os.path.join(out, "cems.db")}"',
        "max_size_mb = 65536",
        "[web]",
        f'listen = "127.0.0.1:{ui_port}"',
    ]
    for b in range(BUSES):
        lines += ["[[bus]]", f'name = "b{b}"', 'kind = "tcp"', f'address = "127.0.0.1:{base_port + b}"']
    for dev in devices(n, base_port):
        lines += [
            "[[device]]",
            f'name = "{dev["name"]}"',
            f'bus = "b{dev["bus"]}"',
            f'slave = {dev["slave"]}',
            "poll_interval_s = 1",
        ]
        for p in range(FLOATS):
            lines += ["[[device.point]]", f'factor = "p{p:03}"', f"address = {2 * p}", 'type = "f32"']
    write(out, "cems.toml", "\n".join(lines) + "\n")


# The Node-RED function that turns one 100-register reply into one multi-row INSERT.
NODERED_DECODE = """const regs = msg.responseBuffer.buffer;
const ts = Date.now();
const rows = [];
for (let i = 0; i < %d; i++) {
    rows.push('(' + ts + ",'" + msg.topic + "'," + (2 * i) + ',' + regs.readFloatBE(4 * i) + ')');
}
msg.topic = 'INSERT INTO sample (ts, device, reg, value) VALUES ' + rows.join(',');
msg.payload = [];
return msg;
""" % FLOATS


def nodered(out, n, base_port, port):
    """Node-RED: one modbus-client per bus, one modbus-read per device (every 1 s), one function
    that decodes the floats into a multi-row INSERT, one sqlite node (one row per value)."""
    db = os.path.join(out, "nodered.db")
    # Nodes of a flow have a position (x, y); without one Node-RED takes a node for a config node.
    flow = [{"id": "tab", "type": "tab", "label": "peers"}]
    flow.append({"id": "db", "type": "sqlitedb", "db": db, "mode": "RW"})
    flow.append({"id": "store", "type": "sqlite", "z": "tab", "mydb": "db", "sqlquery": "msg.topic",
                 "sql": "", "name": "store", "x": 500, "y": 40, "wires": [[]]})
    flow.append({"id": "decode", "type": "function", "z": "tab", "name": "decode", "func": NODERED_DECODE,
                 "outputs": 1, "timeout": 0, "noerr": 0, "initialize": "", "finalize": "", "libs": [],
                 "x": 300, "y": 40, "wires": [["store"]]})
    for b in range(BUSES):
        flow.append({
            "id": f"bus{b}", "type": "modbus-client", "name": f"b{b}", "clienttype": "tcp",
            "bufferCommands": True, "stateLogEnabled": False, "queueLogEnabled": False,
            "failureLogEnabled": False, "tcpHost": "127.0.0.1", "tcpPort": str(base_port + b),
            "tcpType": "DEFAULT", "unit_id": 1, "commandDelay": 1, "clientTimeout": 1000,
            "reconnectOnTimeout": True, "reconnectTimeout": 2000, "parallelUnitIdsAllowed": True,
            "showErrors": False, "showWarnings": False, "showLogs": False,
        })
    for dev in devices(n, base_port):
        flow.append({
            "id": f"read{dev['name']}", "type": "modbus-read", "z": "tab", "name": dev["name"],
            "topic": dev["name"], "showStatusActivities": False, "logIOActivities": False,
            "showErrors": False, "showWarnings": False, "unitid": str(dev["slave"]),
            "dataType": "HoldingRegister", "adr": "0", "quantity": str(2 * FLOATS), "rate": "1",
            "rateUnit": "s", "delayOnStart": False, "enableDeformedMessages": False,
            "startDelayTime": "", "server": f"bus{dev['bus']}", "useIOFile": False, "ioFile": "",
            "useIOForPayload": False, "emptyMsgOnFail": False, "x": 100, "y": 40 + 40 * int(dev["name"][1:]),
            "wires": [["decode"], []],
        })
    write(out, "flows.json", json.dumps(flow, indent=1))
    settings = f"""// Node-RED headless: no editor, no admin or node HTTP endpoints.
module.exports = {{
    uiHost: "127.0.0.1",
    uiPort: {port},
    userDir: {json.dumps(out)},
    flowFile: "flows.json",
    credentialSecret: false,
    disableEditor: true,
    httpAdminRoot: false,
    httpNodeRoot: false,
    externalModules: {{ autoInstall: false, palette: {{ allowInstall: false }} }},
    diagnostics: {{ enabled: false }},
    runtimeState: {{ enabled: false }},
    telemetry: {{ enabled: false }},
    logging: {{ console: {{ level: "warn", metrics: false, audit: false }} }},
}};
"""
    write(out, "settings.js", settings)
    # Created before Node-RED starts, in WAL mode like cems-gateway's buffer (the sqlite node
    # opens it with SQLite's default synchronous=FULL, as cems-gateway sets).
    write(out, "schema.sql", "PRAGMA journal_mode=WAL;\n"
          "CREATE TABLE IF NOT EXISTS sample (ts INTEGER NOT NULL, device TEXT NOT NULL, "
          "reg INTEGER NOT NULL, value REAL);\n")


def thingsboard(out, n, base_port, mqtt_port):
    """ThingsBoard IoT Gateway: its Modbus connector (one 100-register wide-range read per
    device, decoded into 50 floats), its SQLite storage, MQTT to the local broker."""
    slaves = []
    for dev in devices(n, base_port):
        slaves.append({
            "host": "127.0.0.1", "port": dev["port"], "type": "tcp", "method": "socket",
            "unitId": dev["slave"], "deviceName": dev["name"], "deviceType": "bench",
            "timeout": 1, "byteOrder": "BIG", "wordOrder": "BIG", "retries": 0,
            "pollPeriod": 1000, "connectAttemptTimeMs": 500, "connectAttemptCount": 5,
            "waitAfterFailedAttemptsMs": 30000, "attributes": [],
            "timeseries": [{"tag": "p${address}", "type": "32float", "functionCode": 3,
                            "objectsCount": 2, "address": f"0-{2 * FLOATS - 1}",
                            "maxRegistersPerRequest": 2 * FLOATS}],
            "attributeUpdates": [], "rpc": [],
        })
    write(out, "modbus.json", json.dumps({"name": "modbus", "logLevel": "ERROR",
                                          "master": {"slaves": slaves}}, indent=1))
    gateway = {
        "thingsboard": {
            "host": "127.0.0.1", "port": mqtt_port, "remoteShell": False, "remoteConfiguration": False,
            "latencyDebugMode": False,
            "statistics": {"enable": False, "statsSendPeriodInSeconds": 3600,
                           "customStatsSendPeriodInSeconds": 3600},
            "deviceFiltering": {"enable": False},
            "maxPayloadSizeBytes": 65536, "minPackSendDelayMS": 50, "minPackSizeToSend": 500,
            "checkConnectorsConfigurationInSeconds": 3600, "handleDeviceRenaming": False,
            "security": {"type": "accessToken", "accessToken": "peers-bench"},
            "qos": 1,
            "reportStrategy": {"type": "ON_RECEIVED"},
            "checkingDeviceActivity": {"checkDeviceInactivity": False},
        },
        "storage": {"type": "sqlite", "data_file_path": os.path.join(out, "data") + "/",
                    "messages_ttl_check_in_hours": 1, "messages_ttl_in_days": 7,
                    "max_read_records_count": 1000, "writing_batch_size": 1000},
        "grpc": {"enabled": False},
        "connectors": [{"type": "modbus", "name": "modbus", "configuration": "modbus.json"}],
    }
    write(out, "tb_gateway.json", json.dumps(gateway, indent=1))
    # Errors only: at the default level its pymodbus logs a deprecation warning per value.
    logs = {
        "version": 1, "disable_existing_loggers": False,
        "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "plain",
                                "level": "ERROR", "stream": "ext://sys.stderr"}},
        "loggers": {name: {"level": "ERROR", "handlers": ["stderr"], "propagate": False}
                    for name in ("service", "connector", "converter", "tb_connection", "storage",
                                 "extension", "database", "pymodbus")},
        "root": {"level": "ERROR", "handlers": ["stderr"]},
    }
    write(out, "logs.json", json.dumps(logs, indent=1))


def write(folder, name, text):
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, name), "w", encoding="utf-8") as f:
        f.write(text)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--devices", type=int, required=True, help="devices of 50 floats (at most 238)")
    ap.add_argument("--base-port", type=int, required=True, help="first of the 10 simulator ports")
    ap.add_argument("--mqtt-port", type=int, required=True, help="the local MQTT broker's port")
    ap.add_argument("--ui-port", type=int, required=True,
                    help="loopback HTTP port of the system under test (cems-gateway's status page, Node-RED's)")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    if not 1 <= a.devices <= 238:
        ap.error("--devices must be 1..238 (slaves 10..247)")
    out = os.path.abspath(a.out)
    cems(os.path.join(out, "cems"), a.devices, a.base_port, a.ui_port)
    nodered(os.path.join(out, "nodered"), a.devices, a.base_port, a.ui_port)
    thingsboard(os.path.join(out, "tb"), a.devices, a.base_port, a.mqtt_port)


if __name__ == "__main__":
    main()
