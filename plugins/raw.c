/* raw.c - the RFC 862 echo protocol: every byte comes back as it arrives, with no framing. */
#include <stdio.h>
#include <stdlib.h>

#include "echosrv/plugin.h"

/* Per plugin: read-only after init. */
typedef struct raw_instance {
    const es_host *host;
} raw_instance;

/* Per connection: where to reach the host's services. */
typedef struct raw_conn {
    const es_host *host;
} raw_conn;

/* Accepts an empty [raw] section. Returns 0 with the instance in *instance,
 * or -1 with err filled (the first key, as raw has no options). Main thread.
 * The instance is freed by raw_fini. */
static int raw_init(const es_host *host, const es_config *cfg, void **instance, es_error *err)
{
    if (cfg->count > 0) {
        err->item = 0;
        snprintf(err->msg, sizeof err->msg, "unknown key '%s' in [raw] (raw has no options)",
                 cfg->items[0].key);
        return -1;
    }
    raw_instance *inst = calloc(1, sizeof *inst);
    if (inst == NULL) {
        err->item = -1;
        snprintf(err->msg, sizeof err->msg, "out of memory");
        return -1;
    }
    inst->host = host;
    *instance = inst;
    return 0;
}

/* Frees the instance. Main thread, after every connection is gone. */
static void raw_fini(void *instance)
{
    free(instance);
}

/* Remembers the host table for this connection. Returns 0. Owning worker. */
static int raw_open(es_conn *c, void *instance, void *state)
{
    (void)c;
    ((raw_conn *)state)->host = ((const raw_instance *)instance)->host;
    return 0;
}

/* Framing: whatever has arrived is the next message. Returns len (> 0: the
 * server never calls with no input). Owning worker. */
static ssize_t raw_data_received(es_conn *c, void *state, const uint8_t *data, size_t len)
{
    (void)c;
    (void)state;
    (void)data;
    return (ssize_t)len;
}

/* Writes the bytes back; the server sends them from its input buffer
 * without a copy. Returns 0, or -1 when the connection is closing. Owning
 * worker. */
static int raw_response(es_conn *c, void *state, const uint8_t *msg, size_t len)
{
    const es_host *host = ((raw_conn *)state)->host;
    return host->write(c, msg, len) < 0 ? -1 : 0;
}

static const es_plugin raw_plugin = {
    .magic = ES_PLUGIN_MAGIC,
    .abi_major = ES_PLUGIN_ABI_MAJOR,
    .abi_minor = ES_PLUGIN_ABI_MINOR,
    .size = sizeof(es_plugin),
    .name = "raw",
    .version = PACKAGE_VERSION,
    .conn_size = sizeof(raw_conn),
    .init = raw_init,
    .fini = raw_fini,
    .open = raw_open,
    .data_received = raw_data_received,
    .response = raw_response,
};

/* The plugin's descriptor, a constant. Any thread. */
ES_EXPORT const es_plugin *ES_PLUGIN_ENTRY(void)
{
    return &raw_plugin;
}
