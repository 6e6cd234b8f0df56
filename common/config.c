/* config.c — INI configuration (libinih) with command-line overrides; see config.h.
 *
 * Model: an array of declared entries in declaration order, each holding its default, its
 * help text and (once set) a value with its origin. Sections are implied by the declared
 * keys ("section.key"); config_print groups keys by section in order of first declaration.
 *
 * Invariants:
 *  CONFIG-1  A value never exists without its origin: e->value != NULL iff e->kind is
 *            S_FROM_FILE or S_FROM_FLAG, and then e->origin names the file:line or the flag.
 *  CONFIG-2  config_load_file is all or nothing: assignments are staged and applied only
 *            when the whole file parsed without error, so a failed load leaves cfg as it was.
 *  CONFIG-3  No fixed-size buffers hold names or values: the file is read whole, libinih's
 *            line buffer is sized to the longest line of that file (its default is 200 bytes
 *            and it silently splits longer lines), and section headers are checked here on the
 *            full line before libinih copies them into its 50-byte section buffer.
 *
 * Rules (documented in docs/configuration.md):
 *  - duplicate keys: the last assignment wins (within a file, across files, and flags
 *    applied after the file win over it);
 *  - comments: lines starting with ';' or '#'; inline comments start with ';' after
 *    whitespace; no multi-line values (an indented line is an ordinary line);
 *  - relative paths from a file resolve against that file's directory; from flags and
 *    defaults, against the working directory. */
#include "config.h"

#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <ini.h>
#include <limits.h>
#include <float.h>
#include <getopt.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

typedef enum { S_DEFAULT = 0, S_FROM_FILE, S_FROM_FLAG } s_kind_t;

typedef struct {
    char *section;  /* "federation" */
    char *key;      /* "rounds" */
    char *full;     /* "federation.rounds" */
    char *def;      /* default, or NULL: none */
    char *help;     /* one line (may contain '\n' for more) */
    char *value;    /* set value, or NULL: use def (CONFIG-1) */
    char *origin;   /* "path:line" or "--flag"; NULL when kind == S_DEFAULT */
    char *base_dir; /* directory of the file the value came from (S_FROM_FILE only) */
    s_kind_t kind;
} s_entry_t;

struct config {
    s_entry_t *v;
    size_t n, cap;
};

/* Longest value shown in an error message: the rest is elided with "..." (messages go
 * into cc_err_t's fixed buffer, so a 10 kB value must not push the explanation out). */
#define S_SHOW_MAX 80

/* ---- small helpers ---- */

