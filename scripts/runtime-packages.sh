#!/usr/bin/env bash
# Prints the Debian packages that provide every shared library the given binaries need (their ELF NEEDED
# entries), one per line, plus the poll-mode drivers a VTEP's users expect (loaded as plugins, so no binary names
# them). The Docker image's runtime stage installs exactly this list; Tests/system/test_packaging.py checks it.
# usage: runtime-packages.sh BINARY...
set -euo pipefail
(( $# > 0 )) || { echo "usage: runtime-packages.sh BINARY..." >&2; exit 2; }
drivers=(librte-net-af-packet23 librte-net-vhost23 librte-net-virtio23 librte-net-tap23 librte-net-ring23
         librte-net-null23 librte-net-pcap23 librte-net-i40e23 librte-net-ice23 librte-net-ixgbe23 librte-net-iavf23
         librte-net-mlx5-23 librte-net-bnxt23 librte-net-vmxnet3-23 librte-bus-pci23 librte-bus-vdev23
         librte-mempool-ring23)
packages=("${drivers[@]}")
missing=0
for binary in "$@"; do
    for lib in $(readelf -d "$binary" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p'); do
        owner=$(dpkg -S "*/$lib" 2>/dev/null | head -1 | cut -d: -f1 || true)
        if [[ -z "$owner" ]]; then echo "runtime-packages: no package provides $lib (needed by $binary)" >&2; missing=1; continue; fi
        packages+=("$owner")
    done
done
printf '%s\n' "${packages[@]}" | sort -u
exit "$missing"
