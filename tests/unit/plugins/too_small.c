/* too_small.c - a test plugin, broken on purpose: descriptor size 40, below ES_PLUGIN_MIN_SIZE. */
#include "echosrv/plugin.h"

static ssize_t too_small_data_received(es_conn *c, void *state, const uint8_t *data, size_t len)
{
    (void)c;
    (void)state;
    (void)data;
    (void)len;
    return 0;
}

static int too_small_response(es_conn *c, void *state, const uint8_t *msg, size_t len)
{
    (void)c;
    (void)state;
    (void)msg;
    (void)len;
    return 0;
}

static const es_plugin too_small_plugin = {
    .magic = ES_PLUGIN_MAGIC,
    .abi_major = ES_PLUGIN_ABI_MAJOR,
    .abi_minor = ES_PLUGIN_ABI_MINOR,
    .size = 40,
    .name = "too_small",
    .version = "0",
    .data_received = too_small_data_received,
    .response = too_small_response,
};

ES_EXPORT const es_plugin *ES_PLUGIN_ENTRY(void)
{
    return &too_small_plugin;
}
