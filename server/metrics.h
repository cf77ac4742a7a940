/* metrics.h - the server's counters: per worker and per listener, written lock-free, read by the admin listener. */
#ifndef ES_METRICS_H
#define ES_METRICS_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"

/* Why a connection was refused before it became one (never in
 * connections_total). */
enum metrics_refused {
    MR_MAX_CONNECTIONS,    /* max_connections of the server or of the listener */
    MR_ACCESS,             /* allow/deny */
    MR_RESOURCES,          /* out of memory, epoll or TLS set-up failed */
    MR_COUNT
};

/* Why the server closed an open connection other than by the protocol's
 * own end (QUIT, the peer's FIN). */
enum metrics_error {
    ME_PROTOCOL,           /* the plugin's framing refused the input */
    ME_MAX_MESSAGE,        /* a message grew past max_message */
    ME_READ_TIMEOUT,       /* a message did not complete within read_timeout */
    ME_IDLE_TIMEOUT,       /* no traffic within idle_timeout */
    ME_TLS_HANDSHAKE,      /* the TLS handshake failed */
    ME_TLS_HANDSHAKE_TIMEOUT, /* ... or did not finish within tls_handshake_timeout */
    ME_PLUGIN,             /* the plugin refused the connection or closed it on error */
    ME_IO,                 /* a read or write failed (reset, broken pipe, TLS error) */
    ME_COUNT
};

/* The label values of those, in enum order. */
extern const char *const metrics_refused_names[MR_COUNT];
extern const char *const metrics_error_names[ME_COUNT];

/* One worker's counters of one series. Written by that worker only (single
 * writer: a relaxed load and store, no locked instruction), read by the
 * admin thread with relaxed loads; a block fills whole cache lines of its
 * own, so workers never share a line. */
typedef struct metrics_block {
    _Alignas(64) atomic_uint_least64_t opened; /* connections taken over */
    atomic_uint_least64_t closed;      /* of those, closed (stored with release) */
    atomic_uint_least64_t messages;    /* the plugin's response calls */
    atomic_uint_least64_t bytes_in;    /* application bytes read (after TLS) */
    atomic_uint_least64_t bytes_out;   /* application bytes written */
    atomic_uint_least64_t refused[MR_COUNT];
    atomic_uint_least64_t errors[ME_COUNT];
} metrics_block;

/* The counters of one listener name with one plugin name, across
 * generations: a reload that keeps both keeps counting in the same series.
 * Immutable but for the counters once published; freed at exit. */
typedef struct metrics_series {
    char *listener;
    char *plugin;
    metrics_block *w;      /* one per worker, indexed by worker id */
    _Atomic(struct metrics_series *) next;
} metrics_series;

typedef struct metrics metrics;

/* Add n to a counter of the calling worker's own block. Owning worker
 * only: two writers would lose counts. No lock, no allocation. */
static inline void metrics_add(atomic_uint_least64_t *c, uint64_t n)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n,
                          memory_order_relaxed);
}

/* Count a closed connection: release, so that a reader that sees it also
 * sees the matching `opened`. Owning worker only. */
static inline void metrics_closed(metrics_block *b)
{
    atomic_store_explicit(&b->closed, atomic_load_explicit(&b->closed, memory_order_relaxed) + 1,
                          memory_order_release);
}

/* A new set of counters for nworkers workers, the clock of uptime started.
 * Returns NULL when out of memory. Main thread; free with metrics_free(). */
metrics *metrics_new(int nworkers);

/* Find or make the series of each of the generation's services (listener
 * name, plugin name) and point service.stats at it. New series stay
 * private until metrics_publish(). gen is a struct gen (server.h).
 * Returns 0, or -1 when out of memory (call metrics_discard()). Main
 * thread, before any worker sees the generation. */
struct gen;
int metrics_attach(metrics *m, struct gen *g);

/* Make the series metrics_attach() added visible to readers. Main thread. */
void metrics_publish(metrics *m);

/* Forget the series metrics_attach() added (their generation was not
 * taken). Main thread. */
void metrics_discard(metrics *m);

/* Count a reload: ok 1 if the new configuration was taken, 0 if refused.
 * Main thread. */
void metrics_reload(metrics *m, int ok);

/* Append the Prometheus text exposition (format 0.0.4) of every counter
 * to out (caller owns it). Returns 0, or -1 when out of memory. Any thread
 * (the admin thread): relaxed reads of published series, no lock. */
int metrics_render(metrics *m, buf *out);

/* Free m and every series. Main thread, once no worker and no reader is
 * left. NULL is fine. */
void metrics_free(metrics *m);

#endif
