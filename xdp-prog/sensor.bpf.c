// SPDX-License-Identifier: GPL-2.0 OR Apache-2.0
//
// The sensor's XDP program. For every frame on the interface it:
//   1. counts it (per-CPU counters, index constants below, mirrored in
//      sensor/src/capture/xdp.rs);
//   2. drops it if its source or destination address is in a blocklisted CIDR (LPM trie;
//      entries expire at a CLOCK_MONOTONIC time in ns, 0 = never; looked up only while the
//      blocklist has entries: user space sets CFG_BLOCKLIST then);
//   3. passes it to the kernel, uncaptured, if a capture filter is on and it does not match
//      (CIDR trie on either address, port set on either port);
//   4. if its flow is in the bypass map (its metadata is already extracted), adds it to that
//      entry's counters and drops it: user space never copies it. TCP segments with SYN, FIN
//      or RST are never bypassed, so the flow table still sees a flow open and close;
//   5. otherwise redirects it to the AF_XDP socket of its rx queue (XSKMAP); with no socket on
//      that queue the frame goes to the kernel and is counted.
//
// Built by sensor/build.rs with `clang -O2 -g -target bpf` (BTF from -g); loaded with aya.
// Parsing covers Ethernet, up to two VLAN tags, IPv4 (any IHL) and IPv6 without extension
// headers; anything else is redirected untouched and decoded in user space.

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define MAX_QUEUES 64

enum counter {
    C_SEEN = 0,
    C_SEEN_BYTES = 1,
    C_REDIRECTED = 2,
    C_NO_SOCKET = 3,
    C_FILTERED = 4,
    C_BLOCKED = 5,
    C_BYPASSED = 6,
    C_BYPASSED_BYTES = 7,
    C_COUNT = 8,
};

#define CFG_FILTER_CIDR 1
#define CFG_FILTER_PORT 2
#define CFG_BYPASS 4
/* Benchmark floor: count every frame and drop it, nothing else. */
#define CFG_DROP_ALL 8
/* The blocklist has entries: look addresses up. User space sets and clears the flag as the
 * list fills and empties, so without entries the two trie lookups (and the clock read) per
 * frame are skipped. */
#define CFG_BLOCKLIST 16

struct lpm_key {
    __u32 prefixlen;
    __u8 addr[16];
};

struct flow_key {
    __u8 src[16];
    __u8 dst[16];
    __u16 sport;
    __u16 dport;
    __u8 proto;
    __u8 pad[3];
};

struct flow_counters {
    __u64 pkts;
    __u64 bytes;
    __u64 last_ns;
};

struct {
    __uint(type, BPF_MAP_TYPE_XSKMAP);
    __uint(max_entries, MAX_QUEUES);
    __type(key, __u32);
    __type(value, __u32);
} xsks SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, C_COUNT);
    __type(key, __u32);
    __type(value, __u64);
} counters SEC(".maps");

/* Index 0: CFG_* flags. */
struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, __u32);
} config SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_LPM_TRIE);
    __uint(max_entries, 4096);
    __uint(map_flags, BPF_F_NO_PREALLOC);
    __type(key, struct lpm_key);
    __type(value, __u8);
} filter_cidrs SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 1024);
    __type(key, __u16);
    __type(value, __u8);
} filter_ports SEC(".maps");

/* CIDR (prefix length over the 16-byte address, IPv4 as IPv4-mapped: 96 + len) -> expiry,
 * CLOCK_MONOTONIC ns; 0 = never. The longest matching prefix decides. */
struct {
    __uint(type, BPF_MAP_TYPE_LPM_TRIE);
    __uint(max_entries, 65536);
    __uint(map_flags, BPF_F_NO_PREALLOC);
    __type(key, struct lpm_key);
    __type(value, __u64);
} blocklist SEC(".maps");

/* One entry per direction of a bypassed flow, keyed as the packet is seen. */
struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 262144);
    __type(key, struct flow_key);
    __type(value, struct flow_counters);
} bypass SEC(".maps");

static __always_inline void count(__u32 idx, __u64 n)
{
    __u64 *c = bpf_map_lookup_elem(&counters, &idx);
    if (c)
        *c += n;
}

static __always_inline void map_v4(__u8 *dst, __be32 a)
{
    __builtin_memset(dst, 0, 10);
    dst[10] = 0xff;
    dst[11] = 0xff;
    __builtin_memcpy(dst + 12, &a, 4);
}

static __always_inline int blocked(struct flow_key *k, __u64 now)
{
    struct lpm_key lk = {.prefixlen = 128};
    __builtin_memcpy(lk.addr, k->src, 16);
    __u64 *exp = bpf_map_lookup_elem(&blocklist, &lk);
    if (exp && (*exp == 0 || *exp > now))
        return 1;
    __builtin_memcpy(lk.addr, k->dst, 16);
    exp = bpf_map_lookup_elem(&blocklist, &lk);
    if (exp && (*exp == 0 || *exp > now))
        return 1;
    return 0;
}

static __always_inline int cidr_match(struct flow_key *k)
{
    struct lpm_key lk = {.prefixlen = 128};
    __builtin_memcpy(lk.addr, k->src, 16);
    if (bpf_map_lookup_elem(&filter_cidrs, &lk))
        return 1;
    __builtin_memcpy(lk.addr, k->dst, 16);
    return bpf_map_lookup_elem(&filter_cidrs, &lk) != 0;
}

