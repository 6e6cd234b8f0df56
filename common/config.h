/* config.h — INI configuration (libinih) with command-line overrides.
 *
 * A config is a set of "section.key" = value strings, each remembering where it came from
 * (file and line, or the command-line flag). Typed getters validate on use and report
 * errors naming that origin and the key, e.g.
 *   coordinator.ini:12: [federation] rounds: expected an integer >= 1, got "ten"
 * Unknown sections or keys are errors too (a typo must not be silently ignored): each
 * program declares the keys it knows with config_declare before loading.
 *
 * Rules: a key given twice (in one file, in two loaded files, or in a file and then by a
 * flag) — the last assignment wins, so flags applied after config_load_file override the
 * file. Comments start a line with ';' or '#', or follow whitespace with ';'. A failed
 * config_load_file leaves the config unchanged. Lines have no length limit. */
#ifndef CONCORD_CONFIG_H
#define CONCORD_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "util.h"

typedef struct config config_t;

config_t *config_new(void);
void config_destroy(config_t **cfg);

/* Declares a known key "section.key" with its default value (may be NULL: no default)
 * and a one-line description (for --help and docs). */
void config_declare(config_t *cfg, const char *section_key, const char *default_value,
                    const char *help);

/* A row of a program's key table, for config_declare_table. */
typedef struct {
    const char *key;  /* "section.key" */
    const char *def;  /* default or NULL */
    const char *help; /* one line */
} config_key_t;
/* config_declare for each of n rows, in order (the order config_print uses). */
void config_declare_table(config_t *cfg, const config_key_t *keys, size_t n);

/* Loads an INI file on top of the defaults. Errors: file unreadable, INI syntax error,
 * unknown section or key — each naming file and line. Not thread-safe: libinih's dialect
 * settings are process globals, set and restored around the parse (load at start-up). */
int config_load_file(config_t *cfg, const char *path, cc_err_t *err) CC_WUR;
/* Sets a value from the command line ("section.key=value" or with key and value apart);
 * origin names the flag for error messages, e.g. "--rounds". Unknown keys are errors. */
int config_set(config_t *cfg, const char *section_key, const char *value, const char *origin,
               cc_err_t *err) CC_WUR;
/* Parses "section.key=value" (the generic --set flag). */
int config_set_assignment(config_t *cfg, const char *assignment, cc_err_t *err) CC_WUR;

/* The daemons' command lines take two passes over argv with getopt_long: pass 1
 * (config_load_from_args) loads every --config FILE, so that pass 2's flags, --set among
 * them, override the files wherever they stand on the line; pass 2 is each daemon's own
 * switch, which skips 'c', and ends with config_args_finish. Both passes must read argv the
 * same way, so both use these short options: opts maps "config" to 'c' and "set" to 's'. */
#define CONFIG_SHORTOPTS "c:s:"
struct option; /* <getopt.h> */
/* Pass 1: loads each --config FILE in order and resets getopt (optind = 0) for pass 2.
 * Returns 0, or the error of the first file that failed (in err; later files are not loaded). */
int config_load_from_args(config_t *cfg, int argc, char *const argv[], const struct option *opts,
                          cc_err_t *err) CC_WUR;
/* The end of pass 2: with rc set (a config error, described in err), or a positional argument
 * left at optind, prints "prog: ..." to stderr and returns 2 (usage error); else returns -1
 * (carry on). */
int config_args_finish(const char *prog, int rc, const cc_err_t *err, int argc, char *const argv[]) CC_WUR;

/* Raw value or NULL if unset and without default. Owned by cfg: valid until the key is set
 * again or cfg is destroyed (the same holds for config_get_str's *out). */
const char *config_get(const config_t *cfg, const char *section_key);
/* Where the value in effect came from: "path:line", the flag (e.g. "--rounds",
 * "--set federation.rounds"), or "default"; NULL for an undeclared key. Owned by cfg. */
const char *config_origin(const config_t *cfg, const char *section_key);
/* 1 if the key was set by a file or a flag (not just its default), else 0. */
int config_is_set(const config_t *cfg, const char *section_key);
/* Typed getters: fill *out and return 0, or return CC_ERR_ARG with err naming origin, key,
 * what was expected and what was found. A missing value without default is an error. */
int config_get_str(const config_t *cfg, const char *key, const char **out, cc_err_t *err) CC_WUR;
int config_get_int(const config_t *cfg, const char *key, long lo, long hi, long *out, cc_err_t *err) CC_WUR;
int config_get_u64(const config_t *cfg, const char *key, uint64_t *out, cc_err_t *err) CC_WUR;
int config_get_double(const config_t *cfg, const char *key, double lo, double hi, double *out,
                      cc_err_t *err) CC_WUR;
int config_get_bool(const config_t *cfg, const char *key, int *out, cc_err_t *err) CC_WUR;
/* Value must be one of the '|'-separated choices, e.g. "none|local|federated"; *index is
 * its position. */
int config_get_choice(const config_t *cfg, const char *key, const char *choices, int *index,
                      cc_err_t *err) CC_WUR;
/* Paths in a config file are relative to the file's directory (as the file's path was given
 * to config_load_file): returns the value resolved that way (new string, caller frees), or
 * NULL if unset or empty. Values from flags and defaults stay relative to the working
 * directory; absolute paths are returned as they are. */
char *config_get_path(const config_t *cfg, const char *key);

/* Writes every declared key with its help text and default as an INI file to fp (used by
 * `--print-config` and to generate docs/configuration.md): sections in order of first
 * declaration, keys in declaration order. with_values = 1 writes the values in effect (and
 * where each came from, as a comment), 0 the defaults. Keys without a value are written
 * commented out, so loading the output gives back the same values. */
void config_print(const config_t *cfg, void *fp /* FILE * */, int with_values);

#endif
