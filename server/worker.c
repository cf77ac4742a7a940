/* worker.c - the worker pool: one epoll loop per thread that accepts and serves its connections. */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "metrics.h"
#include "server.h"
#include "sys.h"
#include "uring.h"

#define MAX_EVENTS 256

uint64_t worker_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Poll the listeners of w's generation. Returns 0, or -1 with errno. */
static int listeners_add(worker *w)
{
    gen *g = w->gen;
    if (w->ring != NULL) {
        if (uring_accept_start(w) < 0)
            return -1;
        w->accepting = 1;
        return 0;
    }
    for (size_t i = 0; i < g->nlisteners; i++) {
        struct epoll_event ev = {.events = EPOLLIN | EPOLLEXCLUSIVE, .data.ptr = &g->listeners[i]};
        if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, g->listeners[i].fd, &ev) < 0) {
            int e = errno;
            while (i-- > 0)
                epoll_ctl(w->epfd, EPOLL_CTL_DEL, g->listeners[i].fd, NULL);
            errno = e;
            return -1;
        }
    }
    w->accepting = 1;
    return 0;
}

static void listeners_remove(worker *w)
{
    if (!w->accepting)
        return;
    if (w->ring != NULL) {
        uring_accept_stop(w);
        w->accepting = 0;
        return;
    }
    for (size_t i = 0; i < w->gen->nlisteners; i++)
        epoll_ctl(w->epfd, EPOLL_CTL_DEL, w->gen->listeners[i].fd, NULL);
    w->accepting = 0;
}

/* Whether the peer sa may connect to svc: refused when its deny list
 * matches, or when it has an allow list that does not. Unix peers are
 * never refused. With proxy_protocol, the peer is a proxy: only
 * proxy_allow applies (allow and deny apply to the client its header
 * names, in conn.c). */
static int peer_allowed(const service *svc, const struct sockaddr *sa)
{
    const config_listener *lc = svc->cfg;
    if (sa->sa_family != AF_INET && sa->sa_family != AF_INET6)
        return 1;
    if (lc->proxy.on)
        return cidr_list_match(lc->proxy.allow, lc->proxy.nallow, sa);
    if (cidr_list_match(lc->deny, lc->ndeny, sa))
        return 0;
    return lc->nallow == 0 || cidr_list_match(lc->allow, lc->nallow, sa);
}

/* Out of descriptors or memory: retrying at once would spin. Stop
 * accepting for a while; the connections we have carry on. */
static void accept_pause(worker *w, listener *l, int err)
{
    if (w->warned_emfile == 0 || w->now - w->warned_emfile >= 10000) {
        log_warn("accept on %s: %s: pausing accepts for %d ms at a time "
                 "(%ld connections open)",
                 l != NULL ? l->name : "a listener", strerror(err), ACCEPT_PAUSE_MS,
                 atomic_load_explicit(&w->srv->nconns, memory_order_relaxed));
        w->warned_emfile = w->now;
    }
    listeners_remove(w);
    w->accept_resume = w->now + ACCEPT_PAUSE_MS;
}

/* Serve fd, accepted from l, unless access control or the connection
 * limits refuse it. */
static void worker_take(worker *w, listener *l, int fd, const struct sockaddr *sa, socklen_t sl)
{
    server *srv = w->srv;
    long max = w->gen->cfg.max_connections;
    service *svc = l->svc;
    /* Access control comes first: a refused peer never reaches the
     * plugin nor counts against max_connections. */
    if (!peer_allowed(svc, sa)) {
        if (log_threshold >= ES_LOG_DEBUG) {
            char text[ADDR_TEXT_MAX];
            addr_format(sa, sl, text, sizeof text);
            log_debug("refusing %s on %s: not allowed by listener %s%s", text, l->name,
                      svc->cfg->name, svc->cfg->proxy.on ? " (proxy_allow)" : "");
        }
        metrics_add(&svc->stats->w[w->id].refused[MR_ACCESS], 1);
        close(fd);
        return;
    }
    /* A connection needs room in the process-wide count and in its
     * listener's. */
    int full = 0;
    if (atomic_fetch_add_explicit(&srv->nconns, 1, memory_order_relaxed) >= max) {
        full = 1;
    } else if (atomic_fetch_add_explicit(&svc->slot->nconns, 1, memory_order_relaxed) >=
               svc->max_connections) {
        atomic_fetch_sub_explicit(&svc->slot->nconns, 1, memory_order_relaxed);
        full = 2;
    }
    if (full) {
        atomic_fetch_sub_explicit(&srv->nconns, 1, memory_order_relaxed);
        metrics_add(&svc->stats->w[w->id].refused[MR_MAX_CONNECTIONS], 1);
        close(fd);
        if (w->now - w->warned_full >= 1000 || w->warned_full == 0) {
            if (full == 1)
                log_warn("max_connections (%ld) reached: refusing connections on %s", max,
                         l->name);
            else
                log_warn("max_connections (%ld) of listener %s reached: refusing "
                         "connections on %s", svc->max_connections, svc->cfg->name, l->name);
            w->warned_full = w->now;
        }
        return;
    }
    conn_open(w, l, fd, sa, sl);
}

