// vxland's tap port: see include/vx_tap.h for what it is and why it exists.
#include <rte_config.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>
#include <rte_malloc.h>
#include "vx_tap.h"

#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>
#include <linux/if_tun.h>

#include <rte_cycles.h>
#include <rte_ether.h>
#include <rte_ip.h>
#include <rte_byteorder.h>

_Static_assert(sizeof(struct vx_vnet_hdr) == 24, "virtio_net_hdr_v1_hash_tunnel is 24 bytes");

#ifndef TUNSETVNETHDRSZ
#define TUNSETVNETHDRSZ _IOW('T', 216, int)
#endif

// The largest frame a tap hands over: a 64 KB GSO frame (IP length up to 65535) behind Ethernet and one VLAN tag.
#define VX_TAP_MAX_FRAME (65535u + 14u + 4u)
#define VX_TAP_MAX_SEGS 64
#define VX_TAP_MAX_QUEUES 64
// A bit of the `offloads` word passed to vx_vnet_rx_apply (never a TUN_F_ flag): the port is the underlay, where
// the pipeline completes inner checksums itself after decapsulation.
#define VX_TAP_MODE_UNDERLAY 0x10000u

struct vx_tap_queue {
    int fd;
    int dead;
    unsigned offloads;
    uint16_t room;                 // data room of each receive buffer
    uint16_t segs;                 // buffers per read: enough for VX_TAP_MAX_FRAME
    uint16_t missing;              // spare[0..<missing] are used up and not yet replaced
    uint16_t empty_reads;          // reads in a row that found nothing
    uint64_t next_read_tsc;        // an idle queue is not read before this TSC (0: read every round)
    struct rte_mempool *pool;
    struct vx_vnet_hdr rx_header;
    struct rte_mbuf *spare[VX_TAP_MAX_SEGS];
    struct iovec rx_iov[VX_TAP_MAX_SEGS + 1];
    struct iovec tx_iov[VX_TAP_MAX_SEGS + 2];
    uint64_t stats[VX_TAP_STAT_COUNT];
} __rte_cache_aligned;

struct vx_tap {
    char name[IFNAMSIZ];
    int ifindex;
    unsigned offloads;
    unsigned mode;
    int first_fd;                  // opened by vx_tap_open, queue 0's once configured
    unsigned queue_count;
    struct vx_tap_queue *queues;
};

static const char *const stat_names[VX_TAP_STAT_COUNT] = {
    [VX_TAP_RX_FRAMES] = "rx_frames", [VX_TAP_RX_BYTES] = "rx_bytes", [VX_TAP_RX_GSO_FRAMES] = "rx_gso_frames",
    [VX_TAP_RX_TUNNEL_GSO_FRAMES] = "rx_tunnel_gso_frames", [VX_TAP_RX_GSO_SEGMENTS] = "rx_gso_segments",
    [VX_TAP_RX_PARTIAL_CHECKSUMS] = "rx_partial_checksums", [VX_TAP_RX_CHECKSUMS_COMPLETED] = "rx_checksums_completed",
    [VX_TAP_TX_FRAMES] = "tx_frames", [VX_TAP_TX_BYTES] = "tx_bytes", [VX_TAP_TX_GSO_FRAMES] = "tx_gso_frames",
    [VX_TAP_TX_TUNNEL_GSO_FRAMES] = "tx_tunnel_gso_frames", [VX_TAP_TX_GSO_SEGMENTS] = "tx_gso_segments",
    [VX_TAP_TX_PARTIAL_CHECKSUMS] = "tx_partial_checksums",
    [VX_TAP_RX_NO_MBUFS] = "rx_no_mbufs", [VX_TAP_RX_READ_ERRORS] = "rx_read_errors",
    [VX_TAP_TX_WRITE_ERRORS] = "tx_write_errors", [VX_TAP_TX_BAD_METADATA] = "tx_bad_metadata",
    [VX_TAP_INTERFACE_GONE] = "interface_gone",
    [VX_TAP_RX_RUNT] = "rx_bad_length", [VX_TAP_RX_BAD_GSO_SIZE] = "rx_bad_gso_size",
    [VX_TAP_RX_BAD_HDR_LEN] = "rx_bad_hdr_len", [VX_TAP_RX_BAD_CSUM_OFFSETS] = "rx_bad_csum_offsets",
    [VX_TAP_RX_GSO_WITHOUT_CSUM] = "rx_gso_without_csum", [VX_TAP_RX_GSO_TYPE_MISMATCH] = "rx_gso_type_mismatch",
    [VX_TAP_RX_UNSUPPORTED_GSO] = "rx_unsupported_gso", [VX_TAP_RX_BAD_TUNNEL_OFFSETS] = "rx_bad_tunnel_offsets",
    [VX_TAP_RX_BAD_FLAGS] = "rx_bad_flags",
};

const char *vx_tap_stat_name(unsigned stat) { return stat < VX_TAP_STAT_COUNT ? stat_names[stat] : "?"; }

// ---------------------------------------------------------------------------------------------------------------
// Descriptors

#ifndef IFF_TUN_EXCL
#define IFF_TUN_EXCL 0x8000
#endif

