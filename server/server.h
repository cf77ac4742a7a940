/* server.h - the server's shared structures: server, listener, worker, connection. */
#ifndef ES_SERVER_H
#define ES_SERVER_H

#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include "addr.h"
#include "buf.h"
#include "config.h"
#include "echosrv/plugin.h"
#include "loader.h"
#include "tls.h"

/* What an epoll event's data.ptr points at: the first byte says which. */
enum { SRC_CONN = 1, SRC_LISTENER = 2, SRC_WAKE = 3 };

#include "bounds.h"

typedef struct gen gen;

/* A listener name's place across reloads: its connection count and the
 * index of its idle list in every worker. Created by the main thread when a
 * configuration first names the listener, kept until exit. */
typedef struct slot {
    char *name;
    int index;             /* of its idle list in every worker */
    atomic_long nconns;    /* its open connections, every worker and generation */
} slot;

/* A [listener NAME] of one generation: its settings, its plugin. Read-only
 * once published to the workers. */
typedef struct service {
    const config_listener *cfg;
    plugin *plugin;        /* in its generation's plugins */
    slot *slot;
    uint64_t idle_ms;      /* idle_timeout in ms, 0 = never */
    long max_connections;
    SSL_CTX *tls;          /* NULL: plain TCP */
    struct metrics_series *stats; /* its counters (metrics.h), kept across reloads */
} service;

/* One listening socket of one generation. The fields the hot path reads
 * (hooks, instance, max_message) are copied here from its service, one
 * load away from a connection. */
typedef struct listener {
    uint8_t kind;                 /* SRC_LISTENER */
    int fd;                       /* its sock's */
    const es_plugin *hooks;       /* its plugin's descriptor */
    void *instance;               /* its plugin's instance */
    size_t max_message;
    SSL_CTX *tls;                 /* its service's; NULL: plain TCP */
    service *svc;
    gen *gen;
    char name[ADDR_TEXT_MAX];     /* the bound address as text */
} listener;

/* A bound, listening socket. Kept across reloads for as long as a
 * configuration binds its address, so a reload refuses no connection.
 * Main thread only. */
typedef struct sock {
    int fd;
    addr want;                    /* the address as configured: the key for reuse */
    addr a;                       /* as bound (a wildcard may fall back to IPv4) */
    int backlog;
    long mode;
    int used;                     /* by the configuration being set up */
    char owner[64];               /* the listener it was last bound for */
    char name[ADDR_TEXT_MAX];
    int inherited;                /* passed by the service manager (socket activation,
                                   * activation.c): never bound, chmod'ed, chown'ed or
                                   * unlinked by echosrv, and never closed by a reload */
    char fdname[64];              /* its name in $LISTEN_FDNAMES, or "" */
} sock;

/* A generation: one loading of the configuration, with its plugin
 * instances, TLS contexts and listeners. Connections run on the generation
 * that accepted them until they close; a reload makes a new one, and an old
 * one is freed (plugins' fini, unload) by the main thread once no worker
 * holds it and its last connection is gone. */
struct gen {
    unsigned id;
    config cfg;
    plugin *plugins;       /* each distinct plugin file, loaded once */
    size_t nplugins;
    service *services;     /* one per config listener, in file order */
    size_t nservices;
    listener *listeners;
    size_t nlisteners;
    atomic_int refs;       /* the main thread's while current, and each worker's */
    size_t *wconns;        /* connections per worker, each touched by its worker only */
    gen *next;             /* in server.dead */
    gen *older;            /* in server.all */
};

typedef struct worker worker;
typedef struct server server;
typedef struct conn_list conn_list;

/* A connection's place in one conn_list. */
typedef struct conn_link {
    es_conn *prev, *next;
} conn_link;

