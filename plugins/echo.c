/* echo.c - the echo protocol of pulsar: a message ends with a separator and comes back as sent; QUIT closes. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "echosrv/plugin.h"
#include "frame.h"

#define DEFAULT_SEPARATOR "\r\n\r\n"

typedef struct echo_instance {
    const es_host *host;
    uint8_t sep[FRAME_SEP_MAX];
    size_t sep_len;
} echo_instance;

/* Per connection: the instance and the scan of the current message. */
typedef struct echo_conn {
    const echo_instance *inst;
    frame_scan scan;
    int passed;  /* the current message's start went out already (partial) */
} echo_conn;

static int echo_init(const es_host *host, const es_config *cfg, void **instance, es_error *err)
{
    echo_instance *inst = calloc(1, sizeof *inst);
    if (inst == NULL) {
        snprintf(err->msg, sizeof err->msg, "out of memory");
        return -1;
    }
    inst->host = host;
    memcpy(inst->sep, DEFAULT_SEPARATOR, sizeof DEFAULT_SEPARATOR - 1);
    inst->sep_len = sizeof DEFAULT_SEPARATOR - 1;
    for (size_t i = 0; i < cfg->count; i++) {
        const es_config_item *it = &cfg->items[i];
        err->item = (int)i;
        if (strcmp(it->key, "separator") == 0) {
            char why[128];
            ssize_t n = unescape(it->value, inst->sep, sizeof inst->sep, why, sizeof why);
            if (n < 0) {
                snprintf(err->msg, sizeof err->msg, "separator: %s", why);
                goto fail;
            }
            if (n == 0) {
                snprintf(err->msg, sizeof err->msg, "separator: must not be empty");
                goto fail;
            }
            inst->sep_len = (size_t)n;
        } else {
            snprintf(err->msg, sizeof err->msg, "unknown key '%s' in [echo] (known: separator)",
                     it->key);
            goto fail;
        }
    }
    *instance = inst;
    return 0;
fail:
    free(inst);
    return -1;
}

static void echo_fini(void *instance)
{
    free(instance);
}

static int echo_open(es_conn *c, void *instance, void *state)
{
    (void)c;
    echo_conn *ec = state;
    const echo_instance *inst = instance;
    ec->inst = inst;
    ec->scan.sep = inst->sep;
    ec->scan.sep_len = inst->sep_len;
    return 0;
}

static ssize_t echo_data_received(es_conn *c, void *state, const uint8_t *data, size_t len)
{
    (void)c;
    echo_conn *ec = state;
    return (ssize_t)frame_next(&ec->scan, data, len);
}

static int echo_response(es_conn *c, void *state, const uint8_t *msg, size_t len)
{
    echo_conn *ec = state;
    const es_host *host = ec->inst->host;
    if (host->write(c, msg, len) < 0)
        return -1;
    size_t body = len - ec->scan.sep_len;
    if (body == 4 && !ec->passed && memcmp(msg, "QUIT", 4) == 0)
        host->close(c);
    ec->passed = 0;
    return 0;
}

/* A long message goes back as it comes: everything but a tail that may be
 * the start of the separator. */
static ssize_t echo_partial(es_conn *c, void *state, const uint8_t *data, size_t len)
{
    echo_conn *ec = state;
    size_t n = frame_pass(&ec->scan, data, len);
    if (n == 0)
        return 0;
    if (ec->inst->host->write(c, data, n) < 0)
        return -1;
    ec->passed = 1;
    return (ssize_t)n;
}

static const es_plugin echo_plugin = {
    .magic = ES_PLUGIN_MAGIC,
    .abi_major = ES_PLUGIN_ABI_MAJOR,
    .abi_minor = ES_PLUGIN_ABI_MINOR,
    .size = sizeof(es_plugin),
    .name = "echo",
    .version = PACKAGE_VERSION,
    .conn_size = sizeof(echo_conn),
    .init = echo_init,
    .fini = echo_fini,
    .open = echo_open,
    .data_received = echo_data_received,
    .response = echo_response,
    .partial = echo_partial,
};

ES_EXPORT const es_plugin *ES_PLUGIN_ENTRY(void)
{
    return &echo_plugin;
}
