/*
 * place.h - placement of invocations: on a local worker if one serves the
 * function, else on the member with the most free capacity for it; an
 * invocation placed elsewhere is kept until its target settles so it can be
 * placed again if that member dies. Results settle targets wherever they live.
 */
#ifndef PM_PLACE_H
#define PM_PLACE_H

#include "agent_priv.h"

/* Settles a target wherever it lives (invocation results). */
int pm_place_settle_anywhere(void *arg, const char *target, int state, const void *data,
                             size_t len);
/* Workers hook: whether a result for target may still settle it. */
int pm_place_target_pending(void *arg, const char *target);
/* Takes a placed invocation off the list and stops watching its target. */
void pm_place_deleg_unlink(pm_agent_t *self, pm_deleg_t *d);
/* Frees a placed invocation (unlinked). */
void pm_place_deleg_free(pm_deleg_t *d);
/* Runs function on input to settle target: on a local worker if one serves
 * it, else on the member with the most free capacity for it, else queued
 * here until some worker serves it. */
void pm_place_invoke(pm_agent_t *self, const char *function, const uint8_t *input, size_t len,
                     const char *target);
/* Workers hook: places a queued invocation no local worker serves on a member. */
/* Sends placed invocations whose targets are still pending again (every
 * PM_PLACE_RESEND_MS). */
void pm_place_tick(pm_agent_t *self, int64_t mono);
int pm_place_take_unserved(void *arg, const char *function, const uint8_t *input, size_t len,
                           const char *target);

#endif
