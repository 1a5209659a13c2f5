#!/usr/bin/env python3
"""Soak of the `sriov` CNI plugin on the simulated node: CYCLES ADD/DEL cycles
with host-local, a fault in most of them, then what is left behind.

Faults, by cycle number modulo 10:
  2  IPAM failure (host-local refuses a rangeStart outside its subnet): ADD must
     fail and undo everything; the runtime's DEL then succeeds.
  4  the pod's netns destroyed before DEL, the VF back on the host under another
     name, as the kernel does with a real VF (a veth stand-in would die with the
     netns, so it is moved out first); then DEL with the dead netns path.
  6  SIGKILL mid-ADD after 0-15 ms (a runtime's timeout); then the runtime's DEL.
  8  two ADDs of one VF into two pods at once: exactly one may win, the other
     fails (VF in use); then DEL of both.
  otherwise a plain ADD and DEL.
After every cycle the VF must be on the host under its name with its MAC and
MTU; every command whose outcome is defined must have it. At the end: VFs not
home, addresses host-local still holds, state files left, pod netns left. The
exit status is 0 only if every count is zero.
Usage: soak.py CYCLES SRIOV_BINARY WORKDIR (SRIOV_SYSFS_ROOT set, node up)."""
import json
import os
import random
import subprocess
import sys
import time

PF, DEVICES = "ens1f0", [("0000:3b:01.0", "ens1f0v0"), ("0000:3b:01.1", "ens1f0v1"), ("0000:3b:01.2", "ens1f0v2")]
DEBIAN_CNI = "/usr/lib/cni"
NETWORK = "soak"