static void worker_accept(worker *w, listener *l)
{
    for (int i = 0; i < ACCEPT_BATCH; i++) {
        struct sockaddr_storage ss;
        socklen_t sl = sizeof ss;
        int fd = accept4(l->fd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            switch (errno) {
            case EAGAIN:
                return;
            case EINTR:
            case ECONNABORTED:
            case EPROTO:
            case EPERM:
                continue;
            case EMFILE:
            case ENFILE:
            case ENOBUFS:
            case ENOMEM:
                accept_pause(w, l, errno);
                return;
            default:
                log_error("accept on %s: %s", l->name, strerror(errno));
                return;
            }
        }
        worker_take(w, l, fd, (struct sockaddr *)&ss, sl);
    }
}

/* The listener of w's generation on socket lfd, or NULL. */
static listener *listener_of_fd(worker *w, int lfd)
{
    gen *g = w->gen;
    for (size_t i = 0; i < g->nlisteners; i++)
        if (g->listeners[i].fd == lfd)
            return &g->listeners[i];
    return NULL;
}

void worker_accept_done(worker *w, int lfd, int current, int res, int more)
{
    listener *l = listener_of_fd(w, lfd);
    if (res >= 0) {
        /* An accept armed before a reload may complete after it: the new
         * generation serves it if it still listens there. */
        if (l == NULL || !w->accepting) {
            close(res);
        } else {
            struct sockaddr_storage ss;
            socklen_t sl = sizeof ss;
            if (getpeername(res, (struct sockaddr *)&ss, &sl) < 0) {
                close(res); /* already reset by the peer */
            } else {
                worker_take(w, l, res, (struct sockaddr *)&ss, sl);
            }
        }
        if (!current || !w->accepting || l == NULL)
            return;
        if (!more) {
            if (uring_accept_one(w, lfd) < 0)
                accept_pause(w, l, ENOMEM);
        } else if (w->nworkers > 1 &&
                   (long)w->gen->wconns[w->id] * w->nworkers >
                       atomic_load_explicit(&w->srv->nconns, memory_order_relaxed)) {
            /* More than its share: the next connections go to the others. */
            uring_accept_yield(w, lfd);
        }
        return;
    }
    if (!current || !w->accepting)
        return;
    switch (-res) {
    case ECANCELED: /* uring_accept_yield's: armed again, behind the other workers */
    case EAGAIN:
    case EINTR:
    case ECONNABORTED:
    case EPROTO:
    case EPERM:
        if (!more && l != NULL && uring_accept_one(w, lfd) < 0)
            accept_pause(w, l, ENOMEM);
        return;
    case EMFILE:
    case ENFILE:
    case ENOBUFS:
    case ENOMEM:
        accept_pause(w, l, -res);
        return;
    default:
        log_error("accept on %s: %s", l != NULL ? l->name : "a listener", strerror(-res));
        if (!more)
            accept_pause(w, l, -res);
        return;
    }
}

/* Stop polling the listeners for good and tell the main thread. */
static void worker_release(worker *w)
{
    server *srv = w->srv;
    listeners_remove(w);
    w->accept_resume = 0;
    pthread_mutex_lock(&srv->lock);
    srv->released++;
    pthread_cond_broadcast(&srv->cond);
    pthread_mutex_unlock(&srv->lock);
}

