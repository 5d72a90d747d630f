/*
 * config.c - the agent's configuration: a YAML file (libyaml document API)
 * and command-line flags, read into one plain pm_config_t.
 *
 * Everything is driven by s_keys[], one row per key: parsing a file value or a
 * flag value, defaults, --help and printing. Input is outside input: every
 * refusal is a one-line message naming the file, line, column (1-based) and
 * key, and a refused load or set leaves the config exactly as it was (the file
 * is applied to a copy that replaces the config only when all of it is valid).
 */
#include "config_priv.h"
#include "pmesh.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

/* A config file is a few dozen lines; anything this large is a wrong path. */
#define S_MAX_FILE (1024 * 1024)
/* Strings are names, paths and addresses; this bounds what we keep and print. */
#define S_MAX_STRING 4096
/* Longest key name, for the flag-name buffers. */
#define S_MAX_KEY 64
/* How much of a bad value is echoed back in a message. */
#define S_ECHO 48


#define s_keys pm_config_keys
#define S_NKEYS pm_config_nkeys

/* A parsed scalar value before it is stored; a string in it is owned. */
typedef union {
    char *s;
    int64_t i;
    bool b;
    int e;
} s_value_t;

/* ---------------------------------------------------------------- helpers */

#define S_FIELD(cfg, k, type) ((type *) ((char *) (cfg) + (k)->offset))

/* Copies at most S_ECHO bytes of s into buf for a message, control bytes as '?'. */
static const char *
s_echo(const char *s, size_t len, char *buf, size_t buflen)
{
    assert(buflen > S_ECHO + 4);
    size_t n = len < S_ECHO ? len : S_ECHO;
    if (n < len)
        while (n > 0 && ((unsigned char) s[n] & 0xC0) == 0x80)
            n--; /* do not cut a UTF-8 sequence */
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char) s[i];
        buf[i] = c < 0x20 || c == 0x7F ? '?' : (char) c;
    }
    strcpy(buf + n, n < len ? "..." : "");
    return buf;
}

static const char *
s_type_noun(const s_key_t *k)
{
    switch (k->type) {
    case S_STRING: return "a string";
    case S_INT: return "an integer";
    case S_DURATION: return "a duration";
    case S_BOOL: return "true or false";
    case S_ENUM: return "a word";
    case S_LIST: return "a list";
    }
    return "?";
}

static const char *
s_node_noun(const yaml_node_t *node)
{
    switch (node->type) {
    case YAML_MAPPING_NODE: return "a mapping";
    case YAML_SEQUENCE_NODE: return "a list";
    default: return "a scalar";
    }
}

static void
s_join_words(const s_key_t *k, char *buf, size_t buflen)
{
    size_t used = 0;
    buf[0] = '\0';
    for (const char *const *w = k->words; *w; w++) {
        int n = snprintf(buf + used, buflen - used, "%s%s", w == k->words ? "" : "|", *w);
        if (n < 0 || (size_t) n >= buflen - used)
            break;
        used += (size_t) n;
    }
}

/* Largest unit that divides ms exactly, so the text parses back equal. */
static void
s_format_duration(int64_t ms, char *buf, size_t buflen)
{
    if (ms != 0 && ms % (3600 * 1000) == 0)
        snprintf(buf, buflen, "%" PRId64 "h", ms / (3600 * 1000));
    else if (ms != 0 && ms % (60 * 1000) == 0)
        snprintf(buf, buflen, "%" PRId64 "m", ms / (60 * 1000));
    else if (ms != 0 && ms % 1000 == 0)
        snprintf(buf, buflen, "%" PRId64 "s", ms / 1000);
    else
        snprintf(buf, buflen, "%" PRId64 "ms", ms);
}

static void
s_format_range(const s_key_t *k, char *buf, size_t buflen)
{
    if (k->type == S_DURATION) {
        char lo[32], hi[32];
        s_format_duration(k->min, lo, sizeof lo);
        s_format_duration(k->max, hi, sizeof hi);
        snprintf(buf, buflen, "%s..%s", lo, hi);
    } else
        snprintf(buf, buflen, "%" PRId64 "..%" PRId64, k->min, k->max);
}

