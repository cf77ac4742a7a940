/* uring.c - the workers' io_uring back end: multishot accept and receive into a provided-buffer ring, batched sends. */
#define _GNU_SOURCE
#include "uring.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "server.h"

#ifndef HAVE_LIBURING

int uring_available(char *why, size_t len)
{
    snprintf(why, len, "this echosrv was built without liburing");
    return 0;
}

/* Never called: srv->io is IO_EPOLL when uring_available() said no. */
int uring_worker_init(worker *w, char *err, size_t errlen)
{
    (void)w;
    snprintf(err, errlen, "this echosrv was built without liburing");
    return -1;
}
void uring_worker_free(worker *w) { (void)w; }
void uring_flush(worker *w) { (void)w; }
void uring_reap_soon(worker *w) { (void)w; }
int uring_wait(worker *w, int timeout_ms) { (void)w; (void)timeout_ms; return -1; }
void uring_epoll_again(worker *w) { (void)w; }
int uring_accept_start(worker *w) { (void)w; errno = ENOSYS; return -1; }
void uring_accept_stop(worker *w) { (void)w; }
int uring_accept_one(worker *w, int lfd) { (void)w; (void)lfd; return -1; }
void uring_accept_yield(worker *w, int lfd) { (void)w; (void)lfd; }
int uring_recv_start(es_conn *c) { (void)c; return -1; }
void uring_recv_stop(es_conn *c) { (void)c; }
void uring_recv_later(es_conn *c) { (void)c; }
int uring_send(es_conn *c, const uint8_t *p, size_t len)
{
    (void)c; (void)p; (void)len;
    return -1;
}
int uring_send_span(es_conn *c, const uint8_t *p, size_t len, int bid)
{
    (void)c; (void)p; (void)len; (void)bid;
    return -1;
}
ssize_t uring_tx_finish(es_conn *c, size_t sent, buf *rest)
{
    (void)c; (void)sent; (void)rest;
    return 0;
}
void uring_conn_cancel(es_conn *c) { (void)c; }
void uring_buf_release(worker *w, int bid) { (void)w; (void)bid; }
const uint8_t *uring_buf_addr(worker *w, int bid) { (void)w; (void)bid; return NULL; }

#else

#include <liburing.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

/* What a completion is for: the low 3 bits of its user_data; the rest is
 * the connection (8-byte aligned) or, for accepts, the listening socket
 * and the accept epoch. */
enum { OP_RECV = 1, OP_SEND = 2, OP_ACCEPT = 3, OP_EPOLL = 4, OP_IGNORE = 5 };
#define OP_MASK 7u
#define BGID 0

/* A send from provided buffers: one sendmsg of up to URING_TX_SEGS
 * segments, the replies to the reads of one loop turn. Most take one
 * segment or a few: a send starts small (URING_TX_SMALL segments, a size
 * malloc keeps in its per-thread cache) and moves to a large one when one
 * segment more joins it, before it is submitted. */
typedef struct uring_tx {
    struct msghdr mh;
    unsigned n, cap;              /* segments in iov and bid, and room for */
    uint64_t submits;             /* u->submits when prepared */
    struct io_uring_sqe *sqe;     /* a send while one segment; a sendmsg from the second */
    struct uring_tx *next;        /* in u->free_tx[] */
    struct iovec *iov;            /* cap of each, after the struct */
    int *bid;
} uring_tx;

