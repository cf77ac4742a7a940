/* soak.c - a long run of echosrv under mixed load, reloads and faults, checking every reply byte for byte.
 *
 *   soak [-d SECONDS] [-c CLIENTS] [-r RELOAD_SECONDS]
 *
 * Needs ECHOSRV, ES_PLUGIN_DIR and ABS_TOP_SRCDIR in the environment (tests/soak/run.sh sets
 * them). Starts one echosrv with a plain echo, a TLS echo and a raw listener, then runs until
 * the time is up: clients that keep or renew connections and check each reply, TLS clients,
 * raw clients, a thread that sends SIGHUP with a changed file every RELOAD_SECONDS, and a
 * thread of faults (resets in the middle of a reply, half-closed clients, cut messages, connect
 * floods, plaintext on the TLS port). Prints one summary line a minute and a final report;
 * exits 0 only if no reply was wrong, no client that behaves was refused or reset, every
 * reload took, and echosrv stopped cleanly on SIGTERM. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "../integration/harness.h"

#define SEP "\r\n\r\n"
#define SEPLEN 4
#define IO_MS 10000
#define MAX_BODY (256 * 1024)

static atomic_bool stop;
static atomic_long ok_plain, ok_tls, ok_raw, faults, reloads;
static atomic_long wrong;      /* replies that differ: must stay 0 */
static atomic_long failures;   /* behaving clients refused, reset, timed out: must stay 0 */
static atomic_long reload_failures;
static pthread_mutex_t report_mu = PTHREAD_MUTEX_INITIALIZER;

static char dir[256], conf[512], pd[512];
static char addr_plain[HS_ADDR_MAX], addr_tls[HS_ADDR_MAX], addr_raw[HS_ADDR_MAX];
static struct hs_proc *srv;
static SSL_CTX *tls_ctx;