/* "default X; range" for --help and the comments of pm_config_print; "" if nothing to say. */
static void
s_describe(const s_key_t *k, char *buf, size_t buflen)
{
    char range[80] = "";
    if (k->type == S_INT || k->type == S_DURATION)
        s_format_range(k, range, sizeof range);
    if (k->def)
        snprintf(buf, buflen, "default %s%s%s", k->def, *range ? "; " : "", range);
    else if (k->type == S_LIST)
        snprintf(buf, buflen, "repeatable; default none");
    else
        snprintf(buf, buflen, "%s", range);
}

/* "max_value_bytes" -> "--max-value-bytes" */
static void
s_flag_name(const char *key, char *buf, size_t buflen)
{
    snprintf(buf, buflen, "--%s", key);
    for (char *p = buf + 2; *p; p++)
        if (*p == '_')
            *p = '-';
}

/* The row for a key spelled exactly as in a file, or NULL. */
static const s_key_t *
s_find(const char *key, size_t len)
{
    for (size_t i = 0; i < S_NKEYS; i++)
        if (strlen(s_keys[i].key) == len && memcmp(s_keys[i].key, key, len) == 0)
            return &s_keys[i];
    return NULL;
}

/* The row for a key with '-' taken as '_' (and, if fold, any case), or NULL. */
static const s_key_t *
s_find_loose(const char *key, size_t len, bool fold)
{
    char name[S_MAX_KEY + 1];
    if (len > S_MAX_KEY)
        return NULL;
    for (size_t i = 0; i < len; i++) {
        char c = key[i] == '-' ? '_' : key[i];
        name[i] = fold && c >= 'A' && c <= 'Z' ? (char) (c - 'A' + 'a') : c;
    }
    return s_find(name, len);
}

/* ------------------------------------------------------- value checking */

/* Whether s[0..len) is UTF-8 text we can keep and print back as YAML:
 * no NUL, no control character, nothing libyaml refuses to read. */
