/*
 * fanin_poke.c - test helper for test_fanin.sh: pipelines, on one
 * connection and without waiting for any reply, a `then FUNCTION` on each
 * SOURCE (each new promise is minted in its source's owner's id space, so
 * the inputs live on the sources' agents and do not exist there yet when the
 * combinator is sent), then KIND over those new ids. Prints the combinator's
 * id on the first line and the inputs' ids on the next; exits 0 only if
 * every request was answered OK.
 *
 *   fanin_poke SOCKET KIND FUNCTION SOURCE...
 *
 * A late mint (test_fanin.sh, "an input a combinator waited for in vain"):
 * the id the client's next then (on SOURCE) or create will mint is a
 * combinator's input before it exists; once the combinator settles, that
 * then or create is sent (late) and must be refused, and the id must read
 * back rejected NOT_FOUND. Prints "comb ID", "ghost ID", "combinator STATE
 * REASON", "late ERR", "ghost STATE REASON"; exits 0 when the late request
 * was refused and the ghost reads rejected, 1 otherwise, 3 when the ids
 * were not minted as predicted (the helper's own failure).
 *
 *   fanin_poke late-then SOCKET FUNCTION SOURCE
 *   fanin_poke late-create SOCKET
 */
#include "pmesh.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Receives the one reply outstanding: its error (or the recv's). */
static int
s_reply(pm_client_t *c, const char *what)
{
    pm_result_t *r = NULL;
    int err = pm_recv(c, 30000, &r);
    if (err) {
        fprintf(stderr, "fanin_poke: %s: recv: %s\n", what, pm_err_name(err));
        return err;
    }
    err = r->err;
    if (err)
        fprintf(stderr, "fanin_poke: %s answered %s: %s\n", what, pm_err_name(err), r->message);
    pm_result_destroy(&r);
    return err;
}

static int
s_late(int argc, char **argv)
{
    int then = strcmp(argv[1], "late-then") == 0;
    if (then ? argc != 5 : argc != 3) {
        fprintf(stderr, "usage: fanin_poke late-then SOCKET FUNCTION SOURCE | late-create "
                        "SOCKET\n");
        return 64;
    }
    pm_client_t *c = NULL;
    int err = pm_client_connect(argv[2], &c);
    if (err) {
        fprintf(stderr, "fanin_poke: connect: %s\n", pm_err_name(err));
        return 69;
    }
    /* The client mints <lease><n> (n in hex from 1), and a then on another
     * agent's promise <its space>~<lease><n>: the first create shows the
     * lease, the combinator takes n = 2, the late request n = 3. */
    uint64_t req;
    char *first = NULL, *comb = NULL, *late = NULL;
    pm_create_opts_t o = {0};
    if (pm_send_create(c, &o, &first, &req) || s_reply(c, "create"))
        return 1;
    size_t flen = strlen(first);
    if (!flen || first[flen - 1] != '1')
        return 3;
    char lease[512], ghost[768];
    snprintf(lease, sizeof lease, "%.*s", (int) flen - 1, first);
    const char *src = then ? argv[4] : NULL;
    const char *st = src ? strchr(src, '~') : NULL;
    const char *lt = strchr(lease, '~');
    int own = st && lt && st - src == lt - lease && !strncmp(src, lease, (size_t) (st - src));
    if (src && st && lt && !own)
        snprintf(ghost, sizeof ghost, "%.*s~%s3", (int) (st - src), src, lease);
    else
        snprintf(ghost, sizeof ghost, "%s3", lease);
    const char *ids[] = {ghost};
    if (pm_send_combine(c, PM_COMBINE_RACE, ids, 1, 0, &comb, &req) || s_reply(c, "combine"))
        return 1;
    printf("comb %s\nghost %s\n", comb, ghost);
    fflush(stdout);
    pm_promise_t *p = NULL;
    err = pm_await(c, comb, 60000, &p);
    if (err) {
        fprintf(stderr, "fanin_poke: await %s: %s\n", comb, pm_err_name(err));
        return 1;
    }
    printf("combinator %s %s\n", pm_state_name(p->state), p->reason);
    pm_promise_destroy(&p);
    if (then)
        err = pm_send_then(c, src, argv[3], 0, &late, &req);
    else
        err = pm_send_create(c, &o, &late, &req);
    if (err)
        return 1;
    if (strcmp(late, ghost) != 0) {
        fprintf(stderr, "fanin_poke: minted %s, not %s as predicted\n", late, ghost);
        return 3;
    }
    int late_err = s_reply(c, then ? "late then" : "late create");
    printf("late %s\n", late_err ? pm_err_name(late_err) : "OK");
    err = pm_get(c, ghost, &p);
    if (err) {
        printf("ghost %s\n", pm_err_name(err));
        return 1;
    }
    printf("ghost %s %s\n", pm_state_name(p->state), p->reason);
    int rc = late_err && p->state == PM_STATE_REJECTED ? 0 : 1;
    pm_promise_destroy(&p);
    free(first);
    free(comb);
    free(late);
    pm_client_destroy(&c);
    return rc;
}

int
main(int argc, char **argv)
{
    if (argc > 1 && !strncmp(argv[1], "late-", 5))
        return s_late(argc, argv);
    if (argc < 5) {
        fprintf(stderr, "usage: fanin_poke SOCKET KIND FUNCTION SOURCE...\n");
        return 64;
    }
    int kind = pm_combinator_parse(argv[2]);
    if (!kind) {
        fprintf(stderr, "fanin_poke: unknown combinator %s\n", argv[2]);
        return 64;
    }
    pm_client_t *c = NULL;
    int err = pm_client_connect(argv[1], &c);
    if (err) {
        fprintf(stderr, "fanin_poke: connect: %s\n", pm_err_name(err));
        return 69;
    }
    int n = argc - 4, sent = 0, rc = 0;
    char **ids = calloc((size_t) n, sizeof *ids);
    for (int i = 0; i < n; i++) {
        uint64_t req;
        err = pm_send_then(c, argv[4 + i], argv[3], 0, &ids[i], &req);
        if (err) {
            fprintf(stderr, "fanin_poke: then %s: %s\n", argv[4 + i], pm_err_name(err));
            return 1;
        }
        sent++;
    }
    char *comb = NULL;
    uint64_t req;
    err = pm_send_combine(c, kind, (const char *const *) ids, (size_t) n, 0, &comb, &req);
    if (err) {
        fprintf(stderr, "fanin_poke: %s: %s\n", argv[2], pm_err_name(err));
        return 1;
    }
    sent++;
    printf("%s\n", comb);
    for (int i = 0; i < n; i++)
        printf("%s%s", i ? " " : "", ids[i]);
    printf("\n");
    fflush(stdout);
    for (int got = 0; got < sent; got++) {
        pm_result_t *r = NULL;
        err = pm_recv(c, 30000, &r);
        if (err) {
            fprintf(stderr, "fanin_poke: recv: %s\n", pm_err_name(err));
            rc = 1;
            break;
        }
        if (r->err) {
            fprintf(stderr, "fanin_poke: request answered %s: %s\n", pm_err_name(r->err),
                    r->message);
            rc = 1;
        }
        pm_result_destroy(&r);
    }
    for (int i = 0; i < n; i++)
        free(ids[i]);
    free(ids);
    free(comb);
    pm_client_destroy(&c);
    return rc;
}
