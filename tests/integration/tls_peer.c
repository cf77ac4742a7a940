/* tls_peer.c - a TLS (or plain) echo peer on 127.0.0.1 in a thread of its own, for client tests. */
#define _GNU_SOURCE
#include "tls_peer.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#define MAX_CONNS 32
#define SEP "\r\n\r\n"
#define SEPLEN 4

enum pstate { P_HANDSHAKE, P_OPEN, P_DRAIN };

/* One accepted connection; the peer thread's alone. */
struct pconn {
    int fd;                     /* -1: free slot */
    SSL *ssl;                   /* NULL with plain */
    enum pstate state;
    int want_write;             /* the last TLS or send call waits for POLLOUT */
    unsigned char *out;         /* echo not yet written */
    size_t out_len, out_cap;
    int sep_match;              /* bytes of SEP matched at the end of what was read */
    int pending_replies;        /* separators read whose echo is not all written yet */
    int replies;                /* replies written in full */
};

struct tls_peer {
    struct tls_peer_opts o;
    SSL_CTX *ctx;
    int lfd, efd;
    pthread_t tid;
    char addr[64];
    struct pconn conns[MAX_CONNS];

    pthread_mutex_t mu;
    pthread_cond_t cv;
    /* Under mu. */
    int stop;
    unsigned close_asked, close_done;
    struct tls_peer_stats st;
};

static void reason(char *out, size_t cap)
{
    unsigned long e = ERR_get_error();
    const char *r = e ? ERR_reason_error_string(e) : NULL;

    snprintf(out, cap, "%s", r ? r : e ? "unknown error" : "no OpenSSL error");
    ERR_clear_error();
}

static void pconn_close(struct tls_peer *p, struct pconn *k, int notify)
{
    if (k->ssl != NULL) {
        if (notify && k->state == P_OPEN)
            SSL_shutdown(k->ssl);
        SSL_free(k->ssl);
        ERR_clear_error();
    }
    close(k->fd);
    free(k->out);
    memset(k, 0, sizeof *k);
    k->fd = -1;
    pthread_mutex_lock(&p->mu);
    p->st.closed++;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
}

/* Counts the separators in p[0..n), across calls. */
static int count_seps(struct pconn *k, const unsigned char *p, size_t n)
{
    int found = 0;

    for (size_t i = 0; i < n; i++) {
        if (p[i] == (unsigned char)SEP[k->sep_match])
            k->sep_match++;
        else
            k->sep_match = p[i] == (unsigned char)SEP[0];
        if (k->sep_match == SEPLEN) {
            found++;
            k->sep_match = 0;
        }
    }
    return found;
}

static int append(struct pconn *k, const unsigned char *p, size_t n)
{
    if (k->out_len + n > k->out_cap) {
        size_t cap = k->out_cap ? k->out_cap : 65536;
        while (cap < k->out_len + n)
            cap *= 2;
        unsigned char *b = realloc(k->out, cap);
        if (b == NULL)
            return -1;
        k->out = b;
        k->out_cap = cap;
    }
    memcpy(k->out + k->out_len, p, n);
    k->out_len += n;
    return 0;
}

/* Writes what is pending. Returns 0 (all written or waiting), -1 if the connection died, -2
 * once close_after replies are out. */
