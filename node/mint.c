/*
 * mint.c - the id space new ids go to: our primary, or the space the
 * process before us on this data dir minted in, resumed (mint.h).
 */

#include "mint.h"

#include "isr.h"
#include "replica.h"

static void
s_record(pm_agent_t *self)
{
    /* Pending, the space is still the last server's of our data dir; once
     * resumed, ours. */
    uint64_t served_by = self->mint_pending ? self->mint_prev : pm_replica_pid_of(self->space);
    pm_journal_generation(self->journal, self->space, self->mint, served_by, self->generation);
    /* Ids and leases of this generation go out only after it is durable:
     * a start that lost it would mint the same ids again. */
    if (pm_journal_sync(self->journal) != 0)
        pm_log_error("PM-MINT-SYNC", "the generation record of id space %s is not durable: "
                     "acknowledgements stop", self->mint);
}

void
pm_mint_start(pm_agent_t *self, const pm_journal_state_t *st, int resumable, int64_t grace)
{
    snprintf(self->mint, sizeof self->mint, "%s", self->space);
    if (resumable && st->mint[0] && strcmp(st->mint, self->space) != 0) {
        snprintf(self->mint, sizeof self->mint, "%.100s", st->mint);
        self->mint_pending = 1;
        /* The process before us minted there: it served it, or (it never
         * got it back) the one it names did. */
        self->mint_prev = st->mint_pid ? st->mint_pid : pm_replica_pid_of(st->space);
        self->mint_until = self->now_mono + grace;
        pm_log_info("PM-MINT-RESUME", "new ids go to id space %s again (generation %llu), once "
                    "the configuration store records us its owner; our primary is %s",
                    self->mint, (unsigned long long) self->generation, self->space);
    }
    if (self->journal)
        s_record(self);
}

/* New ids go to our primary from now on; back: the space may still come
 * back to us (an heir gives it back, isr.h R8), then we mint there again. */
static void
s_give_up(pm_agent_t *self, const char *why, int back)
{
    pm_log_info("PM-MINT-PRIMARY", "new ids go to our primary %s, not to %s: %s", self->space,
                self->mint, why);
    if (back)
        snprintf(self->mint_back, sizeof self->mint_back, "%s", self->mint);
    snprintf(self->mint, sizeof self->mint, "%s", self->space);
    self->mint_pending = 0;
    if (self->journal)
        s_record(self);
}

void
pm_mint_tick(pm_agent_t *self, int64_t mono)
{
    if (!self->isr)
        return;
    if (strcmp(self->mint, self->space) == 0) {
        /* A mint space we gave up (an heir held it): once it is ours again
         * (given back, R8), new ids go there again, under this generation
         * (made durable first, as at start). Looked at once a second. */
        if (!self->mint_back[0] || mono < self->mint_until)
            return;
        self->mint_until = mono + 1000;
        int r = pm_isr_resumable(self->isr, self->mint_back);
        if (r == 1 && pm_mesh_owns(self->mesh, self->mint_back, NULL)) {
            snprintf(self->mint, sizeof self->mint, "%s", self->mint_back);
            self->mint_back[0] = 0;
            pm_log_info("PM-MINT-RESUMED", "id space %s is ours again (given back): new ids go "
                        "there (generation %llu)", self->mint,
                        (unsigned long long) self->generation);
            if (self->journal)
                s_record(self);
        } else if (r == 0) {
            self->mint_back[0] = 0; /* never ours again (deleted, or not ours to take) */
        }
        return;
    }
    /* Once ours, looked at once a second, not every loop turn: until then a
     * create in a space we no longer serve is routed anyway (agent.c). */
    if (!self->mint_pending && mono < self->mint_until)
        return;
    int r = pm_isr_resumable(self->isr, self->mint);
    int served = pm_mesh_owns(self->mesh, self->mint, NULL);
    if (self->mint_pending) {
        if (r == 1 && served) {
            self->mint_pending = 0;
            self->mint_until = mono + 1000;
            pm_log_info("PM-MINT-RESUMED", "id space %s is ours again: new ids go there "
                        "(generation %llu)", self->mint, (unsigned long long) self->generation);
            if (self->journal)
                s_record(self); /* the next start resumes it from us */
        } else if (r == 0) {
            s_give_up(self, "the configuration store gives it to no process of ours", 0);
        } else if (mono >= self->mint_until) {
            /* An heir that took it over while we were down gives it back
             * once we are in sync for it (R8): until the grace ends, creates
             * go to it; after, we mint in our primary and take the space up
             * again if it still comes back. */
            s_give_up(self, r == 3 ? "an heir took it over while we were down and has not "
                                     "given it back within the grace period"
                                   : "it was not resumed within the grace period", 1);
            self->mint_until = mono + 1000;
        }
        return;
    }
    self->mint_until = mono + 1000;
    if (r != 1 || !served)
        s_give_up(self, "it moved to another owner", r != 0);
}

int
pm_mint_is_ours(const pm_agent_t *self, const char *space)
{
    return strcmp(space, self->space) == 0 || strcmp(space, self->mint) == 0;
}