struct uring {
    struct io_uring ring;
    uint64_t submits;             /* submissions so far: a send prepared since the last
                                   * one can still take segments */
    uring_tx *free_tx[2];         /* sends to reuse: small, large */
    size_t nfree_tx[2];
    struct io_uring_buf_ring *br; /* the provided-buffer ring */
    size_t br_size;
    uint8_t *bufs;                /* URING_BUFS buffers of URING_BUF_SIZE bytes (buf_alloc_io) */
    void *bufs_mem;               /* their allocation */
    uint16_t *spare;              /* buffers back from use, the last one back on top */
    unsigned nspare;
    unsigned in_ring;             /* buffers in the ring, not taken by a receive yet */
    unsigned taken;               /* buffers receives took since the last top-up */
    int starved;                  /* a receive found the ring empty since then */
    uint32_t epoch;               /* of the accepts armed now */
    int epoll_armed;              /* the poll on w->epfd is in flight */
    int epoll_ready;              /* the epoll set may have events */
    unsigned nowait_sends;        /* MSG_DONTWAIT sends prepared since the last reap: each
                                   * completes during its submission (-EAGAIN included) */
    es_conn **rearm;              /* connections whose receive ran out of buffers */
    size_t nrearm, caprearm;
    int yield[URING_YIELD_MAX];   /* listening sockets whose accept moves to the back of
                                   * the queue after this turn (uring_accept_yield) */
    unsigned nyield;
};

_Static_assert(URING_BUFS > 0 && (URING_BUFS & (URING_BUFS - 1)) == 0,
               "a provided-buffer ring has a power-of-two size");
_Static_assert(URING_BUF_SIZE % 4096 == 0,
               "every receive buffer starts where buf_alloc_io put the first (page offset)");
_Static_assert(URING_TX_SMALL >= 2 && URING_TX_SMALL < URING_TX_SEGS, "a small send grows");
_Static_assert(_Alignof(es_conn) >= 8, "user_data keeps the operation in the low 3 bits");

static void ring_top_up(struct uring *u);

static uint64_t ud_conn(es_conn *c, unsigned op)
{
    return (uint64_t)(uintptr_t)c | op;
}

static uint64_t ud_accept(uint32_t epoch, int fd)
{
    return (uint64_t)epoch << 32 | (uint64_t)(uint32_t)fd << 3 | OP_ACCEPT;
}

int uring_available(char *why, size_t len)
{
    struct io_uring ring;
    int rc = io_uring_queue_init(8, &ring, 0);
    if (rc < 0) {
        snprintf(why, len, "cannot create a ring: %s%s", strerror(-rc),
                 rc == -EPERM ? " (kernel.io_uring_disabled?)" : "");
        return 0;
    }
    int ok = 0;
    struct io_uring_probe *probe = io_uring_get_probe_ring(&ring);
    /* Multishot receive came with Linux 6.0, as did IORING_OP_SEND_ZC:
     * the probe cannot see flags, so the opcode stands for the kernel. */
    if (probe == NULL || !io_uring_opcode_supported(probe, IORING_OP_SEND_ZC)) {
        snprintf(why, len, "the kernel lacks multishot receive (Linux 6.0 or later needed)");
        goto out;
    }
    ok = 1;
out:
    if (probe != NULL)
        io_uring_free_probe(probe);
    io_uring_queue_exit(&ring);
    return ok;
}