static __always_inline int port_match(struct flow_key *k)
{
    if (bpf_map_lookup_elem(&filter_ports, &k->sport))
        return 1;
    return bpf_map_lookup_elem(&filter_ports, &k->dport) != 0;
}

SEC("xdp")
int sensor_xdp(struct xdp_md *ctx)
{
    void *data = (void *)(long)ctx->data;
    void *data_end = (void *)(long)ctx->data_end;
    __u64 len = data_end - data;
    __u32 zero = 0;
    __u32 *cfgp = bpf_map_lookup_elem(&config, &zero);
    __u32 cfg = cfgp ? *cfgp : 0;

    count(C_SEEN, 1);
    count(C_SEEN_BYTES, len);
    if (cfg & CFG_DROP_ALL)
        return XDP_DROP;

    struct flow_key k = {};
    int is_ip = 0;      /* addresses parsed */
    int has_ports = 0;  /* TCP/UDP header parsed, not a fragment */
    int tagged = 0;
    __u8 tcp_flags = 0;

    struct ethhdr *eth = data;
    if ((void *)(eth + 1) > data_end)
        goto redirect;
    __u16 proto = eth->h_proto;
    void *l3 = eth + 1;
#pragma unroll
    for (int i = 0; i < 2; i++) {
        if (proto == bpf_htons(ETH_P_8021Q) || proto == bpf_htons(ETH_P_8021AD)) {
            __u16 *vh = l3;
            if ((void *)(vh + 2) > data_end)
                goto redirect;
            proto = vh[1];
            l3 = vh + 2;
            tagged = 1;
        }
    }

    void *l4 = 0;
    if (proto == bpf_htons(ETH_P_IP)) {
        struct iphdr *ip = l3;
        if ((void *)(ip + 1) > data_end)
            goto redirect;
        __u32 ihl = ip->ihl * 4;
        if (ihl < sizeof(*ip))
            goto redirect;
        map_v4(k.src, ip->saddr);
        map_v4(k.dst, ip->daddr);
        k.proto = ip->protocol;
        is_ip = 1;
        if ((ip->frag_off & bpf_htons(0x3fff)) == 0)
            l4 = (__u8 *)ip + ihl;
    } else if (proto == bpf_htons(ETH_P_IPV6)) {
        struct ipv6hdr *ip6 = l3;
        if ((void *)(ip6 + 1) > data_end)
            goto redirect;
        __builtin_memcpy(k.src, &ip6->saddr, 16);
        __builtin_memcpy(k.dst, &ip6->daddr, 16);
        k.proto = ip6->nexthdr;
        is_ip = 1;
        l4 = ip6 + 1;
    }

    if (l4 && k.proto == IPPROTO_TCP) {
        struct tcphdr *th = l4;
        if ((void *)(th + 1) <= data_end) {
            k.sport = bpf_ntohs(th->source);
            k.dport = bpf_ntohs(th->dest);
            tcp_flags = ((__u8 *)th)[13];
            has_ports = 1;
        }
    } else if (l4 && k.proto == IPPROTO_UDP) {
        struct udphdr *uh = l4;
        if ((void *)(uh + 1) <= data_end) {
            k.sport = bpf_ntohs(uh->source);
            k.dport = bpf_ntohs(uh->dest);
            has_ports = 1;
        }
    }

    if (is_ip && (cfg & CFG_BLOCKLIST) && blocked(&k, bpf_ktime_get_coarse_ns())) {
        count(C_BLOCKED, 1);
        return XDP_DROP;
    }

    if (cfg & (CFG_FILTER_CIDR | CFG_FILTER_PORT)) {
        int ok = is_ip;
        if (ok && (cfg & CFG_FILTER_CIDR))
            ok = cidr_match(&k);
        if (ok && (cfg & CFG_FILTER_PORT))
            ok = has_ports && port_match(&k);
        if (!ok) {
            count(C_FILTERED, 1);
            return XDP_PASS;
        }
    }

    /* SYN 0x02, FIN 0x01, RST 0x04: connection state changes always reach user space. */
    if ((cfg & CFG_BYPASS) && has_ports && !tagged && (tcp_flags & 0x07) == 0) {
        struct flow_counters *fc = bpf_map_lookup_elem(&bypass, &k);
        if (fc) {
            __sync_fetch_and_add(&fc->pkts, 1);
            __sync_fetch_and_add(&fc->bytes, len);
            /* The coarse clock (CLOCK_MONOTONIC as of the last scheduler tick, 1-10 ms) is
             * enough for a last-seen time, as for the blocklist's expiry, and reads no TSC: the
             * precise clock took 8% of the veth NAPI thread's time with bypass on. */
            fc->last_ns = bpf_ktime_get_coarse_ns();
            count(C_BYPASSED, 1);
            count(C_BYPASSED_BYTES, len);
            return XDP_DROP;
        }
    }

redirect:;
    int act = bpf_redirect_map(&xsks, ctx->rx_queue_index, XDP_PASS);
    if (act == XDP_REDIRECT)
        count(C_REDIRECTED, 1);
    else
        count(C_NO_SOCKET, 1);
    return act;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