static int flush(struct tls_peer *p, struct pconn *k)
{
    size_t off = 0;
    int rc = 0;

    while (off < k->out_len) {
        size_t left = k->out_len - off;
        int chunk = left > (1u << 20) ? 1 << 20 : (int)left;
        if (k->ssl != NULL) {
            ERR_clear_error();
            int w = SSL_write(k->ssl, k->out + off, chunk);
            if (w > 0) {
                off += (size_t)w;
                continue;
            }
            int e = SSL_get_error(k->ssl, w);
            if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ) {
                k->want_write = e == SSL_ERROR_WANT_WRITE;
                break;
            }
            rc = -1;
            break;
        }
        ssize_t w = send(k->fd, k->out + off, (size_t)chunk, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w > 0) {
            off += (size_t)w;
            continue;
        }
        if (w < 0 && (errno == EAGAIN || errno == EINTR)) {
            k->want_write = 1;
            break;
        }
        rc = -1;
        break;
    }
    if (off > 0) {
        memmove(k->out, k->out + off, k->out_len - off);
        k->out_len -= off;
    }
    if (k->out_len == 0)
        k->want_write = 0;
    if (rc < 0 || k->out_len > 0)
        return rc;
    /* Every echo is out: what comes after a reply. */
    while (k->pending_replies > 0) {
        k->pending_replies--;
        k->replies++;
        if (p->o.close_after > 0 && k->replies >= p->o.close_after) {
            pthread_mutex_lock(&p->mu);
            p->st.replies++;
            pthread_mutex_unlock(&p->mu);
            return -2;
        }
        if (k->ssl != NULL && p->o.ticket_after_reply) {
            SSL_new_session_ticket(k->ssl);
            SSL_do_handshake(k->ssl);
            ERR_clear_error();
        }
        if (k->ssl != NULL && p->o.key_update_after_reply) {
            SSL_key_update(k->ssl, SSL_KEY_UPDATE_REQUESTED);
            SSL_do_handshake(k->ssl);
            ERR_clear_error();
        }
        pthread_mutex_lock(&p->mu);
        p->st.replies++;
        pthread_cond_broadcast(&p->cv);
        pthread_mutex_unlock(&p->mu);
    }
    return 0;
}

/* Reads what is there and echoes it. Returns 0, -1 if the connection is to be closed, -2 if
 * it is to be closed with close_notify (close_after). */
