"""Network namespaces as "machines" on one host (root only): each namespace has its own network
stack, joined to the host or to another namespace by a veth pair, so processes in them talk
over real TCP. Everything made here is removed by `Namespaces.close()` (the fixtures call it in
a `finally`), and every process started through `spawn` is killed there first.

Addresses are 10.213.x.y/30 per link (a block of x values free on the host): traffic stays between this test's namespaces and the
host's end of their links (and 127.0.0.1 inside each namespace)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time

UNAVAILABLE = None
if os.name != "posix" or not hasattr(os, "geteuid") or os.geteuid() != 0:
    UNAVAILABLE = "needs root to make network namespaces (ip netns add)"
elif shutil.which("ip") is None or shutil.which("unshare") is None:
    UNAVAILABLE = "needs iproute2 (ip) and util-linux (unshare)"


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=20)


class Namespaces:
    """Namespaces with veth links; `spawn` runs a command as a process of a machine."""

    def __init__(self, tag: str | None = None):
        self.tag = tag or f"t{os.getpid() % 100000}"
        self.names: list[str] = []
        self.host_links: list[str] = []
        self.procs: list[subprocess.Popen] = []
        self.subnet = self._free_block()

    @staticmethod
    def _free_block() -> int:
        """A block of 16 /24 nets (10.213.<block*16 + link>.x) with no address on the host's
        side yet (tests in parallel processes take different blocks)."""
        shown = subprocess.run(["ip", "-o", "addr"], capture_output=True, text=True, timeout=20)
        used = {
            line.split("10.213.")[1].split(".")[0]
            for line in shown.stdout.splitlines()
            if "10.213." in line
        }
        start = os.getpid() % 15
        for i in range(15):
            block = 1 + (start + i) % 15
            if not any(str(block * 16 + k) in used for k in range(16)):
                return block
        raise RuntimeError("no free 10.213.x.0/24 block for test namespaces")

    def _net(self, link: int) -> str:
        return f"10.213.{self.subnet * 16 + link % 16}"

    def add(self, name: str) -> str:
        full = f"tlhf{self.tag}{name}"[:15]
        _ip("netns", "add", full)
        self.names.append(full)
        _ip("-n", full, "link", "set", "lo", "up")
        return full

    def link_to_host(self, ns: str) -> tuple[str, str]:
        """A veth from the host into `ns`: (host address, namespace address)."""
        link = len(self.host_links) + len(self.names)
        host_end, ns_end = f"vh{self.tag}{link}"[:15], f"vn{self.tag}{link}"[:15]
        _ip("link", "add", host_end, "type", "veth", "peer", "name", ns_end)
        self.host_links.append(host_end)
        _ip("link", "set", ns_end, "netns", ns)
        net = self._net(link)
        _ip("addr", "add", f"{net}.1/30", "dev", host_end)
        _ip("link", "set", host_end, "up")
        _ip("-n", ns, "addr", "add", f"{net}.2/30", "dev", ns_end)
        _ip("-n", ns, "link", "set", ns_end, "up")
        return f"{net}.1", f"{net}.2"

    def link(self, a: str, b: str) -> tuple[str, str, str, str]:
        """A veth between namespaces `a` and `b`: (a's address, b's address, a's interface,
        b's interface)."""
        n = len(self.host_links) + len(self.names) + 8
        end_a, end_b = f"va{self.tag}{n}"[:15], f"vb{self.tag}{n}"[:15]
        _ip("link", "add", end_a, "type", "veth", "peer", "name", end_b)
        _ip("link", "set", end_a, "netns", a)
        _ip("link", "set", end_b, "netns", b)
        net = self._net(n)
        for ns, end, host in ((a, end_a, 1), (b, end_b, 2)):
            _ip("-n", ns, "addr", "add", f"{net}.{host}/30", "dev", end)
            _ip("-n", ns, "link", "set", end, "up")
        return f"{net}.1", f"{net}.2", end_a, end_b

    def spawn(
        self,
        ns: str | None,
        argv: list[str],
        hostname: str | None = None,
        own_pids: bool = True,
        **popen,
    ):
        """Start `argv` in namespace `ns` (None: the host) as another machine: its own UTS
        namespace (`hostname` names the machine) and, with `own_pids`, its own pid namespace (a
        pid means nothing across machines; without it, /proc still shows the host's view)."""
        if ns is not None:
            name = hostname or ns
            pids = ["--pid", "--fork", "--kill-child"] if own_pids else []
            argv = [
                "ip", "netns", "exec", ns, "unshare", *pids, "--uts",
                "sh", "-c", f'hostname {name} && exec "$@"', "sh", *argv,
            ]  # fmt: skip
        proc = subprocess.Popen(argv, start_new_session=True, **popen)
        self.procs.append(proc)
        return proc

    @staticmethod
    def leaf_pid(proc: subprocess.Popen, timeout: float = 10.0) -> int:
        """The host pid of the command `spawn` ran (below the ip/unshare/sh wrappers)."""
        deadline = time.time() + timeout
        pid = proc.pid
        while time.time() < deadline:
            try:
                with open(f"/proc/{pid}/cmdline") as handle:
                    argv0 = handle.read().split("\0")[0]
                with open(f"/proc/{pid}/task/{pid}/children") as handle:
                    kids = handle.read().split()
            except OSError:
                return pid
            if os.path.basename(argv0) == "hostname":  # sh is naming the machine: look again
                pid = proc.pid
                time.sleep(0.05)
                continue
            if os.path.basename(argv0) not in ("ip", "unshare", "sh"):
                return pid
            if kids:
                pid = int(kids[0])
            else:
                time.sleep(0.05)
        raise TimeoutError(f"no command below the wrappers of pid {proc.pid}")

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGCONT)
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=20)
        for link in self.host_links:
            subprocess.run(["ip", "link", "del", link], capture_output=True, timeout=20)
        for name in self.names:
            subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=20)
        self.names, self.host_links, self.procs = [], [], []
