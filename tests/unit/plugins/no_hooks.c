/* no_hooks.c - a test plugin, broken on purpose: no data_received hook, which is required. */
#include "echosrv/plugin.h"

static int no_hooks_response(es_conn *c, void *state, const uint8_t *msg, size_t len)
{
    (void)c;
    (void)state;
    (void)msg;
    (void)len;
    return 0;
}

static const es_plugin no_hooks_plugin = {
    .magic = ES_PLUGIN_MAGIC,
    .abi_major = ES_PLUGIN_ABI_MAJOR,
    .abi_minor = ES_PLUGIN_ABI_MINOR,
    .size = sizeof(es_plugin),
    .name = "no_hooks",
    .version = "0",
    .data_received = NULL,
    .response = no_hooks_response,
};

ES_EXPORT const es_plugin *ES_PLUGIN_ENTRY(void)
{
    return &no_hooks_plugin;
}
