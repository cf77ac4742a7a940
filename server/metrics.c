/* metrics.c - the counters' series across reloads, and their Prometheus text exposition. */
#define _GNU_SOURCE
#include "metrics.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "server.h"

#ifndef PACKAGE_VERSION
#define PACKAGE_VERSION "0"
#endif

const char *const metrics_refused_names[MR_COUNT] = {"max_connections", "access", "resources"};
const char *const metrics_error_names[ME_COUNT] = {
    "protocol", "max_message", "read_timeout", "idle_timeout",
    "tls_handshake", "tls_handshake_timeout", "plugin", "io",
};

_Static_assert(sizeof(metrics_block) % 64 == 0, "a worker's block fills whole cache lines");

/* Published series form a list readers walk with acquire loads; only the
 * main thread appends (tail) or keeps the pending list. */
struct metrics {
    int nworkers;
    struct timespec start;             /* CLOCK_MONOTONIC; immutable */
    _Atomic(metrics_series *) head;    /* published, oldest first */
    metrics_series *tail;              /* main thread only */
    metrics_series *pending;           /* attached, not published: main thread only */
    atomic_uint_least64_t reloads[2];  /* [0] refused, [1] taken */
};

metrics *metrics_new(int nworkers)
{
    metrics *m = calloc(1, sizeof *m);
    if (m == NULL)
        return NULL;
    m->nworkers = nworkers > 0 ? nworkers : 1;
    clock_gettime(CLOCK_MONOTONIC, &m->start);
    atomic_init(&m->head, NULL);
    atomic_init(&m->reloads[0], 0);
    atomic_init(&m->reloads[1], 0);
    return m;
}

static void series_free(metrics_series *s)
{
    free(s->listener);
    free(s->plugin);
    free(s->w);
    free(s);
}

static metrics_series *series_find(metrics_series *s, const char *lname, const char *pname)
{
    for (; s != NULL; s = atomic_load_explicit(&s->next, memory_order_relaxed))
        if (strcmp(s->listener, lname) == 0 && strcmp(s->plugin, pname) == 0)
            return s;
    return NULL;
}

int metrics_attach(metrics *m, gen *g)
{
    for (size_t i = 0; i < g->nservices; i++) {
        service *svc = &g->services[i];
        const char *lname = svc->cfg->name, *pname = svc->plugin->hooks.name;
        metrics_series *s = series_find(atomic_load_explicit(&m->head, memory_order_relaxed),
                                        lname, pname);
        if (s == NULL)
            s = series_find(m->pending, lname, pname);
        if (s == NULL) {
            s = calloc(1, sizeof *s);
            if (s == NULL)
                return -1;
            size_t size = (size_t)m->nworkers * sizeof *s->w;
            s->listener = strdup(lname);
            s->plugin = strdup(pname);
            s->w = aligned_alloc(_Alignof(metrics_block), size);
            if (s->listener == NULL || s->plugin == NULL || s->w == NULL) {
                series_free(s);
                return -1;
            }
            memset(s->w, 0, size);
            /* Pending series are kept newest first; publishing reverses them. */
            atomic_init(&s->next, m->pending);
            m->pending = s;
        }
        svc->stats = s;
    }
    return 0;
}

void metrics_publish(metrics *m)
{
    metrics_series *rev = NULL;
    while (m->pending != NULL) {
        metrics_series *s = m->pending;
        m->pending = atomic_load_explicit(&s->next, memory_order_relaxed);
        atomic_store_explicit(&s->next, rev, memory_order_relaxed);
        rev = s;
    }
    while (rev != NULL) {
        metrics_series *s = rev;
        rev = atomic_load_explicit(&s->next, memory_order_relaxed);
        atomic_store_explicit(&s->next, NULL, memory_order_relaxed);
        /* Release: a reader that reaches s sees it whole. */
        if (m->tail == NULL)
            atomic_store_explicit(&m->head, s, memory_order_release);
        else
            atomic_store_explicit(&m->tail->next, s, memory_order_release);
        m->tail = s;
    }
}

void metrics_discard(metrics *m)
{
    while (m->pending != NULL) {
        metrics_series *s = m->pending;
        m->pending = atomic_load_explicit(&s->next, memory_order_relaxed);
        series_free(s);
    }
}

void metrics_reload(metrics *m, int ok)
{
    atomic_fetch_add_explicit(&m->reloads[ok ? 1 : 0], 1, memory_order_relaxed);
}

