/*
 * test_apikeys.c - the gateway's API keys file: parsing, refusals with
 * file:line, and the lookup.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "apikeys.h"

#define K_READ "rrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrr"
#define K_WRITE "wwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwww1"

static pm_apikeys_t *
s_parse_ok(const char *text)
{
    char err[256] = "";
    pm_apikeys_t *k = NULL;
    int rc = pm_apikeys_parse(text, strlen(text), "keys", &k, err, sizeof err);
    if (rc != 0)
        fail_msg("refused: %s", err);
    return k;
}

/* Refused, and the reason names the line and contains want. */
static void
s_parse_bad(const char *text, const char *line, const char *want)
{
    char err[256] = "";
    pm_apikeys_t *k = NULL;
    assert_int_equal(pm_apikeys_parse(text, strlen(text), "keys", &k, err, sizeof err), -1);
    assert_null(k);
    if (!strstr(err, line) || !strstr(err, want))
        fail_msg("reason '%s' lacks '%s' or '%s'", err, line, want);
}

static void
test_parse_and_match(void **state)
{
    (void) state;
    pm_apikeys_t *k = s_parse_ok("# API keys\n"
                                 "\n"
                                 "grafana  read\t" K_READ "   # dashboards\n"
                                 "functions write " K_WRITE "\r\n");
    assert_int_equal(pm_apikeys_count(k), 2);
    const char *name = NULL;
    assert_int_equal(pm_apikeys_match(k, K_READ, strlen(K_READ), &name), PM_SCOPE_READ);
    assert_string_equal(name, "grafana");
    assert_int_equal(pm_apikeys_match(k, K_WRITE, strlen(K_WRITE), &name), PM_SCOPE_WRITE);
    assert_string_equal(name, "functions");
    /* A prefix, an extension, one changed character, empty, NULL: nothing. */
    assert_int_equal(pm_apikeys_match(k, K_READ, strlen(K_READ) - 1, &name), PM_SCOPE_NONE);
    assert_null(name);
    char longer[64];
    snprintf(longer, sizeof longer, "%sx", K_READ);
    assert_int_equal(pm_apikeys_match(k, longer, strlen(longer), NULL), PM_SCOPE_NONE);
    char changed[] = K_WRITE;
    changed[7] = 'v';
    assert_int_equal(pm_apikeys_match(k, changed, strlen(changed), NULL), PM_SCOPE_NONE);
    assert_int_equal(pm_apikeys_match(k, "", 0, NULL), PM_SCOPE_NONE);
    assert_int_equal(pm_apikeys_match(k, NULL, 40, NULL), PM_SCOPE_NONE);
    assert_int_equal(pm_apikeys_match(NULL, K_READ, strlen(K_READ), NULL), PM_SCOPE_NONE);
    pm_apikeys_destroy(&k);
    assert_null(k);
    pm_apikeys_destroy(&k); /* NULL-safe */

    /* An empty file is valid: no client may use the API. */
    k = s_parse_ok("# nobody yet\n");
    assert_int_equal(pm_apikeys_count(k), 0);
    assert_int_equal(pm_apikeys_match(k, K_READ, strlen(K_READ), NULL), PM_SCOPE_NONE);
    pm_apikeys_destroy(&k);
    assert_string_equal(pm_scope_name(PM_SCOPE_READ), "read");
    assert_string_equal(pm_scope_name(PM_SCOPE_WRITE), "write");
}

static void
test_refusals(void **state)
{
    (void) state;
    s_parse_bad("a read " K_READ "\nb read\n", "keys:2", "NAME SCOPE KEY");
    s_parse_bad("a read " K_READ " extra\n", "keys:1", "4 fields");
    s_parse_bad("a admin " K_READ "\n", "keys:1", "read or write");
    s_parse_bad("a read short-key\n", "keys:1", "32 to 256");
    s_parse_bad("bad/name read " K_READ "\n", "keys:1", "name");
    s_parse_bad("a read " K_READ "\na write " K_WRITE "\n", "keys:2", "used twice");
    s_parse_bad("a read " K_READ "\nb write " K_READ "\n", "keys:2", "same key as a");
    s_parse_bad("a read " K_READ "\n\nb write \x01" K_WRITE "\n", "keys:3", "control");
    char big[400];
    memset(big, 'k', 300);
    big[300] = 0;
    char line[512];
    snprintf(line, sizeof line, "a write %s\n", big);
    s_parse_bad(line, "keys:1", "32 to 256");
    /* A '#' ends the line: a key cut short by one is refused, not shortened silently. */
    s_parse_bad("a read rrrrrrrrrrrrrrrr#rrrrrrrrrrrrrrrrrrrrrr\n", "keys:1", "32 to 256");
}

static void
test_load(void **state)
{
    (void) state;
    char path[] = "/tmp/pmesh-test-keys.XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    const char *text = "ci write " K_WRITE "\n";
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t) strlen(text));
    close(fd);
    char err[256];
    pm_apikeys_t *k = NULL;
    assert_int_equal(pm_apikeys_load(path, &k, err, sizeof err), 0);
    assert_int_equal(pm_apikeys_match(k, K_WRITE, strlen(K_WRITE), NULL), PM_SCOPE_WRITE);
    pm_apikeys_destroy(&k);
    unlink(path);
    assert_int_equal(pm_apikeys_load(path, &k, err, sizeof err), -1);
    assert_non_null(strstr(err, path));
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_and_match),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_load),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