static void worker_drain_start(worker *w)
{
    w->draining = 1;
    w->drain_deadline = w->now + (uint64_t)w->gen->cfg.shutdown_timeout * 1000u;
    worker_release(w);
    /* Handshakes in progress carry no reply yet: they end here. */
    while (w->handshake.head != NULL)
        conn_destroy(w->handshake.head);
    while (w->proxy.head != NULL)
        conn_destroy(w->proxy.head);
    /* io_uring: the input that came before the drain is handled first,
     * as epoll's final read would. */
    uring_flush(w);
    for (size_t i = 0; i < w->nactive; i++) {
        es_conn *c = w->active[i].head;
        while (c != NULL) {
            es_conn *next = c->link.next;
            conn_drain(c);
            c = next;
        }
    }
}

static void worker_close_all(worker *w)
{
    for (size_t i = 0; i < w->nactive; i++)
        while (w->active[i].head != NULL)
            conn_destroy(w->active[i].head);
    while (w->linger.head != NULL)
        conn_destroy(w->linger.head);
    while (w->handshake.head != NULL)
        conn_destroy(w->handshake.head);
    while (w->proxy.head != NULL)
        conn_destroy(w->proxy.head);
}

size_t worker_conn_count(const worker *w)
{
    size_t n = w->linger.count + w->handshake.count + w->proxy.count;
    for (size_t i = 0; i < w->nactive; i++)
        n += w->active[i].count;
    return n;
}

/* Close what timed out; return the ms until the next deadline, or -1. */
static int worker_timers(worker *w)
{
    uint64_t next = UINT64_MAX;
    for (size_t i = 0; i < w->nactive && !w->draining; i++) {
        conn_list *al = &w->active[i];
        uint64_t ms = al->timeout_ms;
        if (ms == 0)
            continue;
        while (al->head != NULL && w->now - al->head->last_active >= ms) {
            log_debug("closing an idle connection (listener %s)", al->head->l->svc->cfg->name);
            metrics_add(&al->head->stats->errors[ME_IDLE_TIMEOUT], 1);
            conn_destroy(al->head);
        }
        if (al->head != NULL && al->head->last_active + ms < next)
            next = al->head->last_active + ms;
    }
    uint64_t hs_ms = (uint64_t)w->gen->cfg.tls_handshake_timeout * 1000u;
    while (w->handshake.head != NULL && w->now - w->handshake.head->last_active >= hs_ms)
        conn_handshake_expired(w->handshake.head);
    if (w->handshake.head != NULL && w->handshake.head->last_active + hs_ms < next)
        next = w->handshake.head->last_active + hs_ms;
    uint64_t px_ms = (uint64_t)w->gen->cfg.proxy_timeout * 1000u;
    while (w->proxy.head != NULL && w->now - w->proxy.head->last_active >= px_ms)
        conn_proxy_expired(w->proxy.head);
    if (w->proxy.head != NULL && w->proxy.head->last_active + px_ms < next)
        next = w->proxy.head->last_active + px_ms;
    for (size_t i = 0; i < w->nactive && !w->draining; i++) {
        conn_list *pl = &w->partial[i];
        uint64_t ms = pl->timeout_ms;
        if (ms == 0)
            continue;
        while (pl->head != NULL && w->now - pl->head->msg_start >= ms)
            conn_read_expired(pl->head);
        if (pl->head != NULL && pl->head->msg_start + ms < next)
            next = pl->head->msg_start + ms;
    }
    while (w->quiet.head != NULL && w->now - w->quiet.head->last_active >= URING_QUIET_PROBE_MS)
        conn_probe(w->quiet.head);
    if (w->quiet.head != NULL && w->quiet.head->last_active + URING_QUIET_PROBE_MS < next)
        next = w->quiet.head->last_active + URING_QUIET_PROBE_MS;
    while (w->linger.head != NULL && w->now - w->linger.head->last_active >= LINGER_MS)
        conn_destroy(w->linger.head);
    if (w->linger.head != NULL && w->linger.head->last_active + LINGER_MS < next)
        next = w->linger.head->last_active + LINGER_MS;
    if (!w->accepting && !w->draining && w->accept_resume != 0) {
        if (w->now >= w->accept_resume) {
            w->accept_resume = 0;
            if (listeners_add(w) < 0) {
                log_error("cannot resume accepting: %s: trying again in %d ms", strerror(errno),
                          ACCEPT_PAUSE_MS);
                w->accept_resume = w->now + ACCEPT_PAUSE_MS;
                next = w->accept_resume;
            }
        } else if (w->accept_resume < next) {
            next = w->accept_resume;
        }
    }
    if (w->draining) {
        if (w->now >= w->drain_deadline) {
            size_t open = worker_conn_count(w);
            if (open > 0)
                log_warn("shutdown_timeout reached: closing %zu connections", open);
            worker_close_all(w);
        } else if (w->drain_deadline < next) {
            next = w->drain_deadline;
        }
    }
    if (next == UINT64_MAX)
        return -1;
    if (next <= w->now)
        return 0;
    return next - w->now > INT_MAX ? INT_MAX : (int)(next - w->now);
}

