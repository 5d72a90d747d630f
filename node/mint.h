/*
 * mint.h - the id space new ids go to (issue 11: id spaces stop piling up).
 *
 * Every process has a primary id space of its own, named after its process
 * id (self->space: peers read who it is from it, its backups stream it).
 * Without more, each restart left one more space holding promises: the
 * process before had minted in its own primary, and that space had to be
 * served (by us, resumed, or by an heir) until its promises expired.
 *
 * With a configuration store, a data dir and a WAL that is synced, a
 * restarted agent mints in the space the process before it minted in (its
 * "mint space", self->mint; the WAL's last generation record names it), under
 * a new generation, once it serves that space again: it resumes it through
 * the store like any space of the process before (R3, isr.h: prev). The new
 * primary then stays empty and is retired after the process ends, like any
 * empty space. So an agent restarted a thousand times mints in one space.
 *
 *   Ids stay unique: only processes of this data dir mint in the mint space
 *   (an heir serves a space, it never mints there; clients mint under a
 *   lease of the agent, ids.h), each under its own generation, and the
 *   generation of a start is made durable (pm_journal_sync) before the first
 *   id or lease in it is handed out.
 *   Nothing is served from an older copy: the space is served only once the
 *   store records us its owner (R3); until then, creates in it are routed or
 *   parked like any request for a space being taken over.
 *   If the space is not ours to resume (an heir took it over while we were
 *   down and is alive, its record was deleted, or nothing came of it within
 *   the grace period), or it moves away later, new ids go to our primary
 *   again; sessions that hold a lease in the old mint space keep it, and
 *   their creates go to whoever serves that space.
 *   The process before us may never have got the space back (killed while
 *   it waited): the WAL then names the last process of this data dir that
 *   served it (mint_prev), which R3 accepts like prev (isr.c s_rule_takeover):
 *   its WAL is in ours, and nobody served the space since.
 *   A space taken over is checked for emptiness at once (isr_agent.c), so
 *   the predecessor's empty primary is retired within a second, not a
 *   retire_interval later.
 *   When an heir took the space over while we were down (a restart slower
 *   than failure detection), it gives it back once our new process is
 *   recorded in sync for it (isr.h R8: a drain, then a CAS to the record
 *   our own R3 would write). Until takeover_grace has passed, creates in it
 *   go to the heir (routed like any create in a space not ours yet); once
 *   the store records us its owner and we serve it, it is resumed
 *   (PM-MINT-RESUMED). If the grace passes first, new ids go to our
 *   primary, and the space is taken up again (mint_back) when it comes
 *   back later: ids stay unique, as only processes of this data dir mint
 *   there and the generation record naming it is made durable before the
 *   first id (a generation is one start: its sequence runs on across the
 *   switch).
 */
#ifndef PM_MINT_H
#define PM_MINT_H

#include "agent_priv.h"

/* At start, after the WAL's replay: mint in st->mint again when it may be
 * ours (coordinated, synced data dir), else in our primary. Records the
 * generation and makes it durable. */
void pm_mint_start(pm_agent_t *self, const pm_journal_state_t *st, int resumable, int64_t grace);
/* Once per loop: settles whether the resumed mint space is ours, or gives
 * it up. */
void pm_mint_tick(pm_agent_t *self, int64_t mono);
/* Whether space is one we mint in or our primary. */
int pm_mint_is_ours(const pm_agent_t *self, const char *space);

#endif
