/* bad_magic.c - a test plugin, broken on purpose: wrong magic (0xdeadbeef). */
#include "echosrv/plugin.h"

static ssize_t bad_magic_data_received(es_conn *c, void *state, const uint8_t *data, size_t len)
{
    (void)c;
    (void)state;
    (void)data;
    (void)len;
    return 0;
}

static int bad_magic_response(es_conn *c, void *state, const uint8_t *msg, size_t len)
{
    (void)c;
    (void)state;
    (void)msg;
    (void)len;
    return 0;
}

static const es_plugin bad_magic_plugin = {
    .magic = 0xdeadbeefu,
    .abi_major = ES_PLUGIN_ABI_MAJOR,
    .abi_minor = ES_PLUGIN_ABI_MINOR,
    .size = sizeof(es_plugin),
    .name = "bad_magic",
    .version = "0",
    .data_received = bad_magic_data_received,
    .response = bad_magic_response,
};

ES_EXPORT const es_plugin *ES_PLUGIN_ENTRY(void)
{
    return &bad_magic_plugin;
}