static int
s_check_text(const char *s, size_t len, char *msg, size_t msglen)
{
    if (len > S_MAX_STRING) {
        snprintf(msg, msglen, "is longer than %d bytes", S_MAX_STRING);
        return -1;
    }
    const unsigned char *p = (const unsigned char *) s;
    for (size_t i = 0; i < len;) {
        uint32_t cp;
        size_t n;
        uint32_t least;
        if (p[i] < 0x80) {
            cp = p[i], n = 1, least = 0;
        } else if ((p[i] & 0xE0) == 0xC0) {
            cp = p[i] & 0x1F, n = 2, least = 0x80;
        } else if ((p[i] & 0xF0) == 0xE0) {
            cp = p[i] & 0x0F, n = 3, least = 0x800;
        } else if ((p[i] & 0xF8) == 0xF0) {
            cp = p[i] & 0x07, n = 4, least = 0x10000;
        } else
            goto bad_utf8;
        if (n > len - i)
            goto bad_utf8;
        for (size_t j = 1; j < n; j++) {
            if ((p[i + j] & 0xC0) != 0x80)
                goto bad_utf8;
            cp = cp << 6 | (p[i + j] & 0x3F);
        }
        if (cp < least || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            goto bad_utf8;
        if (cp < 0x20 || (cp >= 0x7F && cp <= 0x9F) || cp == 0xFEFF || cp == 0xFFFE
            || cp == 0xFFFF) {
            snprintf(msg, msglen, "contains a control character");
            return -1;
        }
        i += n;
    }
    return 0;
bad_utf8:
    snprintf(msg, msglen, "is not valid UTF-8");
    return -1;
}

int
pm_config_check_node(const char *value, char *msg, size_t msglen)
{
    size_t len = strlen(value);
    bool ok = len >= 1 && len <= 63;
    for (size_t i = 0; ok && i < len; i++) {
        char c = value[i];
        ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')
             || c == '.' || c == '_' || c == '-';
    }
    if (!ok) {
        char echo[S_ECHO + 8];
        snprintf(msg, msglen, "'%s' is not a valid name (1 to 63 of A-Z a-z 0-9 . _ -)",
                 s_echo(value, len, echo, sizeof echo));
        return -1;
    }
    return 0;
}

/* A string value or list item: checked, then copied into *out (caller owns). */
static int
s_parse_string(const s_key_t *k, const char *text, size_t len, char **out, char *msg,
               size_t msglen)
{
    if (s_check_text(text, len, msg, msglen))
        return -1;
    if (k->check && k->check(text, msg, msglen))
        return -1;
    *out = strndup(text, len);
    if (!*out) {
        snprintf(msg, msglen, "out of memory");
        return -1;
    }
    return 0;
}

/* Parses the text of a scalar key into *v. 0 ok; -1 with the problem in msg. */
static int
s_parse(const s_key_t *k, const char *text, size_t len, s_value_t *v, char *msg, size_t msglen)
{
    assert(k->type != S_LIST);
    char echo[S_ECHO + 8];
    s_echo(text, len, echo, sizeof echo);
    if (memchr(text, '\0', len)) {
        snprintf(msg, msglen, "contains a control character");
        return -1;
    }
    switch (k->type) {
    case S_STRING:
        if (len == 0 && !k->def) {
            v->s = NULL; /* unset: the caller works out the default */
            return 0;
        }
        return s_parse_string(k, text, len, &v->s, msg, msglen);
    case S_INT:
    case S_DURATION: {
        int rc = k->type == S_INT ? pm_config_parse_int(text, &v->i)
                                  : pm_parse_duration(text, &v->i);
        if (rc == -1) {
            snprintf(msg, msglen, "'%s' is not %s (e.g. %s)", echo, s_type_noun(k),
                     k->type == S_INT ? "100, 64KiB, 1MiB" : "250ms, 30s, 5m, 2h");
            return -1;
        }
        if (rc < 0 || v->i < k->min || v->i > k->max) {
            char range[80];
            s_format_range(k, range, sizeof range);
            snprintf(msg, msglen, "%s is out of range (%s)", echo, range);
            return -1;
        }
        return 0;
    }
    case S_BOOL:
        if (pm_config_parse_bool(text, &v->b)) {
            snprintf(msg, msglen, "'%s' is not true or false", echo);
            return -1;
        }
        return 0;
    case S_ENUM:
        for (int i = 0; k->words[i]; i++)
            if (strcmp(k->words[i], text) == 0) {
                v->e = i;
                return 0;
            }
        char words[128];
        s_join_words(k, words, sizeof words);
        snprintf(msg, msglen, "'%s' is not one of %s", echo, words);
        return -1;
    case S_LIST:
        break;
    }
    return -1;
}

/* Moves a parsed value into its field. */
static void
s_store(pm_config_t *cfg, const s_key_t *k, s_value_t *v)
{
    switch (k->type) {
    case S_STRING:
        free(*S_FIELD(cfg, k, char *));
        *S_FIELD(cfg, k, char *) = v->s;
        v->s = NULL;
        break;
    case S_INT:
    case S_DURATION: *S_FIELD(cfg, k, int64_t) = v->i; break;
    case S_BOOL: *S_FIELD(cfg, k, bool) = v->b; break;
    case S_ENUM: *S_FIELD(cfg, k, int) = v->e; break;
    case S_LIST: assert(!"lists are not scalars"); break;
    }
}

/* ----------------------------------------------------- struct lifetime */

static void
s_list_clear(pm_config_list_t *list)
{
    for (size_t i = 0; i < list->len; i++)
        free(list->items[i]);
    free(list->items);
    list->items = NULL;
    list->len = 0;
}

/* Appends an owned item. 0 ok; -1 out of memory (item not taken). */
static int
s_list_push(pm_config_list_t *list, char *item)
{
    char **items = realloc(list->items, (list->len + 1) * sizeof *items);
    if (!items)
        return -1;
    items[list->len++] = item;
    list->items = items;
    return 0;
}

/* Frees what cfg owns and NULLs it; leaves the scalars. */
static void
s_clear(pm_config_t *cfg)
{
    for (size_t i = 0; i < S_NKEYS; i++) {
        const s_key_t *k = &s_keys[i];
        if (k->type == S_STRING) {
            free(*S_FIELD(cfg, k, char *));
            *S_FIELD(cfg, k, char *) = NULL;
        } else if (k->type == S_LIST)
            s_list_clear(S_FIELD(cfg, k, pm_config_list_t));
    }
}

/* Deep copy of src into dst. 0 ok; -1 out of memory with dst holding nothing. */
static int
s_copy(pm_config_t *dst, const pm_config_t *src)
{
    *dst = *src;
    for (size_t i = 0; i < S_NKEYS; i++) {
        const s_key_t *k = &s_keys[i];
        if (k->type == S_STRING)
            *S_FIELD(dst, k, char *) = NULL;
        else if (k->type == S_LIST)
            *S_FIELD(dst, k, pm_config_list_t) = (pm_config_list_t){NULL, 0};
    }
    for (size_t i = 0; i < S_NKEYS; i++) {
        const s_key_t *k = &s_keys[i];
        if (k->type == S_STRING) {
            const char *s = *S_FIELD(src, k, char *);
            if (s && !(*S_FIELD(dst, k, char *) = strdup(s)))
                goto fail;
        } else if (k->type == S_LIST) {
            const pm_config_list_t *from = S_FIELD(src, k, pm_config_list_t);
            pm_config_list_t *to = S_FIELD(dst, k, pm_config_list_t);
            for (size_t j = 0; j < from->len; j++) {
                char *item = strdup(from->items[j]);
                if (!item || s_list_push(to, item)) {
                    free(item);
                    goto fail;
                }
            }
        }
    }
    return 0;
fail:
    s_clear(dst);
    return -1;
}

pm_config_t *
pm_config_new(void)
{
    pm_config_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    for (size_t i = 0; i < S_NKEYS; i++) {
        const s_key_t *k = &s_keys[i];
        assert(k->type != S_LIST || !k->def);
        if (!k->def)
            continue;
        s_value_t v;
        char msg[256];
        if (s_parse(k, k->def, strlen(k->def), &v, msg, sizeof msg)) {
            /* Defaults are tested; only an allocation can fail here. */
            pm_config_destroy(&self);
            return NULL;
        }
        s_store(self, k, &v);
    }
    return self;
}

void
pm_config_destroy(pm_config_t **self_p)
{
    assert(self_p);
    if (*self_p) {
        s_clear(*self_p);
        free(*self_p);
        *self_p = NULL;
    }
}

/* ------------------------------------------------------------ the file */

/* Reads the whole file into *buf (caller frees). 0 ok; -1 with message. */
static int
s_read_file(const char *path, char **buf, size_t *len, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        return -1;
    }
    int rc = -1;
    char *data = malloc(S_MAX_FILE + 1);
    if (!data) {
        snprintf(err, errlen, "%s: out of memory", path);
        goto out;
    }
    size_t n = fread(data, 1, S_MAX_FILE + 1, f);
    if (ferror(f)) {
        snprintf(err, errlen, "%s: cannot read: %s", path, strerror(errno));
        goto out;
    }
    if (n > S_MAX_FILE) {
        snprintf(err, errlen, "%s: is larger than %d bytes", path, S_MAX_FILE);
        goto out;
    }
    *buf = data;
    *len = n;
    data = NULL;
    rc = 0;
out:
    free(data);
    fclose(f);
    return rc;
}

