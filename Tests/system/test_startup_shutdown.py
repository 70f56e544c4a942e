"""Start-up and shutdown under signals and failures.

Whatever moment a signal arrives at, and whichever way start-up fails, vxland leaves no hugepage file
(`<prefix>map_*` on hugetlbfs) and no runtime directory (/var/run/dpdk/<prefix>) behind. SIGINT, SIGTERM and SIGQUIT
stop it cleanly (exit status 0) at any point; SIGHUP, SIGUSR1 and SIGUSR2 never stop it. It never removes files of
another DPDK process, even one that uses the same --file-prefix.
"""
import itertools
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from conftest import VXLAND, VXLANCTL

NULL_CONFIG = """
underlay: { port: net_null0, ip: 10.99.0.1/24, mac: "02:00:00:00:00:01" }
access: [ { port: net_null1, vni: 42 } ]
vnis: [ { vni: 42, flood: [10.99.0.2] } ]
neighbors: [ { ip: 10.99.0.2, mac: "02:00:00:00:00:02" } ]
"""

PORTS = ["--no-pci", "--vdev", "net_null0,no-rx=1", "--vdev", "net_null1,no-rx=1", "--log-level", "*:warning"]
NO_HUGE = ["-l", "0", "--no-huge", "-m", "128", *PORTS]
# A moderate -m: EAL maps 64 pages at start-up, which takes long enough to be signalled in the middle of it.
HUGE = ["-l", "0", "-m", "128", *PORTS]

STOPS = {signal.SIGINT, signal.SIGTERM, signal.SIGQUIT}


def hugetlbfs_dirs():
    return [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines() if line.split()[2] == "hugetlbfs"]


def free_hugepages():
    try:
        return int(Path("/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages").read_text())
    except OSError:
        return 0


needs_hugepages = pytest.mark.skipif(free_hugepages() < 64 or not hugetlbfs_dirs(),
                                     reason="needs 64 free 2 MiB hugepages on a hugetlbfs mount (hugepages-setup.sh)")


def hugepage_files(prefix):
    return sorted(f for d in hugetlbfs_dirs() for f in os.listdir(d) if f.startswith(prefix + "map_"))


def runtime_dir(prefix):
    return Path("/var/run/dpdk") / prefix


def leftovers(prefix):
    """What vxland left of its own: hugepage files and the runtime directory (with its contents)."""
    found = hugepage_files(prefix)
    rdir = runtime_dir(prefix)
    if rdir.exists():
        found.append(f"{rdir}/ {sorted(os.listdir(rdir))}")
    return found


def wait_until(predicate, timeout, step=0.001):
    deadline = time.time() + timeout
    while not predicate():
        if time.time() > deadline:
            return False
        time.sleep(step)
    return True


class Launch:
    """A vxland started without waiting for it to be ready, so that a test can signal it at any moment."""

    def __init__(self, tmp_path, name, eal, prefix, config=NULL_CONFIG, block=()):
        self.prefix = prefix
        self.config = tmp_path / f"{name}.yaml"
        self.config.write_text(config)
        self.socket = tmp_path / f"{name}.sock"
        self.log_path = tmp_path / f"{name}.log"
        self.log = open(self.log_path, "w")
        blocked = set(block)
        # A mask blocked here survives exec: a signal sent right after Popen is pending in vxland from its first
        # instruction, before any handler could exist, and is delivered as soon as vxland unblocks it.
        preexec = (lambda: signal.pthread_sigmask(signal.SIG_BLOCK, blocked)) if blocked else None
        self.process = subprocess.Popen([str(VXLAND), *eal, "--file-prefix", prefix, "--", "--config", str(self.config),
                                         "--socket", str(self.socket)],
                                        stdout=self.log, stderr=subprocess.STDOUT, preexec_fn=preexec)

    def running(self):
        return self.process.poll() is None

    def output(self):
        self.log.flush()
        return self.log_path.read_text()

    def wait_exit(self, timeout=30):
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"vxland still running after {timeout} s:\n{self.output()}")

    def wait_ready(self, timeout=30):
        """Waits for the control socket and a ping answered over it."""
        deadline = time.time() + timeout
        while not self.socket.exists():
            assert self.running(), f"vxland exited with {self.process.returncode}:\n{self.output()}"
            assert time.time() < deadline, f"vxland did not open its socket:\n{self.output()}"
            time.sleep(0.02)
        self.ping()

    def ping(self):
        result = subprocess.run([str(VXLANCTL), "ping", "--socket", str(self.socket)], capture_output=True, text=True,
                                timeout=10)
        assert result.returncode == 0 and "vxland answers" in result.stdout, f"{result.stdout}{result.stderr}\n{self.output()}"

    def send(self, sig):
        self.process.send_signal(sig)

    def stop(self, sig=signal.SIGTERM):
        """Stops a running vxland with `sig`; asserts a clean stop (status 0) and returns the log."""
        self.send(sig)
        status = self.wait_exit(timeout=20)
        assert status == 0, f"status {status}:\n{self.output()}"
        return self.output()

    def close(self):
        if self.running():
            self.process.kill()
            self.process.wait()
        self.log.close()


