// wan-emulator: a packet-level WAN between two network interfaces, for the benchmark.
//
// Every Ethernet frame read from one interface is written to the other after a fixed
// one-way delay, in the order it arrived, unless it is lost (a given probability) or
// the direction's queue is full (a router's buffer: dropped and counted). Both
// directions, one thread, no allocation after start. It is not a proxy: TCP sees the
// same segments, only later and sometimes not at all.
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
#define BATCH 64    // frames per recvmmsg/sendmmsg
// While frames wait, the loop wakes on a timer every TICK and sends what is due within half
// a tick (so a frame leaves within +-50 us of its time), rather than on every arrival: at a
// few Gbit/s that batches tens of frames per system call instead of one.
#define TICK_NS 100000LL
#define LATE_NS 1000000LL

struct counters {
  uint64_t passed, passed_bytes, lost, queue_full, oversize, send_errors;
  uint64_t late;        // frames that left more than LATE_NS after their time (the loop fell behind)
  int64_t late_max_ns;  // the latest a frame left after its time
};

// One direction: frames read from `in`, waiting for their time, then written to `out`.
struct direction {
  const char *name;
  int in, out;
  uint8_t *frames;  // queue_frames slots of SLOT bytes
  uint32_t *len;    // 0: lost (kept in order, skipped when sent)
  int64_t *due;     // monotonic ns
  uint32_t head, count;
  struct counters c;
};

static volatile sig_atomic_t stop_requested, report_requested;
static uint32_t queue_frames = 16384;
static int64_t delay_ns = 25 * 1000000LL;
static uint64_t loss_threshold;  // a frame is lost when rng() < loss_threshold
static uint64_t rng_state = 0x9E3779B97F4A7C15ULL;
static uint8_t scratch[BATCH][SLOT];

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
  struct sockaddr_ll sll = {.sll_family = AF_PACKET, .sll_protocol = htons(ETH_P_ALL), .sll_ifindex = (int)idx};
  if (bind(fd, (struct sockaddr *)&sll, sizeof sll) < 0) die("cannot bind a packet socket to", ifname);
  int one = 1;
  if (setsockopt(fd, SOL_PACKET, PACKET_IGNORE_OUTGOING, &one, sizeof one) < 0) die("PACKET_IGNORE_OUTGOING on", ifname);
  struct packet_mreq mr = {.mr_ifindex = (int)idx, .mr_type = PACKET_MR_PROMISC};
  if (setsockopt(fd, SOL_PACKET, PACKET_ADD_MEMBERSHIP, &mr, sizeof mr) < 0) die("promiscuous mode on", ifname);
  // Room for bursts while the loop is busy with the other direction (this socket only,
  // no global sysctl; FORCE needs CAP_NET_ADMIN, which a namespace's root has).
  int buf = 64 << 20;
  if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &buf, sizeof buf) < 0) setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &buf, sizeof buf);
  buf = 8 << 20;
  if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &buf, sizeof buf) < 0) setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &buf, sizeof buf);
  return fd;
}

static void init_direction(struct direction *d, const char *name, int in, int out) {
  d->name = name;
  d->in = in;
  d->out = out;
  d->frames = mmap(NULL, (size_t)queue_frames * SLOT, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
  d->len = calloc(queue_frames, sizeof *d->len);
  d->due = calloc(queue_frames, sizeof *d->due);
  if (d->frames == MAP_FAILED || !d->len || !d->due) die("cannot allocate the queue of", name);
}

// Reads what has arrived, in batches, into the queue's free slots (or drops it when full).
// A frame's time starts when the kernel received it (SO_TIMESTAMPNS, wall clock), not when
// the loop got to it, so that the loop's ticks do not add to the delay.
static void receive(struct direction *d) {
  struct mmsghdr msgs[BATCH];
  struct iovec iov[BATCH];
  static union {
    char buf[CMSG_SPACE(sizeof(struct timespec))];
    struct cmsghdr align;
  } control[BATCH];
  for (int rounds = 0; rounds < 64; rounds++) {
    uint32_t tail = (d->head + d->count) % queue_frames;
    uint32_t room = queue_frames - d->count;
    uint32_t contiguous = queue_frames - tail;
    uint32_t n = room < contiguous ? room : contiguous;
    if (n > BATCH) n = BATCH;
    int full = n == 0;
    if (full) n = BATCH;
    for (uint32_t i = 0; i < n; i++) {
      iov[i].iov_base = full ? scratch[i] : d->frames + (size_t)(tail + i) * SLOT;
      iov[i].iov_len = SLOT;
      memset(&msgs[i].msg_hdr, 0, sizeof msgs[i].msg_hdr);
      msgs[i].msg_hdr.msg_iov = &iov[i];
      msgs[i].msg_hdr.msg_iovlen = 1;
      msgs[i].msg_hdr.msg_control = control[i].buf;
      msgs[i].msg_hdr.msg_controllen = sizeof control[i].buf;
    }
    int got = recvmmsg(d->in, msgs, n, MSG_DONTWAIT, NULL);
    if (got <= 0) return;
    if (full) {
      d->c.queue_full += (uint64_t)got;
      continue;
    }
    // Wall-clock receive times, turned into the monotonic clock the loop runs on.
    int64_t mono = now_ns(), offset = mono - wall_ns();
    for (int i = 0; i < got; i++) {
      uint32_t slot = tail + (uint32_t)i;
      uint32_t len = msgs[i].msg_len;
      int64_t arrived = mono;
      for (struct cmsghdr *cm = CMSG_FIRSTHDR(&msgs[i].msg_hdr); cm; cm = CMSG_NXTHDR(&msgs[i].msg_hdr, cm)) {
        if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_TIMESTAMPNS) {
          struct timespec t;
          memcpy(&t, CMSG_DATA(cm), sizeof t);
          arrived = (int64_t)t.tv_sec * 1000000000LL + t.tv_nsec + offset;
          if (arrived > mono) arrived = mono;
        }
      }
      if (msgs[i].msg_hdr.msg_flags & MSG_TRUNC) {
        d->c.oversize++;
        len = 0;
      } else if (loss_threshold && rng() < loss_threshold) {
        d->c.lost++;
        len = 0;
      }
      d->len[slot] = len;
      // Never before the frame ahead of it: order is kept.
      int64_t due = arrived + delay_ns;
      uint32_t prev = (slot + queue_frames - 1) % queue_frames;
      if (d->count + (uint32_t)i > 0 && due < d->due[prev]) due = d->due[prev];
      d->due[slot] = due;
    }
    d->count += (uint32_t)got;
    if ((uint32_t)got < n) return;
  }
}

