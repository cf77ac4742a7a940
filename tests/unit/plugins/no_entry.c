/* no_entry.c - a test plugin, broken on purpose: no es_plugin_entry, only a look-alike. */
#include "echosrv/plugin.h"

static ssize_t no_entry_data_received(es_conn *c, void *state, const uint8_t *data, size_t len)
{
    (void)c;
    (void)state;
    (void)data;
    (void)len;
    return 0;
}

static int no_entry_response(es_conn *c, void *state, const uint8_t *msg, size_t len)
{
    (void)c;
    (void)state;
    (void)msg;
    (void)len;
    return 0;
}

static const es_plugin no_entry_plugin = {
    .magic = ES_PLUGIN_MAGIC,
    .abi_major = ES_PLUGIN_ABI_MAJOR,
    .abi_minor = ES_PLUGIN_ABI_MINOR,
    .size = sizeof(es_plugin),
    .name = "no_entry",
    .version = "0",
    .data_received = no_entry_data_received,
    .response = no_entry_response,
};

/* A valid descriptor behind the wrong name. */
ES_EXPORT const es_plugin *es_plugin_entry_v0(void);

ES_EXPORT const es_plugin *es_plugin_entry_v0(void)
{
    return &no_entry_plugin;
}