@pytest.fixture
def launch(tmp_path):
    """Starts vxland processes, each with its own file prefix; kills what is left running afterwards and removes
    what a failing test left behind, so that one failure does not leak hugepages into the next tests."""
    started = []
    serial = itertools.count()

    def start(eal, prefix=None, **kwargs):
        n = next(serial)
        daemon = Launch(tmp_path, f"vxland{n}", eal, prefix or f"vxss{os.getpid()}n{n}", **kwargs)
        started.append(daemon)
        return daemon

    yield start
    for daemon in started:
        daemon.close()
    for daemon in started:
        for d in hugetlbfs_dirs():
            for f in os.listdir(d):
                if f.startswith(daemon.prefix + "map_"):
                    os.unlink(os.path.join(d, f))
        subprocess.run(["rm", "-rf", str(runtime_dir(daemon.prefix))], check=False)


def expect_outcome(daemon, sig):
    """After `sig` reached vxland during start-up: a stop signal ends it cleanly; any other signal leaves it
    starting and then running, answering on its control socket, until a SIGTERM."""
    if sig in STOPS:
        status = daemon.wait_exit()
        assert status == 0, f"{sig.name} during start-up: status {status}\n{daemon.output()}"
    else:
        daemon.wait_ready()
        log = daemon.stop()
        if sig == signal.SIGHUP:
            # During start-up there is nothing to reload yet; once running, the file is applied again.
            assert "SIGHUP during start-up" in log or "SIGHUP: applying" in log, log
        else:
            assert sig.name in log, log
    assert leftovers(daemon.prefix) == [], daemon.output()


# --- a signal at several moments of start-up ---------------------------------------------------------------------

@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGHUP, signal.SIGUSR1], ids=lambda s: s.name)
def test_signal_pending_at_exec(launch, sig):
    """The earliest moment: the signal is already pending when vxland starts (sent before it could install any
    handler). It is acted on, not lost and not fatal."""
    daemon = launch(NO_HUGE, block=[sig])
    daemon.send(sig)
    expect_outcome(daemon, sig)
    if sig in STOPS:
        assert "(before EAL)" in daemon.output(), "a stop requested before EAL started must not start EAL"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1], ids=lambda s: s.name)
def test_signal_during_eal_init_without_hugepages(launch, sig):
    daemon = launch(NO_HUGE)
    assert wait_until(lambda: runtime_dir(daemon.prefix).exists() or not daemon.running(), 30), daemon.output()
    daemon.send(sig)
    expect_outcome(daemon, sig)


@needs_hugepages
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGHUP, signal.SIGUSR1], ids=lambda s: s.name)
def test_signal_during_eal_init_with_hugepages(launch, sig):
    """EAL has created its runtime directory and is about to map hugepages."""
    daemon = launch(HUGE)
    assert wait_until(lambda: runtime_dir(daemon.prefix).exists() or not daemon.running(), 30), daemon.output()
    daemon.send(sig)
    expect_outcome(daemon, sig)


@needs_hugepages
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP, signal.SIGUSR2], ids=lambda s: s.name)
def test_signal_once_hugepages_are_mapped(launch, sig):
    """Hugepage files exist: EAL is mapping memory, or vxland is setting up ports and the control socket."""
    daemon = launch(HUGE)
    assert wait_until(lambda: hugepage_files(daemon.prefix) or not daemon.running(), 30), daemon.output()
    daemon.send(sig)
    expect_outcome(daemon, sig)