def sh(*args, check=True):
    return subprocess.run(args, check=check, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def link(name, netns=None):
    cmd = ["ip", "-j"] + (["-n", netns] if netns else []) + ["link", "show", "dev", name]
    out = sh(*cmd, check=False)
    if out.returncode != 0:
        return None
    info = json.loads(out.stdout)[0]
    return info["ifname"], info.get("address"), info.get("mtu")


class Soak:
    def __init__(self, sriov, work):
        self.sriov, self.work = sriov, work
        self.state = os.path.join(work, "state")
        self.ipam_dir = os.path.join(work, "ipam")
        self.env = dict(os.environ, CNI_PATH=DEBIAN_CNI, CNI_IFNAME="net1", SRIOV_CNI_STATE_DIR=self.state,
                        CNI_ARGS="IgnoreUnknown=true;K8S_POD_NAMESPACE=soak;K8S_POD_NAME=pod")
        self.unexpected = []
        self.faults = {"ipam failure": 0, "netns destroyed": 0, "sigkill mid-ADD": 0, "concurrent ADD": 0}

    def conf(self, device, range_start=None):
        ipam = {"type": "host-local", "subnet": "10.77.0.0/16", "dataDir": self.ipam_dir}
        if range_start:
            ipam["rangeStart"] = range_start
        return {"cniVersion": "1.0.0", "name": NETWORK, "type": "sriov", "deviceID": device, "ipam": ipam}

    def start(self, command, cid, pod, conf):
        env = dict(self.env, CNI_COMMAND=command, CNI_CONTAINERID=cid, CNI_NETNS=f"/run/netns/{pod}")
        proc = subprocess.Popen([self.sriov], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
        proc.stdin.write(json.dumps(conf).encode())
        proc.stdin.close()
        proc.stdin = None  # written; communicate() must not flush it again
        return proc

    def run(self, command, cid, pod, conf):
        proc = self.start(command, cid, pod, conf)
        out, _ = proc.communicate()
        return proc.returncode, out.decode()

    def expect(self, cycle, what, ok, detail=""):
        if not ok:
            self.unexpected.append(f"cycle {cycle}: {what} {detail}".strip())

    def cycle(self, n):
        device, name = DEVICES[n % len(DEVICES)]
        before = link(name)
        pod, cid = f"soak-p{n}", f"c{n}"
        sh("ip", "netns", "add", pod)
        conf = self.conf(device)
        kind = n % 10
        try:
            if kind == 2:
                self.faults["ipam failure"] += 1
                bad = self.conf(device, range_start="10.99.0.1")
                code, out = self.run("ADD", cid, pod, bad)
                self.expect(n, "ADD with a failing IPAM should fail", code != 0, out)
                code, out = self.run("DEL", cid, pod, bad)
                self.expect(n, "DEL after a failed ADD", code == 0, out)
            elif kind == 4:
                self.faults["netns destroyed"] += 1
                code, out = self.run("ADD", cid, pod, conf)
                self.expect(n, "ADD", code == 0, out)
                # the kernel brings a real VF home under its pod-side name, or devN
                sh("ip", "-n", pod, "link", "set", "dev", "net1", "netns", "1", "name", f"dev{n}", check=False)
                sh("ip", "netns", "del", pod)
                code, out = self.run("DEL", cid, pod, conf)
                self.expect(n, "DEL after the netns died", code == 0, out)
            elif kind == 6:
                self.faults["sigkill mid-ADD"] += 1
                proc = self.start("ADD", cid, pod, conf)
                time.sleep(random.uniform(0, 0.015))
                proc.kill()
                proc.communicate()
                code, out = self.run("DEL", cid, pod, conf)
                self.expect(n, "DEL after a killed ADD", code == 0, out)
            elif kind == 8:
                self.faults["concurrent ADD"] += 1
                other, other_cid = f"{pod}b", f"{cid}b"
                sh("ip", "netns", "add", other)
                try:
                    first = self.start("ADD", cid, pod, conf)
                    second = self.start("ADD", other_cid, other, conf)
                    results = [(p.communicate()[0].decode(), p.returncode) for p in (first, second)]
                    winners = [r for r in results if r[1] == 0]
                    self.expect(n, "exactly one concurrent ADD wins", len(winners) == 1, str(results))
                    for losing in [r for r in results if r[1] != 0]:
                        self.expect(n, "the losing ADD says the VF is in use",
                                    json.loads(losing[0] or "{}").get("code") == 102, losing[0])
                    for c, p in ((cid, pod), (other_cid, other)):
                        code, out = self.run("DEL", c, p, conf)
                        self.expect(n, f"DEL of {c}", code == 0, out)
                finally:
                    sh("ip", "netns", "del", other, check=False)
            else:
                code, out = self.run("ADD", cid, pod, conf)
                self.expect(n, "ADD", code == 0, out)
                code, out = self.run("DEL", cid, pod, conf)
                self.expect(n, "DEL", code == 0, out)
        finally:
            sh("ip", "netns", "del", pod, check=False)
        after = link(name)
        self.expect(n, f"{name} home as before", after == before, f"{before} -> {after}")

    def leftovers(self):
        not_home = [name for _, name in DEVICES if link(name) is None]
        held = [f for f in os.listdir(os.path.join(self.ipam_dir, NETWORK))
                if f not in ("lock",) and not f.startswith("last_reserved_ip")] \
            if os.path.isdir(os.path.join(self.ipam_dir, NETWORK)) else []
        files = []
        for root, _, names in os.walk(self.state):
            files += [os.path.join(root, f) for f in names if not f.endswith(".lock")]
        pods = [line.split()[0] for line in sh("ip", "netns", "list").stdout.splitlines()
                if line.startswith("soak-p")]
        return not_home, held, files, pods


def main():
    cycles, sriov, work = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    random.seed(15)
    soak = Soak(sriov, work)
    started = time.monotonic()
    for n in range(cycles):
        soak.cycle(n)
        if (n + 1) % 500 == 0:
            print(f"  {n + 1} cycles, {time.monotonic() - started:.0f} s, {len(soak.unexpected)} unexpected",
                  file=sys.stderr, flush=True)
    not_home, held, files, pods = soak.leftovers()
    elapsed = time.monotonic() - started
    print(f"| soak: {cycles} ADD/DEL cycles, {elapsed:.0f} s | count |")
    print("|---|---|")
    for fault, count in soak.faults.items():
        print(f"| cycles with {fault} | {count} |")
    print(f"| unexpected outcomes | {len(soak.unexpected)} |")
    print(f"| VFs not home | {len(not_home)} |")
    print(f"| addresses held by host-local | {len(held)} |")
    print(f"| state files left | {len(files)} |")
    print(f"| pod netns left | {len(pods)} |")
    for line in soak.unexpected[:20] + not_home + held[:20] + files[:20] + pods[:20]:
        print(f"  {line}", file=sys.stderr)
    sys.exit(0 if not (soak.unexpected or not_home or held or files or pods) else 1)


if __name__ == "__main__":
    main()