/* Connection flags. */
enum {
    CF_CLOSING = 1 << 0,  /* close once the output is sent */
    CF_EOF = 1 << 1,      /* the peer sent FIN: read no more */
    CF_LINGER = 1 << 2,   /* we sent FIN: discard input until the peer's */
    CF_PAUSED = 1 << 3,   /* not reading: output above the high-water mark */
    CF_ABORT = 1 << 4,    /* fatal error: close without sending more */
    CF_HANDSHAKE = 1 << 5,/* TLS handshake not done: the plugin has not seen it */
    CF_TLS_RWW = 1 << 6,  /* SSL_read wants the socket writable before it can go on */
    CF_TLS_MORE = 1 << 7, /* OpenSSL may hold input that epoll cannot see: read again */
    CF_NOPLUGIN = 1 << 8, /* the plugin's open hook has not run (or refused): no close hook */
    CF_PARTIAL = 1 << 9,  /* holds part of a message: in its worker's partial list */
    CF_PROXY = 1 << 10,   /* its PROXY header is awaited: in w->proxy, nothing else ran */
    /* The io_uring back end (uring.c): */
    CF_URING = 1 << 11,   /* served by io_uring operations, not by the epoll set */
    CF_RECVING = 1 << 12, /* its multishot receive is in flight (or listed to re-arm) */
    CF_SENDING = 1 << 13, /* a send is in flight: of tx's segments, or of sending */
    CF_DEAD = 1 << 14,    /* closed: in w->zombies until its operations complete */
    CF_REARM = 1 << 15,   /* its receive found no buffer: armed again after this turn */
    CF_QUIET = 1 << 16,   /* its last read sent nothing: in w->quiet, to be probed */
};

/* One client connection. Owned by the worker that accepted it, for life:
 * every field is touched by that worker's thread only. */
struct es_conn {
    uint8_t kind;          /* SRC_CONN */
    uint32_t flags;        /* CF_* */
    uint32_t events;       /* epoll mask registered */
    int fd;
    uint32_t slot;         /* its idle list: w->active[slot] */
    SSL *ssl;              /* NULL: plain TCP */
    worker *w;
    listener *l;
    struct metrics_block *stats; /* its worker's block of its listener's counters */
    conn_link link;        /* in its idle list, w->handshake, w->proxy or w->linger */
    uint64_t last_active;  /* ms, worker clock */
    conn_link plink;       /* in w->partial[slot] while CF_PARTIAL */
    conn_link qlink;       /* in w->quiet while CF_QUIET */
    uint64_t msg_start;    /* ms, worker clock: when its partial message began */
    buf in;                /* unconsumed input, when a message spans reads */
    size_t msg_passed;     /* bytes of the unfinished message the plugin's partial hook
                            * took (answered and dropped from the input) */
    buf out;               /* unsent output, under backpressure only (io_uring: also
                            * what waits for the send in flight) */
    buf sending;           /* io_uring: the bytes of the send in flight, unless they lie
                            * in a provided buffer; unchanged until it completes */
    struct uring_tx *tx;   /* io_uring: the send in flight when its bytes lie in
                            * provided buffers (uring.c), or NULL */
    char *peer_text;       /* formatted on demand */
    union {
        struct sockaddr sa;
        struct sockaddr_in in4;
        struct sockaddr_in6 in6;
    } peer;
    max_align_t state[];   /* the plugin's conn_size bytes */
};

/* A list of connections with a sentinel-free head and tail. */
struct conn_list {
    es_conn *head, *tail;
    size_t count;
    uint64_t timeout_ms;   /* the one timeout of its members (idle or read), 0 = none */
};

struct worker {
    uint8_t wake_kind;     /* SRC_WAKE: data.ptr of the eventfd */
    int id;
    int nworkers;          /* in the pool, this one included; fixed at start */
    server *srv;
    pthread_t thread;
    int epfd;
    int wakefd;
    uint64_t now;          /* ms, CLOCK_MONOTONIC, once per loop turn */
    gen *gen;              /* the generation whose listeners it polls */
    gen **gens;            /* every generation it holds: gen, and older ones
                            * with connections left here */
    size_t ngens, capgens;
    gen *refused;          /* a generation it could not take (out of memory) */
    conn_list *active;     /* one list per slot, least recently active first:
                            * a single timeout per list keeps expiry O(1) */
    size_t nactive;        /* lists in active and in partial */
    conn_list *partial;    /* one list per slot of the connections holding part of a
                            * message, linked through plink, oldest message first:
                            * read_timeout expiry is O(1) */
    conn_list linger;      /* oldest first */
    conn_list handshake;   /* TLS handshakes in progress, oldest first */
    conn_list proxy;       /* connections awaiting their PROXY header, oldest first */
    es_conn *cur;          /* the connection whose input is being handled */
    uintptr_t in_lo, in_hi;/* bounds of that input */
    const uint8_t *span;   /* replies that are bytes of that input, not copied */
    size_t span_len;
    buf stage;             /* other replies of one read, sent with one write */
    uint8_t *rbuf;         /* READ_BUF_SIZE bytes (buf_alloc_io) */
    void *rbuf_mem;        /* its allocation */
    buf pool[POOL_SLOTS];  /* spare buffers for connections' queues (conn.c): an idle
                            * connection holds none, a busy one takes them warm */
    size_t npool, pool_bytes;
    struct uring *ring;    /* the io_uring back end (uring.c), or NULL: epoll */
    int cur_bid;           /* io_uring: provided buffer of the input being handled, or -1 */
    int cur_bid_held;      /* a send from it is in flight: not to be given back yet */
    conn_list zombies;     /* io_uring: closed connections with operations in flight */
    conn_list quiet;       /* io_uring: connections whose last read sent nothing, linked
                            * through qlink, least recently active first (conn_probe) */
    int init_state;        /* 0 starting, 1 running, -1 failed to start (init_err) */
    char init_err[256];
    int accepting;         /* listeners are in epfd */
    uint64_t accept_resume;/* ms; when accepting was paused */
    uint64_t warned_full;  /* ms of the last max_connections warning */
    uint64_t warned_emfile;/* ms of the last descriptor shortage warning */
    int draining;
    uint64_t drain_deadline;
};

