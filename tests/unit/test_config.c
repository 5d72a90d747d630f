/*
 * test_config.c - cmocka suite for node/config.c: defaults, a full file,
 * every class of refused input with its exact file:line:column, sizes and
 * durations, flags over the file, and print -> load round trips.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"

static char s_dir[64];
static char s_path[128];  /* the file most tests write: <dir>/pmesh.yaml */
static char s_path2[128]; /* a second file for round trips */

static int
s_group_setup(void **state)
{
    (void) state;
    strcpy(s_dir, "/tmp/test_config.XXXXXX");
    if (!mkdtemp(s_dir))
        return -1;
    snprintf(s_path, sizeof s_path, "%s/pmesh.yaml", s_dir);
    snprintf(s_path2, sizeof s_path2, "%s/printed.yaml", s_dir);
    return 0;
}

static int
s_group_teardown(void **state)
{
    (void) state;
    unlink(s_path);
    unlink(s_path2);
    return rmdir(s_dir);
}

static void
s_write(const char *path, const char *text)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(text, 1, strlen(text), f), strlen(text));
    assert_int_equal(fclose(f), 0);
}

/* Loads text from s_path into a fresh config; caller destroys. */
static pm_config_t *
s_load_ok(const char *text)
{
    pm_config_t *cfg = pm_config_new();
    assert_non_null(cfg);
    char err[512] = "";
    s_write(s_path, text);
    int rc = pm_config_load(cfg, s_path, err, sizeof err);
    if (rc != 0)
        fail_msg("unexpected error: %s", err);
    assert_string_equal(err, "");
    return cfg;
}

static void
s_assert_defaults(const pm_config_t *cfg)
{
    assert_null(cfg->node);
    assert_null(cfg->socket);
    assert_int_equal(cfg->log_level, 2);  /* PM_LOG_INFO */
    assert_int_equal(cfg->log_format, 0); /* PM_LOG_TEXT */
    assert_int_equal(cfg->max_value_bytes, 1048576);
    assert_int_equal(cfg->client_timeout, 2000);
    assert_int_equal(cfg->max_waiters_per_client, 100000);
    assert_int_equal(cfg->max_labels, 16);
    assert_int_equal(cfg->list_limit, 100);
    assert_int_equal(cfg->seeds.len, 0);
    assert_null(cfg->seeds.items);
    assert_true(cfg->fanin_early);
    assert_int_equal(cfg->fanin_early_copies, PM_FANIN_COPIES_DECISIVE);
}

static void
s_assert_str_or_null(const char *a, const char *b)
{
    if (!a || !b)
        assert_ptr_equal(a, b);
    else
        assert_string_equal(a, b);
}

static void
s_assert_equal(const pm_config_t *a, const pm_config_t *b)
{
    s_assert_str_or_null(a->node, b->node);
    s_assert_str_or_null(a->socket, b->socket);
    assert_int_equal(a->log_level, b->log_level);
    assert_int_equal(a->log_format, b->log_format);
    assert_int_equal(a->max_value_bytes, b->max_value_bytes);
    assert_int_equal(a->client_timeout, b->client_timeout);
    assert_int_equal(a->max_waiters_per_client, b->max_waiters_per_client);
    assert_int_equal(a->max_labels, b->max_labels);
    assert_int_equal(a->list_limit, b->list_limit);
    assert_int_equal(a->seeds.len, b->seeds.len);
    for (size_t i = 0; i < a->seeds.len; i++)
        assert_string_equal(a->seeds.items[i], b->seeds.items[i]);
}

/* Loading text must fail with exactly "<path><where_what>" and change nothing. */
static void
s_assert_load_error(const char *text, const char *where_what)
{
    pm_config_t *cfg = pm_config_new();
    assert_non_null(cfg);
    char err[512] = "", want[512];
    s_write(s_path, text);
    assert_int_equal(pm_config_load(cfg, s_path, err, sizeof err), -1);
    snprintf(want, sizeof want, "%s%s", s_path, where_what);
    assert_string_equal(err, want);
    s_assert_defaults(cfg);
    pm_config_destroy(&cfg);
    assert_null(cfg);
}

static void
s_assert_set_error(pm_config_t *cfg, const char *key, const char *value, const char *want)
{
    char err[256] = "";
    assert_int_equal(pm_config_set(cfg, key, value, err, sizeof err), -1);
    assert_string_equal(err, want);
}

