// A kernel port of vxland's own: a Linux tap with the virtio-net header (IFF_VNET_HDR), read and written by the
// polling core that owns each queue. DPDK 22.11's net_tap opens taps without that header, and this machine kind
// has no /dev/vhost-net for virtio_user's kernel path, so neither can carry the kernel's TSO/GSO frames and their
// checksum state; this port does, including the UDP-tunnel GSO header (Linux 6.17+, TUN_F_UDP_TUNNEL_GSO).
//
// The pipeline sees ordinary mbufs: on receive the header becomes DPDK's RX flags (RX_LRO + tso_segsz for a GSO
// frame, L4_CKSUM_NONE for an unfinished checksum), on transmit DPDK's TX offload request (TX_TCP_SEG,
// TX_TUNNEL_VXLAN, the checksum flags, l2/l3/l4 and outer lengths) becomes the header. A header that lies is
// counted under a reason and its frame dropped.
#ifndef VXLAN_TAP_PORT_H
#define VXLAN_TAP_PORT_H

#include <stdint.h>
#include <stddef.h>

// Only pointers to these cross the interface (Swift sees them as OpaquePointer, as CDPDK's mbufs).
struct rte_mbuf;
struct rte_mempool;

#ifdef __cplusplus
extern "C" {
#endif

// TUNSETOFFLOAD flags (linux/if_tun.h; the tunnel ones are Linux 6.17's).
#define VX_TUN_F_CSUM 0x01
#define VX_TUN_F_TSO4 0x02
#define VX_TUN_F_TSO6 0x04
#define VX_TUN_F_TSO_ECN 0x08
#define VX_TUN_F_UDP_TUNNEL_GSO 0x80
#define VX_TUN_F_UDP_TUNNEL_GSO_CSUM 0x100

// struct virtio_net_hdr_v1_hash_tunnel: the 24-byte header in front of every frame (little endian).
struct vx_vnet_hdr {
    uint8_t flags;
    uint8_t gso_type;
    uint16_t hdr_len;
    uint16_t gso_size;
    uint16_t csum_start;
    uint16_t csum_offset;
    uint16_t num_buffers;
    uint32_t hash_value;
    uint16_t hash_report;
    uint16_t padding;
    uint16_t outer_th_offset;
    uint16_t inner_nh_offset;
};

#define VX_VNET_F_NEEDS_CSUM 1
#define VX_VNET_F_DATA_VALID 2
#define VX_VNET_F_UDP_TUNNEL_CSUM 8
#define VX_VNET_GSO_NONE 0
#define VX_VNET_GSO_TCPV4 1
#define VX_VNET_GSO_UDP 3
#define VX_VNET_GSO_TCPV6 4
#define VX_VNET_GSO_UDP_L4 5
#define VX_VNET_GSO_UDP_TUNNEL_IPV4 0x20
#define VX_VNET_GSO_UDP_TUNNEL_IPV6 0x40
#define VX_VNET_GSO_ECN 0x80

// Per-queue counters; names in vx_tap_stat_name. The rx_bad_* ones are drop reasons of received headers.
enum vx_tap_stat {
    VX_TAP_RX_FRAMES, VX_TAP_RX_BYTES, VX_TAP_RX_GSO_FRAMES, VX_TAP_RX_TUNNEL_GSO_FRAMES, VX_TAP_RX_GSO_SEGMENTS,
    VX_TAP_RX_PARTIAL_CHECKSUMS, VX_TAP_RX_CHECKSUMS_COMPLETED,
    VX_TAP_TX_FRAMES, VX_TAP_TX_BYTES, VX_TAP_TX_GSO_FRAMES, VX_TAP_TX_TUNNEL_GSO_FRAMES, VX_TAP_TX_GSO_SEGMENTS,
    VX_TAP_TX_PARTIAL_CHECKSUMS,
    VX_TAP_RX_NO_MBUFS, VX_TAP_RX_READ_ERRORS, VX_TAP_TX_WRITE_ERRORS, VX_TAP_TX_BAD_METADATA, VX_TAP_INTERFACE_GONE,
    VX_TAP_RX_RUNT, VX_TAP_RX_BAD_GSO_SIZE, VX_TAP_RX_BAD_HDR_LEN, VX_TAP_RX_BAD_CSUM_OFFSETS, VX_TAP_RX_GSO_WITHOUT_CSUM,
    VX_TAP_RX_GSO_TYPE_MISMATCH, VX_TAP_RX_UNSUPPORTED_GSO, VX_TAP_RX_BAD_TUNNEL_OFFSETS, VX_TAP_RX_BAD_FLAGS,
    VX_TAP_STAT_COUNT
};
const char *vx_tap_stat_name(unsigned stat);

struct vx_tap;

// Creates tap interface `ifname` (IFF_TAP | IFF_NO_PI | IFF_VNET_HDR | IFF_MULTI_QUEUE, not persistent: it goes
// with the last descriptor, so with vxland on any exit) and negotiates offloads: `wanted` (VX_TUN_F_*) first, then
// without the tunnel flags, then without TSO, then none. Returns 0, or -errno with `error` filled in.
int vx_tap_open(const char *ifname, unsigned wanted, struct vx_tap **out, char *error, size_t error_len);
// The TUNSETOFFLOAD flags the kernel accepted.
unsigned vx_tap_offloads(const struct vx_tap *tap);
const char *vx_tap_ifname(const struct vx_tap *tap);
// The interface's name now (an operator may have renamed it, in any namespace) into out[16]; 0, or -errno.
int vx_tap_current_name(const struct vx_tap *tap, char *out);
// The interface's index (in the namespace it was created in).
int vx_tap_ifindex(const struct vx_tap *tap);
// Marks the tap as the underlay (before vx_tap_configure): inner checksums are left to the pipeline.
void vx_tap_set_underlay(struct vx_tap *tap);
// Gives the tap `queues` descriptors (one per polling core) whose receive buffers come from `pool`. Once.
int vx_tap_configure(struct vx_tap *tap, unsigned queues, struct rte_mempool *pool, char *error, size_t error_len);
// Sets the interface up (best effort: an operator may have moved it to another namespace already).
int vx_tap_set_up(struct vx_tap *tap);
// 1 while every queue's descriptor still reaches an interface (deleted by an operator: 0).
int vx_tap_alive(const struct vx_tap *tap);
struct vx_tap_queue *vx_tap_queue(struct vx_tap *tap, unsigned queue);
unsigned vx_tap_queue_count(const struct vx_tap *tap);
// Sums every queue's counters into out[VX_TAP_STAT_COUNT].
void vx_tap_stats(const struct vx_tap *tap, uint64_t *out);
// Receive buffers the queues hold for their next reads (from the pool given to vx_tap_configure; back at close).
unsigned vx_tap_buffers_held(const struct vx_tap *tap);
// Closes the descriptors (the interface goes) and frees the receive buffers. The queues must be idle.
void vx_tap_close(struct vx_tap *tap);

// The polling core's burst functions: like rte_eth_rx_burst / rte_eth_tx_burst. TX takes ownership of the mbufs
// it reports sent (written, or dropped for bad metadata and counted); the rest stay the caller's.
uint16_t vx_tap_rx_burst(struct vx_tap_queue *q, struct rte_mbuf **pkts, uint16_t n);
uint16_t vx_tap_tx_burst(struct vx_tap_queue *q, struct rte_mbuf **pkts, uint16_t n);

// The header translations, apart from any descriptor (the packet fuzzer drives them).
// Receive: checks `h` against the frame in `m` (pkt_len bytes) and sets m's RX flags; `offloads` is what was
// negotiated. Returns -1 when accepted, else the vx_tap_stat the frame is dropped under.
int vx_vnet_rx_apply(const struct vx_vnet_hdr *h, struct rte_mbuf *m, unsigned offloads);
// Transmit: fills `h` from m's TX offload request (writing the pseudo-header sums the kernel expects and the IPv4
// header checksums DPDK's contract leaves to the NIC). Returns 0, or -1 for metadata that cannot be expressed.
int vx_vnet_tx_fill(struct vx_vnet_hdr *h, struct rte_mbuf *m, unsigned offloads);

#ifdef __cplusplus
}
#endif
#endif
