#!/usr/bin/env python3
"""Device plugin start-up, memory and Allocate cost on simulated trees, with
a baseline measured in the same run.

For each tree (16 PFs x VFS VFs, tree only, device-info dir on tmpfs as on a
node), twice: without PodResources (every device-info file written before
serving) and with the stand-in kubelet's PodResources (files at Allocate): a stand-in kubelet (`sriovctl kubelet-sim`) waits on kubelet.sock;
the daemon is started and timed from spawn until the kubelet-sim prints the
pool's first full ListAndWatch list; its peak RSS (VmHWM) is read before
SIGTERM. The baseline is `sriovctl inventory` on the same tree and config:
the same discovery and pool building, no serving, the floor of any daemon
that must look at the node. Runs are interleaved (daemon, baseline, ...).
Then, on one daemon per tree, ALLOCS Allocate round trips of one VF each
through the kubelet-sim.

With DP_COMPARE=DIR (a directory holding another build's
sriov-device-plugin, e.g. main's), a second table puts the two daemons side
by side, interleaved run by run on the same trees, with where each one's
resident memory is at its first full list (/proc/<pid>/smaps, by mapping).

Usage: bench_dp.py RUNS ALLOCS TARGET_DIR WORK_DIR VFS...
Prints Markdown tables for the README."""
import json
import os
import signal
import statistics
import subprocess
import sys
import time

RESOURCE = "intel.com/all_vfs"


def layout(path, vfs):
    with open(path, "w") as f:
        for n in range(16):
            f.write(f'[[pf]]\npci_address = "0000:{0x08 * (n + 1):02x}:00.0"\n'
                    f'name = "ens{n + 1}f0"\ntotal_vfs = {vfs}\nnum_vfs = {vfs}\n\n')