static void report(atomic_long *counter, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void report(atomic_long *counter, const char *fmt, ...)
{
    long n = atomic_fetch_add(counter, 1);
    if (n >= 5)
        return; /* the first few of each kind tell the story */
    va_list ap;
    va_start(ap, fmt);
    pthread_mutex_lock(&report_mu);
    fprintf(stderr, "soak: ");
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    pthread_mutex_unlock(&report_mu);
    va_end(ap);
}

static unsigned next_rand(unsigned *s)
{
    *s = *s * 1103515245u + 12345u;
    return *s >> 8;
}

/* A body size: mostly small, sometimes up to MAX_BODY. */
static size_t pick_size(unsigned *seed)
{
    unsigned r = next_rand(seed);
    if (r % 16 == 0)
        return 1 + next_rand(seed) % MAX_BODY;
    return 1 + next_rand(seed) % 512;
}

/* Plain echo clients: even ones keep their connection, odd ones renew it
 * every few messages. */
static void *plain_client(void *arg)
{
    unsigned seed = (unsigned)(uintptr_t)arg * 2654435761u;
    char *out = malloc(MAX_BODY + SEPLEN), *in = malloc(MAX_BODY + SEPLEN);
    int fd = -1, n = 0;
    while (!atomic_load(&stop) && out && in) {
        if (fd < 0 && (fd = hs_connect(addr_plain, IO_MS)) < 0) {
            report(&failures, "plain: connect %s: %s", addr_plain, strerror(errno));
            hs_sleep_ms(100);
            continue;
        }
        size_t body = pick_size(&seed);
        hs_fill_pattern(out, body, seed);
        memcpy(out + body, SEP, SEPLEN);
        size_t got = 0;
        if (hs_exchange(fd, out, body + SEPLEN, in, body + SEPLEN, IO_MS, &got) != 0) {
            report(&failures, "plain: %zu-byte message: %zu bytes back: %s", body + SEPLEN, got,
                   strerror(errno));
            close(fd);
            fd = -1;
            continue;
        }
        if (memcmp(in, out, body + SEPLEN) != 0)
            report(&wrong, "plain: the reply to a %zu-byte message differs", body + SEPLEN);
        else
            atomic_fetch_add(&ok_plain, 1);
        if ((uintptr_t)arg % 2 == 1 && ++n % 5 == 0) {
            close(fd);
            fd = -1;
        }
    }
    if (fd >= 0)
        close(fd);
    free(out);
    free(in);
    return NULL;
}

/* Writes all of buf over TLS (blocking socket). */
static int tls_write_all(SSL *ssl, const char *buf, size_t len)
{
    while (len > 0) {
        int n = SSL_write(ssl, buf, (int)(len > 65536 ? 65536 : len));
        if (n <= 0)
            return -1;
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}

static int tls_read_all(SSL *ssl, char *buf, size_t len)
{
    while (len > 0) {
        int n = SSL_read(ssl, buf, (int)(len > 65536 ? 65536 : len));
        if (n <= 0)
            return -1;
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}

/* TLS echo clients: a new session every 20 messages; messages up to 16 KiB
 * so that a blocking write never waits on an unread reply. */
static void *tls_client(void *arg)
{
    unsigned seed = (unsigned)(uintptr_t)arg * 40503u + 7u;
    char out[16384 + SEPLEN], in[16384 + SEPLEN];
    while (!atomic_load(&stop)) {
        int fd = hs_connect(addr_tls, IO_MS);
        if (fd < 0) {
            report(&failures, "tls: connect %s: %s", addr_tls, strerror(errno));
            hs_sleep_ms(100);
            continue;
        }
        SSL *ssl = SSL_new(tls_ctx);
        SSL_set_fd(ssl, fd);
        X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), "127.0.0.1");
        if (SSL_connect(ssl) != 1) {
            char why[256];
            ERR_error_string_n(ERR_get_error(), why, sizeof why);
            report(&failures, "tls: handshake: %s", why);
        } else {
            for (int i = 0; i < 20 && !atomic_load(&stop); i++) {
                size_t body = 1 + next_rand(&seed) % 16384;
                hs_fill_pattern(out, body, seed);
                memcpy(out + body, SEP, SEPLEN);
                if (tls_write_all(ssl, out, body + SEPLEN) < 0 ||
                    tls_read_all(ssl, in, body + SEPLEN) < 0) {
                    report(&failures, "tls: %zu-byte message: lost the connection",
                           body + SEPLEN);
                    break;
                }
                if (memcmp(in, out, body + SEPLEN) != 0)
                    report(&wrong, "tls: the reply to a %zu-byte message differs", body + SEPLEN);
                else
                    atomic_fetch_add(&ok_tls, 1);
            }
            SSL_shutdown(ssl);
        }
        ERR_clear_error();
        SSL_free(ssl);
        close(fd);
    }
    return NULL;
}

/* Raw (RFC 862) clients: any bytes, back as they are. */
static void *raw_client(void *arg)
{
    unsigned seed = (unsigned)(uintptr_t)arg * 7u + 1u;
    char out[32768], in[32768];
    int fd = -1;
    while (!atomic_load(&stop)) {
        if (fd < 0 && (fd = hs_connect(addr_raw, IO_MS)) < 0) {
            report(&failures, "raw: connect %s: %s", addr_raw, strerror(errno));
            hs_sleep_ms(100);
            continue;
        }
        size_t n = 1 + next_rand(&seed) % sizeof out;
        for (size_t i = 0; i < n; i++)
            out[i] = (char)next_rand(&seed);
        size_t got = 0;
        if (hs_exchange(fd, out, n, in, n, IO_MS, &got) != 0) {
            report(&failures, "raw: %zu bytes: %zu back: %s", n, got, strerror(errno));
            close(fd);
            fd = -1;
            continue;
        }
        if (memcmp(in, out, n) != 0)
            report(&wrong, "raw: %zu bytes came back different", n);
        else
            atomic_fetch_add(&ok_raw, 1);
    }
    if (fd >= 0)
        close(fd);
    return NULL;
}

/* Faults, in turn: a reset in the middle of a large reply, a half-closed
 * client that must get every reply, a message cut by a close, a burst of
 * connect + close (some reset), plaintext on the TLS port. */
static void *fault_thread(void *arg)
{
    (void)arg;
    unsigned seed = 99;
    size_t big = 2 << 20;
    char *msg = malloc(big + SEPLEN), *in = malloc(big + SEPLEN);
    if (msg == NULL || in == NULL)
        return NULL;
    hs_fill_pattern(msg, big, 5);
    memcpy(msg + big, SEP, SEPLEN);
    for (unsigned k = 0; !atomic_load(&stop); k++) {
        int fd;
        switch (k % 5) {
        case 0: /* reset while the 2 MiB reply is on its way */
            if ((fd = hs_connect(addr_plain, IO_MS)) >= 0) {
                hs_send_all(fd, msg, big + SEPLEN, IO_MS);
                hs_recv_exact(fd, in, 1000, IO_MS);
                struct linger lg = {.l_onoff = 1, .l_linger = 0};
                setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
                close(fd);
            }
            break;
        case 1: { /* half-closed: three messages, FIN, all three replies, EOF */
            if ((fd = hs_connect(addr_plain, IO_MS)) < 0)
                break;
            char m[3 * 64];
            size_t len = 0;
            for (int i = 0; i < 3; i++)
                len += (size_t)snprintf(m + len, sizeof m - len, "half-closed %u/%d" SEP, k, i);
            if (hs_send_all(fd, m, len, IO_MS) != 0 || shutdown(fd, SHUT_WR) != 0 ||
                hs_recv_exact(fd, in, len, IO_MS) != (ssize_t)len) {
                report(&failures, "half-closed client: replies missing");
            } else if (memcmp(in, m, len) != 0) {
                report(&wrong, "half-closed client: replies differ");
            } else if (hs_wait_closed(fd, IO_MS) != 0) {
                report(&failures, "half-closed client: not closed after its replies");
            }
            close(fd);
            break;
        }
        case 2: /* a message cut by the client's close */
            if ((fd = hs_connect(addr_plain, IO_MS)) >= 0) {
                hs_send_all(fd, msg, 100000, IO_MS);
                close(fd);
            }
            break;
        case 3: /* 200 connects and closes, every other one a reset */
            for (int i = 0; i < 200; i++) {
                if ((fd = hs_connect(i % 3 ? addr_plain : addr_raw, IO_MS)) < 0)
                    continue;
                if (i % 2) {
                    struct linger lg = {.l_onoff = 1, .l_linger = 0};
                    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
                }
                close(fd);
            }
            break;
        case 4: /* plaintext on the TLS port */
            if ((fd = hs_connect(addr_tls, IO_MS)) >= 0) {
                hs_send_all(fd, "GET / HTTP/1.0" SEP, 18, IO_MS);
                hs_wait_closed(fd, IO_MS);
                close(fd);
            }
            break;
        }
        atomic_fetch_add(&faults, 1);
        hs_sleep_ms(50 + (int)(next_rand(&seed) % 200));
    }
    free(msg);
    free(in);
    return NULL;
}

/* The configuration of generation gen: the three listeners stay; limits,
 * log level and an extra listener change. */
static int write_conf(unsigned gen)
{
    char extra_listener[256] = "";
    if (gen % 2 == 1)
        snprintf(extra_listener, sizeof extra_listener,
                 "[listener extra]\nbind = 127.0.0.1:0\nplugin = raw\nmax_message = 64K\n");
    return hs_write_file(conf, sizeof conf, dir, "soak.ini",
                         "[server]\nthreads = 2\nplugin_dir = %s\nlog_level = warn\n"
                         "max_connections = %u\nshutdown_timeout = 5\n"
                         "[listener plain]\nbind = 127.0.0.1:0\nmax_message = %uM\n"
                         "[listener tls]\nbind = 127.0.0.1:0\n"
                         "tls_cert = server.pem\ntls_key = server.key\n"
                         "[listener raw]\nbind = 127.0.0.1:0\nplugin = raw\nmax_message = 64K\n"
                         "%s",
                         pd, 5000 + gen % 7, 4 + gen % 3, extra_listener);
}

static unsigned reload_every = 5;

static void *reload_thread(void *arg)
{
    (void)arg;
    for (unsigned gen = 1; !atomic_load(&stop); gen++) {
        for (unsigned i = 0; i < reload_every * 10 && !atomic_load(&stop); i++)
            hs_sleep_ms(100);
        if (atomic_load(&stop))
            break;
        char want[96];
        snprintf(want, sizeof want, "configuration reloaded (generation %u,", gen);
        if (write_conf(gen) != 0 || kill(hs_pid(srv), SIGHUP) != 0 ||
            hs_wait_output(srv, want, 20000) != 0) {
            report(&reload_failures, "reload %u did not take", gen);
            break;
        }
        atomic_fetch_add(&reloads, 1);
    }
    return NULL;
}

int main(int argc, char **argv)
{
    long seconds = 600;
    int clients = 16, opt;
    while ((opt = getopt(argc, argv, "d:c:r:h")) != -1) {
        switch (opt) {
        case 'd': seconds = atol(optarg); break;
        case 'c': clients = atoi(optarg); break;
        case 'r': reload_every = (unsigned)atoi(optarg); break;
        default:
            fprintf(stderr, "usage: soak [-d SECONDS] [-c CLIENTS] [-r RELOAD_SECONDS]\n");
            return 2;
        }
    }
    if (seconds < 5 || clients < 2 || clients > 512 || reload_every < 1) {
        fprintf(stderr, "soak: -d at least 5, -c from 2 to 512, -r at least 1\n");
        return 2;
    }
    const char *src = hs_env_path("ABS_TOP_SRCDIR");
    const char *plugins = hs_env_path("ES_PLUGIN_DIR");
    if (src == NULL || plugins == NULL || hs_env_path("ECHOSRV") == NULL)
        return 2;
    snprintf(pd, sizeof pd, "%s", plugins);
    hs_process_init();
    if (hs_tmpdir(dir, sizeof dir) < 0)
        return 1;
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "sh '%s/tests/integration/mkcerts.sh' '%s'", src, dir);
    if (system(cmd) != 0 || write_conf(0) != 0) {
        fprintf(stderr, "soak: cannot make certificates or the configuration in %s\n", dir);
        return 1;
    }
    srv = hs_server_start(conf, 3, 0, 20000);
    if (srv == NULL)
        return 1;
    char *out = hs_output(srv);
    if (out == NULL || hs_listener_addr(out, "plain", addr_plain, HS_ADDR_MAX) ||
        hs_listener_addr(out, "tls", addr_tls, HS_ADDR_MAX) ||
        hs_listener_addr(out, "raw", addr_raw, HS_ADDR_MAX)) {
        fprintf(stderr, "soak: no listening lines\n");
        return 1;
    }
    free(out);
    char ca[600];
    snprintf(ca, sizeof ca, "%s/ca.pem", dir);
    tls_ctx = SSL_CTX_new(TLS_client_method());
    SSL_CTX_load_verify_locations(tls_ctx, ca, NULL);
    SSL_CTX_set_verify(tls_ctx, SSL_VERIFY_PEER, NULL);

    pid_t pid = hs_pid(srv);
    int nthreads = clients + clients / 4 + clients / 4 + 2;
    pthread_t *th = calloc((size_t)nthreads, sizeof *th);
    int t = 0;
    for (int i = 0; i < clients; i++)
        pthread_create(&th[t++], NULL, plain_client, (void *)(uintptr_t)i);
    for (int i = 0; i < clients / 4; i++)
        pthread_create(&th[t++], NULL, tls_client, (void *)(uintptr_t)i);
    for (int i = 0; i < clients / 4; i++)
        pthread_create(&th[t++], NULL, raw_client, (void *)(uintptr_t)i);
    pthread_create(&th[t++], NULL, fault_thread, NULL);
    pthread_create(&th[t++], NULL, reload_thread, NULL);

    hs_sleep_ms(2000); /* warm-up: buffers and pools reach their working size */
    long rss0 = hs_proc_rss_kb(pid), rss_max = rss0;
    int fds0 = hs_proc_fd_count(pid);
    double cpu0 = hs_proc_cpu_seconds(pid);
    long t0 = hs_now_ms();
    printf("soak: %ld s, %d plain, %d TLS, %d raw clients, a reload every %u s, faults; "
           "echosrv pid %d, RSS %ld KiB, %d fds after warm-up\n",
           seconds, clients, clients / 4, clients / 4, reload_every, (int)pid, rss0, fds0);
    fflush(stdout);
    for (long s = 1; hs_now_ms() - t0 < seconds * 1000; s++) {
        hs_sleep_ms(1000);
        long rss = hs_proc_rss_kb(pid);
        if (rss > rss_max)
            rss_max = rss;
        if (s % 60 == 0) {
            printf("soak: %3ld min: %ld plain, %ld TLS, %ld raw replies; %ld faults, %ld reloads; "
                   "%ld wrong, %ld failures; RSS %ld KiB, %d fds\n",
                   s / 60, atomic_load(&ok_plain), atomic_load(&ok_tls), atomic_load(&ok_raw),
                   atomic_load(&faults), atomic_load(&reloads), atomic_load(&wrong),
                   atomic_load(&failures), rss, hs_proc_fd_count(pid));
            fflush(stdout);
        }
    }
    atomic_store(&stop, true);
    for (int i = 0; i < t; i++)
        pthread_join(th[i], NULL);
    long rss1 = hs_proc_rss_kb(pid);
    int fds1 = hs_proc_fd_count(pid);
    double cpu = hs_proc_cpu_seconds(pid) - cpu0;
    int st = hs_stop(srv, 20000);
    int clean = st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0;
    long total = atomic_load(&ok_plain) + atomic_load(&ok_tls) + atomic_load(&ok_raw);
    printf("soak: done: %ld requests checked byte for byte (%ld plain, %ld TLS, %ld raw), "
           "%ld faults, %ld reloads (%ld failed); %ld wrong replies, %ld failures; "
           "RSS %ld KiB after warm-up, %ld KiB at the end, %ld KiB at most; fds %d -> %d; "
           "server CPU %.1f s; exit %s\n",
           total, atomic_load(&ok_plain), atomic_load(&ok_tls), atomic_load(&ok_raw),
           atomic_load(&faults), atomic_load(&reloads), atomic_load(&reload_failures),
           atomic_load(&wrong), atomic_load(&failures), rss0, rss1, rss_max, fds0, fds1, cpu,
           clean ? "0 on SIGTERM" : "NOT clean");
    if (!clean || atomic_load(&wrong) || atomic_load(&failures) ||
        atomic_load(&reload_failures) || total == 0)
        hs_dump_output(srv, "soak failed");
    hs_proc_free(srv);
    SSL_CTX_free(tls_ctx);
    free(th);
    hs_rmtree(dir);
    return clean && !atomic_load(&wrong) && !atomic_load(&failures) &&
                   !atomic_load(&reload_failures) && total > 0
               ? 0
               : 1;
}
