/* tls.c - builds the OpenSSL server context of a TLS listener from its INI settings. */
#define _GNU_SOURCE
#include "tls.h"

#include <stdio.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/x509.h>

/* TLS 1.2 suites with forward secrecy and AEAD only (TLS 1.3 suites are
 * OpenSSL's defaults, all of which qualify). */
#define DEFAULT_CIPHERS                                                                 \
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"                        \
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"                        \
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"                        \
    "DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384:DHE-RSA-CHACHA20-POLY1305"

const char *tls_error_text(char *buf, size_t len, const char *fallback)
{
    size_t used = 0;
    unsigned long e;
    buf[0] = '\0';
    while ((e = ERR_get_error()) != 0) {
        char one[256];
        const char *reason = ERR_reason_error_string(e);
        if (reason == NULL) {
            ERR_error_string_n(e, one, sizeof one);
            reason = one;
        }
        /* The same reason twice says nothing more. */
        if (strstr(buf, reason) != NULL)
            continue;
        if (used < len)
            used += (size_t)snprintf(buf + used, len - used, "%s%s", used ? "; " : "", reason);
    }
    if (buf[0] == '\0')
        snprintf(buf, len, "%s", fallback);
    return buf;
}

/* "FILE:LINE: listener NAME: what: OpenSSL's reasons" into err. */
static void ctx_fail(const config *cfg, const config_listener *l, int line, char *err,
                     size_t errlen, const char *what)
{
    char why[512];
    tls_error_text(why, sizeof why, "unknown error");
    if (line > 0)
        snprintf(err, errlen, "%s:%d: listener %s: %s: %s", cfg->path, line, l->name, what, why);
    else
        snprintf(err, errlen, "%s: listener %s: %s: %s", cfg->path, l->name, what, why);
}

SSL_CTX *tls_server_ctx(const config *cfg, const config_listener *l, char *err, size_t errlen)
{
    const config_tls *t = &l->tls;
    char what[4200];
    ERR_clear_error();
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (ctx == NULL) {
        ctx_fail(cfg, l, t->line[TK_CERT], err, errlen, "cannot create a TLS context");
        return NULL;
    }
    int min = t->min_version == 13 ? TLS1_3_VERSION : TLS1_2_VERSION;
    if (SSL_CTX_set_min_proto_version(ctx, min) != 1) {
        ctx_fail(cfg, l, t->line[TK_MIN_VERSION], err, errlen, "tls_min_version");
        goto fail;
    }
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION |
                                 SSL_OP_CIPHER_SERVER_PREFERENCE);
#ifdef SSL_OP_IGNORE_UNEXPECTED_EOF
    /* A peer that closes without close_notify ends its stream like a FIN:
     * messages are self-delimiting, so truncation cannot forge one. */
    SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
#endif
    /* Read ahead: one read(2) takes several records; what OpenSSL holds
     * beyond a read is taken before epoll is asked again (conn.c). */
    SSL_CTX_set_read_ahead(ctx, 1);
    /* Partial writes and a moving buffer: a reply is retried from the
     * connection's queue, not from where it was first given. Released
     * buffers: an idle TLS connection holds no record buffers. */
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                              SSL_MODE_RELEASE_BUFFERS);
    if (SSL_CTX_set_cipher_list(ctx, t->ciphers ? t->ciphers : DEFAULT_CIPHERS) != 1) {
        snprintf(what, sizeof what, "tls_ciphers '%s' selects no cipher",
                 t->ciphers ? t->ciphers : DEFAULT_CIPHERS);
        ctx_fail(cfg, l, t->line[TK_CIPHERS], err, errlen, what);
        goto fail;
    }
    if (SSL_CTX_use_certificate_chain_file(ctx, t->cert) != 1) {
        snprintf(what, sizeof what, "tls_cert %s: cannot load the certificate", t->cert);
        ctx_fail(cfg, l, t->line[TK_CERT], err, errlen, what);
        goto fail;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, t->key, SSL_FILETYPE_PEM) != 1) {
        if (ERR_GET_REASON(ERR_peek_last_error()) == X509_R_KEY_VALUES_MISMATCH)
            snprintf(what, sizeof what, "tls_key %s does not match the certificate in %s",
                     t->key, t->cert);
        else
            snprintf(what, sizeof what, "tls_key %s: cannot load the private key", t->key);
        ctx_fail(cfg, l, t->line[TK_KEY], err, errlen, what);
        goto fail;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        snprintf(what, sizeof what, "tls_key %s does not match the certificate in %s", t->key,
                 t->cert);
        ctx_fail(cfg, l, t->line[TK_KEY], err, errlen, what);
        goto fail;
    }
    if (t->verify_client != TLS_VERIFY_OFF) {
        STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(t->ca);
        if (names == NULL || SSL_CTX_load_verify_locations(ctx, t->ca, NULL) != 1) {
            sk_X509_NAME_pop_free(names, X509_NAME_free);
            snprintf(what, sizeof what, "tls_ca %s: cannot load a CA certificate", t->ca);
            ctx_fail(cfg, l, t->line[TK_CA], err, errlen, what);
            goto fail;
        }
        SSL_CTX_set_client_CA_list(ctx, names);
        int mode = SSL_VERIFY_PEER;
        if (t->verify_client == TLS_VERIFY_ON)
            mode |= SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
        SSL_CTX_set_verify(ctx, mode, NULL);
    }
    /* Resumed sessions must belong to this listener (and its verification). */
    unsigned char sid[SSL_MAX_SID_CTX_LENGTH];
    size_t n = strlen(l->name);
    if (n > sizeof sid)
        n = sizeof sid;
    memcpy(sid, l->name, n);
    SSL_CTX_set_session_id_context(ctx, sid, (unsigned)n);
    ERR_clear_error();
    return ctx;
fail:
    SSL_CTX_free(ctx);
    return NULL;
}