// Opens a descriptor on tap `name`: `create` makes the interface and fails if one of that name exists
// (IFF_TUN_EXCL: never another's persistent tap), else it attaches another queue to ours.
static int tap_attach(const char *name, int create, char *error, size_t error_len) {
    int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        snprintf(error, error_len, "cannot open /dev/net/tun: %s", strerror(e));
        return -e;
    }
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    snprintf(ifr.ifr_name, IFNAMSIZ, "%s", name);
    ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR | IFF_MULTI_QUEUE | (create ? IFF_TUN_EXCL : 0);
    if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
        int e = errno;
        if (create && e == EBUSY) snprintf(error, error_len, "an interface named %s exists already", name);
        else snprintf(error, error_len, "cannot %s tap %s: %s", create ? "create" : "open a queue of", name, strerror(e));
        close(fd);
        return -e;
    }
    int size = (int)sizeof(struct vx_vnet_hdr);
    if (ioctl(fd, TUNSETVNETHDRSZ, &size) < 0) {
        int e = errno;
        snprintf(error, error_len, "tap %s: cannot set a %d-byte virtio-net header: %s", name, size, strerror(e));
        close(fd);
        return -e;
    }
    return fd;
}

int vx_tap_open(const char *ifname, unsigned wanted, struct vx_tap **out, char *error, size_t error_len) {
    *out = NULL;
    size_t length = strlen(ifname);
    if (length == 0 || length >= IFNAMSIZ) {
        snprintf(error, error_len, "interface name '%s' must be 1 to %d characters", ifname, IFNAMSIZ - 1);
        return -EINVAL;
    }
    // TUNSETIFF would attach to an existing (persistent) tap of that name: never take over someone else's.
    if (if_nametoindex(ifname) != 0) {
        snprintf(error, error_len, "an interface named %s exists already", ifname);
        return -EEXIST;
    }
    int fd = tap_attach(ifname, 1, error, error_len);
    if (fd < 0) return fd;
    // The kernel accepts a set of flags or refuses it whole (EINVAL for flags it does not know): try the most
    // useful sets first. The tunnel flags come as a pair: with GSO alone the kernel segments what it sends us.
    const unsigned tunnel = VX_TUN_F_UDP_TUNNEL_GSO | VX_TUN_F_UDP_TUNNEL_GSO_CSUM;
    const unsigned tso = VX_TUN_F_TSO4 | VX_TUN_F_TSO6 | VX_TUN_F_TSO_ECN;
    unsigned tries[4] = { wanted, wanted & ~tunnel, wanted & ~(tunnel | tso), 0 };
    unsigned accepted = 0;
    int ok = 0;
    for (int i = 0; i < 4 && !ok; i++) {
        if (ioctl(fd, TUNSETOFFLOAD, (unsigned long)tries[i]) == 0) { accepted = tries[i]; ok = 1; }
    }
    if (!ok) {
        int e = errno;
        snprintf(error, error_len, "tap %s: TUNSETOFFLOAD refused every flag set: %s", ifname, strerror(e));
        close(fd);
        return -e;
    }
    struct vx_tap *tap = calloc(1, sizeof *tap);
    if (tap == NULL) { close(fd); snprintf(error, error_len, "out of memory"); return -ENOMEM; }
    snprintf(tap->name, IFNAMSIZ, "%s", ifname);
    tap->ifindex = (int)if_nametoindex(ifname);
    tap->offloads = accepted;
    tap->first_fd = fd;
    *out = tap;
    return 0;
}

unsigned vx_tap_offloads(const struct vx_tap *tap) { return tap->offloads; }

int vx_tap_current_name(const struct vx_tap *tap, char *out) {
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    int fd = tap->queues != NULL ? tap->queues[0].fd : tap->first_fd;
    if (ioctl(fd, TUNGETIFF, &ifr) < 0) return -errno;
    memcpy(out, ifr.ifr_name, IFNAMSIZ);
    out[IFNAMSIZ - 1] = 0;
    return 0;
}
const char *vx_tap_ifname(const struct vx_tap *tap) { return tap->name; }
int vx_tap_ifindex(const struct vx_tap *tap) { return tap->ifindex; }
unsigned vx_tap_queue_count(const struct vx_tap *tap) { return tap->queue_count; }
struct vx_tap_queue *vx_tap_queue(struct vx_tap *tap, unsigned queue) {
    return queue < tap->queue_count ? &tap->queues[queue] : NULL;
}

// Gives the read buffers a read used up (always the first `missing`) fresh mbufs, in one bulk allocation; 0, or
// -1 when the pool is short (the read waits for the next burst).
static int refill(struct vx_tap_queue *q) {
    if (q->missing == 0) return 0;
    // Into a local array: a bulk allocation that fails may have written pointers it then takes back.
    struct rte_mbuf *fresh[VX_TAP_MAX_SEGS];
    if (rte_pktmbuf_alloc_bulk(q->pool, fresh, q->missing) != 0) return -1;
    for (unsigned i = 0; i < q->missing; i++) {
        q->spare[i] = fresh[i];
        q->rx_iov[i + 1].iov_base = rte_pktmbuf_mtod(fresh[i], void *);
        q->rx_iov[i + 1].iov_len = q->room;
    }
    q->missing = 0;
    return 0;
}

