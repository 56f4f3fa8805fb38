#!/usr/bin/env python3
"""Measures one system over a window from /proc, and prints the side-by-side table.

    measure.py window --system NAME --load POINTS --window SECONDS --out RESULTS.jsonl \
        --proc LABEL=PID [--proc ...] [--extra LABEL=PID ...] \
        --store (cems:DB | nodered:DB | mqtt:URL)
    measure.py table RESULTS.jsonl

`window`: CPU % of one core from utime+stime in /proc/PID/stat over the window, VmRSS (sampled
every 2 s: mean and at the end) and VmHWM from /proc/PID/status, and the values stored during
the window (rows in the system's SQLite store, or the MQTT server's count) per second. The
--proc processes make the system's total; --extra ones are reported beside it, not counted.
It fails when the store lacks a point or holds a value the simulator did not serve (every
system must store every point, decoded right).
"""

import argparse
import json
import os
import sqlite3
import sys
import time
import urllib.request

HZ = os.sysconf("SC_CLK_TCK")


def ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of the line)


def status_kb(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key):
                return int(line.split()[1])
    return 0


def expected(device, index):
    """The simulator's bench value around which device dN's float `index` drifts (±1)."""
    return 10 + int(device[1:]) + index / 100


def sqlite_ro(path):
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=60)


def stored(kind, where):
    """Values in the system's store so far."""
    if kind == "mqtt":
        with urllib.request.urlopen(where + "/count", timeout=30) as r:
            return json.load(r)["values"]
    db = sqlite_ro(where)
    try:
        return db.execute("SELECT count(*) FROM sample").fetchone()[0]
    finally:
        db.close()


def check(kind, where, load):
    """The series seen in the last 5 s of the store (MQTT: since the start) and the largest
    distance of a stored value from the simulator's, which is at most 1 when decoded right."""
    if kind == "mqtt":
        with urllib.request.urlopen(where + "/count", timeout=30) as r:
            body = json.load(r)
        return body["series"], body["max_error"]
    db = sqlite_ro(where)
    try:
        if kind == "cems":
            rows = db.execute(
                "SELECT s.device, s.factor, x.value FROM sample x JOIN series s ON s.id = x.series "
                "WHERE x.ts >= (SELECT max(ts) FROM sample) - 5000").fetchall()
            rows = [(d, int(f[1:]), v) for d, f, v in rows]
        else:
            rows = db.execute(
                "SELECT device, reg / 2, value FROM sample WHERE rowid > (SELECT max(rowid) FROM sample) - ?",
                (5 * load,)).fetchall()
    finally:
        db.close()
    series = {(d, i) for d, i, _ in rows}
    error = max((abs(v - expected(d, i)) if v is not None else float("inf") for d, i, v in rows), default=None)
    return len(series), error


def parse_procs(items):
    procs = {}
    for item in items or []:
        label, pid = item.split("=", 1)
        procs[label] = int(pid)
    return procs


def window(args):
    procs, extra = parse_procs(args.proc), parse_procs(args.extra)
    every = {**procs, **extra}
    rss = {label: [] for label in every}
    load0 = open("/proc/loadavg").read().split()[:3]
    t0 = time.monotonic()
    c0 = {label: ticks(pid) for label, pid in every.items()}
    kind, where = args.store.split(":", 1)
    n0 = stored(kind, where)
    t_count0 = time.monotonic()
    end = t0 + args.window
    while True:
        now = time.monotonic()
        if now >= end:
            break
        for label, pid in every.items():
            try:
                rss[label].append(status_kb(pid, "VmRSS:"))
            except FileNotFoundError:
                sys.exit(f"measure: {args.system}: process {label} ({pid}) exited during the window")
        time.sleep(min(2.0, end - now))
    t1 = time.monotonic()
    c1 = {label: ticks(pid) for label, pid in every.items()}
    n1 = stored(kind, where)
    t_count1 = time.monotonic()
    series, error = check(kind, where, args.load)
    groups = {}
    for label, pid in every.items():
        groups[label] = {
            "counted": label in procs,
            "cpu_pct": (c1[label] - c0[label]) / HZ / (t1 - t0) * 100.0,
            "rss_mb": status_kb(pid, "VmRSS:") / 1024.0,
            "rss_mean_mb": sum(rss[label]) / max(1, len(rss[label])) / 1024.0,
            "hwm_mb": status_kb(pid, "VmHWM:") / 1024.0,
        }
    result = {
        "system": args.system,
        "load": args.load,
        "window_s": round(t1 - t0, 1),
        "values_per_s": (n1 - n0) / (t_count1 - t_count0),
        "stored_total": n1,
        "series": series,
        "max_error": error,
        "groups": groups,
        "loadavg_start": load0,
        "loadavg": open("/proc/loadavg").read().split()[:3],
    }
    with open(args.out, "a") as f:
        f.write(json.dumps(result) + "\n")
    total = {k: sum(g[k] for g in groups.values() if g["counted"]) for k in ("cpu_pct", "rss_mb", "hwm_mb")}
    print(f"  {args.system:<10} {args.load:>6} points: CPU {total['cpu_pct']:6.2f} % of a core, "
          f"RSS {total['rss_mb']:6.1f} MB (peak {total['hwm_mb']:.1f}), "
          f"{result['values_per_s']:8.0f} values stored/s; {series} series, max |error| {error}")
    if series < args.load or error is None or error > 1.001:
        sys.exit(f"measure: {args.system} did not store every point right: {series} of {args.load} "
                 f"series, largest distance from the simulator's value {error}")