/* What the main thread knows of a plugin file it loaded: a file replaced
 * since is loaded from a private copy, since the dynamic loader would hand
 * back the old code for the same path. */
typedef struct plugin_file {
    char *path;            /* real path */
    dev_t dev;
    ino_t ino;
    struct timespec mtime;
    off_t size;
} plugin_file;

struct server {
    const char *config_path;
    int allow_root;        /* --allow-root */
    int io_override;       /* --io (IO_*), or -1: [server] io decides */
    int io;                /* the back end the workers run: IO_EPOLL or IO_URING */
    _Atomic(gen *) gen;    /* the current generation */
    unsigned next_gen;     /* id of the next generation */
    sock **socks;          /* main thread only */
    size_t nsocks;
    slot **slots;          /* main thread only (workers use slot pointers) */
    size_t nslots;
    plugin_file *files;    /* main thread only */
    size_t nfiles;
    char *copy_dir;        /* private directory of plugin copies, or NULL */
    es_host host;
    worker *workers;
    int nworkers;
    atomic_long nconns;    /* open connections, all workers */
    atomic_int stopping;   /* 1: drain, 2: close everything now */
    gen *all;              /* every generation not freed, newest first: main thread only */
    pthread_mutex_t lock;  /* guards released, alive, switched and dead */
    pthread_cond_t cond;
    int released;          /* workers that dropped the listeners */
    int alive;             /* worker threads running */
    int switched;          /* workers that took the current generation */
    gen *dead;             /* generations no one holds, for the main thread to free */
    int donefd;            /* eventfd: each worker adds 1 as it ends */
    struct metrics *metrics; /* the counters (metrics.h); set before the workers start */
    struct admin *admin;   /* the [admin] listener (admin.h): main thread only */
    int reapfd;            /* eventfd: a generation was put on dead */
};

/* listener.c */

/* Bind and listen on a; fills s. A unix socket file gets the permission
 * bits mode (before listen()) unless mode is -1; TCP addresses ignore mode.
 * Returns 0, or -1 with a message in err. Main thread. */
int sock_open(sock *s, const addr *a, int backlog, long mode, char *err, size_t errlen);

/* Apply a new backlog and socket_mode to the open s. Returns 0, or -1 with
 * a message in err. Main thread. */
int sock_update(sock *s, int backlog, long mode, char *err, size_t errlen);

/* Close s and remove its unix socket file, if any. Main thread, once no
 * worker polls it. */
void sock_close(sock *s);

/* gen.c */

/* Load the configuration at srv->config_path as a new generation: parse,
 * load and init its plugins (a replaced plugin file from a private copy),
 * make its TLS contexts and services. No socket is touched. Returns the
 * generation (no references yet), or NULL with "FILE:LINE: message" in err.
 * Main thread. */
gen *gen_load(server *srv, char *err, size_t errlen);

/* Open or reuse a socket for every address of g's listeners and fill
 * g->listeners; an address the service manager passed a socket for
 * (activation_take()) gets that socket. Returns 0, or -1 with a message in
 * err (sockets opened for g are closed again), also when an inherited
 * socket is left without a listener. Main thread. */
int gen_bind(server *srv, gen *g, char *err, size_t errlen);

/* Close the sockets that the current generation does not use. Main
 * thread, once no worker polls them. */
void gen_close_unused_socks(server *srv);

