#!/usr/bin/env python3
"""Times whole commands the way the runtime sees them: fork, exec, stdin,
exit. Runs are interleaved (ours, baseline, ours, ...) so machine noise hits
both alike; reports medians, p95 and peak RSS, and each row as a ratio to
the baseline measured in the same run. Usage: bench.py N NAME=CMD... where
the first NAME is the baseline; CMD is run through `sh -c`, stdin from $BENCH_STDIN."""
import os
import statistics
import subprocess
import sys
import time


def run_once(cmd, stdin):
    start = time.perf_counter_ns()
    proc = subprocess.run(["sh", "-c", "exec " + cmd], input=stdin,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    elapsed = time.perf_counter_ns() - start
    if proc.returncode != 0:
        sys.exit(f"bench: {cmd!r} exited {proc.returncode}")
    return elapsed / 1e6  # ms


def peak_rss(cmd, stdin):
    """Peak RSS in KiB, measured by GNU time: a child forked from this
    Python process would inherit Python's own high-water mark."""
    proc = subprocess.run(["/usr/bin/time", "-f", "%M", "sh", "-c", "exec " + cmd],
                          input=stdin, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if proc.returncode != 0:
        sys.exit(f"bench: {cmd!r} exited {proc.returncode} under /usr/bin/time")
    return int(proc.stderr.decode().strip().splitlines()[-1])


def main():
    runs = int(sys.argv[1])
    commands = [arg.split("=", 1) for arg in sys.argv[2:]]
    stdin = os.environ.get("BENCH_STDIN", "").encode()
    samples = {name: [] for name, _ in commands}
    rss = {name: max(peak_rss(cmd, stdin) for _ in range(5)) for name, cmd in commands}
    for _ in range(3):  # warm the page cache
        for name, cmd in commands:
            run_once(cmd, stdin)
    for _ in range(runs):
        for name, cmd in commands:
            samples[name].append(run_once(cmd, stdin))
    base = commands[0][0]
    base_median = statistics.median(samples[base])
    base_rss = rss[base]
    print(f"| command | median ms | p95 ms | peak RSS KiB | time vs {base} | RSS vs {base} |")
    print("|---|---|---|---|---|---|")
    for name, _ in commands:
        values = sorted(samples[name])
        median = statistics.median(values)
        p95 = values[int(len(values) * 0.95) - 1]
        print(f"| {name} | {median:.2f} | {p95:.2f} | {rss[name]} | "
              f"{median / base_median:.2f}x | {rss[name] / base_rss:.2f}x |")


if __name__ == "__main__":
    main()
