"""Idle event streams: what 500 open `GET /v1/events/stream` cost a server.

Used by benches/idle_streams.sh, which starts the server(s). Opens N streams
(raw sockets, one each), reads their first chunk, then samples the server's
resident memory and CPU time (from /proc) before the streams, with them
open, and after they sit idle for a while; then makes one change and times
how long until every stream has received its event (with --change-at, the
change goes through another replica: PostgreSQL's LISTEN/NOTIFY wakes this
one).
"""

import argparse
import json
import os
import selectors
import socket
import time
import urllib.request

TICK = os.sysconf("SC_CLK_TCK")


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def threads(pid):
    return len(os.listdir(f"/proc/{pid}/task"))


def api(base, token, method, path, body=None):
    request = urllib.request.Request(
        base + path, method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request) as response:
        return json.loads(response.read() or b"null")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--pid", type=int, required=True)
    parser.add_argument("--streams", type=int, default=500)
    parser.add_argument("--idle", type=float, default=60)
    parser.add_argument("--change-at", help="make the change through this replica instead")
    args = parser.parse_args()
    host, port = args.url.removeprefix("http://").split(":")
    after = api(args.url, args.token, "GET", "/v1/events?after=0&limit=1")["next"]
    while True:
        page = api(args.url, args.token, "GET", f"/v1/events?after={after}&limit=500")
        if page["next"] == after:
            break
        after = page["next"]

    # The server's own idle cost first, for comparison.
    baseline_cpu = cpu_seconds(args.pid)
    time.sleep(args.idle)
    baseline_cpu = cpu_seconds(args.pid) - baseline_cpu
    before = (rss_kib(args.pid), cpu_seconds(args.pid), threads(args.pid))
    selector = selectors.DefaultSelector()
    sockets = []
    opened = time.monotonic()
    for _ in range(args.streams):
        s = socket.create_connection((host, int(port)))
        s.sendall((f"GET /v1/events/stream?after={after} HTTP/1.1\r\nHost: {host}\r\n"
                   f"Authorization: Bearer {args.token}\r\nAccept: text/event-stream\r\n\r\n").encode())
        sockets.append(s)
    for s in sockets:
        s.settimeout(10)
        head = s.recv(65536)
        assert b" 200 " in head.split(b"\r\n", 1)[0], head[:200]
        s.setblocking(False)
        selector.register(s, selectors.EVENT_READ, bytearray())
    open_seconds = time.monotonic() - opened
    time.sleep(1)
    with_open = (rss_kib(args.pid), cpu_seconds(args.pid), threads(args.pid))
    time.sleep(args.idle)
    after_idle = (rss_kib(args.pid), cpu_seconds(args.pid), threads(args.pid))

    # One change: every stream gets its event.
    project = api(args.url, args.token, "GET", "/v1/projects?limit=1")["items"][0]["slug"]
    started = time.monotonic()
    api(args.change_at or args.url, args.token, "POST", f"/v1/projects/{project}/snapshots", {})
    waiting = set(sockets)
    latencies = []
    while waiting and time.monotonic() - started < 30:
        for key, _ in selector.select(timeout=1):
            data = key.fileobj.recv(65536)
            key.data.extend(data)
            if key.fileobj in waiting and b"event: snapshot.status" in key.data:
                waiting.discard(key.fileobj)
                latencies.append(time.monotonic() - started)
    cpu_fanout = cpu_seconds(args.pid) - after_idle[1]
    for s in sockets:
        s.close()

    mib = lambda kib: kib / 1024
    print(f"streams opened: {args.streams} in {open_seconds:.2f} s")
    print(f"server RSS: {mib(before[0]):.1f} MiB before, {mib(with_open[0]):.1f} MiB with the streams open "
          f"(+{(with_open[0] - before[0]) / args.streams:.1f} KiB per stream), "
          f"{mib(after_idle[0]):.1f} MiB after {args.idle:.0f} s idle")
    print(f"server threads: {before[2]} before, {with_open[2]} just after opening the streams "
          f"(idle blocking-pool threads of their first reads), {after_idle[2]} after {args.idle:.0f} s idle")
    print(f"server CPU in {args.idle:.0f} s: {baseline_cpu:.2f} s with no streams, "
          f"{after_idle[1] - with_open[1]:.2f} s with {args.streams} idle streams "
          f"({100 * (after_idle[1] - with_open[1]) / args.idle:.2f} % of one core)")
    latencies.sort()
    if latencies:
        where = "through another replica, " if args.change_at else ""
        print(f"one change {where}fanned out to {len(latencies)}/{args.streams} streams: first after "
              f"{latencies[0] * 1000:.0f} ms, median {latencies[len(latencies) // 2] * 1000:.0f} ms, "
              f"last {latencies[-1] * 1000:.0f} ms; server CPU {cpu_fanout:.2f} s")
    if len(latencies) != args.streams:
        raise SystemExit(f"only {len(latencies)} of {args.streams} streams got the event")


if __name__ == "__main__":
    main()
