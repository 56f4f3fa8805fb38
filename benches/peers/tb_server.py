#!/usr/bin/env python3
"""Plays the ThingsBoard server for the IoT Gateway on a local MQTT broker, and counts.

- answers the gateway's `getSessionLimits` RPC with "no limits" (until it has an answer the
  gateway sends no telemetry);
- counts the values arriving on `v1/gateway/telemetry` (QoS 1);
- serves HTTP on loopback: POST /api/tb-gateway/updates answers "no update" (the gateway's
  update check, kept off the internet), GET /count answers {"values": N, "messages": M, "series": S, "max_error": E}.

    tb_server.py --mqtt-port 11883 --http-port 11884
"""

import argparse
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import paho.mqtt.client as mqtt

RPC_REQUEST = "v1/devices/me/rpc/request/"
RPC_RESPONSE = "v1/devices/me/rpc/response/"
TELEMETRY = "v1/gateway/telemetry"
NO_LIMITS = {
    "maxPayloadSize": 65536,
    "maxInflightMessages": 100,
    "rateLimits": {"messages": "0:0,", "telemetryMessages": "0:0,", "telemetryDataPoints": "0:0,"},
    "gatewayRateLimits": {"messages": "0:0,", "telemetryMessages": "0:0,", "telemetryDataPoints": "0:0,"},
}


class Counts:
    def __init__(self):
        self.lock = threading.Lock()
        self.values = 0
        self.messages = 0
        self.limits_answered = 0
        self.series = set()
        self.max_error = None

    def snapshot(self):
        with self.lock:
            return {"values": self.values, "messages": self.messages, "limits_answered": self.limits_answered,
                    "series": len(self.series), "max_error": self.max_error}

    def add(self, payload):
        """Counts one gateway telemetry message: {"dN": [{"ts": .., "values": {"pA": v, ..}}, ..]}
        (key pA: the float at register A), checking each value against the simulator's (device dN
        is slave 10 + N, whose float A / 2 drifts by at most 1 around 10 + N + A / 200)."""
        n, error, seen = 0, self.max_error or 0.0, []
        for device, entries in payload.items():
            for entry in entries if isinstance(entries, list) else [entries]:
                values = entry.get("values", entry) if isinstance(entry, dict) else {}
                for key, value in values.items():
                    if key == "ts":
                        continue
                    n += 1
                    seen.append((device, key))
                    try:
                        error = max(error, abs(float(value) - (10 + int(device[1:]) + int(key[1:]) / 200)))
                    except (TypeError, ValueError):
                        error = float("inf")
        with self.lock:
            self.values += n
            self.messages += 1
            self.series.update(seen)
            self.max_error = error if n else self.max_error


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mqtt-port", type=int, required=True)
    ap.add_argument("--http-port", type=int, required=True)
    a = ap.parse_args()
    counts = Counts()

    def on_connect(client, _userdata, _flags, reason, _props):
        if reason.is_failure:
            raise SystemExit(f"tb_server: MQTT connect refused: {reason}")
        client.subscribe([(RPC_REQUEST + "+", 1), (TELEMETRY, 1)])

    def on_message(client, _userdata, msg):
        try:
            body = json.loads(msg.payload)
        except ValueError:
            return
        if msg.topic == TELEMETRY:
            if isinstance(body, dict):
                counts.add(body)
        elif msg.topic.startswith(RPC_REQUEST) and isinstance(body, dict) \
                and body.get("method") == "getSessionLimits":
            client.publish(RPC_RESPONSE + msg.topic[len(RPC_REQUEST):], json.dumps(NO_LIMITS), qos=1)
            with counts.lock:
                counts.limits_answered += 1

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="peers-tb-server")
    client.on_connect = on_connect
    client.on_message = on_message
    client.connect("127.0.0.1", a.mqtt_port, keepalive=60)
    client.loop_start()

    class Handler(BaseHTTPRequestHandler):
        def _answer(self, body):
            data = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):  # noqa: N802 (http.server's name)
            if self.path == "/count":
                self._answer(counts.snapshot())
            else:
                self.send_error(404)

        def do_POST(self):  # noqa: N802
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self._answer({"updateAvailable": False})

        def log_message(self, *_args):
            pass

    ThreadingHTTPServer(("127.0.0.1", a.http_port), Handler).serve_forever()


if __name__ == "__main__":
    main()
