"""A polling core that receives nothing gives its CPU back with --idle-sleep-max-us (as OVS's pmd-sleep-max), says
so in `show cores`, and forwards again at once; without the option it spins. CPU time is compared with the
wall-clock time it was measured over (an idle core that sleeps uses a small part of it on any host), never with a
speed."""
import json
import os
import time

import pytest

from conftest import NULL_EAL, VXLAND, Vxland, sh

CONFIG = """
underlay: { port: net_null0, ip: 10.99.0.1/24, mac: "02:00:00:00:00:01" }
access: [ { port: net_null1, vni: 42 } ]
vnis: [ { vni: 42, flood: [10.99.0.2] } ]
neighbors: [ { ip: 10.99.0.2, mac: "02:00:00:00:00:02" } ]
"""
# The underlay receives nothing (no-rx): the core is idle but for what the test sends.
EAL = [a.replace("net_null0", "net_null0,no-rx=1") for a in NULL_EAL]


def cpu_seconds(pid):
    """User + system CPU time of every thread of `pid` (clock ticks to seconds)."""
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cores(daemon):
    return json.loads(daemon.ctl("show", "cores", "--json").stdout)["cores"]


def idle_share(daemon, seconds=2.0):
    before, t0 = cpu_seconds(daemon.process.pid), time.monotonic()
    time.sleep(seconds)
    return (cpu_seconds(daemon.process.pid) - before) / (time.monotonic() - t0)


@pytest.mark.timeout(120)
def test_an_idle_core_sleeps_and_without_the_option_spins(tmp_path):
    daemon = Vxland(tmp_path, EAL, CONFIG, name="idle", app_args=["--idle-sleep-max-us", "200"])
    try:
        time.sleep(0.5)
        share = idle_share(daemon)
        c = cores(daemon)[0]
        assert c["sleeps"] > 100 and c["slept_cycles"] > 0.5 * c["idle_cycles"], c
        assert share < 0.5, f"an idle core that sleeps used {share:.2f} of a CPU"
    finally:
        status, log = daemon.stop()
        assert status == 0, log
    spinner = Vxland(tmp_path, EAL, CONFIG, name="spin")
    try:
        time.sleep(0.5)
        # It spins (how much CPU that gets depends on what else the host runs: not asserted), never sleeps.
        first = cores(spinner)[0]
        time.sleep(0.5)
        last = cores(spinner)[0]
        assert last["sleeps"] == 0 and last["idle_rounds"] > first["idle_rounds"]
    finally:
        spinner.stop()


def test_a_bad_idle_sleep_is_refused(tmp_path):
    (tmp_path / "c.yaml").write_text(CONFIG)
    result = sh(str(VXLAND), *EAL, "--file-prefix", f"idlebad{os.getpid()}", "--", "--config", str(tmp_path / "c.yaml"),
                "--idle-sleep-max-us", "200000", check=False)
    assert result.returncode != 0
    assert "--idle-sleep-max-us must be from 0 to 100000 microseconds, got 200000" in result.stderr