static int serve(struct tls_peer *p, struct pconn *k)
{
    unsigned char buf[16384];

    for (;;) {
        ssize_t n;
        if (k->ssl != NULL) {
            ERR_clear_error();
            int r = SSL_read(k->ssl, buf, sizeof buf);
            if (r <= 0) {
                int e = SSL_get_error(k->ssl, r);
                if (e == SSL_ERROR_WANT_READ)
                    break;
                if (e == SSL_ERROR_WANT_WRITE) {
                    k->want_write = 1;
                    break;
                }
                ERR_clear_error();
                return -1;
            }
            n = r;
        } else {
            n = recv(k->fd, buf, sizeof buf, MSG_DONTWAIT);
            if (n < 0 && (errno == EAGAIN || errno == EINTR))
                break;
            if (n <= 0)
                return -1;
        }
        if (p->o.reset_on_data) {
            struct linger lg = { 1, 0 };
            setsockopt(k->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
            if (k->ssl != NULL) {
                SSL_free(k->ssl);
                k->ssl = NULL;
            }
            return -1;
        }
        k->pending_replies += count_seps(k, buf, (size_t)n);
        if (append(k, buf, (size_t)n) < 0)
            return -1;
    }
    return flush(p, k);
}

/* One step of the handshake (then serve()). Returns 0, or what serve() returns. */
static int handshake(struct tls_peer *p, struct pconn *k)
{
    ERR_clear_error();
    int r = SSL_accept(k->ssl);
    if (r == 1) {
        k->state = P_OPEN;
        k->want_write = 0;
        pthread_mutex_lock(&p->mu);
        p->st.handshakes++;
        pthread_cond_broadcast(&p->cv);
        pthread_mutex_unlock(&p->mu);
        return serve(p, k);
    }
    int e = SSL_get_error(k->ssl, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        k->want_write = e == SSL_ERROR_WANT_WRITE;
        return 0;
    }
    pthread_mutex_lock(&p->mu);
    p->st.failed++;
    if (e == SSL_ERROR_SSL)
        reason(p->st.last_error, sizeof p->st.last_error);
    else
        snprintf(p->st.last_error, sizeof p->st.last_error, "connection closed (%d)", e);
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    /* The alert is out: read what the client still sends until it closes, so the close
     * does not turn into a reset that could overtake the alert. */
    SSL_free(k->ssl);
    k->ssl = NULL;
    k->state = P_DRAIN;
    k->want_write = 0;
    return 0;
}

static void drain(struct tls_peer *p, struct pconn *k)
{
    char buf[4096];
    ssize_t n;

    while ((n = recv(k->fd, buf, sizeof buf, MSG_DONTWAIT)) > 0)
        ;
    if (n == 0 || (errno != EAGAIN && errno != EINTR))
        pconn_close(p, k, 0);
}

static void accept_one(struct tls_peer *p)
{
    int fd = accept4(p->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    struct pconn *k = NULL;

    if (fd < 0)
        return;
    for (int i = 0; i < MAX_CONNS && k == NULL; i++)
        if (p->conns[i].fd < 0)
            k = &p->conns[i];
    if (k == NULL) {
        close(fd);
        return;
    }
    pthread_mutex_lock(&p->mu);
    p->st.accepted++;
    pthread_mutex_unlock(&p->mu);
    k->fd = fd;
    k->state = p->o.plain ? P_OPEN : P_HANDSHAKE;
    if (!p->o.plain) {
        k->ssl = SSL_new(p->ctx);
        if (k->ssl == NULL || !SSL_set_fd(k->ssl, fd)) {
            pconn_close(p, k, 0);
            return;
        }
        int rc = handshake(p, k);
        if (rc < 0)
            pconn_close(p, k, rc == -2);
    }
}

static void *peer_main(void *arg)
{
    struct tls_peer *p = arg;
    struct pollfd pf[MAX_CONNS + 2];
    int idx[MAX_CONNS + 2];
    sigset_t pipe;

    sigemptyset(&pipe);
    sigaddset(&pipe, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe, NULL);
    for (;;) {
        int n = 0;
        pf[n++] = (struct pollfd){ p->efd, POLLIN, 0 };
        pf[n++] = (struct pollfd){ p->lfd, POLLIN, 0 };
        for (int i = 0; i < MAX_CONNS; i++) {
            struct pconn *k = &p->conns[i];
            if (k->fd < 0)
                continue;
            idx[n] = i;
            pf[n++] = (struct pollfd){ k->fd, (short)(POLLIN | (k->want_write ? POLLOUT : 0)), 0 };
        }
        if (poll(pf, (nfds_t)n, -1) < 0)
            continue;
        if (pf[0].revents & POLLIN) {
            uint64_t v;
            if (read(p->efd, &v, sizeof v) < 0) {
                /* counter was zero: nothing to do */
            }
            pthread_mutex_lock(&p->mu);
            int stop = p->stop;
            unsigned asked = p->close_asked;
            pthread_mutex_unlock(&p->mu);
            if (asked != p->close_done || stop) {
                for (int i = 0; i < MAX_CONNS; i++)
                    if (p->conns[i].fd >= 0)
                        pconn_close(p, &p->conns[i], 1);
                pthread_mutex_lock(&p->mu);
                p->close_done = asked;
                pthread_cond_broadcast(&p->cv);
                pthread_mutex_unlock(&p->mu);
            }
            if (stop)
                break;
            continue;               /* the poll set changed */
        }
        if (pf[1].revents & POLLIN)
            accept_one(p);
        for (int j = 2; j < n; j++) {
            struct pconn *k = &p->conns[idx[j]];
            int rc = 0;
            if (pf[j].revents == 0 || k->fd < 0)
                continue;
            switch (k->state) {
            case P_HANDSHAKE:
                rc = handshake(p, k);
                break;
            case P_OPEN:
                rc = serve(p, k);
                break;
            case P_DRAIN:
                drain(p, k);
                continue;
            }
            if (rc < 0 && k->fd >= 0)
                pconn_close(p, k, rc == -2);
        }
    }
    return NULL;
}

/* See tls_peer.h. */
struct tls_peer *tls_peer_start(const struct tls_peer_opts *o, char *err, size_t errlen)
{
    struct tls_peer *p = calloc(1, sizeof *p);
    struct sockaddr_in sin = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t len = sizeof sin;
    char why[200];

    if (p == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    p->o = *o;
    p->lfd = p->efd = -1;
    for (int i = 0; i < MAX_CONNS; i++)
        p->conns[i].fd = -1;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    if (!o->plain) {
        ERR_clear_error();
        p->ctx = SSL_CTX_new(TLS_server_method());
        if (p->ctx == NULL)
            goto ssl_fail;
        SSL_CTX_set_mode(p->ctx, SSL_MODE_ENABLE_PARTIAL_WRITE |
                                 SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
        if (o->max_version && !SSL_CTX_set_max_proto_version(p->ctx, o->max_version))
            goto ssl_fail;
        if (!SSL_CTX_use_certificate_chain_file(p->ctx, o->cert_file) ||
            !SSL_CTX_use_PrivateKey_file(p->ctx, o->key_file, SSL_FILETYPE_PEM))
            goto ssl_fail;
        if (o->client_ca_file != NULL) {
            STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(o->client_ca_file);
            if (names == NULL || !SSL_CTX_load_verify_locations(p->ctx, o->client_ca_file, NULL)) {
                sk_X509_NAME_pop_free(names, X509_NAME_free);
                goto ssl_fail;
            }
            SSL_CTX_set_client_CA_list(p->ctx, names);
            SSL_CTX_set_verify(p->ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
        }
    }
    p->lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    p->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (p->lfd < 0 || p->efd < 0 || bind(p->lfd, (struct sockaddr *)&sin, sizeof sin) < 0 ||
        listen(p->lfd, 64) < 0 || getsockname(p->lfd, (struct sockaddr *)&sin, &len) < 0) {
        snprintf(err, errlen, "cannot listen on 127.0.0.1: %s", strerror(errno));
        goto fail;
    }
    snprintf(p->addr, sizeof p->addr, "127.0.0.1:%u", ntohs(sin.sin_port));
    if (pthread_create(&p->tid, NULL, peer_main, p) != 0) {
        snprintf(err, errlen, "cannot start the peer's thread");
        goto fail;
    }
    return p;

ssl_fail:
    reason(why, sizeof why);
    snprintf(err, errlen, "TLS peer: %s", why);
fail:
    if (p->lfd >= 0)
        close(p->lfd);
    if (p->efd >= 0)
        close(p->efd);
    SSL_CTX_free(p->ctx);
    pthread_cond_destroy(&p->cv);
    pthread_mutex_destroy(&p->mu);
    free(p);
    return NULL;
}

const char *tls_peer_addr(const struct tls_peer *p)
{
    return p->addr;
}

static void poke(struct tls_peer *p)
{
    uint64_t one = 1;

    if (write(p->efd, &one, sizeof one) < 0) {
        /* an eventfd write of 1 cannot fail but on overflow */
    }
}

void tls_peer_close_all(struct tls_peer *p)
{
    pthread_mutex_lock(&p->mu);
    unsigned want = ++p->close_asked;
    pthread_mutex_unlock(&p->mu);
    poke(p);
    pthread_mutex_lock(&p->mu);
    while (p->close_done != want)
        pthread_cond_wait(&p->cv, &p->mu);
    pthread_mutex_unlock(&p->mu);
}

/* Waits until *counter >= n or timeout_ms passes. Returns 0 or -1. */
static int wait_count(struct tls_peer *p, const int *counter, int n, int timeout_ms)
{
    struct timespec dl;
    int rc = 0;

    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += timeout_ms / 1000;
    dl.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (dl.tv_nsec >= 1000000000L) {
        dl.tv_sec++;
        dl.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&p->mu);
    while (*counter < n && rc == 0)
        rc = pthread_cond_timedwait(&p->cv, &p->mu, &dl);
    rc = *counter >= n ? 0 : -1;
    pthread_mutex_unlock(&p->mu);
    return rc;
}

int tls_peer_wait_closed(struct tls_peer *p, int n, int timeout_ms)
{
    return wait_count(p, &p->st.closed, n, timeout_ms);
}

int tls_peer_wait_replies(struct tls_peer *p, int n, int timeout_ms)
{
    return wait_count(p, &p->st.replies, n, timeout_ms);
}

int tls_peer_wait_handshakes(struct tls_peer *p, int ok, int failed, int timeout_ms)
{
    if (wait_count(p, &p->st.handshakes, ok, timeout_ms) < 0)
        return -1;
    return wait_count(p, &p->st.failed, failed, timeout_ms);
}

void tls_peer_get_stats(struct tls_peer *p, struct tls_peer_stats *out)
{
    pthread_mutex_lock(&p->mu);
    *out = p->st;
    pthread_mutex_unlock(&p->mu);
}

void tls_peer_stop(struct tls_peer *p)
{
    if (p == NULL)
        return;
    pthread_mutex_lock(&p->mu);
    p->stop = 1;
    pthread_mutex_unlock(&p->mu);
    poke(p);
    pthread_join(p->tid, NULL);
    close(p->lfd);
    close(p->efd);
    SSL_CTX_free(p->ctx);
    pthread_cond_destroy(&p->cv);
    pthread_mutex_destroy(&p->mu);
    free(p);
}
