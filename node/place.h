/*
 * place.h - placement of invocations: on a local worker if one serves the
 * function, else on the member with the most free capacity for it; every
 * invocation placed is kept until its target settles (placed again if that
 * member dies), and its result settles the target only through the agent
 * that placed it, once the input's record is durable here and at the
 * backups (place.c has the rules and why they are safe).
 */
#ifndef PM_PLACE_H
#define PM_PLACE_H

#include "agent_priv.h"

/* Workers hook: a local worker's result, handed to its placer: this
 * agent's guard (origin->node NULL) or the member that placed it (sent back
 * to it as a Result). (The name predates the guard: agent_new.c wires it.) */
int pm_place_settle_anywhere(void *arg, const pm_workers_origin_t *origin, const char *function,
                             const char *target, int state, const void *data, size_t len);
/* A member sent the result of an invocation this agent placed on it:
 * applied, held until its input is durable and replicated, or refused. */
void pm_place_on_result(pm_agent_t *self, const char *from, const pm_msg_t *m);
/* Workers hook: whether a result for target may still settle it. */
int pm_place_target_pending(void *arg, const char *target);
/* Takes a placed invocation off the list and stops watching its target. */
void pm_place_deleg_unlink(pm_agent_t *self, pm_deleg_t *d);
/* Frees a placed invocation (unlinked). */
void pm_place_deleg_free(pm_deleg_t *d);
/* Runs function on input (the outcome of promise source) to settle target:
 * on a local worker if one serves it, else on the member with the most free
 * capacity for it, else queued here until some worker serves it. Only if
 * this agent serves the target's and the source's id spaces. */
void pm_place_then(pm_agent_t *self, const char *source, const char *function,
                   const uint8_t *input, size_t len, const char *target);
/* The same, started early: source (a combinator) is not settled yet and is
 * expected to settle with input (its early guess, fanins.c). The result
 * is kept until the source settles: if its then places exactly this again
 * (same function, input and epochs), this invocation stands for it and the
 * result goes through the guard from the source's settle on; if not, it is
 * dropped and the then's own placement runs. */
void pm_place_early(pm_agent_t *self, const char *source, const char *function,
                    const uint8_t *input, size_t len, const char *target);
/* The same with the source not known (placing again after a member died). */
void pm_place_invoke(pm_agent_t *self, const char *function, const uint8_t *input, size_t len,
                     const char *target);
/* Sends placed invocations whose targets are still pending again (every
 * PM_PLACE_RESEND_MS), forgets those whose spaces moved on, and offers
 * queued ones no local worker serves to members. */
void pm_place_tick(pm_agent_t *self, int64_t mono);
/* Workers hook: places a queued invocation no local worker serves on a member. */
int pm_place_take_unserved(void *arg, const pm_workers_origin_t *origin, const char *function,
                           const uint8_t *input, size_t len, const char *target);

#endif