/* Hold g: it joins w's generations, and w's idle lists cover its
 * listeners' slots, with their idle timeouts. Returns 0, or -1 when out of
 * memory (nothing changed). Owning worker (or the main thread before the
 * worker starts). */
static int worker_hold(worker *w, gen *g)
{
    size_t need = w->nactive;
    for (size_t i = 0; i < g->nservices; i++)
        if ((size_t)g->services[i].slot->index + 1 > need)
            need = (size_t)g->services[i].slot->index + 1;
    if (w->ngens == w->capgens) {
        size_t cap = w->capgens ? w->capgens * 2 : 4;
        gen **v = realloc(w->gens, cap * sizeof *v);
        if (v == NULL)
            return -1;
        w->gens = v;
        w->capgens = cap;
    }
    if (need > w->nactive) {
        /* Connections name their lists by index: the arrays may move. */
        conn_list *v = realloc(w->active, need * sizeof *v);
        if (v == NULL)
            return -1;
        memset(v + w->nactive, 0, (need - w->nactive) * sizeof *v);
        w->active = v;
        v = realloc(w->partial, need * sizeof *v);
        if (v == NULL)
            return -1; /* active grew: harmless, nactive tells the size of both */
        memset(v + w->nactive, 0, (need - w->nactive) * sizeof *v);
        w->partial = v;
        w->nactive = need;
    }
    for (size_t i = 0; i < g->nservices; i++) {
        const service *svc = &g->services[i];
        w->active[svc->slot->index].timeout_ms = svc->idle_ms;
        w->partial[svc->slot->index].timeout_ms = (uint64_t)svc->cfg->read_timeout * 1000u;
    }
    w->gens[w->ngens++] = g;
    return 0;
}

void worker_gen_drop(worker *w, gen *g)
{
    server *srv = w->srv;
    for (size_t i = 0; i < w->ngens; i++) {
        if (w->gens[i] == g) {
            w->gens[i] = w->gens[--w->ngens];
            break;
        }
    }
    if (atomic_fetch_sub(&g->refs, 1) != 1)
        return;
    /* The last holder: the main thread runs the plugins' fini and frees it. */
    pthread_mutex_lock(&srv->lock);
    g->next = srv->dead;
    srv->dead = g;
    pthread_mutex_unlock(&srv->lock);
    uint64_t one = 1;
    ssize_t r = write(srv->reapfd, &one, sizeof one);
    (void)r;
}

/* Take the main thread's new generation g: poll its listeners instead of
 * the old one's, and let the old one go if no connection of it is left
 * here. Owning worker. */
static void worker_switch(worker *w, gen *g)
{
    server *srv = w->srv;
    gen *old = w->gen;
    if (g == w->refused)
        return; /* already answered */
    if (worker_hold(w, g) < 0) {
        log_error("worker %d: out of memory taking the new configuration: its connections "
                  "stay on the previous one", w->id);
        /* The main thread counted a hold for this worker: give it back, once. */
        w->refused = g;
        atomic_fetch_sub(&g->refs, 1);
    } else {
        int was = w->accepting;
        listeners_remove(w);
        w->gen = g;
        if (was && listeners_add(w) < 0) {
            log_error("worker %d: cannot poll the new listeners: %s: trying again in %d ms",
                      w->id, strerror(errno), ACCEPT_PAUSE_MS);
            w->accept_resume = w->now + ACCEPT_PAUSE_MS;
        }
        if (old->wconns[w->id] == 0)
            worker_gen_drop(w, old);
    }
    pthread_mutex_lock(&srv->lock);
    srv->switched++;
    pthread_cond_broadcast(&srv->cond);
    pthread_mutex_unlock(&srv->lock);
}

void worker_switch_all(server *srv, gen *g)
{
    pthread_mutex_lock(&srv->lock);
    atomic_store(&g->refs, 1 + srv->alive);
    srv->switched = 0;
    atomic_store(&srv->gen, g);
    pthread_mutex_unlock(&srv->lock);
    for (int i = 0; i < srv->nworkers; i++) {
        uint64_t one = 1;
        ssize_t r = write(srv->workers[i].wakefd, &one, sizeof one);
        (void)r;
    }
    pthread_mutex_lock(&srv->lock);
    while (srv->switched < srv->alive)
        pthread_cond_wait(&srv->cond, &srv->lock);
    pthread_mutex_unlock(&srv->lock);
}

