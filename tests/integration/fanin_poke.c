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
 */
#include "pmesh.h"

#include <stdio.h>
#include <stdlib.h>

int
main(int argc, char **argv)
{
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
