/* counting.c - a test plugin (raw echo) that counts its opens and closes and reports them at fini. */
#include <stdatomic.h>
#include <stdlib.h>

#include "echosrv/plugin.h"

typedef struct counting {
    const es_host *host;
    atomic_long opens, closes;
} counting;

typedef struct counting_conn {
    counting *inst;
    char *scratch; /* allocated in open, freed in close: a leak if close is skipped */
} counting_conn;

static int counting_init(const es_host *host, const es_config *cfg, void **instance,
                         es_error *err)
{
    (void)cfg;
    (void)err;
    counting *n = calloc(1, sizeof *n);
    if (n == NULL)
        return -1;
    n->host = host;
    *instance = n;
    return 0;
}

static void counting_fini(void *instance)
{
    counting *n = instance;
    n->host->log(NULL, ES_LOG_ERROR, "counting: opens=%ld closes=%ld", atomic_load(&n->opens),
                 atomic_load(&n->closes));
    free(n);
}

static int counting_open(es_conn *c, void *instance, void *state)
{
    (void)c;
    counting_conn *cc = state;
    cc->inst = instance;
    cc->scratch = malloc(64);
    if (cc->scratch == NULL)
        return -1;
    atomic_fetch_add(&cc->inst->opens, 1);
    return 0;
}

static ssize_t counting_data_received(es_conn *c, void *state, const uint8_t *data, size_t len)
{
    (void)c;
    (void)state;
    (void)data;
    return (ssize_t)len;
}

static int counting_response(es_conn *c, void *state, const uint8_t *msg, size_t len)
{
    counting_conn *cc = state;
    return cc->inst->host->write(c, msg, len);
}

static void counting_close(es_conn *c, void *state)
{
    (void)c;
    counting_conn *cc = state;
    free(cc->scratch);
    atomic_fetch_add(&cc->inst->closes, 1);
}

static const es_plugin counting_plugin = {
    .magic = ES_PLUGIN_MAGIC,
    .abi_major = ES_PLUGIN_ABI_MAJOR,
    .abi_minor = ES_PLUGIN_ABI_MINOR,
    .size = sizeof(es_plugin),
    .name = "counting",
    .version = "1",
    .conn_size = sizeof(counting_conn),
    .init = counting_init,
    .fini = counting_fini,
    .open = counting_open,
    .data_received = counting_data_received,
    .response = counting_response,
    .close = counting_close,
};

ES_EXPORT const es_plugin *ES_PLUGIN_ENTRY(void)
{
    return &counting_plugin;
}