static char *s_strndup(const char *s, size_t n) {
    char *p = cc_xmalloc(n + 1);
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

static char *s_dup_or_null(const char *s) { return s ? cc_xstrdup(s) : NULL; }

/* printf into a new string. */
static char *s_fmt(const char *fmt, ...) CC_PRINTF(1, 2);
static char *s_fmt(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    assert(n >= 0);
    char *p = cc_xmalloc((size_t)n + 1);
    va_start(ap, fmt);
    vsnprintf(p, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return p;
}

/* Value as shown in messages: quoted by the caller, elided past S_SHOW_MAX bytes. */
typedef struct {
    char s[S_SHOW_MAX + 4];
} s_show_t;

static s_show_t s_show(const char *v) {
    s_show_t r;
    size_t n = strlen(v);
    if (n <= S_SHOW_MAX) {
        memcpy(r.s, v, n + 1);
    } else {
        memcpy(r.s, v, S_SHOW_MAX);
        memcpy(r.s + S_SHOW_MAX, "...", 4);
    }
    return r;
}

static void s_entry_clear_value(s_entry_t *e) {
    free(e->value);
    free(e->origin);
    free(e->base_dir);
    e->value = e->origin = e->base_dir = NULL;
    e->kind = S_DEFAULT;
}

static s_entry_t *s_find2(const config_t *cfg, const char *section, size_t slen, const char *key) {
    for (size_t i = 0; i < cfg->n; i++) {
        s_entry_t *e = &cfg->v[i];
        if (strlen(e->section) == slen && memcmp(e->section, section, slen) == 0 &&
            strcmp(e->key, key) == 0)
            return e;
    }
    return NULL;
}

static s_entry_t *s_find(const config_t *cfg, const char *section_key) {
    if (!cfg || !section_key) return NULL;
    for (size_t i = 0; i < cfg->n; i++)
        if (strcmp(cfg->v[i].full, section_key) == 0) return &cfg->v[i];
    return NULL;
}

static int s_section_known(const config_t *cfg, const char *section) {
    for (size_t i = 0; i < cfg->n; i++)
        if (strcmp(cfg->v[i].section, section) == 0) return 1;
    return 0;
}

/* Levenshtein distance, for "did you mean" hints. */
static size_t s_distance(const char *a, const char *b) {
    size_t la = strlen(a), lb = strlen(b);
    size_t *row = cc_xmalloc((lb + 1) * sizeof *row);
    for (size_t j = 0; j <= lb; j++) row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t up = row[j];
            size_t best = diag + (tolower((unsigned char)a[i - 1]) != tolower((unsigned char)b[j - 1]));
            if (up + 1 < best) best = up + 1;
            if (row[j - 1] + 1 < best) best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    size_t d = row[lb];
    free(row);
    return d;
}

static int s_close_enough(const char *known, size_t d) {
    size_t n = strlen(known);
    return d <= (n <= 4 ? 1 : n <= 8 ? 2 : 3);
}

/* Hint for an unknown section name: " (did you mean [x]?)" or a list of known sections. */
static char *s_section_hint(const config_t *cfg, const char *section) {
    const char *best = NULL;
    size_t best_d = SIZE_MAX;
    size_t cap = 1;
    for (size_t i = 0; i < cfg->n; i++) {
        size_t d = s_distance(section, cfg->v[i].section);
        if (d < best_d) best_d = d, best = cfg->v[i].section;
        cap += strlen(cfg->v[i].section) + 2;
    }
    if (best && s_close_enough(best, best_d)) return s_fmt(" (did you mean [%s]?)", best);
    /* List the known sections once each, in declaration order. */
    char *list = cc_xmalloc(cap);
    list[0] = '\0';
    for (size_t i = 0; i < cfg->n; i++) {
        int seen = 0;
        for (size_t j = 0; j < i && !seen; j++) seen = strcmp(cfg->v[j].section, cfg->v[i].section) == 0;
        if (seen) continue;
        if (list[0]) strcat(list, ", ");
        strcat(list, cfg->v[i].section);
    }
    char *hint = s_fmt(" (known sections: %s)", list[0] ? list : "none");
    free(list);
    return hint;
}

/* Hint for an unknown key: the same key in another section, else the nearest key of the
 * section, else "". */
static char *s_key_hint(const config_t *cfg, const char *section, const char *key) {
    for (size_t i = 0; i < cfg->n; i++)
        if (strcmp(cfg->v[i].key, key) == 0)
            return s_fmt(" (it belongs in section [%s])", cfg->v[i].section);
    const char *best = NULL;
    size_t best_d = SIZE_MAX;
    for (size_t i = 0; i < cfg->n; i++) {
        if (strcmp(cfg->v[i].section, section) != 0) continue;
        size_t d = s_distance(key, cfg->v[i].key);
        if (d < best_d) best_d = d, best = cfg->v[i].key;
    }
    if (best && s_close_enough(best, best_d)) return s_fmt(" (did you mean %s?)", best);
    return cc_xstrdup("");
}

/* ---- lifecycle and declarations ---- */

config_t *config_new(void) { return cc_xcalloc(1, sizeof(config_t)); }

void config_destroy(config_t **cfg) {
    if (!cfg || !*cfg) return;
    config_t *c = *cfg;
    for (size_t i = 0; i < c->n; i++) {
        s_entry_t *e = &c->v[i];
        s_entry_clear_value(e);
        free(e->section);
        free(e->key);
        free(e->full);
        free(e->def);
        free(e->help);
    }
    free(c->v);
    free(c);
    *cfg = NULL;
}

void config_declare(config_t *cfg, const char *section_key, const char *default_value,
                    const char *help) {
    assert(cfg && section_key);
    const char *dot = strchr(section_key, '.');
    /* A program bug, not user input: every declared key is "section.key". */
    assert(dot && dot != section_key && dot[1] != '\0' && !strchr(dot + 1, '.'));
    s_entry_t *e = s_find(cfg, section_key);
    if (e) { /* re-declaration: new default and help, position kept */
        free(e->def);
        free(e->help);
    } else {
        if (cfg->n == cfg->cap) {
            cfg->cap = cfg->cap ? 2 * cfg->cap : 32;
            cfg->v = cc_xrealloc(cfg->v, cfg->cap * sizeof *cfg->v);
        }
        e = &cfg->v[cfg->n++];
        memset(e, 0, sizeof *e);
        e->section = s_strndup(section_key, (size_t)(dot - section_key));
        e->key = cc_xstrdup(dot + 1);
        e->full = cc_xstrdup(section_key);
    }
    e->def = s_dup_or_null(default_value);
    e->help = cc_xstrdup(help ? help : "");
}

void config_declare_table(config_t *cfg, const config_key_t *keys, size_t n) {
    for (size_t i = 0; i < n; i++) config_declare(cfg, keys[i].key, keys[i].def, keys[i].help);
}

/* ---- loading a file ---- */

typedef struct {
    s_entry_t *e;
    char *value;
    size_t line;
} s_pending_t;

typedef struct {
    config_t *cfg;
    const char *path;
    const char *buf; /* whole file, NUL-terminated */
    size_t len, pos;
    size_t lineno;          /* line last handed to libinih */
    size_t section_line;    /* line of the current section header */
    s_pending_t *pend;      /* staged assignments (CONFIG-2) */
    size_t npend, cappend;
    size_t err_line;        /* first error found here (0: none) */
    char *err_msg;
} s_load_t;

static void s_load_error(s_load_t *L, size_t line, char *msg /* owned */) {
    if (L->err_line == 0 || line < L->err_line) {
        free(L->err_msg);
        L->err_msg = msg;
        L->err_line = line;
    } else {
        free(msg);
    }
}

/* Checks a section header line on its full text (CONFIG-3) exactly as libinih will read it:
 * the name is everything between '[' and the first ']' (no trimming inside). Lines that are
 * not well-formed headers are left to libinih, which reports them as syntax errors. */
static void s_check_header(s_load_t *L, const char *line, size_t n) {
    size_t i = 0;
    if (L->lineno == 1 && n >= 3 && memcmp(line, "\xEF\xBB\xBF", 3) == 0) i = 3;
    while (i < n && isspace((unsigned char)line[i])) i++;
    if (i >= n || line[i] != '[') return;
    size_t start = ++i;
    int was_space = 0;
    while (i < n && line[i] != ']' && line[i] != '\n' && !(was_space && line[i] == ';')) {
        was_space = isspace((unsigned char)line[i]);
        i++;
    }
    if (i >= n || line[i] != ']') return;
    char *name = s_strndup(line + start, i - start);
    L->section_line = L->lineno;
    if (!s_section_known(L->cfg, name)) {
        char *hint = s_section_hint(L->cfg, name);
        s_load_error(L, L->lineno,
                     s_fmt("%s:%zu: unknown section [%s]%s", L->path, L->lineno, name, hint));
        free(hint);
    }
    free(name);
}

/* fgets-style reader over the in-memory file; the buffer libinih passes is always large
 * enough for one whole line (see config_load_file), so each call returns exactly one line
 * and L->lineno is the line of whatever the handler sees next. */
static char *s_reader(char *str, int num, void *stream) {
    s_load_t *L = stream;
    if (L->pos >= L->len) return NULL;
    const char *p = L->buf + L->pos;
    const char *nl = memchr(p, '\n', L->len - L->pos);
    size_t n = nl ? (size_t)(nl - p) + 1 : L->len - L->pos;
    assert(num > 0 && n < (size_t)num);
    memcpy(str, p, n);
    str[n] = '\0';
    L->pos += n;
    L->lineno++;
    s_check_header(L, str, n);
    return str;
}

static int s_handler(void *user, const char *section, const char *name, const char *value) {
    s_load_t *L = user;
    config_t *cfg = L->cfg;
    if (section[0] == '\0') {
        s_load_error(L, L->lineno,
                     s_fmt("%s:%zu: key \"%s\" appears before any [section] header", L->path,
                           L->lineno, name));
        return 0;
    }
    if (!s_section_known(cfg, section)) {
        /* Normally already reported at the header line by s_check_header. */
        size_t line = L->section_line ? L->section_line : L->lineno;
        char *hint = s_section_hint(cfg, section);
        s_load_error(L, line, s_fmt("%s:%zu: unknown section [%s]%s", L->path, line, section, hint));
        free(hint);
        return 0;
    }
    s_entry_t *e = s_find2(cfg, section, strlen(section), name);
    if (!e) {
        char *hint = s_key_hint(cfg, section, name);
        s_load_error(L, L->lineno,
                     s_fmt("%s:%zu: [%s] unknown key \"%s\"%s", L->path, L->lineno, section, name,
                           hint));
        free(hint);
        return 0;
    }
    if (L->npend == L->cappend) {
        L->cappend = L->cappend ? 2 * L->cappend : 32;
        L->pend = cc_xrealloc(L->pend, L->cappend * sizeof *L->pend);
    }
    L->pend[L->npend++] = (s_pending_t){.e = e, .value = cc_xstrdup(value), .line = L->lineno};
    return 1;
}

/* Directory part of path as given ("." when it has none). */
static char *s_dirname(const char *path) {
    const char *slash = strrchr(path, '/');
    if (!slash) return cc_xstrdup(".");
    if (slash == path) return cc_xstrdup("/");
    return s_strndup(path, (size_t)(slash - path));
}

/* Reads the whole file (no size limit but memory). */
static int s_read_file(const char *path, char **out, size_t *out_len, cc_err_t *err) {
    FILE *f = fopen(path, "rb");
    if (!f) return cc_err_set(err, CC_ERR_IO, "%s: cannot open config file: %s", path, strerror(errno));
    size_t cap = 4096, len = 0;
    char *buf = cc_xmalloc(cap);
    for (;;) {
        if (cap - len < 2) buf = cc_xrealloc(buf, cap *= 2);
        size_t got = fread(buf + len, 1, cap - len - 1, f);
        len += got;
        if (got == 0) break;
    }
    if (ferror(f)) {
        int e = errno;
        fclose(f);
        free(buf);
        return cc_err_set(err, CC_ERR_IO, "%s: cannot read config file: %s", path, strerror(e));
    }
    fclose(f);
    buf[len] = '\0';
    *out = buf;
    *out_len = len;
    return 0;
}

/* The text of line `line` (1-based) of buf, without its newline, for syntax errors. */
static char *s_line_text(const char *buf, size_t len, size_t line) {
    size_t pos = 0;
    for (size_t l = 1; l < line && pos < len; l++) {
        const char *nl = memchr(buf + pos, '\n', len - pos);
        if (!nl) return cc_xstrdup("");
        pos = (size_t)(nl - buf) + 1;
    }
    const char *nl = memchr(buf + pos, '\n', len - pos);
    size_t n = nl ? (size_t)(nl - (buf + pos)) : len - pos;
    while (n > 0 && (buf[pos + n - 1] == '\r' || isspace((unsigned char)buf[pos + n - 1]))) n--;
    while (n > 0 && isspace((unsigned char)buf[pos])) pos++, n--;
    return s_strndup(buf + pos, n);
}

int config_load_file(config_t *cfg, const char *path, cc_err_t *err) {
    if (!cfg || !path) return cc_err_set(err, CC_ERR_ARG, "config_load_file: no config or path");
    char *buf = NULL;
    size_t len = 0;
    int rc = s_read_file(path, &buf, &len, err);
    if (rc) return rc;

    s_load_t L = {.cfg = cfg, .path = path, .buf = buf, .len = len};
    char *dir = NULL;

    /* Size libinih's line buffer to the longest line (CONFIG-3); refuse NUL bytes, which
     * libinih would take for the end of a line. */
    size_t longest = 0, cur = 0, line = 1;
    for (size_t i = 0; i < len; i++) {
        if (buf[i] == '\0') {
            rc = cc_err_set(err, CC_ERR_FORMAT, "%s:%zu: NUL byte in config file (not a text file?)",
                            path, line);
            goto out;
        }
        if (buf[i] == '\n') {
            line++;
            cur = 0;
        } else if (++cur > longest) {
            longest = cur;
        }
    }
    if (longest > (size_t)INT_MAX - 8) {
        rc = cc_err_set(err, CC_ERR_FORMAT, "%s: a line is longer than %d bytes", path, INT_MAX - 8);
        goto out;
    }

    /* libinih's dialect is set through process globals (Debian's build): save and restore. */
    bool saved_stack = ini_use_stack, saved_realloc = ini_allow_realloc;
    bool saved_multi = ini_allow_multiline, saved_inline = ini_allow_inline_comments;
    bool saved_novalue = ini_allow_no_value, saved_stop = ini_stop_on_first_error;
    int saved_max = ini_max_line, saved_init = ini_initial_alloc;
    ini_use_stack = false;
    ini_allow_realloc = false;
    ini_initial_alloc = ini_max_line = (int)longest + 3; /* + '\r' '\n' NUL, as inih asks */
    if (ini_max_line < 200) ini_initial_alloc = ini_max_line = 200;
    ini_allow_multiline = false; /* an indented "k = v" is an ordinary line, not a continuation */
    ini_allow_inline_comments = true;
    ini_allow_no_value = false;
    ini_stop_on_first_error = false;
    int ir = ini_parse_stream(s_reader, &L, s_handler, &L);
    ini_use_stack = saved_stack;
    ini_allow_realloc = saved_realloc;
    ini_allow_multiline = saved_multi;
    ini_allow_inline_comments = saved_inline;
    ini_allow_no_value = saved_novalue;
    ini_stop_on_first_error = saved_stop;
    ini_max_line = saved_max;
    ini_initial_alloc = saved_init;

    if (ir == -2) {
        rc = cc_err_set(err, CC_ERR_NOMEM, "%s: out of memory while parsing", path);
        goto out;
    }
    if (ir < 0) {
        rc = cc_err_set(err, CC_ERR_IO, "%s: cannot parse (libinih error %d)", path, ir);
        goto out;
    }
    if (L.err_line && (ir == 0 || L.err_line <= (size_t)ir)) {
        rc = cc_err_set(err, CC_ERR_FORMAT, "%s", L.err_msg);
        goto out;
    }
    if (ir > 0) {
        char *text = s_line_text(buf, len, (size_t)ir);
        s_show_t shown = s_show(text);
        rc = cc_err_set(err, CC_ERR_FORMAT,
                        "%s:%d: syntax error: expected \"[section]\" or \"key = value\", got \"%s\"",
                        path, ir, shown.s);
        free(text);
        goto out;
    }

    /* Everything parsed: apply in file order, so the last duplicate wins (CONFIG-2). */
    dir = s_dirname(path);
    for (size_t i = 0; i < L.npend; i++) {
        s_entry_t *e = L.pend[i].e;
        s_entry_clear_value(e);
        e->value = L.pend[i].value;
        L.pend[i].value = NULL;
        e->origin = s_fmt("%s:%zu", path, L.pend[i].line);
        e->base_dir = cc_xstrdup(dir);
        e->kind = S_FROM_FILE;
    }
    rc = 0;
out:
    for (size_t i = 0; i < L.npend; i++) free(L.pend[i].value);
    free(L.pend);
    free(L.err_msg);
    free(dir);
    free(buf);
    return rc;
}

/* ---- command line ---- */

int config_set(config_t *cfg, const char *section_key, const char *value, const char *origin,
               cc_err_t *err) {
    if (!origin || !origin[0]) origin = "--set";
    if (!cfg || !section_key || !value)
        return cc_err_set(err, CC_ERR_ARG, "%s: missing key or value", origin);
    s_entry_t *e = s_find(cfg, section_key);
    if (!e) {
        const char *dot = strchr(section_key, '.');
        if (!dot || dot == section_key || !dot[1])
            return cc_err_set(err, CC_ERR_ARG, "%s: \"%s\" is not of the form section.key", origin,
                              section_key);
        char *section = s_strndup(section_key, (size_t)(dot - section_key));
        char *hint = s_section_known(cfg, section) ? s_key_hint(cfg, section, dot + 1)
                                                   : s_section_hint(cfg, section);
        int rc = s_section_known(cfg, section)
                     ? cc_err_set(err, CC_ERR_ARG, "%s: [%s] unknown key \"%s\"%s", origin, section,
                                  dot + 1, hint)
                     : cc_err_set(err, CC_ERR_ARG, "%s: unknown section [%s]%s", origin, section,
                                  hint);
        free(hint);
        free(section);
        return rc;
    }
    char *v = cc_xstrdup(value), *o = cc_xstrdup(origin);
    s_entry_clear_value(e);
    e->value = v;
    e->origin = o;
    e->kind = S_FROM_FLAG;
    return 0;
}

int config_set_assignment(config_t *cfg, const char *assignment, cc_err_t *err) {
    if (!assignment) return cc_err_set(err, CC_ERR_ARG, "--set: missing section.key=value");
    const char *eq = strchr(assignment, '=');
    if (!eq) {
        s_show_t shown = s_show(assignment);
        return cc_err_set(err, CC_ERR_ARG, "--set: expected section.key=value, got \"%s\"", shown.s);
    }
    /* The key may be written with spaces around it ("a.b = c" in one shell word). */
    const char *k0 = assignment, *k1 = eq;
    while (k0 < k1 && isspace((unsigned char)*k0)) k0++;
    while (k1 > k0 && isspace((unsigned char)k1[-1])) k1--;
    char *key = s_strndup(k0, (size_t)(k1 - k0));
    char *origin = s_fmt("--set %s", key);
    int rc = config_set(cfg, key, eq + 1, origin, err);
    free(origin);
    free(key);
    return rc;
}

/* ---- daemon command lines ---- */

int config_load_from_args(config_t *cfg, int argc, char *const argv[], const struct option *opts, cc_err_t *err) {
    int ch, rc = 0, saved_opterr = opterr;
    /* getopt_long rather than a scan for "--config", so that this pass reads argv exactly as
     * pass 2 will ("--config=F", "-cF", a value that looks like a flag, "--"). Silent: pass 2
     * reports a bad option, once. */
    opterr = 0;
    while ((ch = getopt_long(argc, argv, CONFIG_SHORTOPTS, opts, NULL)) != -1 && rc == 0)
        if (ch == 'c') rc = config_load_file(cfg, optarg, err);
    opterr = saved_opterr;
    optind = 0; /* glibc: full re-initialisation, so pass 2 starts from argv[1] */
    return rc;
}

int config_args_finish(const char *prog, int rc, const cc_err_t *err, int argc, char *const argv[]) {
    if (rc) {
        fprintf(stderr, "%s: %s\n", prog, err->msg);
        return 2;
    }
    if (optind < argc) {
        fprintf(stderr, "%s: unexpected argument \"%s\" (see --help)\n", prog, argv[optind]);
        return 2;
    }
    return -1;
}

/* ---- getters ---- */

const char *config_get(const config_t *cfg, const char *section_key) {
    const s_entry_t *e = s_find(cfg, section_key);
    if (!e) return NULL;
    return e->value ? e->value : e->def;
}

const char *config_origin(const config_t *cfg, const char *section_key) {
    const s_entry_t *e = s_find(cfg, section_key);
    if (!e) return NULL;
    return e->origin ? e->origin : "default";
}

int config_is_set(const config_t *cfg, const char *section_key) {
    const s_entry_t *e = s_find(cfg, section_key);
    return e && e->value != NULL;
}

/* Fills err with "<where>: expected <what>, got "<value>"", where <where> is
 *   path:line: [section] key      (value from a file)
 *   --flag                        (value from the command line; "--set section.key" for --set)
 *   [section] key (default)       (a bad built-in default: a program bug, reported all the same) */
static int s_bad(const s_entry_t *e, const char *value, cc_err_t *err, const char *what) {
    s_show_t shown = s_show(value);
    switch (e->kind) {
    case S_FROM_FILE:
        return cc_err_set(err, CC_ERR_ARG, "%s: [%s] %s: expected %s, got \"%s\"", e->origin,
                          e->section, e->key, what, shown.s);
    case S_FROM_FLAG:
        return cc_err_set(err, CC_ERR_ARG, "%s: expected %s, got \"%s\"", e->origin, what, shown.s);
    default:
        return cc_err_set(err, CC_ERR_ARG, "[%s] %s (default): expected %s, got \"%s\"", e->section,
                          e->key, what, shown.s);
    }
}

/* Looks up key and its effective value; errors for undeclared keys and missing values. */
static int s_lookup(const config_t *cfg, const char *key, const s_entry_t **pe, const char **pv,
                    cc_err_t *err) {
    const s_entry_t *e = s_find(cfg, key);
    if (!e) return cc_err_set(err, CC_ERR_ARG, "config: key \"%s\" is not declared", key ? key : "(null)");
    const char *v = e->value ? e->value : e->def;
    if (!v)
        return cc_err_set(err, CC_ERR_ARG,
                          "[%s] %s: no value (set it in the config file or with --set %s=...)",
                          e->section, e->key, e->full);
    *pe = e;
    *pv = v;
    return 0;
}

int config_get_str(const config_t *cfg, const char *key, const char **out, cc_err_t *err) {
    const s_entry_t *e;
    const char *v;
    int rc = s_lookup(cfg, key, &e, &v, err);
    if (rc) return rc;
    *out = v;
    return 0;
}

int config_get_int(const config_t *cfg, const char *key, long lo, long hi, long *out, cc_err_t *err) {
    const s_entry_t *e;
    const char *v;
    int rc = s_lookup(cfg, key, &e, &v, err);
    if (rc) return rc;
    char what[96];
    if (lo == LONG_MIN && hi == LONG_MAX) snprintf(what, sizeof what, "an integer");
    else if (hi == LONG_MAX) snprintf(what, sizeof what, "an integer >= %ld", lo);
    else if (lo == LONG_MIN) snprintf(what, sizeof what, "an integer <= %ld", hi);
    else snprintf(what, sizeof what, "an integer in [%ld, %ld]", lo, hi);
    /* Strict: optional sign and decimal digits only (no spaces, no "10k", no octal). */
    const char *p = v + (*v == '+' || *v == '-');
    if (!isdigit((unsigned char)*p)) return s_bad(e, v, err, what);
    errno = 0;
    char *end;
    long x = strtol(v, &end, 10);
    if (*end != '\0' || errno == ERANGE || x < lo || x > hi) return s_bad(e, v, err, what);
    *out = x;
    return 0;
}

int config_get_u64(const config_t *cfg, const char *key, uint64_t *out, cc_err_t *err) {
    const s_entry_t *e;
    const char *v;
    int rc = s_lookup(cfg, key, &e, &v, err);
    if (rc) return rc;
    const char *what = "an unsigned 64-bit integer (decimal or 0x hex)";
    int hex = v[0] == '0' && (v[1] == 'x' || v[1] == 'X');
    const char *digits = hex ? v + 2 : v;
    if (!(hex ? isxdigit((unsigned char)*digits) : isdigit((unsigned char)*digits)))
        return s_bad(e, v, err, what);
    errno = 0;
    char *end;
    unsigned long long x = strtoull(digits, &end, hex ? 16 : 10);
    if (*end != '\0' || errno == ERANGE) return s_bad(e, v, err, what);
    *out = (uint64_t)x;
    return 0;
}

int config_get_double(const config_t *cfg, const char *key, double lo, double hi, double *out,
                      cc_err_t *err) {
    const s_entry_t *e;
    const char *v;
    int rc = s_lookup(cfg, key, &e, &v, err);
    if (rc) return rc;
    char what[128];
    int has_lo = isfinite(lo) && lo > -DBL_MAX, has_hi = isfinite(hi) && hi < DBL_MAX;
    if (has_lo && has_hi) snprintf(what, sizeof what, "a number in [%g, %g]", lo, hi);
    else if (has_lo) snprintf(what, sizeof what, "a number >= %g", lo);
    else if (has_hi) snprintf(what, sizeof what, "a number <= %g", hi);
    else snprintf(what, sizeof what, "a finite number");
    if (!*v || isspace((unsigned char)*v)) return s_bad(e, v, err, what);
    errno = 0;
    char *end;
    double x = strtod(v, &end);
    if (*end != '\0' || !isfinite(x) || (errno == ERANGE && fabs(x) > 1.0) || x < lo || x > hi)
        return s_bad(e, v, err, what);
    *out = x;
    return 0;
}

int config_get_bool(const config_t *cfg, const char *key, int *out, cc_err_t *err) {
    const s_entry_t *e;
    const char *v;
    int rc = s_lookup(cfg, key, &e, &v, err);
    if (rc) return rc;
    static const char *yes[] = {"true", "yes", "on", "1"}, *no[] = {"false", "no", "off", "0"};
    for (size_t i = 0; i < 4; i++) {
        if (strcasecmp(v, yes[i]) == 0) return *out = 1, 0;
        if (strcasecmp(v, no[i]) == 0) return *out = 0, 0;
    }
    return s_bad(e, v, err, "a boolean (true/false, yes/no, on/off, 1/0)");
}

int config_get_choice(const config_t *cfg, const char *key, const char *choices, int *index,
                      cc_err_t *err) {
    const s_entry_t *e;
    const char *v;
    int rc = s_lookup(cfg, key, &e, &v, err);
    if (rc) return rc;
    size_t vlen = strlen(v);
    int i = 0;
    for (const char *p = choices;; i++) {
        const char *bar = strchr(p, '|');
        size_t n = bar ? (size_t)(bar - p) : strlen(p);
        if (n == vlen && memcmp(p, v, n) == 0) return *index = i, 0;
        if (!bar) break;
        p = bar + 1;
    }
    char *what = s_fmt("one of %s", choices);
    rc = s_bad(e, v, err, what);
    free(what);
    return rc;
}

char *config_get_path(const config_t *cfg, const char *key) {
    const s_entry_t *e = s_find(cfg, key);
    if (!e) return NULL;
    const char *v = e->value ? e->value : e->def;
    if (!v || !v[0]) return NULL;
    if (v[0] == '/' || e->kind != S_FROM_FILE || !e->base_dir || strcmp(e->base_dir, ".") == 0)
        return cc_xstrdup(v);
    size_t dl = strlen(e->base_dir);
    const char *sep = dl > 0 && e->base_dir[dl - 1] == '/' ? "" : "/";
    return s_fmt("%s%s%s", e->base_dir, sep, v);
}

/* ---- printing ---- */

/* Whether "key = v" read back by libinih gives exactly v. */
static int s_representable(const char *v) {
    size_t n = strlen(v);
    if (n == 0) return 1;
    if (isspace((unsigned char)v[0]) || isspace((unsigned char)v[n - 1]) || v[0] == ';') return 0;
    for (size_t i = 0; i < n; i++) {
        if (v[i] == '\n' || v[i] == '\r') return 0;
        if (v[i] == ';' && i > 0 && isspace((unsigned char)v[i - 1])) return 0;
    }
    return 1;
}

static void s_print_comment(FILE *f, const char *text) {
    const char *p = text;
    do {
        const char *nl = strchr(p, '\n');
        int n = nl ? (int)(nl - p) : (int)strlen(p);
        fprintf(f, "#%s%.*s\n", n ? " " : "", n, p);
        p = nl ? nl + 1 : NULL;
    } while (p && *p);
}

void config_print(const config_t *cfg, void *fp, int with_values) {
    FILE *f = fp;
    fprintf(f, "# Concord configuration: every known key with its meaning and default%s.\n"
               "# Lines starting with '#' or ';' are comments; a key given twice: the last wins.\n"
               "# Relative paths are relative to this file's directory.\n",
            with_values ? ", set to the values in effect" : "");
    for (size_t i = 0; i < cfg->n; i++) {
        int first = 1;
        for (size_t j = 0; j < i && first; j++) first = strcmp(cfg->v[j].section, cfg->v[i].section) != 0;
        if (!first) continue;
        fprintf(f, "\n[%s]\n", cfg->v[i].section);
        int n_in_section = 0;
        for (size_t j = i; j < cfg->n; j++) {
            const s_entry_t *e = &cfg->v[j];
            if (strcmp(e->section, cfg->v[i].section) != 0) continue;
            if (n_in_section++) fputc('\n', f);
            if (e->help[0]) s_print_comment(f, e->help);
            const char *v = with_values && e->value ? e->value : e->def;
            if (e->def) {
                if (s_representable(e->def)) fprintf(f, "# default: %s\n", e->def[0] ? e->def : "(empty)");
                else fprintf(f, "# default: \"%s\"\n", e->def);
            } else {
                fprintf(f, "# default: none\n");
            }
            if (with_values && e->value) fprintf(f, "# set at %s\n", e->origin);
            if (!v) fprintf(f, "# %s =\n", e->key);
            else if (s_representable(v)) fprintf(f, "%s =%s%s\n", e->key, v[0] ? " " : "", v);
            else fprintf(f, "# %s = \"%s\"  (not representable in INI: leading/trailing space, newline or \" ;\")\n", e->key, v);
        }
    }
}
