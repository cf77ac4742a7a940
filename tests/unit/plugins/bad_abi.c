/* bad_abi.c - a test plugin, broken on purpose: built for plugin ABI 99.3. */
#include "echosrv/plugin.h"

static ssize_t bad_abi_data_received(es_conn *c, void *state, const uint8_t *data, size_t len)
{
    (void)c;
    (void)state;
    (void)data;
    (void)len;
    return 0;
}

static int bad_abi_response(es_conn *c, void *state, const uint8_t *msg, size_t len)
{
    (void)c;
    (void)state;
    (void)msg;
    (void)len;
    return 0;
}

static const es_plugin bad_abi_plugin = {
    .magic = ES_PLUGIN_MAGIC,
    .abi_major = 99,
    .abi_minor = 3,
    .size = sizeof(es_plugin),
    .name = "bad_abi",
    .version = "0",
    .data_received = bad_abi_data_received,
    .response = bad_abi_response,
};

ES_EXPORT const es_plugin *ES_PLUGIN_ENTRY(void)
{
    return &bad_abi_plugin;
}
