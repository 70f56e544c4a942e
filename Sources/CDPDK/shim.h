// The slice of DPDK the dataplane uses, plus static inline accessors for what Swift cannot import:
// struct rte_mbuf arrives in Swift as an OpaquePointer, and macros such as rte_pktmbuf_mtod or
// rte_errno do not import at all. Everything here is static inline so the Swift hot path inlines it.
#ifndef VXLAN_CDPDK_SHIM_H
#define VXLAN_CDPDK_SHIM_H

// Debian's libdpdk.pc passes `-include rte_config.h`, which SwiftPM drops: include it first ourselves.
#include <rte_config.h>

#include <stdint.h>
#include <string.h>
#include <rte_common.h>
#include <rte_errno.h>
#include <rte_eal.h>
#include <rte_lcore.h>
#include <rte_launch.h>
#include <rte_cycles.h>
#include <rte_memory.h>
#include <rte_malloc.h>
#include <rte_mempool.h>
#include <rte_mbuf.h>
#include <rte_ring.h>
#include <rte_ethdev.h>
#include <rte_eth_ring.h>
#include <rte_bus_vdev.h>
#include <rte_ether.h>
#include <rte_ip.h>
#include <rte_udp.h>
#include <rte_hash.h>
#include <rte_hash_crc.h>
#include <rte_jhash.h>
#include <rte_prefetch.h>
#include <rte_version.h>
#include <rte_rcu_qsbr.h>
#include <rte_arp.h>
#include <rte_icmp.h>
#include <rte_tcp.h>
#include <rte_net.h>
#include <rte_gso.h>
#include <rte_dev.h>
#include <sys/prctl.h>
#include <rte_devargs.h>
#include <rte_gro.h>
#include <rte_ip_frag.h>
#include <rte_telemetry.h>
#include <rte_pdump.h>
#include <rte_eth_vhost.h>
#include <rte_vhost.h>

typedef struct rte_mbuf vx_mbuf;

// --- errors -----------------------------------------------------------------------------------
static inline int vx_errno(void) { return rte_errno; }

// --- mbuf fields ------------------------------------------------------------------------------
static inline void * _Nonnull vx_mbuf_data(struct rte_mbuf *m) { return rte_pktmbuf_mtod(m, void *); }
static inline uint16_t vx_mbuf_data_len(const struct rte_mbuf *m) { return m->data_len; }
static inline uint32_t vx_mbuf_pkt_len(const struct rte_mbuf *m) { return m->pkt_len; }
static inline uint16_t vx_mbuf_nb_segs(const struct rte_mbuf *m) { return m->nb_segs; }
static inline uint16_t vx_mbuf_headroom(const struct rte_mbuf *m) { return rte_pktmbuf_headroom(m); }
static inline uint16_t vx_mbuf_tailroom(const struct rte_mbuf *m) { return rte_pktmbuf_tailroom(m); }
static inline uint16_t vx_mbuf_port(const struct rte_mbuf *m) { return m->port; }
static inline uint64_t vx_mbuf_ol_flags(const struct rte_mbuf *m) { return m->ol_flags; }
static inline void vx_mbuf_set_ol_flags(struct rte_mbuf *m, uint64_t f) { m->ol_flags = f; }
static inline uint32_t vx_mbuf_packet_type(const struct rte_mbuf *m) { return m->packet_type; }
static inline void vx_mbuf_set_packet_type(struct rte_mbuf *m, uint32_t t) { m->packet_type = t; }
static inline uint32_t vx_mbuf_rss_hash(const struct rte_mbuf *m) { return m->hash.rss; }
static inline int vx_mbuf_has_rss_hash(const struct rte_mbuf *m) { return (m->ol_flags & RTE_MBUF_F_RX_RSS_HASH) != 0; }
static inline uint16_t vx_mbuf_vlan_tci(const struct rte_mbuf *m) { return m->vlan_tci; }
static inline struct rte_mbuf *vx_mbuf_next(const struct rte_mbuf *m) { return m->next; }
static inline struct rte_mempool *vx_mbuf_pool(const struct rte_mbuf *m) { return m->pool; }

