#!/usr/bin/env python3
"""ADD and DEL latency of the `sriov` plugin on the simulated node, against
Debian's Go `host-device` plugin moving the same VF netdev into the same pod
netns (the closest upstream relative: same kernel work), each without IPAM
and with host-local. Runs are interleaved so machine noise hits all alike.
Usage: bench_cni.py RUNS SRIOV_BINARY [SRIOV_BINARY ...] WORKDIR (SRIOV_SYSFS_ROOT
set, node up); a binary may be given as LABEL=PATH to compare builds in one run."""
import json
import os
import statistics
import subprocess
import sys
import time

VF_PCI, VF_NETDEV = "0000:3b:01.0", "ens1f0v0"
POD = "sriov-bench-pod"
DEBIAN_CNI = "/usr/lib/cni"


def run(binary, command, conf, env):
    start = time.perf_counter_ns()
    proc = subprocess.run([binary], input=json.dumps(conf).encode(), env=dict(env, CNI_COMMAND=command),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    elapsed = (time.perf_counter_ns() - start) / 1e6
    if proc.returncode != 0:
        sys.exit(f"bench: {binary} {command} failed: {proc.stdout.decode()} {proc.stderr.decode()}")
    return elapsed


def main():
    runs, work = int(sys.argv[1]), sys.argv[-1]
    binaries = [arg.split("=", 1) if "=" in arg else ("sriov", arg) for arg in sys.argv[2:-1]]
    ipam = {"type": "host-local", "subnet": "10.56.217.0/24", "dataDir": os.path.join(work, "ipam")}
    base = {"cniVersion": "1.0.0", "name": "bench"}
    # (name, binary, config, the Go case it is compared with)
    go, go_ipam = "host-device (Go), no IPAM", "host-device (Go) + host-local"
    cases = [(go, f"{DEBIAN_CNI}/host-device", dict(base, type="host-device", device=VF_NETDEV), go)]
    cases += [(f"{label}, no IPAM", path, dict(base, type="sriov", deviceID=VF_PCI), go) for label, path in binaries]
    cases += [(go_ipam, f"{DEBIAN_CNI}/host-device", dict(base, type="host-device", device=VF_NETDEV, ipam=ipam), go_ipam)]
    cases += [(f"{label} + host-local", path, dict(base, type="sriov", deviceID=VF_PCI, ipam=ipam), go_ipam)
              for label, path in binaries]
    env = dict(os.environ, CNI_CONTAINERID="bench", CNI_NETNS=f"/run/netns/{POD}", CNI_IFNAME="net1",
               CNI_PATH=DEBIAN_CNI, SRIOV_CNI_STATE_DIR=os.path.join(work, "state"))
    subprocess.run(["ip", "netns", "add", POD], check=True)
    times = {name: ([], []) for name, _, _, _ in cases}
    try:
        for i in range(runs + 2):
            for name, binary, conf, _ in cases:
                add = run(binary, "ADD", conf, env)
                delete = run(binary, "DEL", conf, env)
                if i >= 2:  # two warm-up rounds
                    times[name][0].append(add)
                    times[name][1].append(delete)
    finally:
        subprocess.run(["ip", "netns", "del", POD])
    print(f"| {runs} runs each | ADD median | ADD p95 | DEL median | DEL p95 | ADD vs Go | DEL vs Go |")
    print("|---|---|---|---|---|---|---|")
    for name, _, _, compared_with in cases:
        baseline = times[compared_with]
        adds, dels = sorted(times[name][0]), sorted(times[name][1])
        p95 = lambda v: v[max(0, int(len(v) * 0.95) - 1)]
        print(f"| {name} | {statistics.median(adds):.1f} ms | {p95(adds):.1f} ms | {statistics.median(dels):.1f} ms | "
              f"{p95(dels):.1f} ms | {statistics.median(adds) / statistics.median(baseline[0]):.2f}x | "
              f"{statistics.median(dels) / statistics.median(baseline[1]):.2f}x |")


if __name__ == "__main__":
    main()
