/* server.h - the server's shared structures: server, listener, worker, connection. */
#ifndef ES_SERVER_H
#define ES_SERVER_H

#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "addr.h"
#include "buf.h"
#include "config.h"
#include "echosrv/plugin.h"
#include "loader.h"

/* What an epoll event's data.ptr points at: the first byte says which. */
enum { SRC_CONN = 1, SRC_LISTENER = 2, SRC_WAKE = 3 };

#define READ_BUF_SIZE (64 * 1024)     /* per-worker read buffer */
#define OUT_HIGH_WATER (256 * 1024)   /* stop reading a connection above this */
#define OUT_LOW_WATER (128 * 1024)    /* and resume below this */
#define STAGE_KEEP (1024 * 1024)      /* a larger staging buffer is released after use */
#define LINGER_MS 2000                /* wait for the peer's FIN after our close */
#define ACCEPT_PAUSE_MS 200           /* stop accepting this long on EMFILE */
#define ACCEPT_BATCH 16               /* connections accepted per wake-up */

/* A [listener NAME] at run time: its settings, its plugin, its connection
 * count. Shared by its sockets (one per bind address); read-only once the
 * workers run but for nconns. */
typedef struct service {
    const config_listener *cfg;
    plugin *plugin;        /* in server.plugins; loaded once per file */
    int index;             /* of its idle list in every worker */
    uint64_t idle_ms;      /* idle_timeout in ms, 0 = never */
    long max_connections;
    atomic_long nconns;    /* its open connections, all workers */
} service;

/* One listening socket. The fields the hot path reads (hooks, instance,
 * max_message) are copied here from its service, one load away from a
 * connection. */
typedef struct listener {
    uint8_t kind;                 /* SRC_LISTENER */
    int fd;
    const es_plugin *hooks;       /* its plugin's descriptor */
    void *instance;               /* its plugin's instance */
    size_t max_message;
    service *svc;
    addr a;
    char name[ADDR_TEXT_MAX];     /* the bound address as text */
} listener;

typedef struct worker worker;
typedef struct server server;
typedef struct conn_list conn_list;

/* Connection flags. */
enum {
    CF_CLOSING = 1 << 0,  /* close once the output is sent */
    CF_EOF = 1 << 1,      /* the peer sent FIN: read no more */
    CF_LINGER = 1 << 2,   /* we sent FIN: discard input until the peer's */
    CF_PAUSED = 1 << 3,   /* not reading: output above the high-water mark */
    CF_ABORT = 1 << 4,    /* fatal error: close without sending more */
    CF_PARTIAL = 1 << 5,  /* holds part of a message: in its worker's partial list */
};

/* One client connection. Owned by the worker that accepted it, for life:
 * every field is touched by that worker's thread only. */
struct es_conn {
    uint8_t kind;          /* SRC_CONN */
    uint8_t flags;         /* CF_* */
    uint32_t events;       /* epoll mask registered */
    int fd;
    worker *w;
    listener *l;
    conn_list *home;       /* its idle list: w->active[l->svc->index] */
    es_conn *prev, *next;  /* in *home, or in w->linger */
    uint64_t last_active;  /* ms, worker clock */
    es_conn *pprev, *pnext;/* in w->partial[l->svc->index] while CF_PARTIAL */
    uint64_t msg_start;    /* ms, worker clock: when its partial message began */
    buf in;                /* unconsumed input, when a message spans reads */
    buf out;               /* unsent output, under backpressure only */
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
    server *srv;
    pthread_t thread;
    int epfd;
    int wakefd;
    uint64_t now;          /* ms, CLOCK_MONOTONIC, once per loop turn */
    conn_list *active;     /* one list per service, least recently active first:
                            * a single timeout per list keeps expiry O(1) */
    size_t nactive;        /* lists in active (srv->nservices) */
    conn_list *partial;    /* one list per service (nactive of them) of the connections
                            * holding part of a message, linked through pprev/pnext,
                            * oldest message first: read_timeout expiry is O(1) */
    conn_list linger;      /* oldest first */
    es_conn *cur;          /* the connection whose input is being handled */
    uintptr_t in_lo, in_hi;/* bounds of that input */
    const uint8_t *span;   /* replies that are bytes of that input, not copied */
    size_t span_len;
    buf stage;             /* other replies of one read, sent with one write */
    uint8_t *rbuf;         /* READ_BUF_SIZE bytes */
    int accepting;         /* listeners are in epfd */
    uint64_t accept_resume;/* ms; when accepting was paused */
    uint64_t warned_full;  /* ms of the last max_connections warning */
    uint64_t warned_emfile;/* ms of the last descriptor shortage warning */
    int draining;
    uint64_t drain_deadline;
};

struct server {
    const config *cfg;
    plugin *plugins;       /* each distinct plugin file, loaded once */
    size_t nplugins;
    service *services;     /* one per config listener, in file order */
    size_t nservices;
    es_host host;
    listener *listeners;
    size_t nlisteners;
    worker *workers;
    int nworkers;
    atomic_long nconns;    /* open connections, all workers */
    atomic_int stopping;   /* 1: drain, 2: close everything now */
    pthread_mutex_t lock;  /* guards released */
    pthread_cond_t cond;
    int released;          /* workers that dropped the listeners */
    int donefd;            /* eventfd: each worker adds 1 as it ends */
};

/* listener.c */

/* Bind and listen on a; fills l. A unix socket file gets the permission
 * bits mode (before listen()) unless mode is -1; TCP addresses ignore mode.
 * Returns 0, or -1 with a message in err. Main thread. */
int listener_open(listener *l, const addr *a, int backlog, long mode, char *err,
                  size_t errlen);

/* Close l and remove its unix socket file, if any. Main thread, once no
 * worker polls it. */
void listener_close(listener *l);

/* conn.c */

/* Fill srv->host with the services plugins call. */
void conn_host_init(es_host *host);

/* Take over fd accepted from l on w: allocate, register, run the plugin's
 * open. Returns 0, or -1 (fd closed, counters restored). Owning worker. */
int conn_open(worker *w, listener *l, int fd, const struct sockaddr *sa, socklen_t salen);

/* Handle epoll events for c. Owning worker; c may be freed. */
void conn_event(es_conn *c, uint32_t events);

/* Final read, then close c gracefully if it has nothing in flight. Used
 * when the worker starts to drain. Owning worker; c may be freed. */
void conn_drain(es_conn *c);

/* Close c now: plugin close hook, fd, memory. Owning worker. */
void conn_destroy(es_conn *c);

/* Close c, the head of its partial list, whose message did not arrive
 * within read_timeout: logged with the peer, then conn_destroy(). Owning
 * worker; c is freed. */
void conn_read_expired(es_conn *c);


/* Unlink c from its list. */
void conn_list_remove(conn_list *l, es_conn *c);
void conn_list_append(conn_list *l, es_conn *c);

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

#endif
