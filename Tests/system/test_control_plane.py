"""The control plane never takes the dataplane down: clients that leave early, huge tables, thousands of
connections, oversized requests and a socket path that is not ours."""
import json
import os
import resource
import socket
import struct
import subprocess
import time

from conftest import NULL_CONFIG as CONFIG, NULL_EAL as EAL, VXLAND, VXLANCTL, Vxland


def request(sock_path, line, read=True, timeout=5):
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(str(sock_path))
        s.sendall(line)
        if not read:
            return None
        data = b""
        while not data.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        return json.loads(data) if data else None


def alive(daemon):
    assert daemon.process.poll() is None, f"vxland exited with {daemon.process.returncode}:\n{daemon.log_path.read_text()}"
    assert "vxland answers on" in daemon.ctl("ping", "--timeout", "2").stdout


def test_clients_that_close_before_the_answer_never_stop_vxland(tmp_path):
    daemon = Vxland(tmp_path, EAL, CONFIG)
    try:
        for i in range(300):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(str(daemon.socket))
            s.sendall(b'{"id":%d,"method":"show.stats"}\n' % i)
            if i % 3 == 0:   # a reset rather than a clean close
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            s.close()
        alive(daemon)
        # A vxlanctl killed while it waits (Ctrl-C) is the same thing.
        ctl = subprocess.Popen([str(VXLANCTL), "show", "stats", "--socket", str(daemon.socket)], stdout=subprocess.DEVNULL)
        ctl.kill()
        ctl.wait()
        alive(daemon)
    finally:
        status, log = daemon.stop()
    assert status == 0, log


def test_show_fdb_with_20000_entries_reads_every_page(tmp_path):
    macs = [f"02:00:00:{i >> 16 & 255:02x}:{i >> 8 & 255:02x}:{i & 255:02x}" for i in range(20000)]
    config = CONFIG + "resources: { fdb_entries: 65536 }\nfdb:\n" + "".join(
        f'  - {{ vni: 42, mac: "{m}", remote: 10.99.0.2 }}\n' for m in macs)
    daemon = Vxland(tmp_path, EAL, config)
    try:
        table = daemon.ctl("show", "fdb").stdout.splitlines()
        rows = [line.split() for line in table if line.startswith("42 ")]
        assert [r[1] for r in rows] == macs, "every entry once, in MAC order"
        assert all(r[2:4] == ["remote", "10.99.0.2"] for r in rows)

        whole = json.loads(daemon.ctl("show", "fdb", "--json", "--page-size", "3000").stdout)
        assert [e["mac"] for e in whole["entries"]] == macs and whole["total"] == 20000 and "next" not in whole

        # By hand: --limit prints a cursor, --after continues from it.
        first = daemon.ctl("show", "fdb", "--limit", "100").stdout
        assert f"100 of 20000 entries shown; continue with --after 42/{macs[99]}" in first
        second = json.loads(daemon.ctl("show", "fdb", "--json", "--limit", "100", "--after", f"42/{macs[99]}").stdout)
        assert [e["mac"] for e in second["entries"]] == macs[100:200]

        # The raw protocol: a page is bounded, whatever the table's size.
        page = request(daemon.socket, b'{"id":1,"method":"show.fdb","params":{"limit":"65536"}}\n')
        assert page["ok"] and len(page["result"]["entries"]) == 20000
        bad = request(daemon.socket, b'{"id":2,"method":"show.fdb","params":{"limit":"65537"}}\n')
        assert bad["error"]["code"] == "bad_params" and "limit" in bad["error"]["message"]
        bad = request(daemon.socket, b'{"id":3,"method":"show.fdb","params":{"after":"nonsense"}}\n')
        assert bad["error"]["code"] == "bad_params" and "after: 'nonsense' is not a cursor" in bad["error"]["message"]
        alive(daemon)
    finally:
        status, log = daemon.stop()
    assert status == 0, log


def test_thousands_of_idle_connections_under_a_1024_descriptor_limit(tmp_path):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(max(soft, 4096), hard), hard))
    daemon = Vxland(tmp_path, EAL, CONFIG, wrapper=["prlimit", "--nofile=1024:1024"])
    held = []
    try:
        for _ in range(2000):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            # Blocking: a full backlog makes connect wait for vxland to accept, as vxlanctl's would.
            s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, struct.pack("ll", 5, 0))
            s.connect(str(daemon.socket))
            held.append(s)
        started = time.monotonic()
        result = daemon.ctl("ping", "--timeout", "1", check=False)
        assert result.returncode == 0, result.stderr
        assert time.monotonic() - started < 5
        # The control thread is not spinning: its CPU time over a second of idle connections stays small.
        tasks = [t for t in os.listdir(f"/proc/{daemon.process.pid}/task")
                 if open(f"/proc/{daemon.process.pid}/task/{t}/comm").read().strip() == "vxland-control"]
        assert len(tasks) == 1, "the control thread is found by its name (else the check below measures nothing)"
        ticks = lambda: int(open(f"/proc/{daemon.process.pid}/task/{tasks[0]}/stat").read().rsplit(")", 1)[1].split()[11])
        before = ticks()
        time.sleep(1)
        assert ticks() - before < 20, "the control thread spins"
    finally:
        for s in held:
            s.close()
        status, log = daemon.stop()
    assert status == 0, log


def test_oversized_request_is_answered_with_an_error(tmp_path):
    daemon = Vxland(tmp_path, EAL, CONFIG)
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(10)
            s.connect(str(daemon.socket))
            sent = 0
            try:
                while sent < 100 << 20:
                    s.sendall(b"x" * 65536)
                    sent += 65536
            except (BrokenPipeError, ConnectionResetError):
                pass
            answer = s.recv(4096)
        response = json.loads(answer.split(b"\n")[0])
        assert response["error"]["code"] == "request_too_large", response
        assert sent < 100 << 20, "the server stopped reading long before 100 MB"
        alive(daemon)
    finally:
        status, log = daemon.stop()
    assert status == 0, log


def test_socket_path_naming_a_regular_file_is_refused_and_the_file_kept(tmp_path):
    precious = tmp_path / "precious.txt"
    precious.write_text("do not delete\n")
    config = tmp_path / "c.yaml"
    config.write_text(CONFIG)
    prefix = f"vxsock{os.getpid()}"
    result = subprocess.run([str(VXLAND), *EAL, "--file-prefix", prefix, "--", "--config", str(config),
                             "--socket", str(precious)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert f"{precious} exists and is not a socket; refusing to replace it" in result.stderr
    assert precious.read_text() == "do not delete\n"
    assert not os.path.exists(f"/var/run/dpdk/{prefix}")
