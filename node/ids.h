/*
 * ids.h - the id grammar, parsed and formatted here and nowhere else.
 *
 *   space  = node "-" boottag            a process's id space ("n1-k3x9a")
 *   id     = space "~" local             a promise, owned by whoever serves space
 *   local  = gen "." seq                 minted by the agent
 *          | "c" gen "." session "-" n   minted by a client under its lease
 *          | "i" hex | "d" hex           invocation ids (workers, placement)
 *          | space "~" local             minted by another agent's client under
 *                                        that agent's lease, in our space
 *
 * gen, seq, session and boottag are base36; the generation keeps ids minted in
 * one run of an agent apart from the last run's. The first "~" ends the space.
 * Pure functions: no allocation, no I/O.
 */
#ifndef PM_IDS_H
#define PM_IDS_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define PM_ID_SEP '~'
/* Room for a base36 uint64 and its NUL. */
#define PM_ID_B36_MAX 14

/* Length of id's space (the part before the first "~"); 0 if it has none. */
static inline size_t
pm_id_space_len(const char *id)
{
    const char *t = strchr(id, PM_ID_SEP);
    return t ? (size_t) (t - id) : 0;
}

/* Copies id's space into out; returns its length, or 0 (out = "") if id has
 * no space or the space does not fit in cap. */
static inline size_t
pm_id_space(const char *id, char *out, size_t cap)
{
    size_t n = pm_id_space_len(id);
    if (n >= cap)
        n = 0;
    memcpy(out, id, n);
    out[n] = 0;
    return n;
}

/* Whether id lies in space (space_len bytes): it begins with "space~". */
static inline int
pm_id_in_space(const char *id, const char *space, size_t space_len)
{
    return strncmp(id, space, space_len) == 0 && id[space_len] == PM_ID_SEP;
}

/* Whether ids a and b lie in the same (non-empty) space. */
static inline int
pm_id_same_space(const char *a, const char *b)
{
    size_t n = pm_id_space_len(b);
    return n && pm_id_in_space(a, b, n);
}

/* Whether id was minted under lease (lease_len bytes, "space~c<g>.<s>-"): it
 * extends the lease by a local part holding no further "~". */
static inline int
pm_id_under_lease(const char *id, const char *lease, size_t lease_len)
{
    return strncmp(id, lease, lease_len) == 0 && id[lease_len] &&
           !strchr(id + lease_len, PM_ID_SEP);
}

/* Whether id is "space~<another space>~...": minted in space by another
 * agent's client under that agent's lease. */
static inline int
pm_id_nested_in(const char *id, const char *space, size_t space_len)
{
    return pm_id_in_space(id, space, space_len) && strchr(id + space_len + 1, PM_ID_SEP);
}

/* The node a space is named after ("<node>-<tag>"): 1, or 0 if it has no tag. */
int pm_space_node(const char *space, char *node, size_t cap);

/* v in base36 into out (PM_ID_B36_MAX bytes at least). */
void pm_id_base36(uint64_t v, char *out);
/* "<node>-<boot36>": a new id space. Returns the length written (snprintf). */
int pm_id_space_name(char *out, size_t cap, const char *node, uint64_t boot);
/* "<space>~<gen36>.<seq36>": an id the agent mints. */
int pm_id_mint(char *out, size_t cap, const char *space, uint64_t generation, uint64_t seq);
/* "<space>~c<gen36>.<session36>-": a client's lease. */
int pm_id_lease(char *out, size_t cap, const char *space, uint64_t generation, uint64_t session);
/* "<space>~<tag><hex>": an invocation id (tag 'i' local, 'd' placed elsewhere). */
int pm_id_tagged(char *out, size_t cap, const char *space, char tag, uint64_t n);
/* "<space>~": the prefix every id of space begins with. */
int pm_id_space_prefix(char *out, size_t cap, const char *space);

#endif
