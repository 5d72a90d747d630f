/*
 * owners.c - the mesh's view of who serves what (mesh.h): the spaces this
 * agent claims and their epochs, the highest epoch any member announced for
 * a space, every member's spaces and backups as last announced, and the
 * choice of our backups by rendezvous hashing. The rules for claims live in
 * spaces.h.
 */
#include "mesh_priv.h"

#include "base.h"
#include "clock.h"

#include <stdlib.h>
#include <string.h>

int
pm_mesh_owns(pm_mesh_t *self, const char *space, uint64_t *epoch)
{
    for (size_t i = 0; i < self->n_mine; i++)
        if (strcmp(self->mine[i], space) == 0) {
            if (epoch)
                *epoch = self->mine_epochs[i];
            return 1;
        }
    return 0;
}

void
pm_mesh_claim(pm_mesh_t *self, const char *space, uint64_t epoch)
{
    for (size_t i = 0; i < self->n_mine; i++)
        if (strcmp(self->mine[i], space) == 0) {
            PM_INVARIANT(epoch >= self->mine_epochs[i], "the epoch of a claimed space only rises");
            self->mine_epochs[i] = epoch;
            pm_mesh_publish_meta(self, (uint64_t) pm_mono_ms());
            return;
        }
    /* A claim dropped here would be a takeover skipped: out of memory stops. */
    self->mine = pm_xrealloc(self->mine, (self->n_mine + 1) * sizeof *self->mine, "claim");
    self->mine_epochs = pm_xrealloc(self->mine_epochs,
                                    (self->n_mine + 1) * sizeof *self->mine_epochs, "claim");
    self->mine[self->n_mine] = pm_xstrdup(space, "claim");
    self->mine_epochs[self->n_mine++] = epoch;
    zhashx_delete(self->lost, space);
    pm_mesh_publish_meta(self, (uint64_t) pm_mono_ms()); /* a takeover is news: no rate limit */
}

void
pm_mesh_unclaim(pm_mesh_t *self, const char *space)
{
    for (size_t i = 0; i < self->n_mine; i++)
        if (strcmp(self->mine[i], space) == 0) {
            free(self->mine[i]);
            self->mine[i] = self->mine[self->n_mine - 1];
            self->mine_epochs[i] = self->mine_epochs[self->n_mine - 1];
            self->n_mine--;
            self->meta_dirty = 1;
            return;
        }
}

int
pm_mesh_synced(pm_mesh_t *self)
{
    pm_swim_stats_t st;
    pm_swim_stats(self->swim, &st);
    return st.received[PM_SWIM_MSG_SYNC_REQ] + st.received[PM_SWIM_MSG_SYNC_RESP] > 0;
}

size_t
pm_mesh_served(pm_mesh_t *self, const char *const **spaces, const uint64_t **epochs)
{
    *spaces = (const char *const *) self->mine;
    *epochs = self->mine_epochs;
    return self->n_mine;
}

uint64_t
pm_mesh_epoch(pm_mesh_t *self, const char *space)
{
    uint64_t e = 0;
    pm_mesh_owns(self, space, &e);
    pm_mesh_owner_t *o = zhashx_lookup(self->owners, space);
    if (o && o->epoch > e)
        e = o->epoch;
    const char *lost = zhashx_lookup(self->lost, space);
    uint64_t le = lost ? strtoull(lost, NULL, 10) : 0;
    return le > e ? le : e;
}

uint64_t
pm_mesh_owner_epoch(pm_mesh_t *self, const char *space)
{
    pm_mesh_owner_t *o = zhashx_lookup(self->owners, space);
    return o ? o->epoch : 0;
}

size_t
pm_mesh_spaces_of(pm_mesh_t *self, const char *node, const char **primary,
                  const char *const **spaces, const uint64_t **epochs)
{
    pm_mesh_peer_t *p = zhashx_lookup(self->peers, node);
    if (!p || !p->primary)
        return 0;
    *primary = p->primary;
    *spaces = (const char *const *) p->spaces;
    *epochs = p->epochs;
    return p->n_spaces;
}