static void
s_set(pm_config_t *cfg, const char *key, const char *value)
{
    char err[256] = "";
    int rc = pm_config_set(cfg, key, value, err, sizeof err);
    if (rc != 0)
        fail_msg("set %s=%s: %s", key, value ? value : "(null)", err);
}

/* Caller frees. */
static char *
s_print(const pm_config_t *cfg)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    assert_non_null(f);
    pm_config_print(cfg, f);
    assert_int_equal(fclose(f), 0);
    return text;
}

/* ------------------------------------------------------------- tests */

static void
test_defaults(void **state)
{
    (void) state;
    pm_config_t *cfg = pm_config_new();
    assert_non_null(cfg);
    s_assert_defaults(cfg);
    assert_int_equal(cfg->set_by_flag, 0);
    pm_config_destroy(&cfg);
    assert_null(cfg);
    pm_config_destroy(&cfg); /* NULL-safe */
}

static void
test_empty_files_are_defaults(void **state)
{
    (void) state;
    const char *empties[] = {"", "\n\n", "# only a comment\n", "---\n", "---\n...\n", "~\n"};
    for (size_t i = 0; i < sizeof empties / sizeof empties[0]; i++) {
        pm_config_t *cfg = s_load_ok(empties[i]);
        s_assert_defaults(cfg);
        pm_config_destroy(&cfg);
    }
}

static void
test_full_file(void **state)
{
    (void) state;
    pm_config_t *cfg = s_load_ok("# a full config\n"
                                 "node: node-1.eu_west\n"
                                 "socket: \"/var/run/pmesh/a.sock\"\n"
                                 "log_level: debug\n"
                                 "log_format: json\n"
                                 "max_value_bytes: 4MiB\n"
                                 "client_timeout: 30s\n"
                                 "max_waiters_per_client: 5000\n"
                                 "max_labels: 0\n"
                                 "list_limit: 10000\n"
                                 "seeds:\n"
                                 "  - 10.0.0.1:7946\n"
                                 "  - 'seed-b:7946'\n");
    assert_string_equal(cfg->node, "node-1.eu_west");
    assert_string_equal(cfg->socket, "/var/run/pmesh/a.sock");
    assert_int_equal(cfg->log_level, 3);
    assert_int_equal(cfg->log_format, 1);
    assert_int_equal(cfg->max_value_bytes, 4 * 1024 * 1024);
    assert_int_equal(cfg->client_timeout, 30000);
    assert_int_equal(cfg->max_waiters_per_client, 5000);
    assert_int_equal(cfg->max_labels, 0);
    assert_int_equal(cfg->list_limit, 10000);
    assert_int_equal(cfg->seeds.len, 2);
    assert_string_equal(cfg->seeds.items[0], "10.0.0.1:7946");
    assert_string_equal(cfg->seeds.items[1], "seed-b:7946");
    pm_config_destroy(&cfg);
}

static void
test_flow_style_and_other_enum_words(void **state)
{
    (void) state;
    pm_config_t *cfg =
        s_load_ok("{log_level: error, log_format: text, seeds: [a, \"b\"], max_labels: 256}\n");
    assert_int_equal(cfg->log_level, 0);
    assert_int_equal(cfg->log_format, 0);
    assert_int_equal(cfg->max_labels, 256);
    assert_int_equal(cfg->seeds.len, 2);
    assert_string_equal(cfg->seeds.items[1], "b");
    pm_config_destroy(&cfg);
    cfg = s_load_ok("log_level: warn\n");
    assert_int_equal(cfg->log_level, 1);
    pm_config_destroy(&cfg);
    cfg = s_load_ok("fanin_early_copies: every\n");
    assert_int_equal(cfg->fanin_early_copies, PM_FANIN_COPIES_EVERY);
    pm_config_destroy(&cfg);
}