// Offload metadata (DPDK's tunnel TX contract: l2_len covers outer UDP + VXLAN + inner Ethernet).
static inline void vx_mbuf_set_tx_lengths(struct rte_mbuf *m, uint16_t outer_l2, uint16_t outer_l3,
                                          uint16_t l2, uint16_t l3, uint16_t l4) {
    m->outer_l2_len = outer_l2; m->outer_l3_len = outer_l3;
    m->l2_len = l2; m->l3_len = l3; m->l4_len = l4;
}
static inline uint16_t vx_mbuf_l2_len(const struct rte_mbuf *m) { return m->l2_len; }
static inline uint16_t vx_mbuf_l3_len(const struct rte_mbuf *m) { return m->l3_len; }
static inline uint16_t vx_mbuf_l4_len(const struct rte_mbuf *m) { return m->l4_len; }
static inline uint16_t vx_mbuf_outer_l2_len(const struct rte_mbuf *m) { return m->outer_l2_len; }
static inline uint16_t vx_mbuf_outer_l3_len(const struct rte_mbuf *m) { return m->outer_l3_len; }
static inline uint16_t vx_mbuf_tso_segsz(const struct rte_mbuf *m) { return m->tso_segsz; }
static inline void vx_mbuf_set_tso_segsz(struct rte_mbuf *m, uint16_t s) { m->tso_segsz = s; }

// --- mbuf operations --------------------------------------------------------------------------
static inline struct rte_mbuf *vx_mbuf_alloc(struct rte_mempool *mp) { return rte_pktmbuf_alloc(mp); }
static inline int vx_mbuf_alloc_bulk(struct rte_mempool *mp, struct rte_mbuf **ms, unsigned n) {
    return rte_pktmbuf_alloc_bulk(mp, ms, n);
}
static inline void vx_mbuf_free(struct rte_mbuf *m) { rte_pktmbuf_free(m); }
static inline void vx_mbuf_free_bulk(struct rte_mbuf **ms, unsigned n) { rte_pktmbuf_free_bulk(ms, n); }
/// Grows the packet at the front; NULL when the first segment lacks headroom.
static inline uint8_t *vx_mbuf_prepend(struct rte_mbuf *m, uint16_t len) {
    return (uint8_t *)rte_pktmbuf_prepend(m, len);
}
/// Removes bytes from the front; NULL when the first segment is shorter.
static inline uint8_t *vx_mbuf_adj(struct rte_mbuf *m, uint16_t len) { return (uint8_t *)rte_pktmbuf_adj(m, len); }
/// Removes bytes from the end; non-zero when the last segment is shorter.
// rte_pktmbuf_trim cuts the last buffer only, and leaves it in the chain when it empties it: a zero-length buffer
// that some NICs refuse or stall on. An emptied last buffer is unlinked and freed.
static inline int vx_mbuf_trim(struct rte_mbuf *m, uint16_t len) {
    if (rte_pktmbuf_trim(m, len) != 0) return -1;
    if (m->nb_segs > 1) {
        struct rte_mbuf *prev = m, *last = m->next;
        while (last->next != NULL) { prev = last; last = last->next; }
        if (last->data_len == 0) { prev->next = NULL; m->nb_segs--; rte_pktmbuf_free_seg(last); }
    }
    return 0;
}
/// Keeps the first `len` bytes, which must lie in the first buffer (an answer built in place from a longer request):
/// the rest of the chain is freed. Non-zero, and nothing changed, when they do not.
static inline int vx_mbuf_truncate(struct rte_mbuf *m, uint16_t len) {
    if (len > m->data_len) return -1;
    if (m->next != NULL) { rte_pktmbuf_free(m->next); m->next = NULL; m->nb_segs = 1; }
    m->data_len = len;
    m->pkt_len = len;
    return 0;
}
static inline uint8_t *vx_mbuf_append(struct rte_mbuf *m, uint16_t len) { return (uint8_t *)rte_pktmbuf_append(m, len); }
static inline void vx_prefetch0(const void *p) { rte_prefetch0(p); }
/// Removes the outer 802.1Q tag (moving the MACs up 4 bytes); non-zero when the frame carries none.
static inline int vx_vlan_strip(struct rte_mbuf *m) { return rte_vlan_strip(m); }
/// Inserts an 802.1Q tag with `tci`; non-zero without 4 bytes of headroom or when the mbuf is shared.
static inline int vx_vlan_insert(struct rte_mbuf *m, uint16_t tci) { m->vlan_tci = tci; return rte_vlan_insert(&m); }
static inline void vx_mbuf_prefetch_data(struct rte_mbuf *m) { rte_prefetch0(rte_pktmbuf_mtod(m, void *)); }
/// Prefetches, for writing, the cache line in front of the packet data that encapsulation will write into.
static inline void vx_mbuf_prefetch_headroom_for_write(struct rte_mbuf *m) {
    __builtin_prefetch(rte_pktmbuf_mtod(m, uint8_t *) - 64, 1, 3);
}