static uint64_t
s_rendezvous(const char *space, const char *member)
{
    uint64_t h = 1469598103934665603ULL;
    for (const char *c = space; *c; c++)
        h = (h ^ (uint8_t) *c) * 1099511628211ULL;
    h = (h ^ '/') * 1099511628211ULL;
    for (const char *c = member; *c; c++)
        h = (h ^ (uint8_t) *c) * 1099511628211ULL;
    h ^= h >> 33; /* finalise: FNV's low bits alone rank poorly */
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    return h;
}

size_t
pm_mesh_backups(pm_mesh_t *self, const char *node, const char *primary, size_t n,
                const char **out)
{
    /* Candidates: every alive member but node, this agent included. */
    size_t got = 0;
    uint64_t scores[16];
    if (n > 16)
        n = 16;
    const char *cand_self = strcmp(node, self->node) != 0 ? self->node : NULL;
    pm_mesh_peer_t *p = zhashx_first(self->peers);
    for (;;) {
        const char *name = NULL;
        if (cand_self) {
            name = cand_self;
            cand_self = NULL;
        } else if (p) {
            if (p->state == PM_SWIM_ALIVE && strcmp(p->name, node) != 0)
                name = p->name;
            p = zhashx_next(self->peers);
        } else {
            break;
        }
        if (!name)
            continue;
        uint64_t sc = s_rendezvous(primary, name);
        /* insertion into the top-n list, highest score first */
        size_t at = got < n ? got : n;
        while (at > 0 && scores[at - 1] < sc) {
            if (at < n) {
                scores[at] = scores[at - 1];
                out[at] = out[at - 1];
            }
            at--;
        }
        if (at < n) {
            scores[at] = sc;
            out[at] = name;
            if (got < n)
                got++;
        }
    }
    return got;
}

void
pm_mesh_free_backups(pm_mesh_t *self)
{
    for (size_t i = 0; i < self->n_my_backups; i++) {
        free(self->my_backups[i]);
        free(self->my_backup_spaces[i]);
    }
    free(self->my_backups);
    free(self->my_backup_spaces);
    self->my_backups = self->my_backup_spaces = NULL;
    self->n_my_backups = 0;
}

void
pm_mesh_set_backups(pm_mesh_t *self, const char *const *names, const char *const *spaces,
                    size_t n)
{
    int same = n == self->n_my_backups;
    for (size_t i = 0; same && i < n; i++)
        same = strcmp(names[i], self->my_backups[i]) == 0 &&
               strcmp(spaces[i], self->my_backup_spaces[i]) == 0;
    if (same)
        return;
    pm_mesh_free_backups(self);
    /* Our heirs dropped here would leave our spaces without one. */
    self->my_backups = pm_xcalloc(n + 1, sizeof *self->my_backups, "backups");
    self->my_backup_spaces = pm_xcalloc(n + 1, sizeof *self->my_backup_spaces, "backups");
    for (size_t i = 0; i < n; i++) {
        self->my_backups[self->n_my_backups] = pm_xstrdup(names[i], "backups");
        self->my_backup_spaces[self->n_my_backups++] = pm_xstrdup(spaces[i], "backups");
    }
    /* Who inherits our spaces is news worth spreading at once. */
    pm_mesh_publish_meta(self, (uint64_t) pm_mono_ms());
}

size_t
pm_mesh_backups_of(pm_mesh_t *self, const char *node, const char **out, const char **spaces,
                   size_t n)
{
    pm_mesh_peer_t *p = zhashx_lookup(self->peers, node);
    size_t got = 0;
    for (size_t i = 0; p && i < p->n_backups && got < n; i++) {
        if (spaces)
            spaces[got] = p->backup_spaces[i];
        out[got++] = p->backups[i];
    }
    return got;
}

const char *
pm_mesh_primary_of(pm_mesh_t *self, const char *node)
{
    if (strcmp(node, self->node) == 0)
        return self->space;
    pm_mesh_peer_t *p = zhashx_lookup(self->peers, node);
    return p ? p->primary : NULL;
}

const char *
pm_mesh_self(pm_mesh_t *self)
{
    return self->node;
}

