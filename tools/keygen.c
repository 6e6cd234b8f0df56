/* concord-keygen — create or inspect a node identity (DESIGN §3).
 *
 *   concord-keygen --id hospital-a --out /etc/concord     writes hospital-a.key (0600) and
 *                                                         hospital-a.pub; stdout: the
 *                                                         enrolment line and the CURVE key
 *   concord-keygen --show /etc/concord/hospital-a.key     id, public key, CURVE public key
 *
 * The stdout of a generation is itself a valid enrolment snippet (the CURVE key is on a
 * '#' comment line), so `concord-keygen --id X >> enrolled.txt` works.
 * Exit status: 0 success, 1 file or key error, 2 usage error. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "identity.h"

static void s_usage(FILE *fp) {
    fprintf(fp,
        "Usage: concord-keygen --id ID [--out DIR] [--force]\n"
        "       concord-keygen --show FILE.key|FILE.pub\n"
        "Create a Concord node identity (Ed25519; the ZeroMQ CURVE keys derive from it).\n\n"
        "  --id ID        node id: 1..64 characters of [A-Za-z0-9._-]\n"
        "  --out DIR      directory for ID.key (mode 0600) and ID.pub (default: .;\n"
        "                 created with mode 0700 if missing)\n"
        "  --force        replace an existing ID.key\n"
        "  --show FILE    print the id, public key and CURVE public key of a key file\n"
        "  --help, --version\n\n"
        "On creation stdout holds the enrolment line \"ID PUBLIC_HEX\" for the coordinator's\n"
        "enrolment file, then \"# curve-public: Z85\", the key clients pin as the server key\n"
        "when this identity is the coordinator's.\n");
}

static int s_show(const char *path) {
    cc_err_t err = {0};
    char hex[65];
    size_t n = strlen(path);
    if (n >= 4 && strcmp(path + n - 4, ".pub") == 0) {
        identity_public_t pub;
        if (identity_load_public(&pub, path, &err) != 0) {
            fprintf(stderr, "concord-keygen: %s\n", err.msg);
            return 1;
        }
        identity_public_hex(hex, pub.pk);
        printf("id: %s\npublic: %s\ncurve-public: %s\n", pub.id, hex, pub.curve_public);
        return 0;
    }
    identity_t ident;
    if (identity_load(&ident, path, &err) != 0) {
        fprintf(stderr, "concord-keygen: %s\n", err.msg);
        return 1;
    }
    identity_public_hex(hex, ident.pk);
    printf("id: %s\npublic: %s\ncurve-public: %s\n", ident.id, hex, ident.curve_public);
    identity_clear(&ident);
    return 0;
}

static int s_generate(const char *id, const char *dir, int force) {
    cc_err_t err = {0};
    identity_t ident;
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        fprintf(stderr, "concord-keygen: %s: cannot create directory: %s\n", dir, strerror(errno));
        return 1;
    }
    if (identity_generate(&ident, id, &err) != 0) {
        fprintf(stderr, "concord-keygen: %s\n", err.msg);
        return 2; /* the only way to fail here is an invalid id */
    }
    int rc = identity_save(&ident, dir, force, &err);
    if (rc != 0) {
        identity_clear(&ident);
        fprintf(stderr, "concord-keygen: %s\n", err.msg);
        return 1;
    }
    char hex[65];
    identity_public_hex(hex, ident.pk);
    printf("%s %s\n# curve-public: %s\n", ident.id, hex, ident.curve_public);
    fprintf(stderr, "concord-keygen: wrote %s/%s.key (mode 0600) and %s/%s.pub\n", dir, ident.id,
            dir, ident.id);
    identity_clear(&ident);
    return fflush(stdout) == 0 ? 0 : 1;
}

int main(int argc, char **argv) {
    enum { OPT_FORCE = 256, OPT_HELP, OPT_VERSION };
    static const struct option longopts[] = {
        {"id", required_argument, 0, 'i'},     {"out", required_argument, 0, 'o'},
        {"show", required_argument, 0, 's'},   {"force", no_argument, 0, OPT_FORCE},
        {"help", no_argument, 0, OPT_HELP},    {"version", no_argument, 0, OPT_VERSION},
        {0, 0, 0, 0}};
    const char *id = NULL, *out = ".", *show = NULL;
    int force = 0, c;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "i:o:s:", longopts, NULL)) != -1) {
        switch (c) {
        case 'i': id = optarg; break;
        case 'o': out = optarg; break;
        case 's': show = optarg; break;
        case OPT_FORCE: force = 1; break;
        case OPT_HELP: s_usage(stdout); return 0;
        case OPT_VERSION: printf("concord-keygen %s\n", CONCORD_VERSION); return 0;
        default:
            fprintf(stderr, "concord-keygen: unknown option or missing value: %s\n",
                    argv[optind - 1]);
            s_usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "concord-keygen: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    if (show && id) {
        fprintf(stderr, "concord-keygen: --show and --id exclude each other\n");
        return 2;
    }
    if (show) return s_show(show);
    if (!id) {
        fprintf(stderr, "concord-keygen: --id or --show is required\n");
        s_usage(stderr);
        return 2;
    }
    if (!wire_id_valid(id)) {
        fprintf(stderr, "concord-keygen: invalid id '%s' (1..%d characters of [A-Za-z0-9._-])\n",
                id, WIRE_MAX_ID);
        return 2;
    }
    return s_generate(id, out, force);
}
