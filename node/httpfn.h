/*
 * httpfn.h - functions served over HTTP: any FaaS platform's function (a
 * Fission router URL, OpenFaaS /function/NAME, Knative, a plain URL) can be a
 * continuation. A thread inside pmeshd registers each configured function
 * with the agent as an ordinary worker (so gossip advertises it and placement
 * uses it from any node), POSTs each invocation's input to the URL through
 * libcurl's multi interface (hundreds in flight, none blocking another), and
 * answers with the 2xx body (resolve) or the status and body (reject), after
 * retries with exponential backoff and jitter for 5xx and connection errors.
 * It talks to the reactor only through the agent's socket.
 */
#ifndef PM_HTTPFN_H
#define PM_HTTPFN_H

#include "config.h"

#include <stddef.h>
#include <stdint.h>

typedef struct pm_httpfn_spec {
    char name[128];
    char url[2048];
    int64_t timeout_ms; /* 0: the configured default */
    int retries;        /* -1: the configured default */
} pm_httpfn_spec_t;

/* Parses "NAME=URL [timeout=DUR] [retries=N]". 0, or -1 with a message. */
int pm_httpfn_parse(const char *text, pm_httpfn_spec_t *out, char *err, size_t errlen);

typedef struct pm_httpfn pm_httpfn_t;

/* Starts serving cfg->http_functions as workers of the agent at
 * socket_path. NULL with a message in err when a spec is malformed or the
 * thread cannot start. Caller owns the result. */
pm_httpfn_t *pm_httpfn_start(const pm_config_t *cfg, const char *socket_path, char *err,
                             size_t errlen);
/* Stops taking invocations, abandons calls in flight (the agent gives them
 * to another worker), joins the thread and frees. */
void pm_httpfn_stop(pm_httpfn_t **self_p);

/* The backoff before retry number n (1-based) with base and cap, jittered
 * by the random value r in [0,1): base * 2^(n-1) scaled into [0.5, 1.0]. */
int64_t pm_httpfn_backoff(int n, int64_t base_ms, int64_t cap_ms, double r);

#endif