/* Formats "path:line:col: key: msg" (key may be NULL) from a 0-based mark. */
static void
s_error_at(char *err, size_t errlen, const char *path, yaml_mark_t mark, const char *key,
           const char *msg)
{
    snprintf(err, errlen, "%s:%zu:%zu: %s%s%s", path, mark.line + 1, mark.column + 1,
             key ? key : "", key ? ": " : "", msg);
}

static void
s_syntax_error(const yaml_parser_t *parser, const char *path, const char *buf, size_t len,
               char *err, size_t errlen)
{
    if (parser->error == YAML_MEMORY_ERROR) {
        snprintf(err, errlen, "%s: out of memory", path);
        return;
    }
    yaml_mark_t mark = parser->problem_mark;
    if (parser->error == YAML_READER_ERROR) {
        /* The reader reports a byte offset, not a mark: count lines ourselves. */
        memset(&mark, 0, sizeof mark);
        for (size_t i = 0; i < parser->problem_offset && i < len; i++) {
            if (buf[i] == '\n') {
                mark.line++;
                mark.column = 0;
            } else
                mark.column++;
        }
    }
    char msg[256];
    const char *problem = parser->problem ? parser->problem : "malformed YAML";
    if (parser->context)
        snprintf(msg, sizeof msg, "YAML syntax error: %s (%s at %zu:%zu)", problem,
                 parser->context, parser->context_mark.line + 1, parser->context_mark.column + 1);
    else
        snprintf(msg, sizeof msg, "YAML syntax error: %s", problem);
    s_error_at(err, errlen, path, mark, NULL, msg);
}