void metrics_free(metrics *m)
{
    if (m == NULL)
        return;
    metrics_discard(m);
    metrics_series *s = atomic_load_explicit(&m->head, memory_order_relaxed);
    while (s != NULL) {
        metrics_series *next = atomic_load_explicit(&s->next, memory_order_relaxed);
        series_free(s);
        s = next;
    }
    free(m);
}

/* Rendering (the admin thread). */

/* The sums of one series over the workers, read once. */
typedef struct snap {
    const metrics_series *s;
    uint64_t open, opened, messages, bytes_in, bytes_out;
    uint64_t refused[MR_COUNT], errors[ME_COUNT];
} snap;

static uint64_t rd(const atomic_uint_least64_t *c)
{
    return atomic_load_explicit(c, memory_order_relaxed);
}

/* Connections open in block b: closed first (acquire), then opened, which
 * can only be as large. */
static uint64_t block_open(const metrics_block *b)
{
    uint64_t closed = atomic_load_explicit(&b->closed, memory_order_acquire);
    uint64_t opened = rd(&b->opened);
    return opened > closed ? opened - closed : 0;
}

typedef struct out {
    buf *b;
    int failed;
} out;

static void put(out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(out *o, const char *fmt, ...)
{
    if (o->failed)
        return;
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof line || buf_append(o->b, line, (size_t)n) < 0)
        o->failed = 1;
}

/* A label value with \, " and newline escaped, into dst (cap bytes, cut if longer). */
static const char *label(const char *v, char *dst, size_t cap)
{
    size_t j = 0;
    for (; *v != '\0' && j + 3 < cap; v++) {
        if (*v == '\\' || *v == '"') {
            dst[j++] = '\\';
            dst[j++] = *v;
        } else if (*v == '\n') {
            dst[j++] = '\\';
            dst[j++] = 'n';
        } else {
            dst[j++] = *v;
        }
    }
    dst[j] = '\0';
    return dst;
}