def table(args):
    rows = [json.loads(line) for line in open(args.results) if line.strip()]
    order = {"cems": 0, "nodered": 1, "thingsboard": 2}
    names = {"cems": "cems-gateway", "nodered": "Node-RED", "thingsboard": "ThingsBoard GW"}
    loads = sorted({r["load"] for r in rows})
    print("| load | system | CPU % of a core | RSS MB (end; mean) | VmHWM MB | values stored/s "
          "| CPU × cems | RSS × cems |")
    print("|---|---|---|---|---|---|---|---|")
    for load in loads:
        mine = sorted((r for r in rows if r["load"] == load), key=lambda r: order.get(r["system"], 9))
        totals = {}
        for r in mine:
            counted = [g for g in r["groups"].values() if g["counted"]]
            totals.setdefault(r["system"], []).append(
                (sum(g["cpu_pct"] for g in counted), sum(g["rss_mb"] for g in counted)))
        base = totals.get("cems")
        for r in mine:
            counted = {k: g for k, g in r["groups"].items() if g["counted"]}
            cpu = sum(g["cpu_pct"] for g in counted.values())
            rss = sum(g["rss_mb"] for g in counted.values())
            rss_mean = sum(g["rss_mean_mb"] for g in counted.values())
            hwm = sum(g["hwm_mb"] for g in counted.values())
            ratio = lambda v, i: f"{v / base[0][i]:.1f}×" if base and base[0][i] > 0 else "–"  # noqa: E731
            label = names.get(r["system"], r["system"])
            if len(r["groups"]) > 1:
                label += " (" + " + ".join(counted) + ")"
            print(f"| {load:,} @ 1 s | {label} | {cpu:.2f} | {rss:.1f}; {rss_mean:.1f} | {hwm:.1f} "
                  f"| {r['values_per_s']:.0f} | {ratio(cpu, 0)} | {ratio(rss, 1)} |")
            if len(r["groups"]) > 1:
                for k, g in r["groups"].items():
                    note = "" if g["counted"] else ", not counted"
                    print(f"| | … {k}{note} | {g['cpu_pct']:.2f} | {g['rss_mb']:.1f}; {g['rss_mean_mb']:.1f} "
                          f"| {g['hwm_mb']:.1f} | | | |")
    windows = sorted({r["window_s"] for r in rows})
    print(f"\nwindows: {', '.join(str(w) for w in windows)} s; load average (1, 5, 15 min) at each window's "
          "start → end, in the order run:")
    for r in rows:
        start = " ".join(r.get("loadavg_start", ["?"]))
        print(f"  {names.get(r['system'], r['system'])} @ {r['load']:,}: {start} → {' '.join(r['loadavg'])}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    w = sub.add_parser("window")
    w.add_argument("--system", required=True)
    w.add_argument("--load", type=int, required=True)
    w.add_argument("--window", type=float, required=True)
    w.add_argument("--out", required=True)
    w.add_argument("--proc", action="append", required=True)
    w.add_argument("--extra", action="append")
    w.add_argument("--store", required=True, help="cems:DB, nodered:DB or mqtt:URL")
    t = sub.add_parser("table")
    t.add_argument("results")
    args = ap.parse_args()
    window(args) if args.cmd == "window" else table(args)


if __name__ == "__main__":
    main()
