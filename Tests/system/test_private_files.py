"""What vxland creates is its own whatever the umask it was started with, and `apply` never echoes a file that is
not a configuration (both found by a hostile test: under `umask 000` a vhost-user socket was 0777 and another user
attached as a VM; `apply /etc/shadow` answered with the file's first line)."""
import os
import stat

from conftest import Vxland

EAL = ["-l", "0,1", "--no-huge", "-m", "256", "--no-pci", "--vdev", "net_null0", "--vdev", "net_null1,no-rx=1"]


def config(sock):
    return f"""
underlay: {{ port: net_null0, ip: 10.99.0.1/24, mac: "02:00:00:00:00:01" }}
access: [ {{ port: net_null1, vni: 42 }}, {{ port: net_vhost0, vni: 42, vhost: {{ socket: {sock} }} }} ]
vnis: [ {{ vni: 42, flood: [10.99.0.2] }} ]
neighbors: [ {{ ip: 10.99.0.2, mac: "02:00:00:00:00:02" }} ]
"""


def test_sockets_are_private_under_a_permissive_umask(tmp_path):
    sock = tmp_path / "vm0.sock"
    daemon = Vxland(tmp_path, EAL, config(sock), wrapper=["sh", "-c", 'umask 000; exec "$0" "$@"'])
    try:
        assert sock.is_socket(), daemon.log_path.read_text()
        assert stat.S_IMODE(os.stat(sock).st_mode) == 0o600, oct(os.stat(sock).st_mode)
        assert stat.S_IMODE(os.stat(daemon.socket).st_mode) == 0o600
    finally:
        status, log = daemon.stop()
    assert status == 0, log


def test_apply_never_echoes_a_file_that_is_not_a_configuration(tmp_path):
    secret = "root:$6$Secret.Hash$abcdefghijklmnop:19000:0:99999:7:::"
    shadow = tmp_path / "shadow"
    shadow.write_text(secret + "\ndaemon:*:19000:0:99999:7:::\n")
    environ = tmp_path / "environ"
    environ.write_bytes(b"TOKEN=supersecret\0HOME=/root\0")
    keyed = tmp_path / "keyed.yaml"
    keyed.write_text("api_token: supersecret\n")
    daemon = Vxland(tmp_path, EAL, config(tmp_path / "vm0.sock"))
    try:
        for path, words in ((shadow, ["Secret", "19000"]), (environ, ["supersecret", "TOKEN"]),
                            (keyed, ["supersecret", "api_token"])):
            r = daemon.ctl("apply", str(path), check=False)
            assert r.returncode != 0
            said = r.stdout + r.stderr
            assert "not a vxland configuration" in said or "not valid YAML" in said, said
            for w in words:
                assert w not in said, f"{path.name}: {said}"
        r = daemon.ctl("apply", str(tmp_path), check=False)
        assert r.returncode != 0 and "not a regular file" in r.stdout + r.stderr, r.stdout + r.stderr
        r = daemon.ctl("apply", "/dev/zero", check=False)
        assert r.returncode != 0 and "not a regular file" in r.stdout + r.stderr, r.stdout + r.stderr
        assert daemon.ctl("ping").returncode == 0
    finally:
        status, log = daemon.stop()
    assert status == 0, log
    for w in ("Secret", "supersecret"):
        assert w not in log
