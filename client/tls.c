/* tls.c - client-side TLS over non-blocking sockets: contexts, connections, error text. */
#define _GNU_SOURCE
#include "tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>

/*
 * SIGPIPE. OpenSSL's socket BIO writes with write(), which raises SIGPIPE
 * when the peer has reset the connection; a library must neither kill its
 * host nor change the process-wide disposition. So connections go through
 * a BIO of our own whose write is send(..., MSG_NOSIGNAL): the error comes
 * back as EPIPE and nothing else changes. Its read is recv(); a read of 0
 * sets BIO_FLAGS_IN_EOF, which OpenSSL asks for (BIO_CTRL_EOF) to tell an
 * unexpected EOF from other failures. The fd is the BIO's data, never
 * closed by it.
 */

static BIO_METHOD *g_method;
static pthread_once_t g_method_once = PTHREAD_ONCE_INIT;

static int bio_fd(BIO *b)
{
    return (int)(intptr_t)BIO_get_data(b);
}

static int bio_write(BIO *b, const char *buf, int len)
{
    ssize_t n;

    BIO_clear_retry_flags(b);
    do
        n = send(bio_fd(b), buf, (size_t)len, MSG_NOSIGNAL | MSG_DONTWAIT);
    while (n < 0 && errno == EINTR);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        BIO_set_retry_write(b);
    return (int)n;
}

static int bio_read(BIO *b, char *buf, int len)
{
    ssize_t n;

    BIO_clear_retry_flags(b);
    do
        n = recv(bio_fd(b), buf, (size_t)len, MSG_DONTWAIT);
    while (n < 0 && errno == EINTR);
    if (n == 0)
        BIO_set_flags(b, BIO_FLAGS_IN_EOF);
    else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        BIO_set_retry_read(b);
    return (int)n;
}

static int bio_puts(BIO *b, const char *s)
{
    return bio_write(b, s, (int)strlen(s));
}

static long bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    (void)num;
    switch (cmd) {
    case BIO_CTRL_FLUSH:
    case BIO_CTRL_DUP:
        return 1;
    case BIO_CTRL_EOF:
        return BIO_test_flags(b, BIO_FLAGS_IN_EOF) != 0;
    case BIO_C_GET_FD:
        if (ptr != NULL)
            *(int *)ptr = bio_fd(b);
        return bio_fd(b);
    default:
        return 0;
    }
}

static void method_init(void)
{
    int type = BIO_get_new_index();
    BIO_METHOD *m;

    if (type == -1)
        return;
    m = BIO_meth_new(type | BIO_TYPE_SOURCE_SINK | BIO_TYPE_DESCRIPTOR, "echosrv socket");
    if (m == NULL)
        return;
    if (!BIO_meth_set_write(m, bio_write) || !BIO_meth_set_read(m, bio_read) ||
        !BIO_meth_set_puts(m, bio_puts) || !BIO_meth_set_ctrl(m, bio_ctrl)) {
        BIO_meth_free(m);
        return;
    }
    g_method = m;       /* kept for the life of the process, as OpenSSL keeps its own */
}

/* The oldest queued error's reason into out, and the queue cleared. */
const char *tls_reason(char *out, size_t outlen)
{
    unsigned long e = ERR_get_error();

    if (e == 0) {
        snprintf(out, outlen, "no reason given");
    } else {
        const char *r = ERR_reason_error_string(e);
        if (r != NULL)
            snprintf(out, outlen, "%s", r);
        else
            ERR_error_string_n(e, out, outlen);
    }
    ERR_clear_error();
    return out;
}

/* Checks that path can be opened for reading, for a message that says why if not (OpenSSL's
 * own for a missing file is "system lib"). Returns 0 or -1 with the message in err. */
static int readable(const char *what, const char *path, char *err, size_t errlen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);

    if (fd < 0) {
        snprintf(err, errlen, "cannot read the %s %s: %s", what, path, strerror(errno));
        return -1;
    }
    close(fd);
    return 0;
}

/* See tls.h. */
SSL_CTX *tls_ctx_new(const tls_config *cfg, char *err, size_t errlen)
{
    char why[200];
    SSL_CTX *ctx;

    ERR_clear_error();
    ctx = SSL_CTX_new(TLS_client_method());
    if (ctx == NULL) {
        snprintf(err, errlen, "cannot create a TLS context: %s", tls_reason(why, sizeof why));
        return NULL;
    }
    if (!SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION)) {
        snprintf(err, errlen, "cannot require TLS 1.2: %s", tls_reason(why, sizeof why));
        goto fail;
    }
    /* SSL_MODE_AUTO_RETRY (OpenSSL's default) stays on: after a record that is not
     * application data (a session ticket, a key update) SSL_read goes on reading, so
     * WANT_READ always means the socket is drained - which an edge-triggered loop (echocli
     * bench) relies on for its next wake-up. */
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                          SSL_MODE_AUTO_RETRY);
    if (cfg->insecure) {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    } else {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
        if (cfg->ca_file != NULL) {
            if (readable("CA file", cfg->ca_file, err, errlen) < 0)
                goto fail;
            if (!SSL_CTX_load_verify_locations(ctx, cfg->ca_file, NULL)) {
                snprintf(err, errlen, "cannot load the CA file %s: %s", cfg->ca_file,
                         tls_reason(why, sizeof why));
                goto fail;
            }
        } else if (!SSL_CTX_set_default_verify_paths(ctx)) {
            snprintf(err, errlen, "cannot load the system's CA certificates: %s",
                     tls_reason(why, sizeof why));
            goto fail;
        }
    }
    if ((cfg->cert_file == NULL) != (cfg->key_file == NULL)) {
        snprintf(err, errlen, "a client certificate needs its key, and a key its certificate");
        goto fail;
    }
    if (cfg->cert_file != NULL) {
        if (readable("certificate file", cfg->cert_file, err, errlen) < 0 ||
            readable("key file", cfg->key_file, err, errlen) < 0)
            goto fail;
        if (!SSL_CTX_use_certificate_chain_file(ctx, cfg->cert_file)) {
            snprintf(err, errlen, "cannot load the certificate file %s: %s", cfg->cert_file,
                     tls_reason(why, sizeof why));
            goto fail;
        }
        if (!SSL_CTX_use_PrivateKey_file(ctx, cfg->key_file, SSL_FILETYPE_PEM)) {
            unsigned long e = ERR_peek_error();
            if (ERR_GET_LIB(e) == ERR_LIB_X509 && ERR_GET_REASON(e) == X509_R_KEY_VALUES_MISMATCH)
                snprintf(err, errlen, "the key file %s does not match the certificate %s: %s",
                         cfg->key_file, cfg->cert_file, tls_reason(why, sizeof why));
            else
                snprintf(err, errlen, "cannot load the key file %s: %s", cfg->key_file,
                         tls_reason(why, sizeof why));
            goto fail;
        }
        if (!SSL_CTX_check_private_key(ctx)) {
            snprintf(err, errlen, "the key file %s does not match the certificate %s: %s",
                     cfg->key_file, cfg->cert_file, tls_reason(why, sizeof why));
            goto fail;
        }
    }
    return ctx;