@needs_hugepages
@pytest.mark.parametrize("sig", [signal.SIGHUP, signal.SIGUSR1], ids=lambda s: s.name)
def test_signal_as_the_control_socket_appears(launch, sig):
    daemon = launch(HUGE)
    assert wait_until(lambda: daemon.socket.exists() or not daemon.running(), 30), daemon.output()
    daemon.send(sig)
    expect_outcome(daemon, sig)


@pytest.mark.parametrize("lcores", ["0", "0,1"], ids=["main-lcore-polls", "worker-lcore-polls"])
def test_hup_and_usr_signals_do_not_stop_a_running_vxland(launch, lcores):
    daemon = launch(["-l", lcores, *NO_HUGE[2:]])
    daemon.wait_ready()
    for sig in (signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2, signal.SIGHUP):
        daemon.send(sig)
        time.sleep(0.3)
        assert daemon.running(), f"{sig.name} stopped vxland:\n{daemon.output()}"
        daemon.ping()
    # Each SIGHUP applies the configuration file again (unchanged: nothing to change); USR1/USR2 are ignored.
    assert wait_until(lambda: daemon.output().count("SIGHUP: applying") == 2, 5, step=0.05), daemon.output()
    assert daemon.output().count("matches the running configuration; nothing to change") == 2, daemon.output()
    log = daemon.stop(signal.SIGQUIT)
    assert "SIGUSR1" in log and "SIGUSR2" in log and "SIGQUIT" in log, log
    assert leftovers(daemon.prefix) == [], log


# --- start-up failures -------------------------------------------------------------------------------------------

def run_to_failure(daemon):
    status = daemon.wait_exit(timeout=60)
    assert status == 1, f"status {status}:\n{daemon.output()}"
    assert leftovers(daemon.prefix) == [], daemon.output()
    return daemon.output()


def test_rejected_eal_argument_leaves_nothing(launch):
    """EAL refuses -m with --socket-mem after it created its runtime directory."""
    daemon = launch(["-l", "0", "--no-huge", "-m", "64", "--socket-mem", "64", *PORTS])
    assert "EAL initialisation" in run_to_failure(daemon)


def test_device_that_fails_to_probe_leaves_nothing(launch):
    """DPDK 22.11's EAL only logs a device that fails to probe; vxland then misses the port it was configured with."""
    daemon = launch([*NO_HUGE, "--vdev", "net_pcap0,rx_pcap=/nonexistent"], config=NULL_CONFIG.replace("net_null1", "net_pcap0"))
    assert "no DPDK port named 'net_pcap0'" in run_to_failure(daemon)


@needs_hugepages
@pytest.mark.parametrize("legacy", [False, True], ids=["dynamic-memory", "legacy-memory"])
def test_failed_eal_memory_init_leaves_nothing(launch, legacy):
    """More memory than there are hugepages: EAL fails after mapping pages. In legacy mode it maps every free page
    and fails with the files still mapped and locked; rte_eal_cleanup cannot be called after a failed init."""
    too_much = (int(Path("/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages").read_text()) + 8) * 2
    daemon = launch(["-l", "0", "-m", str(too_much), *(["--legacy-mem"] if legacy else []), *PORTS])
    assert "Cannot init memory" in run_to_failure(daemon)


@pytest.mark.parametrize("hugepages", [False, pytest.param(True, marks=needs_hugepages)], ids=["no-huge", "hugepages"])
def test_second_vxland_with_the_same_prefix_fails_and_leaves_the_first_alone(launch, hugepages):
    first = launch(HUGE if hugepages else NO_HUGE)
    first.wait_ready()
    pages = hugepage_files(first.prefix)
    assert bool(pages) == hugepages
    files = sorted(os.listdir(runtime_dir(first.prefix)))
    assert "config" in files

    second = launch(HUGE if hugepages else NO_HUGE, prefix=first.prefix, config=NULL_CONFIG)
    status = second.wait_exit(timeout=60)
    assert status == 1, second.output()
    assert f"in use by process {first.process.pid}" in second.output()

    assert hugepage_files(first.prefix) == pages
    assert sorted(os.listdir(runtime_dir(first.prefix))) == files
    first.ping()
    time.sleep(0.2)
    first.ping()
    first.stop()
    assert leftovers(first.prefix) == [], first.output()