int vx_tap_configure(struct vx_tap *tap, unsigned queues, struct rte_mempool *pool, char *error, size_t error_len) {
    if (tap->queues != NULL) { snprintf(error, error_len, "tap %s is configured already", tap->name); return -EBUSY; }
    if (queues == 0 || queues > VX_TAP_MAX_QUEUES) {
        snprintf(error, error_len, "tap %s: %u queues asked, 1 to %d possible", tap->name, queues, VX_TAP_MAX_QUEUES);
        return -EINVAL;
    }
    unsigned room = rte_pktmbuf_data_room_size(pool) - RTE_PKTMBUF_HEADROOM;
    unsigned segs = (VX_TAP_MAX_FRAME + room - 1) / room;
    if (room < 256 || segs > VX_TAP_MAX_SEGS) {
        snprintf(error, error_len, "tap %s: buffers of %u bytes are too small for 64 KB frames", tap->name, room);
        return -EINVAL;
    }
    struct vx_tap_queue *q = rte_zmalloc("vx_tap_queues", sizeof *q * queues, RTE_CACHE_LINE_SIZE);
    if (q == NULL) { snprintf(error, error_len, "out of memory for tap %s's queues", tap->name); return -ENOMEM; }
    for (unsigned i = 0; i < queues; i++) q[i].fd = -1;
    for (unsigned i = 0; i < queues; i++) {
        int fd = i == 0 ? tap->first_fd : tap_attach(tap->name, 0, error, error_len);
        int e = 0;
        if (fd < 0) {
            e = fd;
        } else if (i > 0 && ioctl(fd, TUNSETOFFLOAD, (unsigned long)tap->offloads) < 0) {
            e = -errno;
            snprintf(error, error_len, "tap %s queue %u: TUNSETOFFLOAD: %s", tap->name, i, strerror(-e));
            close(fd);
        }
        if (e != 0) {
            // Undo the queues made so far (queue 0's descriptor stays the tap's, closed with it).
            for (unsigned j = 0; j < i; j++) {
                for (unsigned k = 0; k < VX_TAP_MAX_SEGS; k++) if (q[j].spare[k] != NULL) rte_pktmbuf_free(q[j].spare[k]);
                if (j > 0) close(q[j].fd);
            }
            rte_free(q);
            return e;
        }
        q[i].fd = fd;
        q[i].offloads = tap->offloads | tap->mode;
        q[i].pool = pool;
        q[i].room = (uint16_t)room;
        q[i].segs = (uint16_t)segs;
        q[i].rx_iov[0].iov_base = &q[i].rx_header;
        q[i].rx_iov[0].iov_len = sizeof(struct vx_vnet_hdr);
        q[i].missing = (uint16_t)segs;
        (void)refill(&q[i]);          // a short pool is retried at every burst
    }
    tap->queues = q;
    tap->queue_count = queues;
    return 0;
}

void vx_tap_set_underlay(struct vx_tap *tap) { tap->mode = VX_TAP_MODE_UNDERLAY; }

int vx_tap_set_up(struct vx_tap *tap) {
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (s < 0) return -errno;
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    snprintf(ifr.ifr_name, IFNAMSIZ, "%s", tap->name);
    int rc = 0;
    if (ioctl(s, SIOCGIFFLAGS, &ifr) < 0) rc = -errno;
    else if (!(ifr.ifr_flags & IFF_UP)) {
        ifr.ifr_flags |= IFF_UP;
        if (ioctl(s, SIOCSIFFLAGS, &ifr) < 0) rc = -errno;
    }
    close(s);
    return rc;
}

int vx_tap_alive(const struct vx_tap *tap) {
    for (unsigned i = 0; i < tap->queue_count; i++) {
        if (__atomic_load_n(&tap->queues[i].dead, __ATOMIC_RELAXED)) return 0;
    }
    return 1;
}

void vx_tap_stats(const struct vx_tap *tap, uint64_t *out) {
    memset(out, 0, sizeof(uint64_t) * VX_TAP_STAT_COUNT);
    for (unsigned i = 0; i < tap->queue_count; i++) {
        for (unsigned s = 0; s < VX_TAP_STAT_COUNT; s++) out[s] += __atomic_load_n(&tap->queues[i].stats[s], __ATOMIC_RELAXED);
    }
}

unsigned vx_tap_buffers_held(const struct vx_tap *tap) {
    unsigned held = 0;
    for (unsigned i = 0; i < tap->queue_count; i++) {
        held += tap->queues[i].segs - __atomic_load_n(&tap->queues[i].missing, __ATOMIC_RELAXED);
    }
    return held;
}

