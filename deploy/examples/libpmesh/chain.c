/*
 * chain.c - a function's use of pmesh through libpmesh: create a promise,
 * chain two continuations onto it while it is still pending, settle it,
 * await the end of the chain. The same steps as
 * deploy/examples/function-deployment/chain.sh, without a process per step.
 *
 *   cc -o chain chain.c $(pkg-config --cflags --libs pmesh)
 *   PMESH_SOCKET=/run/pmesh/agent.sock ./chain "some input"
 *
 * In a pod: the image needs libpmesh's libraries (libzmq5, libprotobuf-c1);
 * the pod mounts the hostPath /run/pmesh and has the agent's group 10001 in
 * supplementalGroups (see function-deployment/deployment.yaml). Workers for
 * `uppercase` and `exclaim` must run somewhere in the mesh (that example's
 * `workers` container serves both).
 *
 * Exit status: 0 resolved (the value is printed), 1 rejected or failed.
 */
#include <pmesh.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int
s_fail(const char *what, int err, pm_client_t *c)
{
    fprintf(stderr, "chain: %s: %s (%s)\n", what, pm_err_name(err),
            c ? pm_client_last_error(c) : pm_strerror(err));
    return 1;
}

int
main(int argc, char **argv)
{
    const char *input = argc > 1 ? argv[1] : "hello from libpmesh";
    pm_client_t *c = NULL;
    char *p = NULL, *p1 = NULL, *p2 = NULL;
    pm_promise_t *out = NULL;
    int rc = 1, err;

    /* NULL: $PMESH_SOCKET, else /run/pmesh/agent.sock. */
    if ((err = pm_client_connect(NULL, &c)) != PM_OK)
        return s_fail("connect", err, NULL);
    if ((err = pm_create(c, &(pm_create_opts_t) {.timeout_ms = 5 * 60 * 1000}, &p, NULL))) {
        s_fail("create", err, c);
        goto out;
    }
    /* Each then returns at once: the continuation is registered where p lives. */
    if ((err = pm_then(c, p, "uppercase", 60 * 1000, &p1)) ||
        (err = pm_then(c, p1, "exclaim", 60 * 1000, &p2))) {
        s_fail("then", err, c);
        goto out;
    }
    if ((err = pm_resolve(c, p, input, strlen(input)))) {
        s_fail("resolve", err, c);
        goto out;
    }
    if ((err = pm_await(c, p2, 60 * 1000, &out))) {
        s_fail("await", err, c);
        goto out;
    }
    if (out->state == PM_STATE_RESOLVED) {
        printf("%s -> %s -> %s: %.*s\n", p, p1, p2, (int) out->value_len, (const char *) out->value);
        rc = 0;
    } else {
        fprintf(stderr, "chain: %s %s: %s\n", p2, pm_state_name(out->state), out->reason);
    }
out:
    pm_promise_destroy(&out);
    free(p);
    free(p1);
    free(p2);
    pm_client_destroy(&c);
    return rc;
}