static void family(out *o, const char *name, const char *type, const char *help)
{
    put(o, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* The index of the first snapshot with the same listener (or plugin) name as v[i]. */
static size_t first_of(const snap *v, size_t i, int by_plugin)
{
    for (size_t j = 0; j < i; j++) {
        const char *a = by_plugin ? v[j].s->plugin : v[j].s->listener;
        const char *b = by_plugin ? v[i].s->plugin : v[i].s->listener;
        if (strcmp(a, b) == 0)
            return j;
    }
    return i;
}

/* One value per listener name: field at offset off of the snapshots, summed over its series. */
static void per_listener(out *o, const snap *v, size_t n, const char *name, size_t off,
                         const char *extra)
{
    char lb[256];
    for (size_t i = 0; i < n; i++) {
        if (first_of(v, i, 0) != i)
            continue;
        uint64_t sum = 0;
        for (size_t j = i; j < n; j++)
            if (strcmp(v[j].s->listener, v[i].s->listener) == 0)
                sum += *(const uint64_t *)((const char *)&v[j] + off);
        put(o, "%s{listener=\"%s\"%s} %llu\n", name, label(v[i].s->listener, lb, sizeof lb),
            extra, (unsigned long long)sum);
    }
}

int metrics_render(metrics *m, buf *dst)
{
    out o = {.b = dst};
    size_t n = 0, cap = 0;
    snap *v = NULL;
    int nw = m->nworkers;
    uint64_t *wconns = calloc((size_t)nw, sizeof *wconns);
    uint64_t *wmsgs = calloc((size_t)nw, sizeof *wmsgs);
    if (wconns == NULL || wmsgs == NULL)
        goto fail;
    for (const metrics_series *s = atomic_load_explicit(&m->head, memory_order_acquire);
         s != NULL; s = atomic_load_explicit(&s->next, memory_order_acquire)) {
        if (n == cap) {
            size_t nc = cap ? cap * 2 : 16;
            snap *nv = realloc(v, nc * sizeof *nv);
            if (nv == NULL)
                goto fail;
            v = nv;
            cap = nc;
        }
        snap *p = &v[n++];
        memset(p, 0, sizeof *p);
        p->s = s;
        for (int w = 0; w < nw; w++) {
            const metrics_block *b = &s->w[w];
            uint64_t open = block_open(b), msgs = rd(&b->messages);
            p->open += open;
            p->opened += rd(&b->opened);
            p->messages += msgs;
            p->bytes_in += rd(&b->bytes_in);
            p->bytes_out += rd(&b->bytes_out);
            for (int k = 0; k < MR_COUNT; k++)
                p->refused[k] += rd(&b->refused[k]);
            for (int k = 0; k < ME_COUNT; k++)
                p->errors[k] += rd(&b->errors[k]);
            wconns[w] += open;
            wmsgs[w] += msgs;
        }
    }

    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    double up = (double)(now.tv_sec - m->start.tv_sec) +
                (double)(now.tv_nsec - m->start.tv_nsec) / 1e9;
    char lb[256], extra[64];

    family(&o, "echosrv_build_info", "gauge", "Always 1; the labels say which echosrv runs.");
    put(&o, "echosrv_build_info{version=\"%s\",plugin_abi=\"%d.%d\"} 1\n",
        label(PACKAGE_VERSION, lb, sizeof lb), ES_PLUGIN_ABI_MAJOR, ES_PLUGIN_ABI_MINOR);
    family(&o, "echosrv_uptime_seconds", "gauge", "Seconds since echosrv started.");
    put(&o, "echosrv_uptime_seconds %.3f\n", up);
    family(&o, "echosrv_reloads_total", "counter",
           "SIGHUP reloads: ok when the new configuration was taken, failed when refused.");
    put(&o, "echosrv_reloads_total{result=\"ok\"} %llu\n",
        (unsigned long long)rd(&m->reloads[1]));
    put(&o, "echosrv_reloads_total{result=\"failed\"} %llu\n",
        (unsigned long long)rd(&m->reloads[0]));

    family(&o, "echosrv_connections_open", "gauge", "Connections open now, per listener.");
    per_listener(&o, v, n, "echosrv_connections_open", offsetof(snap, open), "");
    family(&o, "echosrv_connections_total", "counter",
           "Connections accepted and taken over, per listener.");
    per_listener(&o, v, n, "echosrv_connections_total", offsetof(snap, opened), "");
    family(&o, "echosrv_connections_refused_total", "counter",
           "Connections closed at accept, per listener and reason.");
    for (int k = 0; k < MR_COUNT; k++) {
        snprintf(extra, sizeof extra, ",reason=\"%s\"", metrics_refused_names[k]);
        per_listener(&o, v, n, "echosrv_connections_refused_total",
                     offsetof(snap, refused) + (size_t)k * sizeof(uint64_t), extra);
    }
    family(&o, "echosrv_messages_total", "counter",
           "Complete messages handled (the plugin's response calls), per listener.");
    per_listener(&o, v, n, "echosrv_messages_total", offsetof(snap, messages), "");
    family(&o, "echosrv_bytes_received_total", "counter",
           "Application bytes read from clients (after TLS), per listener.");
    per_listener(&o, v, n, "echosrv_bytes_received_total", offsetof(snap, bytes_in), "");
    family(&o, "echosrv_bytes_sent_total", "counter",
           "Application bytes written to clients (before TLS), per listener.");
    per_listener(&o, v, n, "echosrv_bytes_sent_total", offsetof(snap, bytes_out), "");
    family(&o, "echosrv_errors_total", "counter",
           "Connections the server closed on an error or timeout, per listener and kind.");
    for (int k = 0; k < ME_COUNT; k++) {
        snprintf(extra, sizeof extra, ",kind=\"%s\"", metrics_error_names[k]);
        per_listener(&o, v, n, "echosrv_errors_total",
                     offsetof(snap, errors) + (size_t)k * sizeof(uint64_t), extra);
    }

    family(&o, "echosrv_plugin_messages_total", "counter", "Complete messages handled, per plugin.");
    for (size_t i = 0; i < n; i++) {
        if (first_of(v, i, 1) != i)
            continue;
        uint64_t sum = 0;
        for (size_t j = i; j < n; j++)
            if (strcmp(v[j].s->plugin, v[i].s->plugin) == 0)
                sum += v[j].messages;
        put(&o, "echosrv_plugin_messages_total{plugin=\"%s\"} %llu\n",
            label(v[i].s->plugin, lb, sizeof lb), (unsigned long long)sum);
    }

    family(&o, "echosrv_worker_connections", "gauge", "Connections open now, per worker thread.");
    for (int w = 0; w < nw; w++)
        put(&o, "echosrv_worker_connections{worker=\"%d\"} %llu\n", w,
            (unsigned long long)wconns[w]);
    family(&o, "echosrv_worker_messages_total", "counter",
           "Complete messages handled, per worker thread.");
    for (int w = 0; w < nw; w++)
        put(&o, "echosrv_worker_messages_total{worker=\"%d\"} %llu\n", w,
            (unsigned long long)wmsgs[w]);
    free(v);
    free(wconns);
    free(wmsgs);
    return o.failed ? -1 : 0;
fail:
    free(v);
    free(wconns);
    free(wmsgs);
    return -1;
}