void vx_tap_close(struct vx_tap *tap) {
    if (tap == NULL) return;
    if (tap->queues != NULL) {
        for (unsigned i = 0; i < tap->queue_count; i++) {
            struct vx_tap_queue *q = &tap->queues[i];
            for (unsigned s = 0; s < VX_TAP_MAX_SEGS; s++) {
                if (q->spare[s] != NULL) rte_pktmbuf_free(q->spare[s]);
            }
            if (q->fd >= 0) close(q->fd);
        }
        rte_free(tap->queues);
    } else if (tap->first_fd >= 0) {
        close(tap->first_fd);
    }
    free(tap);
}

// ---------------------------------------------------------------------------------------------------------------
// Header translation

static inline uint16_t be16(const uint8_t *p) { return (uint16_t)((p[0] << 8) | p[1]); }

// Offset of the IP header behind Ethernet and at most one VLAN tag, its EtherType in *type; 0 if too short.
static unsigned network_offset(const uint8_t *f, uint32_t length, uint16_t *type) {
    if (length < RTE_ETHER_HDR_LEN) return 0;
    uint16_t t = be16(f + 12);
    unsigned offset = RTE_ETHER_HDR_LEN;
    if (t == RTE_ETHER_TYPE_VLAN || t == RTE_ETHER_TYPE_QINQ) {
        if (length < offset + 4) return 0;
        t = be16(f + 16);
        offset += 4;
    }
    *type = t;
    return offset;
}

// The TCP header at `l4` behind the IP header at `l3` of version `v6` (IPv6: past any hop-by-hop, routing and
// destination options headers), all within `length` bytes: 1, else 0.
static int tcp_behind(const uint8_t *f, uint32_t length, unsigned l3, int v6, unsigned l4) {
    if (v6) {
        if (l3 + 40 > length || (f[l3] >> 4) != 6 || l4 + 20 > length) return 0;
        // Past hop-by-hop, routing and destination options headers (at most 8 of them) to TCP.
        unsigned next = f[l3 + 6], at = l3 + 40;
        for (int i = 0; i < 8 && (next == 0 || next == 43 || next == 60); i++) {
            if (at + 8 > length) return 0;
            next = f[at];
            at += ((unsigned)f[at + 1] + 1) * 8;
        }
        return next == IPPROTO_TCP && at == l4;
    }
    if (l3 + 20 > length || (f[l3] >> 4) != 4 || (f[l3] & 0x0F) < 5 || f[l3 + 9] != IPPROTO_TCP) return 0;
    return l4 == l3 + (unsigned)(f[l3] & 0x0F) * 4 && l4 + 20 <= length;
}

// Offset of the L4 header behind the IPv4 or IPv6 header (no extension header) at `l3`, 0 if that is not within
// `length` bytes; its protocol in *proto.
static unsigned transport_offset(const uint8_t *f, uint32_t length, unsigned l3, uint16_t type, uint8_t *proto) {
    if (type == RTE_ETHER_TYPE_IPV6) {
        if (l3 + 40 > length || (f[l3] >> 4) != 6) return 0;
        *proto = f[l3 + 6];
        return l3 + 40;
    }
    if (type != RTE_ETHER_TYPE_IPV4 || l3 + 20 > length || (f[l3] >> 4) != 4 || (f[l3] & 0x0F) < 5) return 0;
    *proto = f[l3 + 9];
    return l3 + (unsigned)(f[l3] & 0x0F) * 4;
}

// TCP segments a GSO frame becomes: payload behind the TCP header at `l4`, over gso_size.
static uint64_t segments(const uint8_t *f, uint32_t total, unsigned l4, unsigned gso_size) {
    unsigned header = l4 + (unsigned)(f[l4 + 12] >> 4) * 4;
    uint32_t payload = total > header ? total - header : 0;
    return payload == 0 ? 1 : (payload + gso_size - 1) / gso_size;
}