static void
test_load_keeps_absent_keys_and_replaces_lists(void **state)
{
    (void) state;
    pm_config_t *cfg = s_load_ok("node: first\nmax_labels: 3\nseeds: [a, b]\n");
    char err[256];
    s_write(s_path, "max_labels: 4\nseeds: [c]\n");
    assert_int_equal(pm_config_load(cfg, s_path, err, sizeof err), 0);
    assert_string_equal(cfg->node, "first");
    assert_int_equal(cfg->max_labels, 4);
    assert_int_equal(cfg->seeds.len, 1);
    assert_string_equal(cfg->seeds.items[0], "c");
    /* null unsets a string without a default and empties a list */
    s_write(s_path, "node: ~\nseeds:\n");
    assert_int_equal(pm_config_load(cfg, s_path, err, sizeof err), 0);
    assert_null(cfg->node);
    assert_int_equal(cfg->seeds.len, 0);
    pm_config_destroy(&cfg);
}

static void
test_byte_sizes(void **state)
{
    (void) state;
    static const struct {
        const char *text;
        int rc;
        int64_t value;
    } cases[] = {
        {"1048576", 0, 1048576},
        {"0", 0, 0},
        {"-1", 0, -1},
        {"64KiB", 0, 65536},
        {"1MiB", 0, 1048576},
        {"64 MiB", 0, 67108864},
        {"2GiB", 0, INT64_C(2147483648)},
        {"1TiB", 0, INT64_C(1099511627776)},
        {"9223372036854775807", 0, INT64_MAX},
        {"-9223372036854775808", 0, INT64_MIN},
        {"8388607TiB", 0, INT64_C(8388607) << 40},
        {"9223372036854775808", -2, 0},
        {"8388608TiB", -2, 0},
        {"99999999999999999999999", -2, 0},
        {"", -1, 0},
        {"abc", -1, 0},
        {"KiB", -1, 0},
        {"1kib", -1, 0},
        {"1KB", -1, 0},
        {"1k", -1, 0},
        {"1.5MiB", -1, 0},
        {"1 ", -1, 0},
        {" 1", -1, 0},
        {"+1", -1, 0},
        {"--1", -1, 0},
        {"0x10", -1, 0},
        {"99999999999999999999999x", -1, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int64_t v = 12345;
        int rc = pm_config_parse_int(cases[i].text, &v);
        if (rc != cases[i].rc)
            fail_msg("'%s': rc %d, want %d", cases[i].text, rc, cases[i].rc);
        if (rc == 0 && v != cases[i].value)
            fail_msg("'%s': %lld, want %lld", cases[i].text, (long long) v,
                     (long long) cases[i].value);
        if (rc != 0)
            assert_int_equal(v, 12345); /* untouched on error */
    }
    pm_config_t *cfg = s_load_ok("max_value_bytes: 64MiB\nmax_waiters_per_client: 1KiB\n");
    assert_int_equal(cfg->max_value_bytes, 67108864);
    assert_int_equal(cfg->max_waiters_per_client, 1024);
    pm_config_destroy(&cfg);
    s_assert_load_error("max_value_bytes: 64MiB\nmax_labels: 1 KiB\n",
                        ":2:13: max_labels: 1 KiB is out of range (0..256)");
    s_assert_load_error("max_value_bytes: 1.5MiB\n",
                        ":1:18: max_value_bytes: '1.5MiB' is not an integer (e.g. 100, 64KiB, "
                        "1MiB)");
    s_assert_load_error("max_value_bytes: 99999999999999999999999\n",
                        ":1:18: max_value_bytes: 99999999999999999999999 is out of range "
                        "(1..67108864)");
}

static void
test_durations(void **state)
{
    (void) state;
    static const struct {
        const char *text;
        int64_t ms;
    } ok[] = {{"250ms", 250}, {"30s", 30000}, {"5m", 300000}, {"1500", 1500}, {"10m", 600000},
              {"200", 200}};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        char text[64];
        snprintf(text, sizeof text, "client_timeout: %s\n", ok[i].text);
        pm_config_t *cfg = s_load_ok(text);
        assert_int_equal(cfg->client_timeout, ok[i].ms);
        pm_config_destroy(&cfg);
    }
    s_assert_load_error("client_timeout: 2h\n",
                        ":1:17: client_timeout: 2h is out of range (200ms..10m)");
    s_assert_load_error("client_timeout: 199\n",
                        ":1:17: client_timeout: 199 is out of range (200ms..10m)");
    s_assert_load_error("client_timeout: 1.5s\n",
                        ":1:17: client_timeout: '1.5s' is not a duration (e.g. 250ms, 30s, 5m, "
                        "2h)");
    s_assert_load_error("client_timeout: -1s\n",
                        ":1:17: client_timeout: '-1s' is not a duration (e.g. 250ms, 30s, 5m, "
                        "2h)");
}