int uring_worker_init(worker *w, char *err, size_t errlen)
{
    struct uring *u = calloc(1, sizeof *u);
    if (u == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    struct io_uring_params p;
    /* Completions are reaped by this thread only, when it asks: no
     * interrupts of the worker to run them (DEFER_TASKRUN, Linux 6.1), or
     * at least none forced (COOP_TASKRUN, 5.19). */
    static const unsigned tries[] = {
        IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN,
        IORING_SETUP_COOP_TASKRUN,
        0,
    };
    int rc = -EINVAL;
    for (size_t i = 0; i < sizeof tries / sizeof tries[0]; i++) {
        memset(&p, 0, sizeof p);
        p.flags = tries[i] | IORING_SETUP_CQSIZE | IORING_SETUP_SUBMIT_ALL;
        p.cq_entries = URING_CQ_ENTRIES;
        rc = io_uring_queue_init_params(URING_SQ_ENTRIES, &u->ring, &p);
        if (rc != -EINVAL)
            break;
    }
    if (rc < 0) {
        snprintf(err, errlen, "io_uring_setup: %s", strerror(-rc));
        free(u);
        return -1;
    }
    u->br_size = URING_BUFS * sizeof(struct io_uring_buf);
    void *mem = mmap(NULL, u->br_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    u->bufs = buf_alloc_io((size_t)URING_BUFS * URING_BUF_SIZE, &u->bufs_mem);
    u->spare = malloc(URING_BUFS * sizeof *u->spare);
    if (mem == MAP_FAILED || u->bufs == NULL || u->spare == NULL) {
        snprintf(err, errlen, "out of memory for the receive buffers");
        goto fail;
    }
    u->br = mem;
    struct io_uring_buf_reg reg = {.ring_addr = (uintptr_t)mem, .ring_entries = URING_BUFS,
                                   .bgid = BGID};
    rc = io_uring_register_buf_ring(&u->ring, &reg, 0);
    if (rc < 0) {
        snprintf(err, errlen, "registering the receive buffers: %s", strerror(-rc));
        goto fail;
    }
    io_uring_buf_ring_init(u->br);
    for (int i = URING_BUFS - 1; i >= 0; i--)
        u->spare[u->nspare++] = (uint16_t)i;
    ring_top_up(u);
    w->ring = u;
    return 0;
fail:
    if (mem != MAP_FAILED)
        munmap(mem, u->br_size);
    free(u->bufs_mem);
    free(u->spare);
    io_uring_queue_exit(&u->ring);
    free(u);
    return -1;
}

/* A free submission entry, submitting the queue to make room if it is
 * full. NULL only when the ring is broken. */
static struct io_uring_sqe *sqe_get(struct uring *u)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&u->ring);
    if (sqe == NULL) {
        u->submits++;
        io_uring_submit(&u->ring);
        sqe = io_uring_get_sqe(&u->ring);
        if (sqe == NULL)
            log_error("io_uring: no submission entry free after submitting");
    }
    return sqe;
}

static void cancel(struct uring *u, uint64_t ud)
{
    struct io_uring_sqe *sqe = sqe_get(u);
    if (sqe == NULL)
        return;
    io_uring_prep_cancel64(sqe, ud, 0);
    io_uring_sqe_set_data64(sqe, OP_IGNORE);
}

/* A send with room for cap segments (URING_TX_SMALL or URING_TX_SEGS), from
 * the worker's spares or malloc. NULL when out of memory. */
static uring_tx *tx_get(struct uring *u, unsigned cap)
{
    int k = cap > URING_TX_SMALL;
    uring_tx *tx = u->free_tx[k];
    if (tx != NULL) {
        u->free_tx[k] = tx->next;
        u->nfree_tx[k]--;
    } else {
        tx = malloc(sizeof *tx + cap * (sizeof(struct iovec) + sizeof(int)));
        if (tx == NULL)
            return NULL;
        tx->cap = cap;
        tx->iov = (struct iovec *)(tx + 1);
        tx->bid = (int *)(tx->iov + cap);
    }
    tx->n = 0;
    return tx;
}

static void tx_put(struct uring *u, uring_tx *tx)
{
    int k = tx->cap > URING_TX_SMALL;
    if (u->nfree_tx[k] < (k ? URING_TX_KEEP_LARGE : URING_TX_KEEP)) {
        tx->next = u->free_tx[k];
        u->free_tx[k] = tx;
        u->nfree_tx[k]++;
    } else {
        free(tx);
    }
}

/* Before a submission: give the kernel the buffers the next turn may
 * take, twice what the last one took (at least URING_RING_MIN; every spare
 * one after a receive found none), the most recently used first. A
 * receive writes to a buffer still in the cache instead of walking all
 * URING_BUFS of them in ring order (a 1 MiB echo cost 15 % more so), and
 * a worker at light load touches only the few it cycles through. */