/* Tell worker_start_all() whether w could start (state 1) or not (-1). */
static void worker_started(worker *w, int state)
{
    pthread_mutex_lock(&w->srv->lock);
    w->init_state = state;
    pthread_cond_broadcast(&w->srv->cond);
    pthread_mutex_unlock(&w->srv->lock);
}

static void *worker_main(void *arg)
{
    worker *w = arg;
    server *srv = w->srv;
    struct epoll_event evs[MAX_EVENTS];
    w->now = worker_now_ms();
    w->cur_bid = -1;
    if (srv->io == IO_URING) {
        /* The ring is made here: its submitter is this thread alone. */
        if (uring_worker_init(w, w->init_err, sizeof w->init_err) < 0 ||
            listeners_add(w) < 0) {
            if (w->init_err[0] == '\0')
                snprintf(w->init_err, sizeof w->init_err, "%s", strerror(errno));
            worker_started(w, -1);
            goto out;
        }
    }
    worker_started(w, 1);
    for (;;) {
        int timeout = worker_timers(w);
        if (w->draining && worker_conn_count(w) == 0)
            break;
        int n;
        if (w->ring != NULL) {
            /* Completions are handled inside; the epoll set (the wake-up
             * eventfd, TLS connections, PROXY headers) only when it has
             * events, until it has none. */
            int ready = uring_wait(w, timeout);
            if (ready < 0)
                break;
            if (ready == 0)
                continue;
            n = sys_epoll_wait(w->epfd, evs, MAX_EVENTS, 0);
            if (n > 0)
                uring_epoll_again(w);
        } else {
            n = sys_epoll_wait(w->epfd, evs, MAX_EVENTS, timeout);
            w->now = worker_now_ms();
        }
        if (n < 0) {
            if (errno == EINTR)
                continue;
            log_error("worker %d: epoll_wait: %s", w->id, strerror(errno));
            break;
        }
        int woken = 0;
        for (int i = 0; i < n; i++) {
            uint8_t kind = *(uint8_t *)evs[i].data.ptr;
            if (kind == SRC_CONN) {
                conn_event(evs[i].data.ptr, evs[i].events);
            } else if (kind == SRC_LISTENER) {
                if (w->accepting)
                    worker_accept(w, evs[i].data.ptr);
            } else {
                uint64_t v;
                ssize_t r = read(w->wakefd, &v, sizeof v);
                (void)r;
                woken = 1;
            }
        }
        /* Acted on only after the batch: draining or closing connections
         * here would free some whose events are still in evs[]. */
        if (woken) {
            gen *g = atomic_load(&srv->gen);
            if (g != w->gen)
                worker_switch(w, g);
            int level = atomic_load(&srv->stopping);
            if (level >= 1 && !w->draining)
                worker_drain_start(w);
            if (level >= 2)
                worker_close_all(w);
        }
    }
out:
    if (!w->draining)
        worker_release(w);
    worker_close_all(w);
    uring_worker_free(w);
    while (w->ngens > 0)
        worker_gen_drop(w, w->gens[w->ngens - 1]);
    pthread_mutex_lock(&srv->lock);
    srv->alive--;
    pthread_cond_broadcast(&srv->cond);
    pthread_mutex_unlock(&srv->lock);
    uint64_t one = 1;
    ssize_t r = write(srv->donefd, &one, sizeof one);
    (void)r;
    return NULL;
}

static void worker_free(worker *w)
{
    if (w->epfd >= 0)
        close(w->epfd);
    if (w->wakefd >= 0)
        close(w->wakefd);
    w->epfd = w->wakefd = -1;
    buf_free(&w->stage);
    conn_pool_free(w);
    free(w->rbuf_mem);
    free(w->active);
    free(w->gens);
    free(w->partial);
    w->rbuf = NULL;
    w->rbuf_mem = NULL;
    w->active = NULL;
    w->partial = NULL;
    w->gens = NULL;
}

/* The back end the workers run: --io, else [server] io; auto takes
 * io_uring when the kernel allows it. Logged. Returns 0, or -1 with a
 * message in err (io_uring asked for and not available). */