// Writes the frames whose time has come, in order. Returns 1 if the device pushed back.
static int transmit(struct direction *d, int64_t now) {
  struct mmsghdr msgs[BATCH];
  struct iovec iov[BATCH];
  for (;;) {
    // Lost frames keep their place in the queue until their time, then are skipped.
    while (d->count > 0 && d->len[d->head] == 0 && d->due[d->head] <= now + TICK_NS / 2) {
      d->head = (d->head + 1) % queue_frames;
      d->count--;
    }
    if (d->count == 0 || d->due[d->head] > now + TICK_NS / 2) return 0;
    int64_t late = now - d->due[d->head];
    if (late > d->c.late_max_ns) d->c.late_max_ns = late;
    int late_batch = late > LATE_NS;
    // One batch: up to the queue's wrap, a lost frame or a frame not yet due.
    uint32_t n = 0;
    for (uint32_t slot = d->head; n < BATCH && n < d->count && slot < queue_frames && d->len[slot] != 0 && d->due[slot] <= now + TICK_NS / 2; slot++, n++) {
      iov[n].iov_base = d->frames + (size_t)slot * SLOT;
      iov[n].iov_len = d->len[slot];
      memset(&msgs[n].msg_hdr, 0, sizeof msgs[n].msg_hdr);
      msgs[n].msg_hdr.msg_iov = &iov[n];
      msgs[n].msg_hdr.msg_iovlen = 1;
    }
    int sent = sendmmsg(d->out, msgs, n, MSG_DONTWAIT);
    if (sent < 0) {
      // The device's qdisc is full (the receiver is behind): the frame stays first in line.
      if (errno == EAGAIN || errno == ENOBUFS) return 1;
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
    if ((uint32_t)sent < n) return 1;
  }
}

// Frames the kernel dropped because the emulator did not read them in time (since the last call).
static uint64_t socket_drops[2];

static void report(struct direction *dirs) {
  for (int i = 0; i < 2; i++) {
    struct tpacket_stats st;
    socklen_t l = sizeof st;
    if (getsockopt(dirs[i].in, SOL_PACKET, PACKET_STATISTICS, &st, &l) == 0) socket_drops[i] += st.tp_drops;
  }
  printf("{");
  for (int i = 0; i < 2; i++) {
    const struct direction *d = &dirs[i];
    printf("%s\"%s\":{\"passed\":%llu,\"passedBytes\":%llu,\"lost\":%llu,\"queueFull\":%llu,\"oversize\":%llu,\"sendErrors\":%llu,\"socketDrops\":%llu,\"queued\":%u,\"late\":%llu,\"lateMaxUs\":%lld}", i ? "," : "",
           d->name, (unsigned long long)d->c.passed, (unsigned long long)d->c.passed_bytes, (unsigned long long)d->c.lost, (unsigned long long)d->c.queue_full,
           (unsigned long long)d->c.oversize, (unsigned long long)d->c.send_errors, (unsigned long long)socket_drops[i], d->count, (unsigned long long)d->c.late, (long long)(d->c.late_max_ns / 1000));
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
  int one = 1;
  if (setsockopt(fa, SOL_SOCKET, SO_TIMESTAMPNS, &one, sizeof one) < 0 || setsockopt(fb, SOL_SOCKET, SO_TIMESTAMPNS, &one, sizeof one) < 0) die("SO_TIMESTAMPNS", NULL);
  struct direction dirs[2];
  memset(dirs, 0, sizeof dirs);
  init_direction(&dirs[0], "aToB", fa, fb);
  init_direction(&dirs[1], "bToA", fb, fa);
  // Drain what arrived before the queues existed, and reset the kernel's drop counters.
  report_requested = 0;
  { struct tpacket_stats st; socklen_t l = sizeof st; getsockopt(fa, SOL_PACKET, PACKET_STATISTICS, &st, &l); l = sizeof st; getsockopt(fb, SOL_PACKET, PACKET_STATISTICS, &st, &l); }
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
    int blocked = transmit(&dirs[0], now) | transmit(&dirs[1], now);
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
      // Not longer than a millisecond: arrivals wait in the queue, not in the socket's buffer.
      if (wake > now + 1000000LL) wake = now + 1000000LL;
    }
    struct timespec ts = {.tv_sec = wake / 1000000000LL, .tv_nsec = wake % 1000000000LL};
    clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL);
  }
  report(dirs);
  return 0;
}