static void ring_top_up(struct uring *u)
{
    unsigned want = u->starved ? URING_BUFS : 2 * u->taken;
    if (want < URING_RING_MIN)
        want = URING_RING_MIN;
    u->taken = 0;
    u->starved = 0;
    unsigned added = 0;
    while (u->in_ring + added < want && u->nspare > 0) {
        unsigned bid = u->spare[--u->nspare];
        io_uring_buf_ring_add(u->br, u->bufs + (size_t)bid * URING_BUF_SIZE, URING_BUF_SIZE,
                              (unsigned short)bid, io_uring_buf_ring_mask(URING_BUFS),
                              (int)added);
        added++;
    }
    if (added > 0) {
        io_uring_buf_ring_advance(u->br, (int)added);
        u->in_ring += added;
    }
}

const uint8_t *uring_buf_addr(worker *w, int bid)
{
    return w->ring->bufs + (size_t)bid * URING_BUF_SIZE;
}

void uring_buf_release(worker *w, int bid)
{
    struct uring *u = w->ring;
    u->spare[u->nspare++] = (uint16_t)bid;
}

int uring_recv_start(es_conn *c)
{
    if (c->flags & CF_RECVING)
        return 0;
    struct uring *u = c->w->ring;
    struct io_uring_sqe *sqe = sqe_get(u);
    if (sqe == NULL)
        return -1;
    io_uring_prep_recv_multishot(sqe, c->fd, NULL, 0, 0);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = BGID;
    io_uring_sqe_set_data64(sqe, ud_conn(c, OP_RECV));
    c->flags |= CF_RECVING;
    return 0;
}

void uring_recv_stop(es_conn *c)
{
    if ((c->flags & CF_RECVING) && !(c->flags & CF_REARM))
        cancel(c->w->ring, ud_conn(c, OP_RECV));
}

/* Receive again later: the buffers ran out. The connection stays marked
 * as receiving so that it is not freed while listed. */
void uring_recv_later(es_conn *c)
{
    struct uring *u = c->w->ring;
    if (c->flags & CF_REARM)
        return;
    if (u->nrearm == u->caprearm) {
        size_t cap = u->caprearm ? u->caprearm * 2 : 64;
        es_conn **v = realloc(u->rearm, cap * sizeof *v);
        if (v == NULL) {
            log_error("io_uring: out of memory: closing a connection that ran out of "
                      "receive buffers");
            c->flags &= (uint32_t)~CF_RECVING;
            conn_destroy(c);
            return;
        }
        u->rearm = v;
        u->caprearm = cap;
    }
    c->flags |= CF_RECVING | CF_REARM;
    u->rearm[u->nrearm++] = c;
}

int uring_send(es_conn *c, const uint8_t *p, size_t len)
{
    struct io_uring_sqe *sqe = sqe_get(c->w->ring);
    if (sqe == NULL)
        return -1;
    if (len > INT32_MAX)
        len = INT32_MAX;
    io_uring_prep_send(sqe, c->fd, p, len, MSG_NOSIGNAL);
    io_uring_sqe_set_data64(sqe, ud_conn(c, OP_SEND));
    c->flags |= CF_SENDING;
    return 0;
}