static void
test_booleans(void **state)
{
    (void) state;
    bool b = false;
    assert_int_equal(pm_config_parse_bool("true", &b), 0);
    assert_true(b);
    assert_int_equal(pm_config_parse_bool("false", &b), 0);
    assert_false(b);
    b = true;
    const char *bad[] = {"yes", "no", "1", "0", "TRUE", "", "true "};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(pm_config_parse_bool(bad[i], &b), -1);
    assert_true(b);
}

static void
test_error_unknown_key(void **state)
{
    (void) state;
    s_assert_load_error("node: a\nbogus: 1\n", ":2:1: bogus: unknown key");
    s_assert_load_error("log_level: info\n  # indented comment\nmax-labels: 3\n",
                        ":3:1: max-labels: unknown key (did you mean max_labels?)");
    s_assert_load_error("Node: a\n", ":1:1: Node: unknown key (did you mean node?)");
    s_assert_load_error("{a: 1}: 2\n", ":1:1: a key must be a word, got a mapping");
}

static void
test_error_wrong_type(void **state)
{
    (void) state;
    s_assert_load_error("max_labels: {a: 1}\n",
                        ":1:13: max_labels: expected an integer, got a mapping");
    s_assert_load_error("list_limit:\n  a: 1\n",
                        ":2:3: list_limit: expected an integer, got a mapping");
    s_assert_load_error("node: [x]\n", ":1:7: node: expected a string, got a list");
    s_assert_load_error("max_labels: abc\n",
                        ":1:13: max_labels: 'abc' is not an integer (e.g. 100, 64KiB, 1MiB)");
    s_assert_load_error("log_level: verbose\n",
                        ":1:12: log_level: 'verbose' is not one of error|warn|info|debug");
    s_assert_load_error("log_format: \"JSON\"\n",
                        ":1:13: log_format: 'JSON' is not one of text|json");
    s_assert_load_error("fanin_early_copies: all\n",
                        ":1:21: fanin_early_copies: 'all' is not one of decisive|every");
    s_assert_load_error("seeds: a:1\n", ":1:8: seeds: expected a list, got a scalar");
    s_assert_load_error("seeds:\n  - a\n  - {b: 1}\n",
                        ":3:5: seeds: item 2 is a mapping, expected a string");
    s_assert_load_error("seeds:\n  - a\n  -\n", ":3:4: seeds: item 2 is empty");
    s_assert_load_error("max_labels:\n", ":1:12: max_labels: missing value; expected an integer");
    s_assert_load_error("log_level: ~\n", ":1:12: log_level: missing value; expected a word");
}

static void
test_error_out_of_range(void **state)
{
    (void) state;
    s_assert_load_error("node: a\nlog_level: info\nmax_value_bytes: 0\n",
                        ":3:18: max_value_bytes: 0 is out of range (1..67108864)");
    s_assert_load_error("max_value_bytes: 67108865\n",
                        ":1:18: max_value_bytes: 67108865 is out of range (1..67108864)");
    s_assert_load_error("max_labels: -1\n", ":1:13: max_labels: -1 is out of range (0..256)");
    s_assert_load_error("list_limit: 10001\n",
                        ":1:13: list_limit: 10001 is out of range (1..10000)");
    s_assert_load_error("max_waiters_per_client: 0\n",
                        ":1:25: max_waiters_per_client: 0 is out of range (1..10000000)");
}

static void
test_error_node_name(void **state)
{
    (void) state;
    char text[128];
    char name[65];
    memset(name, 'n', 63);
    name[63] = '\0';
    snprintf(text, sizeof text, "node: %s\n", name);
    pm_config_t *cfg = s_load_ok(text);
    assert_string_equal(cfg->node, name);
    pm_config_destroy(&cfg);
    strcat(name, "n");
    snprintf(text, sizeof text, "node: %s\n", name);
    char want[200];
    snprintf(want, sizeof want,
             ":1:7: node: '%.48s...' is not a valid name (1 to 63 of A-Z a-z 0-9 . _ -)", name);
    s_assert_load_error(text, want);
    s_assert_load_error("node: \"a b\"\n",
                        ":1:7: node: 'a b' is not a valid name (1 to 63 of A-Z a-z 0-9 . _ -)");
    s_assert_load_error("node: a/b\n",
                        ":1:7: node: 'a/b' is not a valid name (1 to 63 of A-Z a-z 0-9 . _ -)");
    s_assert_load_error("socket: \"a\\tb\"\n", ":1:9: socket: contains a control character");
    s_assert_load_error("socket: \"a\\0b\"\n", ":1:9: socket: contains a control character");
}

