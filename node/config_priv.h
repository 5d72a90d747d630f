/*
 * config_priv.h - what config.c and config_keys.c share: the row type of the
 * key table and the table itself (one row per key of pmesh.yaml and of the
 * flags). Not for other modules: they use config.h.
 */
#ifndef PM_CONFIG_PRIV_H
#define PM_CONFIG_PRIV_H

#include "config.h"

#include <stddef.h>
#include <stdint.h>

typedef enum { S_STRING, S_INT, S_DURATION, S_BOOL, S_ENUM, S_LIST } s_type_t;

typedef struct {
    const char *key;
    s_type_t type;
    size_t offset;     /* of the field in pm_config_t */
    const char *def;   /* default, spelled as in a file; NULL: none (NULL string, empty list) */
    int64_t min, max;  /* S_INT, S_DURATION: accepted range, inclusive */
    const char *const *words; /* S_ENUM: NULL-terminated; the field holds the index */
    int (*check)(const char *value, char *msg, size_t msglen); /* S_STRING, S_LIST items */
    const char *meta;  /* value placeholder in --help; NULL: derived from the type */
    const char *doc;
} s_key_t;

/* The keys, in --help order (config_keys.c). */
extern const s_key_t pm_config_keys[];
extern const size_t pm_config_nkeys;

/* A node name goes into log lines, metrics and mesh messages unquoted:
 * 1 to 63 of A-Z a-z 0-9 . _ - (config.c). */
int pm_config_check_node(const char *value, char *msg, size_t msglen);

#endif
