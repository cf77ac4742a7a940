/* strict.c - a test plugin: line echo whose framing refuses a line that starts with '!' (a protocol error for the host). */
#include <stdlib.h>
#include <string.h>

#include "echosrv/plugin.h"

typedef struct strict {
    const es_host *host;
} strict;

typedef struct strict_conn {
    const strict *inst;
} strict_conn;

static int strict_init(const es_host *host, const es_config *cfg, void **instance, es_error *err)
{
    (void)cfg;
    (void)err;
    strict *s = calloc(1, sizeof *s);
    if (s == NULL)
        return -1;
    s->host = host;
    *instance = s;
    return 0;
}

static void strict_fini(void *instance)
{
    free(instance);
}

static int strict_open(es_conn *c, void *instance, void *state)
{
    (void)c;
    ((strict_conn *)state)->inst = instance;
    return 0;
}

/* The next line's length with its '\n', 0 for more, -1 for a line that starts with '!'. */
static ssize_t strict_data_received(es_conn *c, void *state, const uint8_t *data, size_t len)
{
    (void)c;
    (void)state;
    if (len > 0 && data[0] == '!')
        return -1;
    const uint8_t *nl = memchr(data, '\n', len);
    return nl == NULL ? 0 : (ssize_t)(nl - data) + 1;
}

static int strict_response(es_conn *c, void *state, const uint8_t *msg, size_t len)
{
    const strict_conn *sc = state;
    return sc->inst->host->write(c, msg, len);
}

static const es_plugin strict_plugin = {
    .magic = ES_PLUGIN_MAGIC,
    .abi_major = ES_PLUGIN_ABI_MAJOR,
    .abi_minor = ES_PLUGIN_ABI_MINOR,
    .size = sizeof(es_plugin),
    .name = "strict",
    .version = "1",
    .conn_size = sizeof(strict_conn),
    .init = strict_init,
    .fini = strict_fini,
    .open = strict_open,
    .data_received = strict_data_received,
    .response = strict_response,
};

ES_EXPORT const es_plugin *ES_PLUGIN_ENTRY(void)
{
    return &strict_plugin;
}