int vx_vnet_rx_apply(const struct vx_vnet_hdr *h, struct rte_mbuf *m, unsigned offloads) {
    const uint8_t *f = rte_pktmbuf_mtod(m, const uint8_t *);
    const uint32_t total = m->pkt_len;
    const uint32_t first = m->data_len;           // headers must lie in the first buffer (2 KB and more)
    const int underlay = (offloads & VX_TAP_MODE_UNDERLAY) != 0;
    uint16_t type = 0;
    const unsigned l3 = network_offset(f, first, &type);
    if (l3 == 0) return VX_TAP_RX_RUNT;
    if (h->flags & ~(VX_VNET_F_NEEDS_CSUM | VX_VNET_F_DATA_VALID | VX_VNET_F_UDP_TUNNEL_CSUM)) return VX_TAP_RX_BAD_FLAGS;
    if ((h->flags & VX_VNET_F_NEEDS_CSUM) && (h->flags & VX_VNET_F_DATA_VALID)) return VX_TAP_RX_BAD_FLAGS;
    if ((h->flags & VX_VNET_F_UDP_TUNNEL_CSUM) && !(offloads & VX_TUN_F_UDP_TUNNEL_GSO_CSUM)) return VX_TAP_RX_BAD_FLAGS;
    const unsigned tunnel = h->gso_type & (VX_VNET_GSO_UDP_TUNNEL_IPV4 | VX_VNET_GSO_UDP_TUNNEL_IPV6);
    const unsigned gso = h->gso_type & ~(VX_VNET_GSO_ECN | VX_VNET_GSO_UDP_TUNNEL_IPV4 | VX_VNET_GSO_UDP_TUNNEL_IPV6);
    uint64_t flags = 0;
    const unsigned start = h->csum_start, offset = h->csum_offset;
    if (h->flags & VX_VNET_F_NEEDS_CSUM) {
        if (start < l3 || (uint32_t)start + offset + 2 > first) return VX_TAP_RX_BAD_CSUM_OFFSETS;
    }
    if (h->gso_type == VX_VNET_GSO_NONE) {
        if (tunnel) return VX_TAP_RX_UNSUPPORTED_GSO;
    } else {
        if (gso != VX_VNET_GSO_TCPV4 && gso != VX_VNET_GSO_TCPV6) return VX_TAP_RX_UNSUPPORTED_GSO;
        if (!(offloads & (gso == VX_VNET_GSO_TCPV4 ? VX_TUN_F_TSO4 : VX_TUN_F_TSO6))) return VX_TAP_RX_UNSUPPORTED_GSO;
        if (h->gso_size == 0) return VX_TAP_RX_BAD_GSO_SIZE;
        if (h->hdr_len > total) return VX_TAP_RX_BAD_HDR_LEN;
        if (!(h->flags & VX_VNET_F_NEEDS_CSUM)) return VX_TAP_RX_GSO_WITHOUT_CSUM;
        if (offset != 16) return VX_TAP_RX_BAD_CSUM_OFFSETS;
        const int inner6 = gso == VX_VNET_GSO_TCPV6;
        if (tunnel) {
            if (!(offloads & VX_TUN_F_UDP_TUNNEL_GSO) || tunnel == (VX_VNET_GSO_UDP_TUNNEL_IPV4 | VX_VNET_GSO_UDP_TUNNEL_IPV6)) {
                return VX_TAP_RX_UNSUPPORTED_GSO;
            }
            const int outer6 = tunnel == VX_VNET_GSO_UDP_TUNNEL_IPV6;
            if (type != (outer6 ? RTE_ETHER_TYPE_IPV6 : RTE_ETHER_TYPE_IPV4)) return VX_TAP_RX_GSO_TYPE_MISMATCH;
            const unsigned outer_th = h->outer_th_offset, inner_nh = h->inner_nh_offset;
            if (outer6) {
                if (l3 + 40 > first || (f[l3] >> 4) != 6 || f[l3 + 6] != IPPROTO_UDP || outer_th != l3 + 40) {
                    return VX_TAP_RX_BAD_TUNNEL_OFFSETS;
                }
            } else {
                if (l3 + 20 > first || (f[l3] >> 4) != 4 || f[l3 + 9] != IPPROTO_UDP
                    || outer_th != l3 + (unsigned)(f[l3] & 0x0F) * 4) {
                    return VX_TAP_RX_BAD_TUNNEL_OFFSETS;
                }
            }
            // UDP, VXLAN and the inner Ethernet header sit between the outer UDP and the inner IP header.
            if (inner_nh < outer_th + 8 + 8 + RTE_ETHER_HDR_LEN || inner_nh + 20 > first) return VX_TAP_RX_BAD_TUNNEL_OFFSETS;
            if (be16(f + inner_nh - 2) != (inner6 ? RTE_ETHER_TYPE_IPV6 : RTE_ETHER_TYPE_IPV4)) return VX_TAP_RX_GSO_TYPE_MISMATCH;
            if (!tcp_behind(f, first, inner_nh, inner6, start)) return VX_TAP_RX_GSO_TYPE_MISMATCH;
        } else {
            if (type != (inner6 ? RTE_ETHER_TYPE_IPV6 : RTE_ETHER_TYPE_IPV4)) return VX_TAP_RX_GSO_TYPE_MISMATCH;
            if (!tcp_behind(f, first, l3, inner6, start)) return VX_TAP_RX_GSO_TYPE_MISMATCH;
        }
        flags |= RTE_MBUF_F_RX_LRO;
        m->tso_segsz = h->gso_size;
    }
    uint8_t proto = 0;
    const unsigned l4 = transport_offset(f, first, l3, type, &proto);
    int completed = 0;
    if (h->flags & VX_VNET_F_NEEDS_CSUM) {
        // Where the pipeline finishes a partial sum (flagged NONE): at the TCP/UDP header it parses, untagged,
        // behind IPv4 or IPv6 without extension headers; on the underlay, that of the VXLAN frame's inner frame.
        // A partial sum anywhere else is finished here, as the kernel's skb_checksum_help would (on the underlay
        // the outer UDP checksum, made by local checksum offload, is right once it is).
        unsigned at = 0;
        uint8_t at_proto = 0;
        if (!underlay) {
            if (l3 == RTE_ETHER_HDR_LEN) { at = l4; at_proto = proto; }
        } else if (l4 != 0 && proto == IPPROTO_UDP && start != l4 && l4 + 30 <= first) {
            at = transport_offset(f, first, l4 + 30, be16(f + l4 + 28), &at_proto);
        }
        const int pipeline = at != 0 && start == at
            && ((at_proto == IPPROTO_TCP && offset == 16) || (at_proto == IPPROTO_UDP && offset == 6));
        if (underlay) flags |= RTE_MBUF_F_RX_OUTER_L4_CKSUM_GOOD;     // the kernel vouches for the frame
        if (pipeline || (flags & RTE_MBUF_F_RX_LRO)) {
            // (A GSO frame's TCP header was checked above, also behind a VLAN tag or IPv6 extension headers,
            // which the pipeline parses when it segments.)
            flags |= RTE_MBUF_F_RX_L4_CKSUM_NONE;
        } else if (!underlay || start != l4) {
            uint16_t sum = 0;
            if (rte_raw_cksum_mbuf(m, start, total - start, &sum) != 0) return VX_TAP_RX_BAD_CSUM_OFFSETS;
            uint16_t folded = (uint16_t)~sum;
            if (folded == 0) folded = 0xFFFF;
            memcpy(rte_pktmbuf_mtod_offset(m, uint8_t *, start + offset), &folded, 2);
            completed = 1;
        }
        // (On the underlay a partial outer UDP sum with everything inside finished: vouched for, nothing to do.)
    } else if (h->flags & VX_VNET_F_DATA_VALID) {
        flags |= RTE_MBUF_F_RX_L4_CKSUM_GOOD;
        if (underlay) flags |= RTE_MBUF_F_RX_OUTER_L4_CKSUM_GOOD;
    }
    m->ol_flags = flags;
    return completed ? -2 : -1;
}