// --- flag constants (defined as RTE_BIT64() macros, which Swift cannot import) ---------------------
static inline uint64_t vx_rss_ip_udp_tcp(void) { return RTE_ETH_RSS_IP | RTE_ETH_RSS_UDP | RTE_ETH_RSS_TCP; }
static inline uint64_t vx_tx_offload_multi_segs(void) { return RTE_ETH_TX_OFFLOAD_MULTI_SEGS; }
static inline uint64_t vx_tx_offload_ipv4_cksum(void) { return RTE_ETH_TX_OFFLOAD_IPV4_CKSUM; }
static inline uint64_t vx_tx_offload_outer_ipv4_cksum(void) { return RTE_ETH_TX_OFFLOAD_OUTER_IPV4_CKSUM; }
static inline uint64_t vx_tx_offload_outer_udp_cksum(void) { return RTE_ETH_TX_OFFLOAD_OUTER_UDP_CKSUM; }
static inline uint64_t vx_tx_offload_vxlan_tnl_tso(void) { return RTE_ETH_TX_OFFLOAD_VXLAN_TNL_TSO; }
static inline uint64_t vx_tx_offload_mbuf_fast_free(void) { return RTE_ETH_TX_OFFLOAD_MBUF_FAST_FREE; }
static inline uint64_t vx_tx_offload_tcp_tso(void) { return RTE_ETH_TX_OFFLOAD_TCP_TSO; }
static inline uint64_t vx_tx_offload_tcp_cksum(void) { return RTE_ETH_TX_OFFLOAD_TCP_CKSUM; }
static inline uint64_t vx_tx_offload_udp_cksum(void) { return RTE_ETH_TX_OFFLOAD_UDP_CKSUM; }
static inline uint64_t vx_rx_offload_tcp_cksum(void) { return RTE_ETH_RX_OFFLOAD_TCP_CKSUM; }
static inline uint64_t vx_rx_offload_udp_cksum(void) { return RTE_ETH_RX_OFFLOAD_UDP_CKSUM; }
static inline uint64_t vx_rx_offload_ipv4_cksum(void) { return RTE_ETH_RX_OFFLOAD_IPV4_CKSUM; }
static inline uint64_t vx_rx_offload_scatter(void) { return RTE_ETH_RX_OFFLOAD_SCATTER; }
static inline uint64_t vx_rx_offload_tcp_lro(void) { return RTE_ETH_RX_OFFLOAD_TCP_LRO; }
static inline uint64_t vx_rx_offload_outer_ipv4_cksum(void) { return RTE_ETH_RX_OFFLOAD_OUTER_IPV4_CKSUM; }
static inline uint64_t vx_rx_offload_outer_udp_cksum(void) { return RTE_ETH_RX_OFFLOAD_OUTER_UDP_CKSUM; }
/* Tells the port that UDP to udp_port is VXLAN (parsing, RSS, checksums of the inner headers), where it can. */
static inline int vx_udp_tunnel_port_add(uint16_t port_id, uint16_t udp_port, uint8_t type) {
    struct rte_eth_udp_tunnel t = { .udp_port = udp_port, .prot_type = type };
    return rte_eth_dev_udp_tunnel_port_add(port_id, &t);
}

