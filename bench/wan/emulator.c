// wan-emulator: a packet-level WAN between two network interfaces, for the benchmark.
//
// Every Ethernet frame read from one interface is written to the other after a fixed
// one-way delay, in the order it arrived, unless it is lost (a given probability) or
// the direction's queue is full (a router's buffer: dropped and counted). Both
// directions, one thread, no allocation after start. It is not a proxy: TCP sees the
// same segments, only later and sometimes not at all. Frames are read from a TPACKET_V3
// ring (no system call or kernel copy per frame, and the kernel's receive time of each)
// and written with sendmmsg, in batches.
//
//   wan-emulator --a IFACE --b IFACE [--delay-ms 25] [--loss 0.0001] [--queue-frames 16384] [--seed N]
//
// The interfaces must carry MTU-sized frames (GRO/GSO/TSO and checksum offload off on
// both sides, see bench/wan/lab.ts): a frame larger than a slot is dropped and counted
// as "oversize". Prints "wan-emulator ready" on start, its counters as one JSON line on
// SIGUSR1, and again on SIGTERM/SIGINT before it exits 0.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#ifndef PACKET_IGNORE_OUTGOING
#define PACKET_IGNORE_OUTGOING 23
#endif

#define SLOT 2048   // bytes per queued frame: a 1500-byte MTU frame and its Ethernet header
#define BATCH 64    // frames per sendmmsg
// While frames wait, the loop wakes on a timer every TICK and sends what is due within half
// a tick (so a frame leaves within +-50 us of its time), rather than on every arrival: at a
// few Gbit/s that batches tens of frames per system call instead of one.
#define TICK_NS 100000LL
#define LATE_NS 1000000LL

struct counters {
  uint64_t passed, passed_bytes, lost, queue_full, oversize, send_errors;
  uint64_t pushed_back;  // times the device refused a frame (its receiver was behind)
  uint64_t late;        // frames that left more than LATE_NS after their time (the loop fell behind)
  int64_t late_max_ns;  // the latest a frame left after its time
};

// A TPACKET_V3 receive ring, mapped.
struct ring {
  uint8_t *map;
  uint32_t blocks, next;
};

// One direction: frames read from `in`, waiting for their time, then written to `out`.
struct direction {
  const char *name;
  int in, out;
  struct ring rx;  // the `in` socket's receive ring
  uint8_t *frames;  // queue_frames slots of SLOT bytes
  uint32_t *len;
  int64_t *due;     // monotonic ns
  uint32_t head, count;
  struct counters c;
};

static volatile sig_atomic_t stop_requested, report_requested;
static uint32_t queue_frames = 16384;
static int64_t delay_ns = 25 * 1000000LL;
static uint64_t loss_threshold;  // a frame is lost when rng() < loss_threshold
static uint64_t rng_state = 0x9E3779B97F4A7C15ULL;
#define RING_BLOCK (1u << 20)
#define RING_BLOCKS 32u  // 32 MiB per interface: 50 ms of 5 Gbit/s, drained every tick

static void on_signal(int sig) {
  if (sig == SIGUSR1) report_requested = 1;
  else stop_requested = 1;
}

static int64_t clock_ns(clockid_t clock) {
  struct timespec t;
  clock_gettime(clock, &t);
  return (int64_t)t.tv_sec * 1000000000LL + t.tv_nsec;
}
static int64_t now_ns(void) { return clock_ns(CLOCK_MONOTONIC); }
static int64_t wall_ns(void) { return clock_ns(CLOCK_REALTIME); }

// xorshift64*: fast, and good enough to pick one frame in ten thousand.
static uint64_t rng(void) {
  rng_state ^= rng_state >> 12;
  rng_state ^= rng_state << 25;
  rng_state ^= rng_state >> 27;
  return rng_state * 0x2545F4914F6CDD1DULL;
}

static void die(const char *what, const char *detail) {
  fprintf(stderr, "wan-emulator: %s%s%s: %s\n", what, detail ? " " : "", detail ? detail : "", strerror(errno));
  exit(1);
}

