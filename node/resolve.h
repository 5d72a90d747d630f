/*
 * resolve.h - name resolution behind a seam: a seed "tcp://HOST:PORT" becomes
 * the numeric IPv4 addresses HOST stands for. Production uses
 * pm_resolve_system (getaddrinfo); a test or the simulator installs a table
 * of names (pm_resolve_table_t), so that a run never waits on DNS and a
 * name's addresses can change between two lookups.
 *
 * A "current resolver" like the clock (clock.h), switched by the simulator
 * before it steps an agent. pm_resolve_use must not run while another thread
 * resolves.
 */
#ifndef PM_RESOLVE_H
#define PM_RESOLVE_H

#include <stddef.h>

/* Room for one numeric address ("255.255.255.255" and its NUL, with margin). */
#define PM_RESOLVE_ADDRLEN 64

typedef struct pm_resolve {
    /* Fills addrs with up to max numeric IPv4 addresses of host (port must be
     * numeric). Returns how many (0 is possible), or -1 with *why set to a
     * static message. */
    int (*resolve)(void *ctx, const char *host, const char *port,
                   char (*addrs)[PM_RESOLVE_ADDRLEN], size_t max, const char **why);
    void *ctx;
} pm_resolve_t;

/* getaddrinfo(3) (AF_INET, numeric port) and getnameinfo(3) for the text. */
extern const pm_resolve_t pm_resolve_system;

/* Installs r as the current resolver (NULL: the system one). Borrowed: r
 * must outlive its use. Returns the previous one. */
const pm_resolve_t *pm_resolve_use(const pm_resolve_t *r);

/* Resolves through the current resolver (see pm_resolve_t.resolve). */
int pm_resolve_host(const char *host, const char *port, char (*addrs)[PM_RESOLVE_ADDRLEN],
                    size_t max, const char **why);

/* A fixed table of names: each entry maps a name to one address; a name listed
 * several times has several addresses, in table order. A numeric IPv4 address
 * resolves to itself; any other name not in the table fails ("name not
 * known"). The entries are borrowed; a test may change them between lookups. */
typedef struct pm_resolve_entry {
    const char *name;
    const char *addr;
} pm_resolve_entry_t;

typedef struct pm_resolve_table {
    pm_resolve_t resolve; /* install with pm_resolve_use(&t.resolve) */
    const pm_resolve_entry_t *entries;
    size_t n;
} pm_resolve_table_t;

void pm_resolve_table_init(pm_resolve_table_t *t, const pm_resolve_entry_t *entries, size_t n);

#endif
