/*
 * resolve.c - the name resolution seam (resolve.h): getaddrinfo in
 * production, a table of names for tests and the simulator. The only file of
 * the agent's mesh that calls getaddrinfo.
 */
#include "resolve.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

static int
s_numeric_port(const char *port)
{
    if (!port || !*port)
        return 0;
    for (const char *p = port; *p; p++)
        if (*p < '0' || *p > '9')
            return 0;
    return 1;
}

static int
s_sys_resolve(void *ctx, const char *host, const char *port, char (*addrs)[PM_RESOLVE_ADDRLEN],
              size_t max, const char **why)
{
    (void) ctx;
    struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    int rc = getaddrinfo(host, port, &hints, &res);
    if (rc != 0) {
        *why = gai_strerror(rc);
        return -1;
    }
    size_t n = 0;
    for (struct addrinfo *a = res; a && n < max; a = a->ai_next)
        if (getnameinfo(a->ai_addr, a->ai_addrlen, addrs[n], PM_RESOLVE_ADDRLEN, NULL, 0,
                        NI_NUMERICHOST) == 0)
            n++;
    freeaddrinfo(res);
    return (int) n;
}

const pm_resolve_t pm_resolve_system = {.resolve = s_sys_resolve, .ctx = 0};
static const pm_resolve_t *s_cur = &pm_resolve_system;

const pm_resolve_t *
pm_resolve_use(const pm_resolve_t *r)
{
    const pm_resolve_t *prev = s_cur;
    s_cur = r ? r : &pm_resolve_system;
    return prev;
}

int
pm_resolve_host(const char *host, const char *port, char (*addrs)[PM_RESOLVE_ADDRLEN], size_t max,
                const char **why)
{
    static const char *unused;
    return s_cur->resolve(s_cur->ctx, host, port, addrs, max, why ? why : &unused);
}

/* --- the table ------------------------------------------------------------------ */

static int
s_table_resolve(void *ctx, const char *host, const char *port, char (*addrs)[PM_RESOLVE_ADDRLEN],
                size_t max, const char **why)
{
    const pm_resolve_table_t *t = ctx;
    if (!s_numeric_port(port)) {
        *why = "port is not numeric";
        return -1;
    }
    struct in_addr in;
    if (inet_pton(AF_INET, host, &in) == 1) {
        if (max == 0)
            return 0;
        snprintf(addrs[0], PM_RESOLVE_ADDRLEN, "%s", host);
        return 1;
    }
    size_t n = 0;
    int known = 0;
    for (size_t i = 0; i < t->n; i++) {
        if (strcmp(t->entries[i].name, host) != 0)
            continue;
        known = 1;
        if (n < max)
            snprintf(addrs[n++], PM_RESOLVE_ADDRLEN, "%s", t->entries[i].addr);
    }
    if (!known) {
        *why = "name not known";
        return -1;
    }
    return (int) n;
}

void
pm_resolve_table_init(pm_resolve_table_t *t, const pm_resolve_entry_t *entries, size_t n)
{
    t->resolve.resolve = s_table_resolve;
    t->resolve.ctx = t;
    t->entries = entries;
    t->n = n;
}