static void
test_error_duplicate_key(void **state)
{
    (void) state;
    s_assert_load_error("max_labels: 3\nnode: a\nmax_labels: 4\n",
                        ":3:1: max_labels: duplicate key (first at line 1)");
    s_assert_load_error("{seeds: [a], seeds: [b]}\n",
                        ":1:14: seeds: duplicate key (first at line 1)");
}

static void
test_error_syntax(void **state)
{
    (void) state;
    s_assert_load_error("node: a\nsocket: \"/x\n",
                        ":3:1: YAML syntax error: found unexpected end of stream (while scanning "
                        "a quoted scalar at 2:9)");
    s_assert_load_error("node: a\n  b: c\n",
                        ":2:4: YAML syntax error: mapping values are not allowed in this context");
    s_assert_load_error("node: a: b\n",
                        ":1:8: YAML syntax error: mapping values are not allowed in this context");
    s_assert_load_error("node: *nothing\n", ":1:7: YAML syntax error: found undefined alias");
    s_assert_load_error("node: a\nsocket: \xff\n",
                        ":2:9: YAML syntax error: invalid leading UTF-8 octet");
    s_assert_load_error("seeds: [a, b\n",
                        ":2:1: YAML syntax error: did not find expected ',' or ']' (while parsing "
                        "a flow sequence at 1:8)");
}

static void
test_error_top_level(void **state)
{
    (void) state;
    s_assert_load_error("- node\n",
                        ":1:1: the top level must be a mapping of key: value, got a list");
    s_assert_load_error("\n\nnode\n",
                        ":3:1: the top level must be a mapping of key: value, got a scalar");
    s_assert_load_error("node: a\n---\nnode: b\n", ":3:1: only one YAML document is allowed");
}

static void
test_error_files(void **state)
{
    (void) state;
    pm_config_t *cfg = pm_config_new();
    char err[512], want[512];
    snprintf(want, sizeof want, "%s/missing.yaml", s_dir);
    assert_int_equal(pm_config_load(cfg, want, err, sizeof err), -1);
    strcat(want, ": cannot open: No such file or directory");
    assert_string_equal(err, want);
    assert_int_equal(pm_config_load(cfg, s_dir, err, sizeof err), -1);
    snprintf(want, sizeof want, "%s: cannot read: Is a directory", s_dir);
    assert_string_equal(err, want);
    /* a short buffer truncates, still NUL-terminated */
    char small[8];
    assert_int_equal(pm_config_load(cfg, s_dir, small, sizeof small), -1);
    assert_int_equal(strlen(small), sizeof small - 1);
    s_assert_defaults(cfg);
    pm_config_destroy(&cfg);
}

static void
test_error_leaves_config_unchanged(void **state)
{
    (void) state;
    pm_config_t *cfg = s_load_ok("node: keep\nmax_labels: 7\nseeds: [s1]\n");
    char err[256];
    s_write(s_path, "node: other\nseeds: [s2, s3]\nmax_labels: 9\nlist_limit: 0\n");
    assert_int_equal(pm_config_load(cfg, s_path, err, sizeof err), -1);
    assert_string_equal(cfg->node, "keep");
    assert_int_equal(cfg->max_labels, 7);
    assert_int_equal(cfg->list_limit, 100);
    assert_int_equal(cfg->seeds.len, 1);
    assert_string_equal(cfg->seeds.items[0], "s1");
    pm_config_destroy(&cfg);
}

