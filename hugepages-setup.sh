#!/usr/bin/env bash
# Reserves N 2 MiB hugepages for DPDK and mounts hugetlbfs if it is not mounted. Idempotent: never lowers an
# existing reservation, never mounts twice. Usage: hugepages-setup.sh [PAGES] (default 512 = 1 GiB).
set -euo pipefail

pages="${1:-512}"
sysfs=/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages
mountpoint=/dev/hugepages

fail() { echo "hugepages-setup: $*" >&2; exit 1; }

[[ "$pages" =~ ^[0-9]+$ ]] && (( pages > 0 )) || fail "PAGES must be a positive whole number, got '$pages'"
(( EUID == 0 )) || fail "must run as root (it writes $sysfs and mounts hugetlbfs)"
[[ -w "$sysfs" ]] || fail "$sysfs is missing or read-only: this kernel or container offers no 2 MiB hugepages (use DPDK's --no-huge instead)"

current=$(cat "$sysfs")
if (( current >= pages )); then
    echo "hugepages-setup: $current pages of 2 MiB already reserved (asked for $pages): unchanged"
else
    # Dropping the page cache and compacting memory makes contiguous 2 MiB pages easier to find.
    sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true
    echo 1 > /proc/sys/vm/compact_memory 2>/dev/null || true
    echo "$pages" > "$sysfs" || true
    got=$(cat "$sysfs")
    (( got >= pages )) || { echo "$current" > "$sysfs" 2>/dev/null || true
        fail "asked for $pages pages of 2 MiB, the kernel gave $got (not enough free contiguous memory); try fewer pages"; }
    echo "hugepages-setup: reserved $got pages of 2 MiB (was $current)"
fi

if grep -qs " $mountpoint hugetlbfs " /proc/mounts || awk '$3 == "hugetlbfs" {found=1} END {exit !found}' /proc/mounts; then
    echo "hugepages-setup: hugetlbfs already mounted ($(awk '$3 == "hugetlbfs" {print $2}' /proc/mounts | paste -sd, -))"
else
    mkdir -p "$mountpoint"
    mount -t hugetlbfs -o pagesize=2M nodev "$mountpoint" || fail "cannot mount hugetlbfs on $mountpoint"
    echo "hugepages-setup: mounted hugetlbfs on $mountpoint"
fi
free_pages=$(awk '/HugePages_Free/ {print $2}' /proc/meminfo)
echo "hugepages-setup: $free_pages pages free now"