// The ones' complement sum of the TCP/UDP pseudo-header of the L4 header at `l4` behind the IP header at `l3`,
// its length taken from the IP header (Ethernet padding is not part of it).
static uint32_t pseudo_sum(const uint8_t *f, unsigned l3, unsigned l4, int v6, uint8_t proto) {
    uint32_t length;
    uint32_t sum;
    if (v6) {
        uint32_t payload = be16(f + l3 + 4);
        length = payload - (l4 - l3 - 40);
        sum = __rte_raw_cksum(f + l3 + 8, 32, 0);
    } else {
        uint32_t ip = be16(f + l3 + 2);
        length = ip - (l4 - l3);
        sum = __rte_raw_cksum(f + l3 + 12, 8, 0);
    }
    sum += rte_cpu_to_be_16((uint16_t)length) + rte_cpu_to_be_16(proto);
    return sum;
}

static inline uint16_t fold(uint32_t sum) {
    sum = (sum & 0xFFFF) + (sum >> 16);
    sum = (sum & 0xFFFF) + (sum >> 16);
    return (uint16_t)sum;
}

static void ipv4_header_checksum(uint8_t *ip) {
    struct rte_ipv4_hdr *h = (struct rte_ipv4_hdr *)ip;
    h->hdr_checksum = 0;
    h->hdr_checksum = rte_ipv4_cksum(h);
}