static void
test_set_overrides_file(void **state)
{
    (void) state;
    pm_config_t *cfg = s_load_ok("node: from-file\nmax_value_bytes: 2MiB\nlog_level: warn\n"
                                 "client_timeout: 5s\nseeds: [f1, f2]\n");
    s_set(cfg, "max-value-bytes", "64KiB");
    s_set(cfg, "log_level", "debug");
    s_set(cfg, "node", "from-flag");
    s_set(cfg, "client-timeout", "250ms");
    s_set(cfg, "log-format", "json");
    assert_int_equal(cfg->max_value_bytes, 65536);
    assert_int_equal(cfg->log_level, 3);
    assert_int_equal(cfg->log_format, 1);
    assert_string_equal(cfg->node, "from-flag");
    assert_int_equal(cfg->client_timeout, 250);
    /* the first --seeds replaces the file's list, later ones append */
    assert_int_equal(cfg->seeds.len, 2);
    s_set(cfg, "seeds", "x1");
    assert_int_equal(cfg->seeds.len, 1);
    assert_string_equal(cfg->seeds.items[0], "x1");
    s_set(cfg, "seeds", "x2");
    assert_int_equal(cfg->seeds.len, 2);
    assert_string_equal(cfg->seeds.items[1], "x2");
    /* an empty value clears; what follows appends */
    s_set(cfg, "seeds", "");
    assert_int_equal(cfg->seeds.len, 0);
    s_set(cfg, "seeds", "x3");
    assert_int_equal(cfg->seeds.len, 1);
    assert_string_equal(cfg->seeds.items[0], "x3");
    /* an empty value unsets a string without a default */
    s_set(cfg, "node", "");
    assert_null(cfg->node);
    s_set(cfg, "socket", "/tmp/p.sock");
    assert_string_equal(cfg->socket, "/tmp/p.sock");
    assert_int_equal(cfg->max_labels, 16); /* untouched */
    pm_config_destroy(&cfg);
}

static void
test_set_errors(void **state)
{
    (void) state;
    pm_config_t *cfg = pm_config_new();
    s_assert_set_error(cfg, "max_value_bytes", "0",
                       "--max-value-bytes: 0 is out of range (1..67108864)");
    s_assert_set_error(cfg, "max-value-bytes", "lots",
                       "--max-value-bytes: 'lots' is not an integer (e.g. 100, 64KiB, 1MiB)");
    s_assert_set_error(cfg, "client-timeout", "1d",
                       "--client-timeout: '1d' is not a duration (e.g. 250ms, 30s, 5m, 2h)");
    s_assert_set_error(cfg, "log-level", "trace",
                       "--log-level: 'trace' is not one of error|warn|info|debug");
    s_assert_set_error(cfg, "bogus-flag", "1", "--bogus-flag: unknown key");
    s_assert_set_error(cfg, "list_limit", NULL, "--list-limit: missing value; expected an integer");
    s_assert_set_error(cfg, "node", "bad name",
                       "--node: 'bad name' is not a valid name (1 to 63 of A-Z a-z 0-9 . _ -)");
    s_assert_set_error(cfg, "socket", "a\nb", "--socket: contains a control character");
    s_assert_set_error(cfg, "seeds", "a\x01", "--seeds: contains a control character");
    s_assert_set_error(cfg, "seeds", "\xc3\x28", "--seeds: is not valid UTF-8");
    s_assert_set_error(cfg, "socket", "\xed\xa0\x80", "--socket: is not valid UTF-8");
    s_assert_set_error(cfg, "socket", "\xc0\xaf", "--socket: is not valid UTF-8");
    s_assert_defaults(cfg);
    assert_int_equal(cfg->set_by_flag, 0);
    pm_config_destroy(&cfg);
}

static void
test_is_key_and_takes_value(void **state)
{
    (void) state;
    const char *keys[] = {"node", "socket", "log_level", "log-format", "max-value-bytes",
                          "client_timeout", "max_waiters_per_client", "max_labels",
                          "list-limit", "seeds"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        assert_int_equal(pm_config_is_key(keys[i]), 1);
        assert_int_equal(pm_config_key_takes_value(keys[i]), 1);
    }
    const char *not_keys[] = {"", "help", "max_value", "Node", "max--value-bytes", "seeds "};
    for (size_t i = 0; i < sizeof not_keys / sizeof not_keys[0]; i++) {
        assert_int_equal(pm_config_is_key(not_keys[i]), 0);
        assert_int_equal(pm_config_key_takes_value(not_keys[i]), 0);
    }
}