// A raw socket on one interface that sees every frame arriving there (not the ones it sends).
static int open_port(const char *ifname) {
  unsigned idx = if_nametoindex(ifname);
  if (idx == 0) die("no interface", ifname);
  int fd = socket(AF_PACKET, SOCK_RAW | SOCK_NONBLOCK, htons(ETH_P_ALL));
  if (fd < 0) die("cannot open a packet socket (needs CAP_NET_RAW) for", ifname);
  int version = TPACKET_V3;
  if (setsockopt(fd, SOL_PACKET, PACKET_VERSION, &version, sizeof version) < 0) die("TPACKET_V3 on", ifname);
  // A block is handed over when full or 1 ms after its first frame; each frame keeps its own
  // receive time, so the hand-over does not add to the delay.
  struct tpacket_req3 req = {.tp_block_size = RING_BLOCK, .tp_block_nr = RING_BLOCKS, .tp_frame_size = SLOT, .tp_frame_nr = RING_BLOCK / SLOT * RING_BLOCKS, .tp_retire_blk_tov = 1};
  if (setsockopt(fd, SOL_PACKET, PACKET_RX_RING, &req, sizeof req) < 0) die("cannot set up a receive ring on", ifname);
  struct sockaddr_ll sll = {.sll_family = AF_PACKET, .sll_protocol = htons(ETH_P_ALL), .sll_ifindex = (int)idx};
  if (bind(fd, (struct sockaddr *)&sll, sizeof sll) < 0) die("cannot bind a packet socket to", ifname);
  int one = 1;
  if (setsockopt(fd, SOL_PACKET, PACKET_IGNORE_OUTGOING, &one, sizeof one) < 0) die("PACKET_IGNORE_OUTGOING on", ifname);
  struct packet_mreq mr = {.mr_ifindex = (int)idx, .mr_type = PACKET_MR_PROMISC};
  if (setsockopt(fd, SOL_PACKET, PACKET_ADD_MEMBERSHIP, &mr, sizeof mr) < 0) die("promiscuous mode on", ifname);
  // This socket only, no global sysctl; FORCE needs CAP_NET_ADMIN, which a namespace's root has.
  int buf = 8 << 20;
  if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &buf, sizeof buf) < 0) setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &buf, sizeof buf);
  return fd;
}