class Tree:
    def __init__(self, target, work, vfs, pod_resources):
        self.target, self.vfs = target, vfs
        self.dir = os.path.join(work, f"tree{vfs}")
        self.sysfs = os.path.join(self.dir, "sys")
        self.kubelet = os.path.join(self.dir, "device-plugins")
        self.config = os.path.join(self.dir, "config.json")
        self.devinfo = f"/dev/shm/sriov-bench-devinfo-{os.getpid()}-{vfs}"
        # with PodResources the daemon writes device-info files at Allocate
        # (none held here); without, all of them before serving
        self.pod_resources = os.path.join(self.dir, "pod-resources.sock") if pod_resources else ""
        os.makedirs(self.kubelet, exist_ok=True)
        layout(os.path.join(self.dir, "layout.toml"), vfs)
        with open(self.config, "w") as f:
            f.write('{"resourceList":[{"resourceName":"all_vfs","selectors":{"devices":["1889"]}}]}')
        subprocess.run([f"{target}/sriovctl", "sim", "create", "--tree-only", "--sysfs-root", self.sysfs,
                        "--layout", os.path.join(self.dir, "layout.toml")],
                       check=True, stdout=subprocess.DEVNULL)
        self.count = 16 * vfs
        out = subprocess.run([f"{target}/sriovctl", "inventory", "--sysfs-root", self.sysfs, "--config-file",
                              self.config, "--output", "json", "--pod-resources-socket", ""],
                             check=True, stdout=subprocess.PIPE, text=True).stdout
        self.ids = [d["id"] for d in json.loads(out)["pools"][0]["devices"]]
        if len(self.ids) != self.count:
            sys.exit(f"bench: the pool has {len(self.ids)} VFs, not {self.count}")

    def destroy(self):
        subprocess.run([f"{self.target}/sriovctl", "sim", "destroy", "--sysfs-root", self.sysfs],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        subprocess.run(["rm", "-rf", self.devinfo])

    def daemon_cmd(self, daemon_dir=None):
        return [f"{daemon_dir or self.target}/sriov-device-plugin", "--sysfs-root", self.sysfs,
                "--config-file", self.config, "--device-plugin-path", self.kubelet,
                "--registration-mode", "kubelet-socket", "--devinfo-dir", self.devinfo,
                "--pod-resources-socket", self.pod_resources, "--log-level", "warn"]

    def kubelet_sim(self):
        extra = ["--pod-resources-socket", self.pod_resources] if self.pod_resources else []
        sim = subprocess.Popen([f"{self.target}/sriovctl", "--log-level", "warn", "kubelet-sim",
                                "--dir", self.kubelet, "--timeout", "60"] + extra,
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                               text=True, bufsize=1)
        sock = os.path.join(self.kubelet, "kubelet.sock")
        deadline = time.monotonic() + 10
        while not os.path.exists(sock):
            if time.monotonic() > deadline:
                sys.exit("bench: kubelet-sim never served kubelet.sock")
            time.sleep(0.005)
        return sim

    def start_daemon(self, daemon_dir=None):
        """Returns (daemon, kubelet-sim, ms to the first full list)."""
        sim = self.kubelet_sim()
        sim.stdin.write(f"wait {RESOURCE} {self.count}\n")
        start = time.perf_counter_ns()
        daemon = subprocess.Popen(self.daemon_cmd(daemon_dir), stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
        line = sim.stdout.readline()
        elapsed = (time.perf_counter_ns() - start) / 1e6
        if "device(s) listed" not in line:
            sys.exit(f"bench: kubelet-sim said {line!r}")
        return daemon, sim, elapsed

    def stop(self, daemon, sim):
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=10)
        sim.stdin.write("quit\n")
        sim.stdin.close()
        sim.wait(timeout=10)

    def start_once(self, daemon_dir=None):
        daemon, sim, elapsed = self.start_daemon(daemon_dir)
        with open(f"/proc/{daemon.pid}/status") as f:
            hwm = next(int(l.split()[1]) for l in f if l.startswith("VmHWM:"))
        parts = resident_parts(daemon.pid)
        self.stop(daemon, sim)
        return elapsed, hwm, parts

    def baseline_once(self):
        cmd = [f"{self.target}/sriovctl", "inventory", "--sysfs-root", self.sysfs, "--config-file",
               self.config, "--output", "json", "--pod-resources-socket", ""]
        start = time.perf_counter_ns()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        elapsed = (time.perf_counter_ns() - start) / 1e6
        proc = subprocess.run(["/usr/bin/time", "-f", "%M"] + cmd, check=True,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        return elapsed, int(proc.stderr.strip().splitlines()[-1])

    def allocate_costs(self, allocs):
        daemon, sim, _ = self.start_daemon()
        costs = []
        # spread over the pool, so no part of it is favoured
        step = max(1, len(self.ids) // allocs)
        for n in range(allocs):
            sim.stdin.write(f"allocate {RESOURCE} {self.ids[(n * step) % len(self.ids)]}\n")
            start = time.perf_counter_ns()
            while True:
                line = sim.stdout.readline()
                if line.startswith(f"{RESOURCE}: allocated"):
                    break
                if not line:
                    sys.exit("bench: kubelet-sim ended")
            # the env lines that follow are read by the next iteration's loop
            costs.append((time.perf_counter_ns() - start) / 1e6)
        self.stop(daemon, sim)
        return costs


PARTS = ["code", "read-only data", "relocated data", "data", "libc and ld.so", "heap",
         "other anonymous", "stack"]


def resident_parts(pid):
    """KiB resident per kind of mapping: the binary's text, its read-only
    part (headers, relocations, rodata, eh_frame), its relocated data
    (RELRO: written once by the loader), its data and bss, the shared
    libraries, the malloc heap, other anonymous mappings (thread stacks,
    malloc arenas, large allocations) and the main stack."""
    parts = dict.fromkeys(PARTS, 0)
    kind = None
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            fields = line.split()
            if not fields[0].endswith(":"):
                perms, name = fields[1], fields[5] if len(fields) > 5 else ""
                if name.endswith("/sriov-device-plugin"):
                    # the loader makes RELRO read-only once relocated: it is
                    # the read-only mapping that is anonymous (dirty)
                    kind = ("code" if "x" in perms else "data" if "w" in perms else "read-only data")
                elif name.startswith("/"):
                    kind = "libc and ld.so"
                elif name == "[heap]":
                    kind = "heap"
                elif name == "[stack]":
                    kind = "stack"
                elif name == "":
                    kind = "other anonymous"
                else:
                    kind = None  # vdso, vvar
            elif kind and fields[0] == "Rss:":
                parts[kind] += int(fields[1])
            elif kind == "read-only data" and fields[0] == "Anonymous:":
                anon = int(fields[1])
                parts["read-only data"] -= anon
                parts["relocated data"] += anon
    return parts


def compare(trees, runs, other):
    print()
    print(f"This build against {other} (DP_COMPARE), interleaved, {runs} runs each; resident KiB at the "
          "first full list, medians:")
    print()
    print("| VFs | device-info files | build | first full list, median ms | peak RSS MiB (max over the runs) | "
          + " | ".join(PARTS) + " |")
    print("|---|---|---|---|---|" + "---|" * len(PARTS))
    for tree in trees:
        results = {"other": [], "this": []}
        tree.start_once()
        tree.start_once(other)
        for _ in range(runs):
            results["other"].append(tree.start_once(other))
            results["this"].append(tree.start_once())
        files = "at Allocate" if tree.pod_resources else "all before serving"
        for name, label in (("other", other), ("this", "this build")):
            rows = results[name]
            ms = statistics.median(r[0] for r in rows)
            hwm = max(r[1] for r in rows) / 1024
            parts = [statistics.median(r[2][p] for r in rows) for p in PARTS]
            print(f"| {tree.count} | {files} | {label} | {ms:.1f} | {hwm:.1f} | "
                  + " | ".join(f"{p:.0f}" for p in parts) + " |")


def p95(values):
    values = sorted(values)
    return values[min(len(values) - 1, max(0, -(-len(values) * 95 // 100) - 1))]


def main():
    runs, allocs, target, work = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
    sizes = [int(v) for v in sys.argv[5:]]
    trees = [Tree(target, os.path.join(work, mode), vfs, mode == "podres")
             for vfs in sizes for mode in ("eager", "podres")]
    try:
        print("| VFs (16 PFs) | device-info files | first full list, median ms | p95 ms | peak RSS MiB | "
              "baseline: inventory, median ms | baseline RSS MiB | time vs baseline |")
        print("|---|---|---|---|---|---|---|---|")
        for tree in trees:
            ours, base, rss, base_rss = [], [], [], []
            tree.start_once()  # warm the page cache
            tree.baseline_once()
            for _ in range(runs):
                elapsed, hwm, _ = tree.start_once()
                ours.append(elapsed)
                rss.append(hwm)
                elapsed, hwm = tree.baseline_once()
                base.append(elapsed)
                base_rss.append(hwm)
            m, b = statistics.median(ours), statistics.median(base)
            files = "at Allocate (PodResources)" if tree.pod_resources else "all before serving"
            print(f"| {tree.count} | {files} | {m:.1f} | {p95(ours):.1f} | {max(rss) / 1024:.1f} | {b:.1f} | "
                  f"{max(base_rss) / 1024:.1f} | {m / b:.2f}x |")
        other = os.environ.get("DP_COMPARE")
        if other:
            compare(trees, runs, other)
        print()
        print(f"| VFs in the pool | Allocate of one VF via kubelet-sim, median ms over {allocs} | p95 ms |")
        print("|---|---|---|")
        for tree in trees:
            if tree.pod_resources:
                continue
            costs = tree.allocate_costs(allocs)
            print(f"| {tree.count} | {statistics.median(costs):.2f} | {p95(costs):.2f} |")
    finally:
        for tree in trees:
            tree.destroy()


if __name__ == "__main__":
    main()