static void
test_help(void **state)
{
    (void) state;
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    assert_non_null(f);
    pm_config_help(f);
    assert_int_equal(fclose(f), 0);
    size_t lines = 0;
    for (char *p = text; *p; p++)
        lines += *p == '\n';
    assert_int_equal(lines, 55); /* one line per key */
    assert_non_null(strstr(text, "  --http-public ADDR:PORT "));
    assert_non_null(strstr(text, "  --http-api-keys-file PATH "));
    assert_non_null(strstr(text, "  --insecure-http "));
    assert_non_null(strstr(text, "  --bind ENDPOINT "));
    assert_non_null(strstr(text, "--probe-interval DURATION "));
    assert_non_null(strstr(text, "  --max-value-bytes BYTES "));
    assert_non_null(strstr(text, "largest value a promise may hold (default 1048576; "
                                 "1..67108864)\n"));
    assert_non_null(strstr(text, "--log-level error|warn|info|debug "));
    assert_non_null(strstr(text, "(default 2s; 200ms..10m)\n"));
    assert_non_null(strstr(text, "--node NAME "));
    assert_non_null(strstr(text, "node name; default $NODE_NAME, else the hostname\n"));
    assert_null(strstr(text, "--max_")); /* flags are spelled with dashes */
    free(text);
}

static void
s_round_trip(const pm_config_t *cfg)
{
    char *text = s_print(cfg);
    s_write(s_path2, text);
    pm_config_t *back = pm_config_new();
    char err[512] = "";
    int rc = pm_config_load(back, s_path2, err, sizeof err);
    if (rc != 0)
        fail_msg("%s\n--- printed:\n%s", err, text);
    s_assert_equal(cfg, back);
    char *again = s_print(back);
    assert_string_equal(text, again);
    free(again);
    free(text);
    pm_config_destroy(&back);
}

static void
test_print_round_trip(void **state)
{
    (void) state;
    pm_config_t *cfg = pm_config_new();
    s_round_trip(cfg); /* defaults, with node and socket null and no seeds */
    s_set(cfg, "node", "n-2");
    s_set(cfg, "socket", "/tmp/s\xc3\xb3 \"quoted\" back\\slash: # not a comment");
    s_set(cfg, "log-level", "error");
    s_set(cfg, "log-format", "json");
    s_set(cfg, "max-value-bytes", "67108864");
    s_set(cfg, "client-timeout", "1234");
    s_set(cfg, "max-waiters-per-client", "10000000");
    s_set(cfg, "max-labels", "0");
    s_set(cfg, "list-limit", "1");
    s_set(cfg, "seeds", "- dash");
    s_set(cfg, "seeds", "null");
    s_set(cfg, "seeds", "'single' [x]");
    s_round_trip(cfg);
    char *text = s_print(cfg);
    assert_non_null(strstr(text, "\nclient_timeout: 1234ms\n"));
    assert_non_null(strstr(text, "\nlog_level: error\n"));
    assert_non_null(strstr(text, "\nseeds:\n  - \"- dash\"\n  - \"null\"\n"));
    free(text);
    s_set(cfg, "client-timeout", "10m");
    s_set(cfg, "seeds", "");
    text = s_print(cfg);
    assert_non_null(strstr(text, "\nclient_timeout: 10m\n"));
    assert_non_null(strstr(text, "\nseeds: []\n"));
    free(text);
    s_round_trip(cfg);
    pm_config_destroy(&cfg);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_empty_files_are_defaults),
        cmocka_unit_test(test_full_file),
        cmocka_unit_test(test_flow_style_and_other_enum_words),
        cmocka_unit_test(test_load_keeps_absent_keys_and_replaces_lists),
        cmocka_unit_test(test_byte_sizes),
        cmocka_unit_test(test_durations),
        cmocka_unit_test(test_booleans),
        cmocka_unit_test(test_error_unknown_key),
        cmocka_unit_test(test_error_wrong_type),
        cmocka_unit_test(test_error_out_of_range),
        cmocka_unit_test(test_error_node_name),
        cmocka_unit_test(test_error_duplicate_key),
        cmocka_unit_test(test_error_syntax),
        cmocka_unit_test(test_error_top_level),
        cmocka_unit_test(test_error_files),
        cmocka_unit_test(test_error_leaves_config_unchanged),
        cmocka_unit_test(test_set_overrides_file),
        cmocka_unit_test(test_set_errors),
        cmocka_unit_test(test_is_key_and_takes_value),
        cmocka_unit_test(test_help),
        cmocka_unit_test(test_print_round_trip),
    };
    return cmocka_run_group_tests_name("config", tests, s_group_setup, s_group_teardown);
}
