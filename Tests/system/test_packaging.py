"""The Docker image's runtime stage installs every Debian package the shipped binaries need: each NEEDED library
of the binaries as the image builds them (Swift runtime linked in) belongs to a package that
`scripts/runtime-packages.sh` lists, and the Dockerfile installs exactly that list. No Docker daemon is needed:
the binaries are built here as the image's build stage builds them (scripts/test.sh does, into .build-static)."""
import re
import subprocess

from conftest import ROOT

STATIC = ROOT / ".build-static" / "release"
SCRIPT = ROOT / "scripts" / "runtime-packages.sh"


def needed(binary):
    out = subprocess.run(["readelf", "-d", str(binary)], capture_output=True, text=True, check=True).stdout
    return re.findall(r"\(NEEDED\).*\[(.+)\]", out)


def test_every_library_the_image_binaries_need_comes_from_a_listed_package():
    binaries = [STATIC / "vxland", STATIC / "vxlanctl"]
    for b in binaries:
        assert b.exists(), f"{b} missing: scripts/test.sh builds it (swift build -c release --static-swift-stdlib)"
    r = subprocess.run([str(SCRIPT), *map(str, binaries)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    listed = set(r.stdout.split())
    libraries = {lib for b in binaries for lib in needed(b)}
    assert not any(lib.startswith("libswift") or lib.startswith("libFoundation") for lib in libraries), \
        f"the Swift runtime is linked dynamically: {sorted(libraries)}"
    assert len(libraries) > 20, libraries       # DPDK's libraries at least: the check is not vacuous
    for lib in sorted(libraries):
        owner = subprocess.run(["dpkg", "-S", f"*/{lib}"], capture_output=True, text=True).stdout.split(":")[0]
        assert owner in listed, f"{lib} comes from {owner!r}, which the runtime stage does not install"
    for driver in ("librte-net-af-packet23", "librte-net-vhost23", "librte-net-virtio23", "librte-net-tap23"):
        assert driver in listed
    # Every listed package exists in this Debian release.
    shown = subprocess.run(["apt-cache", "show", "--no-all-versions", *sorted(listed)], capture_output=True, text=True)
    assert shown.returncode == 0, shown.stderr


def test_the_dockerfile_installs_that_list_and_copies_what_it_runs():
    text = (ROOT / "Dockerfile").read_text()
    build, runtime = text.split("FROM debian:bookworm-slim", 1)
    assert "scripts/runtime-packages.sh /out/vxland /out/vxlanctl > /out/runtime-packages.txt" in build
    assert "--static-swift-stdlib" in build and "COPY Package.swift Package.resolved" in build
    assert "xargs -a /tmp/runtime-packages.txt" in runtime and "apt-get install" in runtime
    swift = re.search(r"FROM swift:(\d+\.\d+)", build).group(1)
    version = subprocess.run(["swift", "--version"], capture_output=True, text=True).stdout + \
        subprocess.run(["/opt/swift/usr/bin/swift", "--version"], capture_output=True, text=True).stdout
    assert f"Swift version {swift}" in version, f"the image builds with Swift {swift}, the project with: {version}"