fail:
    ERR_clear_error();
    SSL_CTX_free(ctx);
    return NULL;
}

/* See tls.h. */
int tls_host_of(const char *address, char *out, size_t cap)
{
    const char *start = address, *end;

    if (strncmp(address, "unix:", 5) == 0)
        return -1;
    if (address[0] == '[') {
        start = address + 1;
        end = strchr(start, ']');
        if (end == NULL)
            return -1;
    } else {
        end = strrchr(address, ':');
        if (end == NULL)
            end = address + strlen(address);
        if (end == address) {                   /* ":PORT" connects to 127.0.0.1 */
            start = "127.0.0.1";
            end = start + strlen(start);
        }
    }
    if ((size_t)(end - start) >= cap || end == start)
        return -1;
    memcpy(out, start, (size_t)(end - start));
    out[end - start] = '\0';
    return 0;
}

/* See tls.h. */
SSL *tls_conn_new(SSL_CTX *ctx, int fd, const char *name, char *err, size_t errlen)
{
    char why[200];
    SSL *s;
    BIO *b;

    ERR_clear_error();
    pthread_once(&g_method_once, method_init);
    if (g_method == NULL) {
        snprintf(err, errlen, "cannot create the socket BIO method");
        return NULL;
    }
    s = SSL_new(ctx);
    if (s == NULL) {
        snprintf(err, errlen, "cannot create a TLS connection: %s", tls_reason(why, sizeof why));
        return NULL;
    }
    b = BIO_new(g_method);
    if (b == NULL) {
        snprintf(err, errlen, "cannot create a BIO: %s", tls_reason(why, sizeof why));
        SSL_free(s);
        return NULL;
    }
    BIO_set_data(b, (void *)(intptr_t)fd);
    BIO_set_init(b, 1);
    SSL_set_bio(s, b, b);                       /* s owns b */
    if (name != NULL) {
        unsigned char ip[16];
        int ok;

        if (inet_pton(AF_INET, name, ip) == 1 || inet_pton(AF_INET6, name, ip) == 1) {
            /* No SNI for an address (RFC 6066); the certificate must name it (SAN IP). */
            ok = X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(s), name);
        } else {
            ok = SSL_set_tlsext_host_name(s, name) && SSL_set1_host(s, name);
        }
        if (!ok) {
            snprintf(err, errlen, "cannot use the server name '%s': %s", name,
                     tls_reason(why, sizeof why));
            SSL_free(s);
            return NULL;
        }
    }
    SSL_set_connect_state(s);
    return s;
}

/* See tls.h. */
int tls_failure(SSL *s, int ret, int e, char *out, size_t outlen)
{
    unsigned long first = ERR_peek_error();
    int saved = errno;
    int rc = -EPROTO;

    if (e == SSL_ERROR_ZERO_RETURN) {
        snprintf(out, outlen, "the server closed the TLS connection (close_notify)");
        rc = -ECONNRESET;
    } else if (e == SSL_ERROR_SYSCALL && first == 0) {
        if (ret == 0 || saved == 0) {
            snprintf(out, outlen, "the server closed the connection");
            rc = -ECONNRESET;
        } else {
            snprintf(out, outlen, "%s", strerror(saved));
            rc = -saved;
        }
    } else if (first != 0 && ERR_GET_LIB(first) == ERR_LIB_SSL &&
               ERR_GET_REASON(first) == SSL_R_CERTIFICATE_VERIFY_FAILED) {
        long v = SSL_get_verify_result(s);
        snprintf(out, outlen, "certificate verify failed (%s)",
                 X509_verify_cert_error_string(v));
    } else if (first != 0 && ERR_GET_LIB(first) == ERR_LIB_SSL &&
               ERR_GET_REASON(first) == SSL_R_UNEXPECTED_EOF_WHILE_READING) {
        snprintf(out, outlen, "the server closed the connection (unexpected EOF)");
        rc = -ECONNRESET;
    } else if (first != 0 && ERR_GET_LIB(first) == ERR_LIB_SYS) {
        int sys = ERR_GET_REASON(first);
        snprintf(out, outlen, "%s", strerror(sys));
        rc = sys > 0 ? -sys : -EPROTO;
    } else {
        tls_reason(out, outlen);
    }
    ERR_clear_error();
    return rc;
}