int uring_send_span(es_conn *c, const uint8_t *p, size_t len, int bid)
{
    struct uring *u = c->w->ring;
    uring_tx *tx = c->tx;
    if (c->flags & CF_SENDING) {
        /* Joins the send prepared this turn, which the kernel has not
         * read yet: no submission since it was prepared. */
        if (tx == NULL || tx->submits != u->submits || tx->n == URING_TX_SEGS ||
            c->out.len > 0)
            return 0;
        int moved = 0;
        if (tx->n == tx->cap) {
            /* Full while small: its segments move to a large send, which
             * takes over the entry not submitted yet. */
            uring_tx *big = tx_get(u, URING_TX_SEGS);
            if (big == NULL)
                return 0;
            memcpy(big->iov, tx->iov, tx->n * sizeof *tx->iov);
            memcpy(big->bid, tx->bid, tx->n * sizeof *tx->bid);
            big->n = tx->n;
            big->sqe = tx->sqe;
            big->submits = tx->submits;
            tx_put(u, tx);
            c->tx = tx = big;
            moved = 1;
        }
        if (tx->n == 1 || moved) {
            /* A second segment, or a send that moved: the entry, not
             * submitted yet, becomes a sendmsg of this send's segments. */
            memset(&tx->mh, 0, sizeof tx->mh);
            tx->mh.msg_iov = tx->iov;
            io_uring_prep_sendmsg(tx->sqe, c->fd, &tx->mh, MSG_NOSIGNAL | MSG_DONTWAIT);
            io_uring_sqe_set_data64(tx->sqe, ud_conn(c, OP_SEND));
        }
    } else {
        if ((tx = tx_get(u, URING_TX_SMALL)) == NULL)
            return 0;
        struct io_uring_sqe *sqe = sqe_get(u);
        if (sqe == NULL) {
            tx_put(u, tx);
            return -1;
        }
        /* One segment (the usual case) goes as a plain send, which the
         * kernel prepares with less work than a sendmsg. */
        io_uring_prep_send(sqe, c->fd, p, len, MSG_NOSIGNAL | MSG_DONTWAIT);
        io_uring_sqe_set_data64(sqe, ud_conn(c, OP_SEND));
        u->nowait_sends++;
        tx->sqe = sqe;
        tx->submits = u->submits;
        c->tx = tx;
        c->flags |= CF_SENDING;
    }
    tx->iov[tx->n] = (struct iovec){.iov_base = (void *)p, .iov_len = len};
    tx->bid[tx->n] = bid;
    tx->n++;
    tx->mh.msg_iovlen = tx->n;
    return 1;
}

ssize_t uring_tx_finish(es_conn *c, size_t sent, buf *rest)
{
    worker *w = c->w;
    struct uring *u = w->ring;
    uring_tx *tx = c->tx;
    ssize_t kept = 0;
    for (unsigned i = 0; i < tx->n; i++) {
        size_t len = tx->iov[i].iov_len, skip = sent < len ? sent : len;
        sent -= skip;
        if (rest != NULL && kept >= 0 && skip < len) {
            if (buf_append(rest, (uint8_t *)tx->iov[i].iov_base + skip, len - skip) < 0)
                kept = -1;
            else
                kept += (ssize_t)(len - skip);
        }
        uring_buf_release(w, tx->bid[i]);
    }
    c->tx = NULL;
    tx_put(u, tx);
    return kept;
}

void uring_conn_cancel(es_conn *c)
{
    struct uring *u = c->w->ring;
    if ((c->flags & CF_RECVING) && !(c->flags & CF_REARM))
        cancel(u, ud_conn(c, OP_RECV));
    if (c->flags & CF_SENDING)
        cancel(u, ud_conn(c, OP_SEND));
}

