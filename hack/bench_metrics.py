#!/usr/bin/env python3
"""The cost of one /metrics scrape of the device plugin at 16 PFs x VFS VFs
(tree only, so the VF counter files are plain files), with baselines
measured in the same run:

- GET /healthz on the same listener: the floor of any HTTP request to the
  daemon (connect, parse, answer);
- `cat` of every VF counter file (`sriov/<N>/stats/*`, six per VF) through
  xargs: what reading the counters at scrape time would cost at least,
  which is why the daemon samples them on a thread of its own and a scrape
  only renders the last sample;
- the daemon's own last sampling pass (`sriov_dp_vf_counters_read_seconds`).

The daemon runs with a stand-in kubelet (`sriovctl kubelet-sim`) that serves
PodResources, so each scrape includes the PodResources `List` it makes.
Requests are interleaved (scrape, healthz, ...); each one is timed from
connect to the last byte of the body.

Usage: bench_metrics.py RUNS TARGET_DIR WORK_DIR VFS
Prints a Markdown table for the README."""
import os
import signal
import socket
import statistics
import subprocess
import sys
import time

from bench_dp import Tree, p95


def get(port, path):
    """(ms, body) of one GET over a fresh connection."""
    start = time.perf_counter_ns()
    with socket.create_connection(("127.0.0.1", port)) as conn:
        conn.sendall(f"GET {path} HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n".encode())
        chunks = []
        while True:
            chunk = conn.recv(1 << 20)
            if not chunk:
                break
            chunks.append(chunk)
    elapsed = (time.perf_counter_ns() - start) / 1e6
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        sys.exit(f"bench: GET {path}: {head[:80]!r}")
    return elapsed, body.decode()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cat_all_counters(sysfs):
    """ms to read every VF counter file with cat (xargs: the paths exceed one command line)."""
    start = time.perf_counter_ns()
    subprocess.run(f"find {sysfs}/devices -path '*/sriov/*/stats/*' -type f -print0 | xargs -0 cat",
                   shell=True, check=True, stdout=subprocess.DEVNULL)
    return (time.perf_counter_ns() - start) / 1e6


def sample_lines(body, metric):
    return [line for line in body.splitlines() if line.startswith(metric + "{")]


def main():
    runs, target, work, vfs = int(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])
    tree = Tree(target, work, vfs, pod_resources=True)
    port = free_port()
    daemon = sim = None
    try:
        sim = tree.kubelet_sim()
        daemon = subprocess.Popen(tree.daemon_cmd() + [f"--health-addr=127.0.0.1:{port}"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # wait for the first sample of every VF
        deadline = time.monotonic() + 30
        while True:
            try:
                _, body = get(port, "/metrics")
                if len(sample_lines(body, "sriov_vf_rx_bytes")) == tree.count:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                sys.exit("bench: the daemon never showed every VF's counters")
            time.sleep(0.05)
        series = sum(1 for line in body.splitlines() if line and not line.startswith("#"))
        size = len(body.encode())
        scrapes, healthz, cats = [], [], []
        cat_all_counters(tree.sysfs)  # warm the page cache
        for _ in range(runs):
            elapsed, body = get(port, "/metrics")
            scrapes.append(elapsed)
            healthz.append(get(port, "/healthz")[0])
        for _ in range(max(3, runs // 10)):
            cats.append(cat_all_counters(tree.sysfs))
        read = next(float(line.split()[-1]) * 1000 for line in body.splitlines()
                    if line.startswith("sriov_dp_vf_counters_read_seconds "))
        s, h, c = statistics.median(scrapes), statistics.median(healthz), statistics.median(cats)
        print(f"| VFs (16 PFs) | series | body KiB | scrape, median ms | p95 ms | "
              f"baseline: /healthz, median ms | scrape vs /healthz | "
              f"cat of the {6 * tree.count} counter files, median ms | cat vs scrape | "
              f"daemon's last sampling pass, ms |")
        print("|---|---|---|---|---|---|---|---|---|---|")
        print(f"| {tree.count} | {series} | {size / 1024:.0f} | {s:.1f} | {p95(scrapes):.1f} | {h:.2f} | "
              f"{s / h:.0f}x | {c:.1f} | {c / s:.0f}x | {read:.1f} |")
    finally:
        if daemon is not None:
            daemon.send_signal(signal.SIGTERM)
            daemon.wait(timeout=10)
        if sim is not None:
            sim.stdin.write("quit\n")
            sim.stdin.close()
            sim.wait(timeout=10)
        tree.destroy()


if __name__ == "__main__":
    main()