/* A plain ~, null or nothing: YAML's null. */
static bool
s_is_null(const yaml_node_t *node)
{
    if (node->type != YAML_SCALAR_NODE || node->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return false;
    const char *s = (const char *) node->data.scalar.value;
    return !*s || !strcmp(s, "~") || !strcmp(s, "null") || !strcmp(s, "Null")
           || !strcmp(s, "NULL");
}

/* Applies one value node to cfg. 0 ok; -1 with msg and *at set to where the problem is. */
static int
s_load_value(pm_config_t *cfg, yaml_document_t *doc, const s_key_t *k, yaml_node_t *node,
             char *msg, size_t msglen, yaml_mark_t *at)
{
    *at = node->start_mark;
    if (k->type == S_LIST) {
        pm_config_list_t list = {NULL, 0};
        if (s_is_null(node))
            goto replace; /* "seeds:" alone is an empty list */
        if (node->type != YAML_SEQUENCE_NODE) {
            snprintf(msg, msglen, "expected a list, got %s", s_node_noun(node));
            return -1;
        }
        size_t n = 0;
        for (yaml_node_item_t *it = node->data.sequence.items.start;
             it < node->data.sequence.items.top; it++) {
            yaml_node_t *item = yaml_document_get_node(doc, *it);
            char sub[200];
            char *text = NULL;
            *at = item->start_mark;
            n++;
            if (item->type != YAML_SCALAR_NODE)
                snprintf(sub, sizeof sub, "is %s, expected a string", s_node_noun(item));
            else if (s_is_null(item) || item->data.scalar.length == 0)
                snprintf(sub, sizeof sub, "is empty");
            else if (!s_parse_string(k, (const char *) item->data.scalar.value,
                                     item->data.scalar.length, &text, sub, sizeof sub)) {
                if (!s_list_push(&list, text))
                    continue;
                free(text);
                snprintf(sub, sizeof sub, "out of memory");
            }
            snprintf(msg, msglen, "item %zu %s", n, sub);
            s_list_clear(&list);
            return -1;
        }
    replace:
        s_list_clear(S_FIELD(cfg, k, pm_config_list_t));
        *S_FIELD(cfg, k, pm_config_list_t) = list;
        return 0;
    }
    if (node->type != YAML_SCALAR_NODE) {
        snprintf(msg, msglen, "expected %s, got %s", s_type_noun(k), s_node_noun(node));
        return -1;
    }
    s_value_t v;
    if (s_is_null(node)) {
        if (k->type != S_STRING || k->def) {
            snprintf(msg, msglen, "missing value; expected %s", s_type_noun(k));
            return -1;
        }
        v.s = NULL;
    } else if (s_parse(k, (const char *) node->data.scalar.value, node->data.scalar.length, &v,
                       msg, msglen))
        return -1;
    s_store(cfg, k, &v);
    return 0;
}

static int
s_load_mapping(pm_config_t *cfg, yaml_document_t *doc, yaml_node_t *root, const char *path,
               char *err, size_t errlen)
{
    size_t first_line[S_NKEYS];
    uint64_t seen = 0;
    char msg[256], echo[S_ECHO + 8];
    for (yaml_node_pair_t *pair = root->data.mapping.pairs.start;
         pair < root->data.mapping.pairs.top; pair++) {
        yaml_node_t *kn = yaml_document_get_node(doc, pair->key);
        yaml_node_t *vn = yaml_document_get_node(doc, pair->value);
        if (kn->type != YAML_SCALAR_NODE) {
            snprintf(msg, sizeof msg, "a key must be a word, got %s", s_node_noun(kn));
            s_error_at(err, errlen, path, kn->start_mark, NULL, msg);
            return -1;
        }
        const char *name = (const char *) kn->data.scalar.value;
        size_t len = kn->data.scalar.length;
        const s_key_t *k = s_find(name, len);
        if (!k) {
            const s_key_t *near = s_find_loose(name, len, true);
            if (near)
                snprintf(msg, sizeof msg, "unknown key (did you mean %s?)", near->key);
            else
                snprintf(msg, sizeof msg, "unknown key");
            s_error_at(err, errlen, path, kn->start_mark, s_echo(name, len, echo, sizeof echo),
                       msg);
            return -1;
        }
        size_t i = (size_t) (k - s_keys);
        if (seen & (UINT64_C(1) << i)) {
            snprintf(msg, sizeof msg, "duplicate key (first at line %zu)", first_line[i] + 1);
            s_error_at(err, errlen, path, kn->start_mark, k->key, msg);
            return -1;
        }
        seen |= UINT64_C(1) << i;
        first_line[i] = kn->start_mark.line;
        yaml_mark_t at;
        if (s_load_value(cfg, doc, k, vn, msg, sizeof msg, &at)) {
            s_error_at(err, errlen, path, at, k->key, msg);
            return -1;
        }
    }
    return 0;
}

int
pm_config_load(pm_config_t *self, const char *path, char *err, size_t errlen)
{
    assert(self && path && err);
    int rc = -1;
    char *buf = NULL;
    size_t len = 0;
    yaml_parser_t parser;
    yaml_document_t doc;
    pm_config_t tmp;
    bool parser_ok = false, doc_ok = false, tmp_ok = false;

    if (s_read_file(path, &buf, &len, err, errlen))
        goto out;
    if (!yaml_parser_initialize(&parser)) {
        snprintf(err, errlen, "%s: out of memory", path);
        goto out;
    }
    parser_ok = true;
    yaml_parser_set_input_string(&parser, (const unsigned char *) buf, len);
    if (!yaml_parser_load(&parser, &doc)) {
        s_syntax_error(&parser, path, buf, len, err, errlen);
        goto out;
    }
    doc_ok = true;
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    if (root) {
        yaml_document_t next;
        if (!yaml_parser_load(&parser, &next)) {
            s_syntax_error(&parser, path, buf, len, err, errlen);
            goto out;
        }
        yaml_node_t *extra = yaml_document_get_root_node(&next);
        yaml_mark_t mark = extra ? extra->start_mark : next.start_mark;
        yaml_document_delete(&next);
        if (extra) {
            s_error_at(err, errlen, path, mark, NULL, "only one YAML document is allowed");
            goto out;
        }
    }
    if (s_copy(&tmp, self)) {
        snprintf(err, errlen, "%s: out of memory", path);
        goto out;
    }
    tmp_ok = true;
    if (root && !s_is_null(root)) {
        if (root->type != YAML_MAPPING_NODE) {
            char msg[128];
            snprintf(msg, sizeof msg, "the top level must be a mapping of key: value, got %s",
                     s_node_noun(root));
            s_error_at(err, errlen, path, root->start_mark, NULL, msg);
            goto out;
        }
        if (s_load_mapping(&tmp, &doc, root, path, err, errlen))
            goto out;
    }
    s_clear(self);
    *self = tmp;
    tmp_ok = false;
    rc = 0;
out:
    if (tmp_ok)
        s_clear(&tmp);
    if (doc_ok)
        yaml_document_delete(&doc);
    if (parser_ok)
        yaml_parser_delete(&parser);
    free(buf);
    return rc;
}

/* ----------------------------------------------------------- the flags */

int
pm_config_set(pm_config_t *self, const char *key, const char *value, char *err, size_t errlen)
{
    assert(self && key && err);
    char flag[S_MAX_KEY + 8], msg[256];
    const s_key_t *k = s_find_loose(key, strlen(key), false);
    if (!k) {
        char echo[S_ECHO + 8];
        s_flag_name(s_echo(key, strlen(key), echo, sizeof echo), flag, sizeof flag);
        snprintf(err, errlen, "%s: unknown key", flag);
        return -1;
    }
    s_flag_name(k->key, flag, sizeof flag);
    uint64_t bit = UINT64_C(1) << (k - s_keys);
    if (!value) {
        if (k->type != S_BOOL) {
            snprintf(err, errlen, "%s: missing value; expected %s", flag, s_type_noun(k));
            return -1;
        }
        value = "true";
    }
    size_t len = strlen(value);
    if (k->type == S_LIST) {
        pm_config_list_t *list = S_FIELD(self, k, pm_config_list_t);
        char *item = NULL;
        if (len > 0 && s_parse_string(k, value, len, &item, msg, sizeof msg)) {
            snprintf(err, errlen, "%s: %s", flag, msg);
            return -1;
        }
        if (!(self->set_by_flag & bit) || !item) {
            /* The flags' list replaces the file's; an empty value clears it. */
            pm_config_list_t fresh = {NULL, 0};
            if (item && s_list_push(&fresh, item))
                goto oom;
            s_list_clear(list);
            *list = fresh;
        } else if (s_list_push(list, item))
            goto oom;
        self->set_by_flag |= bit;
        return 0;
    oom:
        free(item);
        snprintf(err, errlen, "%s: out of memory", flag);
        return -1;
    }
    s_value_t v;
    if (s_parse(k, value, len, &v, msg, sizeof msg)) {
        snprintf(err, errlen, "%s: %s", flag, msg);
        return -1;
    }
    s_store(self, k, &v);
    self->set_by_flag |= bit;
    return 0;
}

int
pm_config_is_key(const char *key)
{
    return key && s_find_loose(key, strlen(key), false) != NULL;
}

int
pm_config_key_takes_value(const char *key)
{
    const s_key_t *k = key ? s_find_loose(key, strlen(key), false) : NULL;
    return k && k->type != S_BOOL;
}

/* --------------------------------------------------- printing and help */

/* Double-quoted YAML; s_check_text let no control character in, so only
 * the quote and the backslash need escaping. */
static void
s_print_quoted(const char *s, FILE *out)
{
    fputc('"', out);
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            fputc('\\', out);
        fputc(*s, out);
    }
    fputc('"', out);
}

