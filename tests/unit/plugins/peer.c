/* peer.c - a test plugin that answers each read with the connection's peer as the host's peer service gives it, then "\n". */
#include <string.h>

#include "echosrv/plugin.h"

/* The instance is the host table; each connection's state keeps a pointer to it. */
static int peer_init(const es_host *host, const es_config *cfg, void **instance, es_error *err)
{
    (void)cfg;
    (void)err;
    *instance = (void *)host;
    return 0;
}

static int peer_open(es_conn *c, void *instance, void *state)
{
    (void)c;
    *(const es_host **)state = instance;
    return 0;
}

static ssize_t peer_data_received(es_conn *c, void *state, const uint8_t *data, size_t len)
{
    (void)c;
    (void)state;
    (void)data;
    return (ssize_t)len;
}

static int peer_response(es_conn *c, void *state, const uint8_t *msg, size_t len)
{
    (void)msg;
    (void)len;
    const es_host *host = *(const es_host **)state;
    const char *p = host->peer(c);
    if (host->write(c, p, strlen(p)) != 0)
        return -1;
    return host->write(c, "\n", 1);
}

static const es_plugin peer_plugin = {
    .magic = ES_PLUGIN_MAGIC,
    .abi_major = ES_PLUGIN_ABI_MAJOR,
    .abi_minor = ES_PLUGIN_ABI_MINOR,
    .size = sizeof(es_plugin),
    .name = "peer",
    .version = "1",
    .conn_size = sizeof(const es_host *),
    .init = peer_init,
    .open = peer_open,
    .data_received = peer_data_received,
    .response = peer_response,
};

ES_EXPORT const es_plugin *ES_PLUGIN_ENTRY(void)
{
    return &peer_plugin;
}