int vx_vnet_tx_fill(struct vx_vnet_hdr *h, struct rte_mbuf *m, unsigned offloads) {
    memset(h, 0, sizeof *h);
    const uint64_t f = m->ol_flags;
    const uint64_t wanted = RTE_MBUF_F_TX_L4_MASK | RTE_MBUF_F_TX_TCP_SEG | RTE_MBUF_F_TX_IP_CKSUM
        | RTE_MBUF_F_TX_OUTER_IP_CKSUM | RTE_MBUF_F_TX_OUTER_UDP_CKSUM;
    if (!(f & wanted)) return 0;
    uint8_t *d = rte_pktmbuf_mtod(m, uint8_t *);
    const uint32_t first = m->data_len;
    const uint64_t tunnel_type = f & RTE_MBUF_F_TX_TUNNEL_MASK;
    if (tunnel_type != 0 && tunnel_type != RTE_MBUF_F_TX_TUNNEL_VXLAN) return -1;
    const int tunnel = tunnel_type != 0;
    const unsigned outer_l3 = tunnel ? m->outer_l2_len : 0;
    const unsigned outer_l4 = tunnel ? m->outer_l2_len + m->outer_l3_len : 0;
    const unsigned l3 = outer_l4 + m->l2_len, l4 = l3 + m->l3_len;
    const int v6 = (f & RTE_MBUF_F_TX_IPV6) != 0;
    const int tso = (f & RTE_MBUF_F_TX_TCP_SEG) != 0;
    uint64_t l4_request = tso ? RTE_MBUF_F_TX_TCP_CKSUM : (f & RTE_MBUF_F_TX_L4_MASK);
    if (l4_request == RTE_MBUF_F_TX_SCTP_CKSUM) return -1;
    if (l3 + (v6 ? 40u : 20u) > first || l4 + (l4_request == RTE_MBUF_F_TX_UDP_CKSUM ? 8u : l4_request ? 20u : 0u) > first) return -1;
    const int outer6 = (f & RTE_MBUF_F_TX_OUTER_IPV6) != 0;
    if (tunnel && outer_l4 + 8 > first) return -1;
    if (tunnel && (f & RTE_MBUF_F_TX_OUTER_IP_CKSUM) && !outer6) ipv4_header_checksum(d + outer_l3);
    if ((f & RTE_MBUF_F_TX_IP_CKSUM) && !v6) ipv4_header_checksum(d + l3);
    uint16_t partial = 0;
    unsigned csum_offset = 0;
    if (l4_request != 0) {
        const int udp = l4_request == RTE_MBUF_F_TX_UDP_CKSUM;
        csum_offset = udp ? 6 : 16;
        partial = fold(pseudo_sum(d, l3, l4, v6, udp ? IPPROTO_UDP : IPPROTO_TCP));
        memcpy(d + l4 + csum_offset, &partial, 2);
        h->flags = VX_VNET_F_NEEDS_CSUM;
        h->csum_start = (uint16_t)l4;
        h->csum_offset = (uint16_t)csum_offset;
    }
    if (tso) {
        // What is written to a tap may ask for GSO whatever was negotiated (that is for what the kernel sends).
        if (m->tso_segsz == 0 || m->l4_len < 20 || l4 + m->l4_len > first) return -1;
        h->gso_type = v6 ? VX_VNET_GSO_TCPV6 : VX_VNET_GSO_TCPV4;
        h->gso_size = m->tso_segsz;
        h->hdr_len = (uint16_t)(l4 + m->l4_len);
        if (tunnel) {
            if (!(offloads & VX_TUN_F_UDP_TUNNEL_GSO)) return -1;
            h->gso_type |= outer6 ? VX_VNET_GSO_UDP_TUNNEL_IPV6 : VX_VNET_GSO_UDP_TUNNEL_IPV4;
            h->outer_th_offset = (uint16_t)outer_l4;
            h->inner_nh_offset = (uint16_t)l3;
            if (f & RTE_MBUF_F_TX_OUTER_UDP_CKSUM) {
                // The kernel sums each segment's outer UDP from the pseudo-header sum left in the field.
                if (!(offloads & VX_TUN_F_UDP_TUNNEL_GSO_CSUM)) return -1;
                h->flags |= VX_VNET_F_UDP_TUNNEL_CSUM;
                uint16_t outer_partial = fold(pseudo_sum(d, outer_l3, outer_l4, outer6, IPPROTO_UDP));
                memcpy(d + outer_l4 + 6, &outer_partial, 2);
            }
        }
    } else if (tunnel && (f & RTE_MBUF_F_TX_OUTER_UDP_CKSUM)) {
        // One frame, one checksum the kernel can finish: the outer UDP one is computed here. With the inner one
        // left partial, the inner L4 bytes will sum to the complement of its pseudo-header sum once it is filled
        // in (local checksum offload), so only the headers in between are read.
        uint32_t sum = pseudo_sum(d, outer_l3, outer_l4, outer6, IPPROTO_UDP);
        memset(d + outer_l4 + 6, 0, 2);
        if (l4_request != 0) {
            sum = __rte_raw_cksum(d + outer_l4, l4 - outer_l4, sum);
            sum += (uint16_t)~partial;
        } else {
            uint16_t rest = 0;
            if (rte_raw_cksum_mbuf(m, outer_l4, m->pkt_len - outer_l4, &rest) != 0) return -1;
            sum += rest;
        }
        uint16_t value = (uint16_t)~fold(sum);
        if (value == 0) value = 0xFFFF;
        memcpy(d + outer_l4 + 6, &value, 2);
    }
    return 0;
}

// ---------------------------------------------------------------------------------------------------------------
// Bursts

static void mark_gone(struct vx_tap_queue *q) {
    if (!q->dead) {
        __atomic_store_n(&q->dead, 1, __ATOMIC_RELAXED);
        q->stats[VX_TAP_INTERFACE_GONE]++;
    }
}

// An idle queue is read at most every VX_TAP_IDLE_GAP_NS once VX_TAP_IDLE_AFTER reads in a row found nothing: a
// read that finds nothing is a system call, which a core polling other ports should not pay every round. The first
// frame after a pause waits at most that long more.
#define VX_TAP_IDLE_AFTER 256
#define VX_TAP_IDLE_GAP_NS 4000