void
pm_config_print(const pm_config_t *self, FILE *out)
{
    assert(self && out);
    fprintf(out, "# pmesh agent configuration (pmeshd); every key can also be a --flag\n");
    for (size_t i = 0; i < S_NKEYS; i++) {
        const s_key_t *k = &s_keys[i];
        char about[160], buf[64];
        s_describe(k, about, sizeof about);
        fprintf(out, "\n# %s%s%s%s\n%s:", k->doc, *about ? " (" : "", about, *about ? ")" : "",
                k->key);
        switch (k->type) {
        case S_STRING: {
            const char *s = *S_FIELD(self, k, char *const);
            if (s) {
                fputc(' ', out);
                s_print_quoted(s, out);
                fputc('\n', out);
            } else
                fprintf(out, " null\n");
            break;
        }
        case S_INT: fprintf(out, " %" PRId64 "\n", *S_FIELD(self, k, const int64_t)); break;
        case S_DURATION:
            s_format_duration(*S_FIELD(self, k, const int64_t), buf, sizeof buf);
            fprintf(out, " %s\n", buf);
            break;
        case S_BOOL: fprintf(out, " %s\n", *S_FIELD(self, k, const bool) ? "true" : "false"); break;
        case S_ENUM: fprintf(out, " %s\n", k->words[*S_FIELD(self, k, const int)]); break;
        case S_LIST: {
            const pm_config_list_t *list = S_FIELD(self, k, const pm_config_list_t);
            if (list->len == 0)
                fprintf(out, " []\n");
            else
                fputc('\n', out);
            for (size_t j = 0; j < list->len; j++) {
                fprintf(out, "  - ");
                s_print_quoted(list->items[j], out);
                fputc('\n', out);
            }
            break;
        }
        }
    }
}