// The devargs a port was created with ("iface=dpacc,framesz=..."), or NULL.
static inline const char *vx_port_devargs(uint16_t port) {
    struct rte_eth_dev_info info;
    if (rte_eth_dev_info_get(port, &info) != 0 || info.device == NULL) return NULL;
    struct rte_devargs *da = rte_dev_devargs(info.device);
    return da == NULL ? NULL : da->args;
}

// TX metadata of one mbuf, all at once (DPDK's offload contract: see TxOffloads.swift).
static inline void vx_mbuf_set_tx_offload(struct rte_mbuf *m, uint64_t ol_flags, uint16_t outer_l2, uint16_t outer_l3,
                                          uint16_t l2, uint16_t l3, uint16_t l4, uint16_t tso_segsz) {
    m->ol_flags = (m->ol_flags & ~RTE_MBUF_F_TX_OFFLOAD_MASK) | ol_flags;
    m->outer_l2_len = outer_l2; m->outer_l3_len = outer_l3;
    m->l2_len = l2; m->l3_len = l3; m->l4_len = l4;
    m->tso_segsz = tso_segsz;
}
// Writes the complete TCP or UDP checksum of the IPv4/IPv6 packet whose IP header starts at l3_off and L4 header
// at l4_off (headers in the first segment, payload anywhere in the chain). The L4 length comes from the IP header.
// Returns -1 (writing nothing) when the headers or lengths do not fit the mbuf.
static inline int vx_l4_cksum_fill(struct rte_mbuf *m, uint16_t l3_off, uint16_t l4_off, int ipv6, int udp) {
    uint8_t *base = rte_pktmbuf_mtod(m, uint8_t *);
    uint32_t field = (uint32_t)l4_off + (udp ? 6u : 16u);
    if (field + 2 > m->data_len || l4_off < l3_off) return -1;
    uint32_t len, sum;
    if (ipv6) {
        const struct rte_ipv6_hdr *ip = (const struct rte_ipv6_hdr *)(base + l3_off);
        len = rte_be_to_cpu_16(ip->payload_len) - (uint32_t)(l4_off - l3_off - 40);
        sum = rte_ipv6_phdr_cksum(ip, 0);
    } else {
        const struct rte_ipv4_hdr *ip = (const struct rte_ipv4_hdr *)(base + l3_off);
        len = (uint32_t)rte_be_to_cpu_16(ip->total_length) - (uint32_t)(l4_off - l3_off);
        sum = rte_ipv4_phdr_cksum(ip, 0);
    }
    if ((uint64_t)l4_off + len > m->pkt_len || len < (udp ? 8u : 20u)) return -1;
    *(uint16_t *)(base + field) = 0;
    uint16_t raw = 0;
    if (rte_raw_cksum_mbuf(m, l4_off, len, &raw) != 0) return -1;
    sum += raw;
    sum = (sum >> 16) + (sum & 0xffff);
    sum += sum >> 16;
    uint16_t c = (uint16_t)~sum;
    if (c == 0 && udp) c = 0xffff;
    *(uint16_t *)(base + field) = c;
    return 0;
}

// Recomputes an IPv4 header checksum in place.
static inline void vx_ipv4_cksum_fill(void *ip) {
    struct rte_ipv4_hdr *h = (struct rte_ipv4_hdr *)ip;
    h->hdr_checksum = 0;
    h->hdr_checksum = rte_ipv4_cksum(h);
}

