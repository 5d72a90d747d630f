/*
 * ids.c - see ids.h.
 */
#include "ids.h"

#include <stdio.h>

int
pm_space_node(const char *space, char *node, size_t cap)
{
    snprintf(node, cap, "%s", space);
    char *dash = strrchr(node, '-');
    if (!dash)
        return 0;
    *dash = 0;
    return 1;
}

void
pm_id_base36(uint64_t v, char *out)
{
    char tmp[PM_ID_B36_MAX];
    int n = 0;
    do {
        tmp[n++] = "0123456789abcdefghijklmnopqrstuvwxyz"[v % 36];
        v /= 36;
    } while (v);
    for (int i = 0; i < n; i++)
        out[i] = tmp[n - 1 - i];
    out[n] = 0;
}

int
pm_id_space_name(char *out, size_t cap, const char *node, uint64_t boot)
{
    char b36[PM_ID_B36_MAX];
    pm_id_base36(boot, b36);
    return snprintf(out, cap, "%s-%s", node, b36);
}

/* "<space>~<tag><gen36>.<n36><end>": the agent's ids (no tag) and leases. */
static int
s_gen_n(char *out, size_t cap, const char *space, const char *tag, uint64_t generation,
        uint64_t n, const char *end)
{
    char n36[PM_ID_B36_MAX], g36[PM_ID_B36_MAX];
    pm_id_base36(n, n36);
    pm_id_base36(generation, g36);
    return snprintf(out, cap, "%s~%s%s.%s%s", space, tag, g36, n36, end);
}

int
pm_id_mint(char *out, size_t cap, const char *space, uint64_t generation, uint64_t seq)
{
    return s_gen_n(out, cap, space, "", generation, seq, "");
}

int
pm_id_lease(char *out, size_t cap, const char *space, uint64_t generation, uint64_t session)
{
    return s_gen_n(out, cap, space, "c", generation, session, "-");
}

int
pm_id_tagged(char *out, size_t cap, const char *space, char tag, uint64_t n)
{
    return snprintf(out, cap, "%s~%c%llx", space, tag, (unsigned long long) n);
}

int
pm_id_space_prefix(char *out, size_t cap, const char *space)
{
    return snprintf(out, cap, "%s~", space);
}