static void
s_help_left(const s_key_t *k, char *buf, size_t buflen)
{
    char flag[S_MAX_KEY + 8], meta[128];
    s_flag_name(k->key, flag, sizeof flag);
    switch (k->type) {
    case S_STRING:
    case S_LIST: snprintf(meta, sizeof meta, "%s", k->meta ? k->meta : "STRING"); break;
    case S_INT: snprintf(meta, sizeof meta, "%s", k->meta ? k->meta : "N"); break;
    case S_DURATION: snprintf(meta, sizeof meta, "%s", k->meta ? k->meta : "DURATION"); break;
    case S_BOOL: snprintf(meta, sizeof meta, "[true|false]"); break;
    case S_ENUM: s_join_words(k, meta, sizeof meta); break;
    }
    snprintf(buf, buflen, "%s %s", flag, meta);
}

void
pm_config_help(FILE *out)
{
    assert(out);
    char left[200], about[160];
    int width = 0;
    for (size_t i = 0; i < S_NKEYS; i++) {
        s_help_left(&s_keys[i], left, sizeof left);
        if ((int) strlen(left) > width)
            width = (int) strlen(left);
    }
    for (size_t i = 0; i < S_NKEYS; i++) {
        const s_key_t *k = &s_keys[i];
        s_help_left(k, left, sizeof left);
        s_describe(k, about, sizeof about);
        fprintf(out, "  %-*s  %s%s%s%s\n", width, left, k->doc, *about ? " (" : "", about,
                *about ? ")" : "");
    }
}