/* Free g: plugins' fini, unload, TLS contexts, configuration. Main thread,
 * once no worker holds g. */
void gen_free(server *srv, gen *g);

/* Free what srv keeps across generations: sockets, slots, file records,
 * the copy directory. Main thread, at exit. */
void gen_cleanup(server *srv);

/* conn.c */

/* Fill srv->host with the services plugins call. */
void conn_host_init(es_host *host);

/* Take over fd accepted from l on w: allocate, register, and run the
 * plugin's open (on a TLS listener, once the handshake is done). Returns 0,
 * or -1 when the connection is already closed or closing (fd closed,
 * counters restored). Owning worker. */
int conn_open(worker *w, listener *l, int fd, const struct sockaddr *sa, socklen_t salen);

/* Handle epoll events for c. Owning worker; c may be freed. */
void conn_event(es_conn *c, uint32_t events);

/* Final read, then close c gracefully if it has nothing in flight. Used
 * when the worker starts to drain. Owning worker; c may be freed. */
void conn_drain(es_conn *c);

/* Close c now: plugin close hook, fd, memory. Owning worker. */
void conn_destroy(es_conn *c);

/* Close c, whose TLS handshake took longer than tls_handshake_timeout,
 * and log it. Owning worker; c is freed. */
void conn_handshake_expired(es_conn *c);

/* Close c, whose PROXY header did not arrive within proxy_timeout, and
 * log it. Owning worker; c is freed. */
void conn_proxy_expired(es_conn *c);

/* Close c, the head of its partial list, whose message did not arrive
 * within read_timeout: logged with the peer, then conn_destroy(). Owning
 * worker; c is freed. */
void conn_read_expired(es_conn *c);

/* Ask the socket of c, the head of w->quiet, whether the peer is still
 * there (one non-blocking MSG_PEEK). A multishot receive can deliver the
 * last bytes before a reset and never report the reset itself (seen with
 * Linux 6.18 under a flood of data + RST); a read that sent a reply would
 * find it out when sending, one that sent nothing would wait forever.
 * Gone: handled as the end or error the receive missed. Owning worker; c
 * leaves w->quiet and may be freed. */
void conn_probe(es_conn *c);

/* Unlink c from its list. */
void conn_list_remove(conn_list *l, es_conn *c);
void conn_list_append(conn_list *l, es_conn *c);

/* io_uring completions of c's receive (res: bytes, 0 at the end, or
 * -errno; bid: the provided buffer holding them, or -1; more: the receive
 * goes on) and of its send. Owning worker; c may be freed. */
void conn_uring_recv(es_conn *c, int res, int bid, int more);
void conn_uring_sent(es_conn *c, int res);

/* Arm what c needs and has not in flight: its receive, its send. For a
 * closed c (CF_DEAD), free it if nothing is in flight. Owning worker. */
void conn_uring_kick(es_conn *c);

/* Free w's spare buffers. */
void conn_pool_free(worker *w);

/* Close the socket of the closed c and free it: its operations are over
 * (or its ring is gone). */
void conn_uring_free(es_conn *c);

/* worker.c */

/* Create srv->nworkers workers, each with its epoll set holding every
 * listener, and start their threads. Returns 0, or -1 with a message in
 * err (nothing left running). Main thread. */
int worker_start_all(server *srv, char *err, size_t errlen);

/* Ask every worker to drain (level 1) or to close everything (level 2).
 * Main thread. */
void worker_stop_all(server *srv, int level);

/* Wait until no worker polls the listeners any more. Main thread. */
void worker_wait_released(server *srv);

/* Join every worker and free them. Main thread. */
void worker_join_all(server *srv);

/* Connections of w still open (active and lingering). Owning worker. */
size_t worker_conn_count(const worker *w);

/* Publish g as the current generation and wait until every worker polls
 * its listeners. Main thread. */
void worker_switch_all(server *srv, gen *g);

/* A multishot accept of listening socket lfd completed: res is the
 * accepted fd or -errno, current says whether it was armed for the
 * listeners w polls now, more whether it goes on. Owning worker. */
void worker_accept_done(worker *w, int lfd, int current, int res, int more);

/* The worker clock: ms of CLOCK_MONOTONIC. */
uint64_t worker_now_ms(void);

/* Drop w's hold on g, whose last connection on w is gone (or w stops): the
 * main thread frees g once no one holds it. Owning worker. */
void worker_gen_drop(worker *w, gen *g);

#endif
