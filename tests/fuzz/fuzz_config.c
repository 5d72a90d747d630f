/*
 * fuzz_config.c - libFuzzer target for the configuration parser: any bytes
 * as a YAML file must give either a valid config or an error message naming
 * file:line:col, never a crash or a leak; and a config that loads must print
 * as YAML that loads back to the same printed text.
 */
#include "config.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char s_path[64];
static char s_path2[64];

static int
s_write(const char *path, const uint8_t *data, size_t size)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        return -1;
    fwrite(data, 1, size, f);
    return fclose(f);
}

static char *
s_print(const pm_config_t *cfg)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f)
        abort();
    pm_config_print(cfg, f);
    fclose(f);
    return text;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!s_path[0]) {
        snprintf(s_path, sizeof s_path, "/tmp/fuzz-config-%d.yaml", (int) getpid());
        snprintf(s_path2, sizeof s_path2, "/tmp/fuzz-config-%d.2.yaml", (int) getpid());
    }
    if (s_write(s_path, data, size) != 0)
        return 0;
    pm_config_t *cfg = pm_config_new();
    char err[512] = "";
    if (pm_config_load(cfg, s_path, err, sizeof err) != 0) {
        /* A refusal must say where. */
        if (strncmp(err, s_path, strlen(s_path)) != 0)
            abort();
        pm_config_destroy(&cfg);
        return 0;
    }
    /* Round trip: what loads prints as YAML that loads to the same config. */
    char *text = s_print(cfg);
    if (s_write(s_path2, (const uint8_t *) text, strlen(text)) != 0)
        abort();
    pm_config_t *back = pm_config_new();
    if (pm_config_load(back, s_path2, err, sizeof err) != 0)
        abort();
    char *again = s_print(back);
    if (strcmp(text, again) != 0)
        abort();
    free(text);
    free(again);
    pm_config_destroy(&back);
    pm_config_destroy(&cfg);
    return 0;
}
