/*
 * spaces.h - who serves an id space, and at which epoch: the rules, written
 * once. Pure functions and one small list; no I/O, no clock, no mesh.
 *
 * Every id space is served by one agent at a time, under an epoch that only
 * rises. An agent claims a space (its own new primary at epoch 1; a takeover
 * or a resume after a restart at a higher epoch) and announces the claim in
 * its gossip metadata; every member keeps, per space, the claim that wins:
 *
 *   THE RULE (pm_epoch_wins): a claim at a higher epoch wins; two claims at
 *   one epoch (a restarted owner resuming a space as its heir takes it over)
 *   are ordered by node name, the smaller name winning.
 *
 * The rule is a total order on claims that every member applies alike to the
 * same announcements, so all members converge on the same owner whatever
 * order the gossip arrives in; a loser that hears of the winner lets the space
 * go (mesh.c, the "moved" hook).
 *
 *   Claim. A takeover claims listed + 1, where listed is the epoch the dead
 *   owner announced (pm_spaces_takeover_epoch); a restarted agent resumes a
 *   space it served at ours + 1 (pm_spaces_resume_epoch). Either is refused
 *   when a higher epoch has been announced meanwhile: the space moved on
 *   (stale metadata) and whoever holds that epoch keeps it.
 *
 *   Fencing. A backup refuses records of a space from a sender whose claim
 *   loses to one it knows (its own claim by the rule, or any higher epoch),
 *   and says at which epoch (pm_spaces_fence). The sender, unless its own
 *   claim wins over the refuser's by the same rule (a refusal meant for an
 *   earlier holder: pm_spaces_fence_is_stale), stops serving the space, and
 *   its replies still waiting for those records are answered with an error.
 *
 *   Why that is safe: a reply is released only once every counted backup has
 *   acknowledged the records before it (journal.c). A backup acknowledges
 *   only records it applied, and it applies only records from a claim that
 *   wins against every claim it knows. A new owner takes the space over from
 *   such a backup's copy at a higher epoch, after which the backup fences
 *   the old owner. So every acknowledged change is in the copy the next owner
 *   starts from; an old owner cut off from the mesh may go on accepting
 *   requests, but cannot get them acknowledged.
 *
 *   Heir. A dead owner's spaces go to the first of the backups it announced
 *   that is still the same process (alive, under the primary space it had
 *   when announced): only those hold the whole state. A backup that
 *   restarted since holds what its WAL kept, which may miss the last records
 *   (pm_spaces_heir).
 *
 *   Probation. A restarted agent does not serve the spaces it served before
 *   at once: they wait (pm_claims_t) for the grace period, and are resumed
 *   only if nobody serves them by then.
 *
 *   Retirement. A space that is neither our primary nor a live member's
 *   primary and holds no promise is given up: nothing new is minted in it.
 */
#ifndef PM_SPACES_H
#define PM_SPACES_H

#include <stddef.h>
#include <stdint.h>

/* THE RULE: whether the claim (epoch a, by node na) wins over (b, nb). */
int pm_epoch_wins(uint64_t a, const char *na, uint64_t b, const char *nb);

/* Backup side of fencing: records of a space at `epoch` from node `from`,
 * received by node `self_node`, which serves that space itself (owned, at
 * epoch mine) or not, and knows `known` as the highest epoch announced for
 * it. 0: accept them; 1: refuse them, at epoch *refuse_at. */
int pm_spaces_fence(const char *self_node, int owned, uint64_t mine, uint64_t known,
                    const char *from, uint64_t epoch, uint64_t *refuse_at);
/* Sender side: a refusal at `epoch` from node `fencer` of a space we serve
 * at `mine` is stale (ignored) when our claim wins over the refuser's. */
int pm_spaces_fence_is_stale(uint64_t mine, const char *self_node, uint64_t epoch,
                             const char *fencer);
/* The epoch to take over a space its dead owner listed at `listed`, when the
 * highest epoch known for it is `known`; 0 when it moved on already. */
uint64_t pm_spaces_takeover_epoch(uint64_t listed, uint64_t known);
/* The epoch to resume a space we served at `ours` before a restart, when the
 * highest epoch known for it is `known`; 0 when it was served after us. */
uint64_t pm_spaces_resume_epoch(uint64_t ours, uint64_t known);

/* A backup a dead owner announced, as this agent sees it now. */
typedef struct pm_heir {
    const char *name;
    const char *space_then; /* its primary when announced ("": not announced) */
    const char *space_now;  /* its primary now (NULL: unknown) */
    int up;                 /* alive, or this agent */
    int restarted;          /* out: passed over for having restarted since */
} pm_heir_t;

/* Index of the heir among the n backups c (in the order the owner announced
 * them), or -1 if none holds its state. Marks c[i].restarted for those
 * passed over before the heir for having restarted. */
int pm_spaces_heir(pm_heir_t *c, size_t n);

/* Whether a served space is retired: it is not our primary, holds no
 * promise, and is not a live member's primary (whose agent, cut off a moment
 * ago, may still mint there). */
int pm_spaces_retire(int is_our_primary, int holds_promises, int is_live_primary);

/* A set of claims (space, epoch): the spaces on probation. */
typedef struct pm_claim {
    char *space;
    uint64_t epoch;
} pm_claim_t;

typedef struct pm_claims {
    pm_claim_t *v;
    size_t n;
} pm_claims_t;

/* Adds space at epoch, or raises its epoch if it is there (never lowers it). */
void pm_claims_add(pm_claims_t *c, const char *space, uint64_t epoch);
/* Whether space is in the set. */
int pm_claims_has(const pm_claims_t *c, const char *space);
/* Removes space if present; 1 if it was. */
int pm_claims_drop(pm_claims_t *c, const char *space);
/* Takes one claim out (the caller owns out->space); 0 when empty. */
int pm_claims_pop(pm_claims_t *c, pm_claim_t *out);
void pm_claims_free(pm_claims_t *c);

#endif