static int accept_arm(worker *w, int lfd)
{
    struct uring *u = w->ring;
    struct io_uring_sqe *sqe = sqe_get(u);
    if (sqe == NULL) {
        errno = EBUSY;
        return -1;
    }
    io_uring_prep_multishot_accept(sqe, lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    io_uring_sqe_set_data64(sqe, ud_accept(u->epoch, lfd));
    return 0;
}

int uring_accept_one(worker *w, int lfd)
{
    return accept_arm(w, lfd);
}

void uring_accept_yield(worker *w, int lfd)
{
    struct uring *u = w->ring;
    for (unsigned i = 0; i < u->nyield; i++)
        if (u->yield[i] == lfd)
            return;
    if (u->nyield < URING_YIELD_MAX)
        u->yield[u->nyield++] = lfd;
}

int uring_accept_start(worker *w)
{
    gen *g = w->gen;
    for (size_t i = 0; i < g->nlisteners; i++) {
        if (accept_arm(w, g->listeners[i].fd) < 0) {
            uring_accept_stop(w);
            return -1;
        }
    }
    return 0;
}

void uring_accept_stop(worker *w)
{
    struct uring *u = w->ring;
    gen *g = w->gen;
    for (size_t i = 0; i < g->nlisteners; i++)
        cancel(u, ud_accept(u->epoch, g->listeners[i].fd));
    u->epoch++;
    u->nyield = 0;
}

void uring_epoll_again(worker *w)
{
    w->ring->epoll_ready = 1;
}

static void epoll_arm(worker *w)
{
    struct uring *u = w->ring;
    struct io_uring_sqe *sqe = sqe_get(u);
    if (sqe == NULL)
        return;
    io_uring_prep_poll_multishot(sqe, w->epfd, POLLIN);
    io_uring_sqe_set_data64(sqe, OP_EPOLL);
    u->epoll_armed = 1;
}

static void complete(worker *w, uint64_t ud, int res, uint32_t flags)
{
    struct uring *u = w->ring;
    int more = (flags & IORING_CQE_F_MORE) != 0;
    switch (ud & OP_MASK) {
    case OP_RECV:
        if (flags & IORING_CQE_F_BUFFER) {
            u->in_ring--;
            u->taken++;
        } else if (res == -ENOBUFS) {
            u->starved = 1;
        }
        conn_uring_recv((es_conn *)(uintptr_t)(ud & ~(uint64_t)OP_MASK), res,
                        (flags & IORING_CQE_F_BUFFER) ? (int)(flags >> IORING_CQE_BUFFER_SHIFT)
                                                      : -1,
                        more);
        return;
    case OP_SEND:
        conn_uring_sent((es_conn *)(uintptr_t)(ud & ~(uint64_t)OP_MASK), res);
        return;
    case OP_ACCEPT:
        worker_accept_done(w, (int)(uint32_t)((ud >> 3) & 0x1fffffffu),
                           (uint32_t)(ud >> 32) == u->epoch, res, more);
        return;
    case OP_EPOLL:
        u->epoll_ready = 1;
        if (!more)
            u->epoll_armed = 0;
        return;
    default:
        return;
    }
}

/* Handle every completion there is, at most a bounded number of rounds. */
static void reap(worker *w)
{
    struct uring *u = w->ring;
    struct io_uring_cqe *batch[256];
    u->nowait_sends = 0;
    for (int round = 0; round < 16; round++) {
        unsigned n = io_uring_peek_batch_cqe(&u->ring, batch, 256);
        if (n == 0)
            break;
        /* Accepts first: one armed again here (after a turn behind the
         * other workers) is then submitted ahead of this turn's replies,
         * and cannot take the connection a client opens on reading one of
         * them, which the head of the queue was woken for. */
        for (unsigned i = 0; i < n; i++)
            if ((batch[i]->user_data & OP_MASK) == OP_ACCEPT)
                complete(w, batch[i]->user_data, batch[i]->res, batch[i]->flags);
        for (unsigned i = 0; i < n; i++)
            if ((batch[i]->user_data & OP_MASK) != OP_ACCEPT)
                complete(w, batch[i]->user_data, batch[i]->res, batch[i]->flags);
        io_uring_cq_advance(&u->ring, n);
    }
    /* Accepts that took a connection step back: their cancellation ends
     * them, and the end arms them again at the back of the wait queue. */
    for (unsigned i = 0; i < u->nyield; i++)
        cancel(u, ud_accept(u->epoch, u->yield[i]));
    u->nyield = 0;
    /* Connections that found no buffer receive again, now that the ones
     * handled above are back. */
    size_t n = u->nrearm;
    u->nrearm = 0;
    for (size_t i = 0; i < n; i++) {
        es_conn *c = u->rearm[i];
        c->flags &= (uint32_t)~(CF_REARM | CF_RECVING);
        conn_uring_kick(c);
    }
}

int uring_wait(worker *w, int timeout_ms)
{
    struct uring *u = w->ring;
    if (!u->epoll_armed)
        epoll_arm(w);
    struct __kernel_timespec ts = {0}, *tp = NULL;
    if (u->epoll_ready || u->nrearm > 0) {
        tp = &ts;
    } else if (timeout_ms >= 0) {
        ts.tv_sec = timeout_ms / 1000;
        ts.tv_nsec = (long long)(timeout_ms % 1000) * 1000000;
        tp = &ts;
    }
    /* Events left from the last epoll_wait() are looked at again: the
     * poll only reports new ones. */
    int again = u->epoll_ready;
    u->epoll_ready = 0;
    struct io_uring_cqe *cqe;
    u->submits++;
    /* Wait for one event beyond the completions of this turn's replies:
     * sent with MSG_DONTWAIT, each completes while it is submitted, and
     * waking up for it alone would cost a second io_uring_enter per
     * message at light load. */
    unsigned want = 1;
    struct __kernel_timespec bound = {.tv_nsec = URING_REPLY_WAIT_US * 1000};
    if (u->nowait_sends > 0 && !w->draining) {
        want += u->nowait_sends < URING_CQ_ENTRIES / 2 ? u->nowait_sends : URING_CQ_ENTRIES / 2;
        /* A reply that did not all leave (a client that does not read)
         * is looked at again soon, whatever else happens. */
        if (tp == NULL || tp->tv_sec > 0 || tp->tv_nsec > bound.tv_nsec)
            tp = &bound;
    }
    ring_top_up(u);
    int rc = io_uring_submit_and_wait_timeout(&u->ring, &cqe, want, tp, NULL);
    if (rc < 0 && rc != -ETIME && rc != -EINTR && rc != -EBUSY && rc != -EAGAIN) {
        log_error("worker %d: io_uring_enter: %s", w->id, strerror(-rc));
        return -1;
    }
    w->now = worker_now_ms();
    reap(w);
    return u->epoll_ready || again;
}

void uring_reap_soon(worker *w)
{
    if (w->ring != NULL)
        w->ring->nowait_sends = 0;
}

void uring_flush(worker *w)
{
    struct uring *u = w->ring;
    if (u == NULL)
        return;
    u->submits++;
    ring_top_up(u);
    io_uring_submit_and_get_events(&u->ring);
    reap(w);
}

void uring_worker_free(worker *w)
{
    struct uring *u = w->ring;
    if (u == NULL)
        return;
    /* Every connection is closed: wait (bounded) for the operations they
     * had in flight, so that no buffer is written to after it is freed. */
    if (u->epoll_armed)
        cancel(u, OP_EPOLL);
    for (int i = 0; i < 200 && w->zombies.count > 0; i++) {
        struct __kernel_timespec ts = {.tv_nsec = 10 * 1000000};
        struct io_uring_cqe *cqe;
        u->submits++;
        io_uring_submit_and_wait_timeout(&u->ring, &cqe, 1, &ts, NULL);
        reap(w);
    }
    if (w->zombies.count > 0)
        log_warn("worker %d: %zu connections still had I/O in flight at exit", w->id,
                 w->zombies.count);
    io_uring_queue_exit(&u->ring);
    /* The ring is gone, and with it every request: the memory is ours. */
    while (w->zombies.head != NULL) {
        es_conn *c = w->zombies.head;
        free(c->tx);
        c->tx = NULL;
        conn_uring_free(c);
    }
    for (int k = 0; k < 2; k++) {
        while (u->free_tx[k] != NULL) {
            uring_tx *next = u->free_tx[k]->next;
            free(u->free_tx[k]);
            u->free_tx[k] = next;
        }
    }
    munmap(u->br, u->br_size);
    free(u->bufs_mem);
    free(u->spare);
    free(u->rearm);
    free(u);
    w->ring = NULL;
}

#endif
