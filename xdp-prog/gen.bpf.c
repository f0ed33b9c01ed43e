// SPDX-License-Identifier: GPL-2.0 OR Apache-2.0
//
// The traffic generator's XDP program (`pcapgen send --method xdp`). It is never attached to
// an interface: the generator runs it with BPF_PROG_TEST_RUN in live-frames mode
// (BPF_F_TEST_XDP_LIVE_FRAMES), where every run builds one frame in a kernel page-pool page and
// XDP_REDIRECT hands it to the target device's ndo_xdp_xmit. On a veth that puts an xdp_frame
// straight into the peer's receive ring: no skb is built on the way and the receiving NAPI does
// not copy one for XDP, which is what limited the socket-based senders on this rig.
//
// The call is long: user space runs one BPF_PROG_TEST_RUN with a huge repeat count (each call
// creates and destroys a page pool, about 20 ms here) and ends it with a signal. Each run:
//   - sends nothing if user space asked to stop, or if the next frame is not written yet
//     (`next == ready`: the producer thread is behind) or not due yet (pacing: frame n is due
//     at start_ns + n * interval / 2^16, and no sooner than half an interval after the frame
//     before); such a run costs a page-pool recycle, so the thread spins while it waits, as
//     any busy-polling sender does;
//   - otherwise copies slot `next % GEN_SLOTS` of `gen_slots` (a ring that user space fills
//     through mmap, addresses already rewritten for the loop) into the packet, sized to the
//     frame, and redirects it to `gen_ctl.ifindex`.
//
// Built by sensor/build.rs with `clang -O2 -g -target bpf`; loaded with aya.

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

/* Mirrored in sensor/src/gen/xdp_send.rs. */
#define GEN_SLOTS 8192
#define GEN_DATA 2048

struct gen_slot {
    __u8 data[GEN_DATA];
    __u32 len;
    __u32 pad;
};

struct gen_ctl {
    __u64 next;        /* frames sent: the next frame is in slot next % GEN_SLOTS */
    __u64 ready;       /* frames written by user space */
    __u64 start_ns;    /* pacing origin (CLOCK_MONOTONIC) */
    __u64 interval;    /* ns between frames, times 2^16; 0 = as fast as possible */
    __u64 last_ns;     /* when the last frame went out (paced sends only) */
    __u64 bad;         /* frames the helpers refused (should stay 0) */
    __u32 ifindex;     /* where frames are redirected */
    __u32 stop;        /* user space asks the runs to send nothing more */
};

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, GEN_SLOTS);
    __uint(map_flags, BPF_F_MMAPABLE);
    __type(key, __u32);
    __type(value, struct gen_slot);
} gen_slots SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 1);
    __uint(map_flags, BPF_F_MMAPABLE);
    __type(key, __u32);
    __type(value, struct gen_ctl);
} gen_ctl SEC(".maps");

SEC("xdp")
int gen_xdp(struct xdp_md *ctx)
{
    __u32 zero = 0;
    struct gen_ctl *c = bpf_map_lookup_elem(&gen_ctl, &zero);
    if (!c)
        return XDP_ABORTED;
    __u64 n = c->next;
    if (c->stop || n >= c->ready)
        return XDP_DROP;
    if (c->interval) {
        /* Due by the schedule, and at least half an interval after the previous frame: a
         * sender that lost its core for a while catches up at twice the rate, not in a burst
         * that the receiving veth's 256-frame ring could not hold. */
        __u64 now = bpf_ktime_get_ns();
        if (now < c->start_ns + ((n * c->interval) >> 16) ||
            now < c->last_ns + (c->interval >> 17))
            return XDP_DROP;
        c->last_ns = now;
    }
    __u32 idx = (__u32)n & (GEN_SLOTS - 1);
    struct gen_slot *s = bpf_map_lookup_elem(&gen_slots, &idx);
    if (!s)
        return XDP_ABORTED;
    c->next = n + 1;
    __u32 len = s->len;
    if (len < 14 || len > GEN_DATA - 1)
        goto bad;
    int cur = (int)bpf_xdp_get_buff_len(ctx);
    if (bpf_xdp_adjust_tail(ctx, (int)len - cur))
        goto bad;
    if (bpf_xdp_store_bytes(ctx, 0, s->data, len))
        goto bad;
    return bpf_redirect(c->ifindex, 0);
bad:
    c->bad++;
    return XDP_DROP;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