static void init_direction(struct direction *d, const char *name, int in, int out) {
  d->name = name;
  d->in = in;
  d->out = out;
  d->rx.blocks = RING_BLOCKS;
  d->rx.map = mmap(NULL, (size_t)RING_BLOCK * RING_BLOCKS, PROT_READ | PROT_WRITE, MAP_SHARED, in, 0);
  if (d->rx.map == MAP_FAILED) die("cannot map the receive ring of", name);
  d->frames = mmap(NULL, (size_t)queue_frames * SLOT, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
  d->len = calloc(queue_frames, sizeof *d->len);
  d->due = calloc(queue_frames, sizeof *d->due);
  if (d->frames == MAP_FAILED || !d->len || !d->due) die("cannot allocate the queue of", name);
}

// One frame in: lost, dropped when the queue is full, or queued with the time it is due.
static void enqueue(struct direction *d, const uint8_t *frame, uint32_t len, uint32_t wire_len, int64_t arrived) {
  if (wire_len > len || len > SLOT) {
    d->c.oversize++;
    return;
  }
  if (loss_threshold && rng() < loss_threshold) {
    d->c.lost++;
    return;
  }
  if (d->count == queue_frames) {
    d->c.queue_full++;
    return;
  }
  uint32_t slot = (d->head + d->count) % queue_frames;
  memcpy(d->frames + (size_t)slot * SLOT, frame, len);
  d->len[slot] = len;
  // Never before the frame ahead of it: order is kept.
  int64_t due = arrived + delay_ns;
  if (d->count > 0) {
    int64_t before = d->due[(slot + queue_frames - 1) % queue_frames];
    if (due < before) due = before;
  }
  d->due[slot] = due;
  d->count++;
}

// Takes every block the kernel has handed over. A frame's time starts when the kernel
// received it (wall clock in the ring), not when the loop got to it.
static void receive(struct direction *d) {
  int64_t mono = now_ns(), offset = mono - wall_ns();
  for (uint32_t n = 0; n < d->rx.blocks; n++) {
    struct tpacket_block_desc *block = (struct tpacket_block_desc *)(d->rx.map + (size_t)d->rx.next * RING_BLOCK);
    if (!(__atomic_load_n(&block->hdr.bh1.block_status, __ATOMIC_ACQUIRE) & TP_STATUS_USER)) return;
    const uint8_t *p = (const uint8_t *)block + block->hdr.bh1.offset_to_first_pkt;
    for (uint32_t i = 0; i < block->hdr.bh1.num_pkts; i++) {
      const struct tpacket3_hdr *h = (const struct tpacket3_hdr *)p;
      int64_t arrived = (int64_t)h->tp_sec * 1000000000LL + h->tp_nsec + offset;
      enqueue(d, p + h->tp_mac, h->tp_snaplen, h->tp_len, arrived < mono ? arrived : mono);
      p += h->tp_next_offset;
    }
    __atomic_store_n(&block->hdr.bh1.block_status, TP_STATUS_KERNEL, __ATOMIC_RELEASE);
    d->rx.next = (d->rx.next + 1) % d->rx.blocks;
  }
}

// Writes the frames whose time has come, in order: PUSHED_BACK if the device pushed back,
// MORE_DUE if it stopped after MAX_BATCHES so that the loop reads the rings in between
// (a loop that fell behind must not leave them unread for long), else 0.
#define PUSHED_BACK 1
#define MORE_DUE 2
#define MAX_BATCHES 16
static int transmit(struct direction *d, int64_t now) {
  struct mmsghdr msgs[BATCH];
  struct iovec iov[BATCH];
  for (int batches = 0;; batches++) {
    if (d->count == 0 || d->due[d->head] > now + TICK_NS / 2) return 0;
    if (batches == MAX_BATCHES) return MORE_DUE;
    int64_t late = now - d->due[d->head];
    if (late > d->c.late_max_ns) d->c.late_max_ns = late;
    int late_batch = late > LATE_NS;
    // One batch: up to the queue's wrap or a frame not yet due.
    uint32_t n = 0;
    for (uint32_t slot = d->head; n < BATCH && n < d->count && slot < queue_frames && d->due[slot] <= now + TICK_NS / 2; slot++, n++) {
      iov[n].iov_base = d->frames + (size_t)slot * SLOT;
      iov[n].iov_len = d->len[slot];
      memset(&msgs[n].msg_hdr, 0, sizeof msgs[n].msg_hdr);
      msgs[n].msg_hdr.msg_iov = &iov[n];
      msgs[n].msg_hdr.msg_iovlen = 1;
    }
    int sent = sendmmsg(d->out, msgs, n, MSG_DONTWAIT);
    if (sent < 0) {
      // The device's qdisc is full (the receiver is behind): the frame stays first in line.
      if (errno == EAGAIN || errno == ENOBUFS) {
        d->c.pushed_back++;
        return PUSHED_BACK;
      }
      // Anything else (the other interface went down...): that frame is lost, and counted.
      sent = 1;
      d->c.send_errors++;
    } else {
      for (int i = 0; i < sent; i++) d->c.passed_bytes += iov[i].iov_len;
      d->c.passed += (uint64_t)sent;
      if (late_batch) d->c.late += (uint64_t)sent;
    }
    d->head = (d->head + (uint32_t)sent) % queue_frames;
    d->count -= (uint32_t)sent;
    if ((uint32_t)sent < n) return PUSHED_BACK;
  }
}

// Frames the kernel dropped because the ring was full (the emulator did not keep up), summed.
static uint64_t socket_drops[2];

static void report(struct direction *dirs) {
  for (int i = 0; i < 2; i++) {
    struct tpacket_stats_v3 st;
    socklen_t l = sizeof st;
    if (getsockopt(dirs[i].in, SOL_PACKET, PACKET_STATISTICS, &st, &l) == 0) socket_drops[i] += st.tp_drops;
  }
  printf("{");
  for (int i = 0; i < 2; i++) {
    const struct direction *d = &dirs[i];
    printf("%s\"%s\":{\"passed\":%llu,\"passedBytes\":%llu,\"lost\":%llu,\"queueFull\":%llu,\"oversize\":%llu,\"sendErrors\":%llu,\"socketDrops\":%llu,\"queued\":%u,\"pushedBack\":%llu,\"late\":%llu,\"lateMaxUs\":%lld}", i ? "," : "",
           d->name, (unsigned long long)d->c.passed, (unsigned long long)d->c.passed_bytes, (unsigned long long)d->c.lost, (unsigned long long)d->c.queue_full,
           (unsigned long long)d->c.oversize, (unsigned long long)d->c.send_errors, (unsigned long long)socket_drops[i], d->count, (unsigned long long)d->c.pushed_back, (unsigned long long)d->c.late, (long long)(d->c.late_max_ns / 1000));
  }
  printf("}\n");
  fflush(stdout);
}

static void usage(void) {
  fprintf(stderr, "usage: wan-emulator --a IFACE --b IFACE [--delay-ms 25] [--loss 0.0001] [--queue-frames 16384] [--seed N]\n");
  exit(2);
}

int main(int argc, char **argv) {
  const char *a = NULL, *b = NULL;
  double loss = 0, delay_ms = 25;
  for (int i = 1; i < argc; i += 2) {
    if (i + 1 >= argc) usage();
    const char *k = argv[i], *v = argv[i + 1];
    char *end = NULL;
    if (!strcmp(k, "--a")) a = v;
    else if (!strcmp(k, "--b")) b = v;
    else if (!strcmp(k, "--delay-ms")) delay_ms = strtod(v, &end);
    else if (!strcmp(k, "--loss")) loss = strtod(v, &end);
    else if (!strcmp(k, "--queue-frames")) queue_frames = (uint32_t)strtoul(v, &end, 10);
    else if (!strcmp(k, "--seed")) rng_state = strtoull(v, &end, 10) | 1;
    else usage();
    if (end && *end) usage();
  }
  if (!a || !b || !(delay_ms >= 0 && delay_ms <= 10000) || !(loss >= 0 && loss <= 1) || queue_frames < BATCH || queue_frames > (1u << 22)) usage();
  delay_ns = (int64_t)(delay_ms * 1e6);
  loss_threshold = loss >= 1 ? UINT64_MAX : (uint64_t)(loss * 18446744073709551616.0);
  // Wake-ups on time: the default 50 us timer slack would add to every delay.
  prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);
  // The link is not one more process competing with the hosts for a core: a real link
  // forwards while the hosts compute. Real-time priority lets the loop run when a frame is
  // due (it sleeps between ticks, and the kernel keeps 5 % of each second for others).
  struct sched_param sp = {.sched_priority = 10};
  int realtime = sched_setscheduler(0, SCHED_FIFO, &sp) == 0;

  struct sigaction sa = {.sa_handler = on_signal};
  sigemptyset(&sa.sa_mask);
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGUSR1, &sa, NULL);

  int fa = open_port(a), fb = open_port(b);
  struct direction dirs[2];
  memset(dirs, 0, sizeof dirs);
  init_direction(&dirs[0], "aToB", fa, fb);
  init_direction(&dirs[1], "bToA", fb, fa);
  // Reading the kernel's counters resets them: count from here.
  for (int i = 0; i < 2; i++) {
    struct tpacket_stats_v3 st;
    socklen_t l = sizeof st;
    getsockopt(dirs[i].in, SOL_PACKET, PACKET_STATISTICS, &st, &l);
  }
  fprintf(stderr, "wan-emulator ready: %s <-> %s, one-way delay %.3f ms, loss %.6f, queue %u frames per direction, %s\n", a, b, delay_ms, loss, queue_frames,
          realtime ? "real-time priority (SCHED_FIFO 10)" : "normal priority (SCHED_FIFO refused)");

  struct pollfd pfd[2] = {{.fd = fa, .events = POLLIN}, {.fd = fb, .events = POLLIN}};
  while (!stop_requested) {
    if (report_requested) {
      report_requested = 0;
      report(dirs);
    }
    receive(&dirs[0]);
    receive(&dirs[1]);
    int64_t now = now_ns();
    int state = transmit(&dirs[0], now) | transmit(&dirs[1], now);
    if (state & MORE_DUE) continue;
    int blocked = state & PUSHED_BACK;
    if (dirs[0].count == 0 && dirs[1].count == 0) {
      // Idle: sleep until a frame arrives.
      if (ppoll(pfd, 2, NULL, NULL) < 0 && errno != EINTR) die("poll", NULL);
      if ((pfd[0].revents | pfd[1].revents) & (POLLERR | POLLNVAL)) {
        errno = EIO;
        die("an interface went away", NULL);
      }
      continue;
    }
    // Frames waiting: sleep a tick, or until the first of them is due if that is later (at most 1 ms).
    int64_t wake = now + TICK_NS;
    if (!blocked) {
      int64_t first = INT64_MAX;
      for (int i = 0; i < 2; i++)
        if (dirs[i].count > 0 && dirs[i].due[dirs[i].head] - TICK_NS / 2 < first) first = dirs[i].due[dirs[i].head] - TICK_NS / 2;
      if (first > wake) wake = first;
      // Not longer than a millisecond: arrivals wait in the queue, not in the ring.
      if (wake > now + 1000000LL) wake = now + 1000000LL;
    }
    struct timespec ts = {.tv_sec = wake / 1000000000LL, .tv_nsec = wake % 1000000000LL};
    clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL);
  }
  report(dirs);
  return 0;
}