static int worker_pick_io(server *srv, const config *cfg, char *err, size_t errlen)
{
    int want = srv->io_override >= 0 ? srv->io_override : cfg->io;
    char why[256];
    if (want == IO_EPOLL) {
        srv->io = IO_EPOLL;
        log_info("io: epoll");
        return 0;
    }
    if (uring_available(why, sizeof why)) {
        srv->io = IO_URING;
        log_info("io: io_uring");
        return 0;
    }
    if (want == IO_URING) {
        snprintf(err, errlen, "%s: %s", srv->io_override >= 0 ? "--io io_uring" : "io = io_uring",
                 why);
        return -1;
    }
    srv->io = IO_EPOLL;
    log_info("io: epoll (io_uring not available: %s)", why);
    return 0;
}

int worker_start_all(server *srv, char *err, size_t errlen)
{
    gen *g = atomic_load(&srv->gen);
    if (worker_pick_io(srv, &g->cfg, err, errlen) < 0)
        return -1;
    int n = (int)g->cfg.threads;
    srv->workers = calloc((size_t)n, sizeof *srv->workers);
    if (srv->workers == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    for (int i = 0; i < n; i++) {
        worker *w = &srv->workers[i];
        w->wake_kind = SRC_WAKE;
        w->id = i;
        w->nworkers = n;
        w->srv = srv;
        w->wakefd = -1;
        w->epfd = epoll_create1(EPOLL_CLOEXEC);
        w->rbuf = buf_alloc_io(READ_BUF_SIZE, &w->rbuf_mem);
        w->gen = g;
        if (w->epfd < 0 || w->rbuf == NULL || worker_hold(w, g) < 0) {
            snprintf(err, errlen, "worker %d: %s", i,
                     w->epfd < 0 ? strerror(errno) : "out of memory");
            worker_free(w);
            goto fail;
        }
        w->wakefd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &w->wake_kind};
        /* io_uring: the worker arms its accepts itself, on its ring. */
        if (w->wakefd < 0 || epoll_ctl(w->epfd, EPOLL_CTL_ADD, w->wakefd, &ev) < 0 ||
            (srv->io != IO_URING && listeners_add(w) < 0)) {
            snprintf(err, errlen, "worker %d: %s", i, strerror(errno));
            worker_free(w);
            goto fail;
        }
        /* The thread inherits the caller's signal mask: the main thread
         * blocks every signal it handles before starting workers. */
        atomic_fetch_add(&g->refs, 1);
        pthread_mutex_lock(&srv->lock);
        srv->alive++;
        pthread_mutex_unlock(&srv->lock);
        int rc = pthread_create(&w->thread, NULL, worker_main, w);
        if (rc != 0) {
            snprintf(err, errlen, "worker %d: cannot start a thread: %s", i, strerror(rc));
            atomic_fetch_sub(&g->refs, 1);
            pthread_mutex_lock(&srv->lock);
            srv->alive--;
            pthread_mutex_unlock(&srv->lock);
            worker_free(w);
            goto fail;
        }
        srv->nworkers = i + 1;
        pthread_mutex_lock(&srv->lock);
        while (w->init_state == 0)
            pthread_cond_wait(&srv->cond, &srv->lock);
        pthread_mutex_unlock(&srv->lock);
        if (w->init_state < 0) {
            snprintf(err, errlen, "worker %d: io_uring: %s", i, w->init_err);
            goto fail;
        }
    }
    return 0;
fail:
    worker_stop_all(srv, 2);
    worker_join_all(srv);
    return -1;
}

void worker_stop_all(server *srv, int level)
{
    atomic_store(&srv->stopping, level);
    for (int i = 0; i < srv->nworkers; i++) {
        uint64_t one = 1;
        ssize_t r = write(srv->workers[i].wakefd, &one, sizeof one);
        (void)r;
    }
}

void worker_wait_released(server *srv)
{
    pthread_mutex_lock(&srv->lock);
    while (srv->released < srv->nworkers)
        pthread_cond_wait(&srv->cond, &srv->lock);
    pthread_mutex_unlock(&srv->lock);
}

void worker_join_all(server *srv)
{
    for (int i = 0; i < srv->nworkers; i++) {
        pthread_join(srv->workers[i].thread, NULL);
        worker_free(&srv->workers[i]);
    }
    free(srv->workers);
    srv->workers = NULL;
    srv->nworkers = 0;
}