/* ------------------------------------------------------------- parsers */

int
pm_config_parse_int(const char *text, int64_t *out)
{
    assert(text && out);
    const char *p = text;
    bool neg = *p == '-';
    if (neg)
        p++;
    if (*p < '0' || *p > '9')
        return -1;
    uint64_t n = 0;
    bool big = false;
    for (; *p >= '0' && *p <= '9'; p++) {
        unsigned d = (unsigned) (*p - '0');
        if (n > (UINT64_MAX - d) / 10)
            big = true;
        else
            n = n * 10 + d;
    }
    const char *unit_at = p;
    while (*p == ' ')
        p++;
    static const struct {
        const char *name;
        uint64_t size;
    } units[] = {{"", 1}, {"KiB", UINT64_C(1) << 10}, {"MiB", UINT64_C(1) << 20},
                 {"GiB", UINT64_C(1) << 30}, {"TiB", UINT64_C(1) << 40}};
    uint64_t unit = 0;
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++)
        if (strcmp(p, units[i].name) == 0)
            unit = units[i].size;
    if (unit == 0 || (unit == 1 && p != unit_at))
        return -1; /* unknown unit, or trailing spaces with no unit */
    uint64_t limit = neg ? (uint64_t) INT64_MAX + 1 : (uint64_t) INT64_MAX;
    if (big || n > limit / unit)
        return -2;
    n *= unit;
    *out = neg ? (n == (uint64_t) INT64_MAX + 1 ? INT64_MIN : -(int64_t) n) : (int64_t) n;
    return 0;
}

int
pm_config_parse_bool(const char *text, bool *out)
{
    assert(text && out);
    if (strcmp(text, "true") == 0)
        *out = true;
    else if (strcmp(text, "false") == 0)
        *out = false;
    else
        return -1;
    return 0;
}