// rte_gso_segment with a context built from its parts (the struct's layout stays in C).
static inline int vx_gso_segment(struct rte_mbuf *m, struct rte_mempool *direct, struct rte_mempool *indirect,
                                 uint64_t gso_types, uint16_t gso_size, struct rte_mbuf **out, uint16_t n_out) {
    struct rte_gso_ctx ctx = { .direct_pool = direct, .indirect_pool = indirect, .gso_types = gso_types,
                               .gso_size = gso_size, .flag = 0 };
    return rte_gso_segment(m, &ctx, out, n_out);
}

// A copy of [offset, offset+len) of m into new mbufs from mp (chained when longer than one), or NULL.
static inline struct rte_mbuf *vx_mbuf_copy_range(const struct rte_mbuf *m, struct rte_mempool *mp, uint32_t offset, uint32_t len) {
    return rte_pktmbuf_copy(m, mp, offset, len);
}
static inline int vx_mbuf_chain(struct rte_mbuf *head, struct rte_mbuf *tail) { return rte_pktmbuf_chain(head, tail); }
static inline const void *vx_mbuf_read(const struct rte_mbuf *m, uint32_t off, uint32_t len, void *buf) {
    return rte_pktmbuf_read(m, off, len, buf);
}
static inline uint64_t vx_tsc(void) { return rte_rdtsc(); }
/* The calling thread's timer slack (prctl is variadic: Swift cannot call it). */
static inline int vx_set_timer_slack_ns(unsigned long ns) { return prctl(PR_SET_TIMERSLACK, ns, 0, 0, 0); }
static inline uint64_t vx_tsc_hz(void) { return rte_get_tsc_hz(); }

// Packet type and header lengths from the bytes (virtual devices fill neither), as rte_gro needs them.
static inline uint32_t vx_mbuf_classify(struct rte_mbuf *m) {
    struct rte_net_hdr_lens lens;
    uint32_t ptype = rte_net_get_ptype(m, &lens, RTE_PTYPE_ALL_MASK);
    m->packet_type = ptype;
    m->l2_len = lens.l2_len; m->l3_len = lens.l3_len; m->l4_len = lens.l4_len;
    return ptype;
}
static inline int vx_ptype_is_ipv4_tcp(uint32_t ptype) {
    return RTE_ETH_IS_IPV4_HDR(ptype) && (ptype & RTE_PTYPE_L4_MASK) == RTE_PTYPE_L4_TCP && (ptype & RTE_PTYPE_TUNNEL_MASK) == 0;
}
// TCP/IPv4 GRO over a burst in lightweight mode (DPDK's rte_gro): merges in place, returns the new count.
static inline uint16_t vx_gro_tcp4_burst(struct rte_mbuf **pkts, uint16_t n) {
    struct rte_gro_param p = { .gro_types = RTE_GRO_TCP_IPV4, .max_flow_num = 64, .max_item_per_flow = 64, .socket_id = 0 };
    return rte_gro_reassemble_burst(pkts, n, &p);
}
// Whether the guest behind vhost-user port `port` takes TCP segmentation and partial checksums (GUEST_TSO4/6,
// GUEST_CSUM); 0 while no guest is attached.
static inline int vx_vhost_guest_takes_tso(uint16_t port) {
    int vid = rte_eth_vhost_get_vid_from_port_id(port);
    uint64_t f = 0;
    if (vid < 0 || rte_vhost_get_negotiated_features(vid, &f) != 0) return 0;
    return (f & (1ULL << VIRTIO_NET_F_GUEST_CSUM)) && (f & (1ULL << VIRTIO_NET_F_GUEST_TSO4)) && (f & (1ULL << VIRTIO_NET_F_GUEST_TSO6));
}
static inline void vx_mbuf_clear_tx_offload(struct rte_mbuf *m) { m->ol_flags &= ~RTE_MBUF_F_TX_OFFLOAD_MASK; }
static inline uint16_t vx_mbuf_refcnt(const struct rte_mbuf *m) { return rte_mbuf_refcnt_read(m); }
static inline int vx_mbuf_is_indirect(const struct rte_mbuf *m) { return RTE_MBUF_CLONED(m) ? 1 : 0; }
static inline uint16_t vx_mbuf_data_room(const struct rte_mempool *mp) { return rte_pktmbuf_data_room_size((struct rte_mempool *)mp); }