uint16_t vx_tap_rx_burst(struct vx_tap_queue *q, struct rte_mbuf **pkts, uint16_t n) {
    if (q->dead) return 0;
    // Time, not rounds: a core that sleeps between rounds reads at its next round.
    if (q->next_read_tsc != 0 && rte_rdtsc() < q->next_read_tsc) return 0;
    uint16_t got = 0;
    const size_t header = sizeof(struct vx_vnet_hdr);
    while (got < n) {
        if (refill(q) != 0) { q->stats[VX_TAP_RX_NO_MBUFS]++; break; }
        ssize_t r = readv(q->fd, q->rx_iov, q->segs + 1);
        if (r < 0) {
            if (errno == EAGAIN || errno == EINTR) {
                if (got == 0 && ++q->empty_reads >= VX_TAP_IDLE_AFTER) {
                    q->empty_reads = VX_TAP_IDLE_AFTER;
                    q->next_read_tsc = rte_rdtsc() + rte_get_tsc_hz() / (1000000000ull / VX_TAP_IDLE_GAP_NS);
                }
                break;
            }
            if (errno == EBADFD || errno == ENXIO || errno == ENODEV) { mark_gone(q); break; }
            q->stats[VX_TAP_RX_READ_ERRORS]++;
            break;
        }
        // A read that fills every buffer may have been cut short by the kernel: never forwarded.
        if ((size_t)r < header + RTE_ETHER_HDR_LEN || (size_t)r >= header + (size_t)q->segs * q->room) {
            q->stats[VX_TAP_RX_RUNT]++;
            continue;
        }
        uint32_t length = (uint32_t)(r - header);
        unsigned used = (length + q->room - 1) / q->room;
        struct rte_mbuf *head = q->spare[0], *last = head;
        uint32_t left = length;
        for (unsigned i = 0; i < used; i++) {
            struct rte_mbuf *s = q->spare[i];
            q->spare[i] = NULL;
            q->missing = (uint16_t)(i + 1);
            s->data_len = (uint16_t)(left < q->room ? left : q->room);
            left -= s->data_len;
            if (i > 0) { last->next = s; last = s; }
        }
        last->next = NULL;
        head->nb_segs = (uint16_t)used;
        head->pkt_len = length;
        head->ol_flags = 0;
        head->packet_type = 0;
        const struct vx_vnet_hdr *h = &q->rx_header;
        int verdict = vx_vnet_rx_apply(h, head, q->offloads);
        if (verdict >= 0) {
            q->stats[verdict]++;
            rte_pktmbuf_free(head);
            continue;
        }
        if (verdict == -2) q->stats[VX_TAP_RX_CHECKSUMS_COMPLETED]++;
        else if (h->flags & VX_VNET_F_NEEDS_CSUM) q->stats[VX_TAP_RX_PARTIAL_CHECKSUMS]++;
        if (head->ol_flags & RTE_MBUF_F_RX_LRO) {
            q->stats[VX_TAP_RX_GSO_FRAMES]++;
            if (h->gso_type & (VX_VNET_GSO_UDP_TUNNEL_IPV4 | VX_VNET_GSO_UDP_TUNNEL_IPV6)) q->stats[VX_TAP_RX_TUNNEL_GSO_FRAMES]++;
            q->stats[VX_TAP_RX_GSO_SEGMENTS] += segments(rte_pktmbuf_mtod(head, const uint8_t *), length, h->csum_start, h->gso_size);
        }
        q->stats[VX_TAP_RX_FRAMES]++;
        q->stats[VX_TAP_RX_BYTES] += length;
        q->empty_reads = 0;
        q->next_read_tsc = 0;
        pkts[got++] = head;
    }
    return got;
}

uint16_t vx_tap_tx_burst(struct vx_tap_queue *q, struct rte_mbuf **pkts, uint16_t n) {
    if (q->dead) return 0;
    struct vx_vnet_hdr header;
    uint16_t done = 0;
    for (; done < n; done++) {
        struct rte_mbuf *m = pkts[done];
        if (m->nb_segs > VX_TAP_MAX_SEGS || vx_vnet_tx_fill(&header, m, q->offloads) != 0) {
            q->stats[VX_TAP_TX_BAD_METADATA]++;
            rte_pktmbuf_free(m);
            continue;
        }
        q->tx_iov[0].iov_base = &header;
        q->tx_iov[0].iov_len = sizeof header;
        int count = 1;
        for (struct rte_mbuf *s = m; s != NULL; s = s->next) {
            if (s->data_len == 0) continue;
            q->tx_iov[count].iov_base = rte_pktmbuf_mtod(s, void *);
            q->tx_iov[count].iov_len = s->data_len;
            count++;
        }
        ssize_t r = writev(q->fd, q->tx_iov, count);
        if (r < 0) {
            if (errno == EAGAIN) break;                  // the caller keeps (and counts) the rest
            if (errno == EBADFD || errno == ENXIO || errno == ENODEV) { mark_gone(q); break; }
            q->stats[VX_TAP_TX_WRITE_ERRORS]++;           // refused by the kernel: counted, freed
            rte_pktmbuf_free(m);
            continue;
        }
        if (header.flags & VX_VNET_F_NEEDS_CSUM) q->stats[VX_TAP_TX_PARTIAL_CHECKSUMS]++;
        if (header.gso_type != VX_VNET_GSO_NONE) {
            q->stats[VX_TAP_TX_GSO_FRAMES]++;
            if (header.gso_type & (VX_VNET_GSO_UDP_TUNNEL_IPV4 | VX_VNET_GSO_UDP_TUNNEL_IPV6)) q->stats[VX_TAP_TX_TUNNEL_GSO_FRAMES]++;
            uint32_t payload = m->pkt_len > header.hdr_len ? m->pkt_len - header.hdr_len : 0;
            q->stats[VX_TAP_TX_GSO_SEGMENTS] += payload == 0 ? 1 : (payload + header.gso_size - 1) / header.gso_size;
        }
        q->stats[VX_TAP_TX_FRAMES]++;
        q->stats[VX_TAP_TX_BYTES] += m->pkt_len;
        rte_pktmbuf_free(m);
    }
    return done;
}
