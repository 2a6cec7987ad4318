#!/usr/bin/env python3
"""Watches a cgroup's freezer until SIGTERM and prints the total frozen time.

    freeze_watch.py v1 /sys/fs/cgroup/freezer/ID      (freezer.state)
    freeze_watch.py v2 /sys/fs/cgroup/unified/ID      (cgroup.events)

Samples every 1 ms; prints "<total frozen ms> <number of freezes>". It sees the
session the way its processes do, whoever froze it.
"""
import os
import signal
import sys
import time

version, cgroup = sys.argv[1], sys.argv[2]
path = os.path.join(cgroup, "freezer.state" if version == "v1" else "cgroup.events")


def frozen() -> bool:
    with open(path) as f:
        text = f.read()
    if version == "v1":
        return text.strip() in ("FROZEN", "FREEZING")
    return "frozen 1" in text


stop = False


def on_term(*_):
    global stop
    stop = True


signal.signal(signal.SIGTERM, on_term)
total, count, since = 0.0, 0, None
print("ready", flush=True)
while not stop:
    now = time.monotonic()
    if frozen():
        if since is None:
            since, count = now, count + 1
    elif since is not None:
        total += now - since
        since = None
    time.sleep(0.001)
if since is not None:
    total += time.monotonic() - since
print(f"{total * 1000:.0f} {count}", flush=True)