// --- mempool (struct rte_mempool does not import either) --------------------------------------
static inline struct rte_mempool *vx_pktmbuf_pool_create(const char *name, unsigned n, unsigned cache,
                                                         uint16_t data_room, int socket) {
    return rte_pktmbuf_pool_create(name, n, cache, 0, data_room, socket);
}

// --- cross-thread publication (slow path writes, polling cores read) ----------------------------
static inline int32_t vx_load_acquire_i32(const int32_t *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
static inline void vx_store_release_i32(int32_t *p, int32_t v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }
static inline uint64_t vx_load_acquire_u64(const uint64_t *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
static inline void vx_store_release_u64(uint64_t *p, uint64_t v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }
static inline void vx_store_release_u8(uint8_t *p, uint8_t v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }
static inline uint8_t vx_load_acquire_u8(const uint8_t *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
static inline void vx_store_release_u32(uint32_t *p, uint32_t v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }
static inline uint32_t vx_load_acquire_u32(const uint32_t *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
/* A pointer published to the polling cores (a VNI's block): stored complete, loaded before use. */
static inline void *vx_load_acquire_ptr(void *p) { return __atomic_load_n((void **)p, __ATOMIC_ACQUIRE); }
static inline void vx_store_release_ptr(void *p, void *v) { __atomic_store_n((void **)p, v, __ATOMIC_RELEASE); }

// --- rings and RCU (struct rte_ring / rte_rcu_qsbr are opaque to Swift) ---------------------------
static inline int vx_ring_enqueue(struct rte_ring *r, void *obj) { return rte_ring_enqueue(r, obj); }
static inline unsigned vx_ring_dequeue_burst(struct rte_ring *r, void **objs, unsigned n) {
    return rte_ring_dequeue_burst(r, objs, n, NULL);
}
static inline unsigned vx_ring_count(const struct rte_ring *r) { return rte_ring_count(r); }
/// Rings of 32-byte records (learning events): created with rte_ring_create_elem(name, 32, ...).
static inline struct rte_ring *vx_ring32_create(const char *name, unsigned count) {
    return rte_ring_create_elem(name, 32, count, SOCKET_ID_ANY, RING_F_SP_ENQ | RING_F_SC_DEQ);
}
static inline int vx_ring32_enqueue(struct rte_ring *r, uint64_t w0, uint64_t w1, uint64_t w2, uint64_t w3) {
    uint64_t obj[4] = { w0, w1, w2, w3 };
    return rte_ring_enqueue_elem(r, obj, 32);
}
static inline unsigned vx_ring32_dequeue_burst(struct rte_ring *r, uint64_t *out, unsigned n) {
    return rte_ring_dequeue_burst_elem(r, out, 32, n, NULL);
}
static inline void vx_qsbr_quiescent(struct rte_rcu_qsbr *v, unsigned id) { rte_rcu_qsbr_quiescent(v, id); }
static inline void vx_qsbr_online(struct rte_rcu_qsbr *v, unsigned id) { rte_rcu_qsbr_thread_online(v, id); }
static inline void vx_qsbr_offline(struct rte_rcu_qsbr *v, unsigned id) { rte_rcu_qsbr_thread_offline(v, id); }
static inline uint64_t vx_qsbr_start(struct rte_rcu_qsbr *v) { return rte_rcu_qsbr_start(v); }
/// 1 when every online reader has passed a quiescent state since `token` was taken; never waits.
static inline int vx_qsbr_check(struct rte_rcu_qsbr *v, uint64_t token) { return rte_rcu_qsbr_check(v, token, false); }
// DPDK's RCU defer queue: 16-byte elements, each freed by `fn(p, element, 1)` once every reader passed a quiescent
// state since it was queued. Reclaimed only when asked (and by DPDK itself when the queue is full).
static inline struct rte_rcu_qsbr_dq *vx_dq_create(const char *name, uint32_t size, struct rte_rcu_qsbr *v,
                                                   rte_rcu_qsbr_free_resource_t fn, void *p) {
    struct rte_rcu_qsbr_dq_parameters params = { .name = name, .flags = 0, .size = size, .esize = 16,
        .trigger_reclaim_limit = size + 1, .max_reclaim_size = size, .free_fn = fn, .p = p, .v = v };
    return rte_rcu_qsbr_dq_create(&params);
}
static inline int vx_dq_enqueue(struct rte_rcu_qsbr_dq *dq, uint64_t kind, uint64_t value) {
    uint64_t e[2] = { kind, value };
    return rte_rcu_qsbr_dq_enqueue(dq, e);
}
static inline unsigned vx_dq_reclaim(struct rte_rcu_qsbr_dq *dq) {
    unsigned freed = 0, pending = 0, available = 0;
    rte_rcu_qsbr_dq_reclaim(dq, UINT32_MAX, &freed, &pending, &available);
    return pending;
}
static inline int vx_dq_delete(struct rte_rcu_qsbr_dq *dq) { return rte_rcu_qsbr_dq_delete(dq); }

// --- IPv6 checksums ---------------------------------------------------------------------------
/// Folded ones'-complement sum of `len` bytes at `off` in the packet (across segments), native word order.
static inline uint16_t vx_mbuf_raw_cksum(const struct rte_mbuf *m, uint32_t off, uint32_t len) {
    uint16_t sum = 0;
    if (rte_raw_cksum_mbuf(m, off, len, &sum) != 0) return 0;
    return sum;
}
/// 0 when the UDP (or ICMPv6) checksum of the IPv6 packet at `l3_off` (next header at `l4_off`) is right.
static inline int vx_ipv6_l4_cksum_verify(const struct rte_mbuf *m, uint16_t l3_off, uint16_t l4_off) {
    const struct rte_ipv6_hdr *ip6 = rte_pktmbuf_mtod_offset(m, const struct rte_ipv6_hdr *, l3_off);
    return rte_ipv6_udptcp_cksum_mbuf_verify(m, ip6, l4_off);
}
/// The UDP/ICMPv6 checksum for the IPv6 header at `ip6` and its upper layer at `l4` (contiguous).
static inline uint16_t vx_ipv6_l4_cksum(const void *ip6, const void *l4) {
    return rte_ipv6_udptcp_cksum((const struct rte_ipv6_hdr *)ip6, l4);
}

// --- lcores -----------------------------------------------------------------------------------
static inline unsigned vx_lcore_id(void) { return rte_lcore_id(); }
static inline unsigned vx_socket_id(void) { return rte_socket_id(); }

// --- checksums and hashes ----------------------------------------------------------------------
static inline uint16_t vx_ipv4_cksum(const void *ip) { return rte_ipv4_cksum((const struct rte_ipv4_hdr *)ip); }
/// Folded 16-bit ones'-complement sum of native-order words (0xFFFF over a header whose checksum is right).
static inline uint16_t vx_raw_cksum(const void *buf, size_t len) { return rte_raw_cksum(buf, len); }
// CRC32-C. rte_hash_crc chooses SSE4.2 through a static variable that a constructor in the header sets; that
// constructor never runs for the copy of the header Swift compiles, which would leave it on the table-driven
// software CRC. Use the instruction directly where the build targets it (-march=corei7 has SSE4.2).
#if defined(__SSE4_2__) && defined(RTE_ARCH_X86_64)
#include <nmmintrin.h>
static inline uint32_t vx_hash_crc_4byte(uint32_t data, uint32_t init) { return _mm_crc32_u32(init, data); }
static inline uint32_t vx_hash_crc_8byte(uint64_t data, uint32_t init) { return (uint32_t)_mm_crc32_u64(init, data); }
static inline uint32_t vx_hash_crc(const void *data, uint32_t len, uint32_t init) {
    const uint8_t *p = (const uint8_t *)data;
    uint64_t crc = init;
    for (; len >= 8; len -= 8, p += 8) { uint64_t w; memcpy(&w, p, 8); crc = _mm_crc32_u64(crc, w); }
    uint32_t c = (uint32_t)crc;
    for (; len > 0; len--, p++) c = _mm_crc32_u8(c, *p);
    return c;
}
#else
static inline uint32_t vx_hash_crc(const void *data, uint32_t len, uint32_t init) { return rte_hash_crc(data, len, init); }
static inline uint32_t vx_hash_crc_4byte(uint32_t data, uint32_t init) { return rte_hash_crc_4byte(data, init); }
static inline uint32_t vx_hash_crc_8byte(uint64_t data, uint32_t init) { return rte_hash_crc_8byte(data, init); }
#endif

// The Swift fast path uses DPDK's flag values as literal constants (PollMode's `MbufFlag`, `RxChecksums`), so that
// they fold into the code. DPDK's own values, in this order, for the test that compares every Swift constant with
// them (MbufFlagTests); most of DPDK's macros are expressions Swift cannot import.
static inline uint64_t vx_dpdk_flag(unsigned i) {
    static const uint64_t values[] = {
        RTE_MBUF_F_RX_L4_CKSUM_MASK,
        RTE_MBUF_F_RX_L4_CKSUM_NONE,
        RTE_MBUF_F_RX_L4_CKSUM_BAD,
        RTE_MBUF_F_RX_L4_CKSUM_GOOD,
        RTE_MBUF_F_RX_IP_CKSUM_MASK,
        RTE_MBUF_F_RX_IP_CKSUM_BAD,
        RTE_MBUF_F_RX_IP_CKSUM_GOOD,
        RTE_MBUF_F_RX_IP_CKSUM_NONE,
        RTE_MBUF_F_RX_OUTER_IP_CKSUM_BAD,
        RTE_MBUF_F_RX_OUTER_L4_CKSUM_MASK,
        RTE_MBUF_F_RX_OUTER_L4_CKSUM_BAD,
        RTE_MBUF_F_RX_OUTER_L4_CKSUM_GOOD,
        RTE_MBUF_F_RX_OUTER_L4_CKSUM_INVALID,
        RTE_MBUF_F_RX_LRO,
        RTE_MBUF_F_INDIRECT | RTE_MBUF_F_EXTERNAL,
        RTE_MBUF_F_TX_OUTER_UDP_CKSUM,
        RTE_MBUF_F_TX_UDP_SEG,
        RTE_MBUF_F_TX_SEC_OFFLOAD,
        RTE_MBUF_F_TX_MACSEC,
        RTE_MBUF_F_TX_TUNNEL_VXLAN,
        RTE_MBUF_F_TX_TUNNEL_MASK,
        RTE_MBUF_F_TX_QINQ,
        RTE_MBUF_F_TX_TCP_SEG,
        RTE_MBUF_F_TX_IEEE1588_TMST,
        RTE_MBUF_F_TX_TCP_CKSUM,
        RTE_MBUF_F_TX_UDP_CKSUM,
        RTE_MBUF_F_TX_L4_MASK,
        RTE_MBUF_F_TX_IP_CKSUM,
        RTE_MBUF_F_TX_IPV4,
        RTE_MBUF_F_TX_IPV6,
        RTE_MBUF_F_TX_VLAN,
        RTE_MBUF_F_TX_OUTER_IP_CKSUM,
        RTE_MBUF_F_TX_OUTER_IPV4,
        RTE_MBUF_F_TX_OUTER_IPV6,
        RTE_PTYPE_TUNNEL_MASK,
    };
    return i < sizeof(values) / sizeof(values[0]) ? values[i] : UINT64_MAX;
}

#endif
