"""hugepages-setup.sh: refuses clearly, never lowers a reservation, says what it did."""
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from conftest import ROOT

SCRIPT = str(ROOT / "hugepages-setup.sh")
NR = Path("/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages")


def run(*args, user=None):
    script = SCRIPT
    if user:
        # The clone may sit where other users cannot enter (root's home is 0700): run a world-readable copy.
        copy = Path(tempfile.mkdtemp(prefix="vxhp")) / "hugepages-setup.sh"
        shutil.copy(SCRIPT, copy)
        copy.parent.chmod(0o755)
        copy.chmod(0o755)
        script = str(copy)
    cmd = [script, *args]
    if user:
        cmd = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", *cmd]
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    finally:
        if user:
            shutil.rmtree(Path(script).parent, ignore_errors=True)


def test_refuses_bad_count_and_non_root():
    bad = run("many")
    assert bad.returncode == 1 and "PAGES must be a positive whole number, got 'many'" in bad.stderr
    assert run("0").returncode == 1
    nobody = run("16", user="65534")
    assert nobody.returncode == 1 and "must run as root" in nobody.stderr


@pytest.mark.skipif(not NR.exists(), reason="no 2 MiB hugepage support in this kernel")
def test_idempotent_and_never_lowers():
    current = int(NR.read_text())
    first = run(str(max(current, 16)))
    assert first.returncode == 0, first.stderr
    second = run("8")
    assert second.returncode == 0, second.stderr
    assert "already reserved (asked for 8): unchanged" in second.stdout
    assert "hugetlbfs already mounted" in second.stdout
    assert int(NR.read_text()) >= max(current, 16)
