/* identity.h — a node's Ed25519 identity, its key files, enrolment lists, and the CURVE
 * (X25519) keys ZeroMQ uses, derived from the identity so an enrolment is one public key.
 *
 * Files (text, one "key: value" per line, '#' comments allowed):
 *   NAME.key   (mode 0600)   concord-secret-key v1 / id: NAME / secret: <128 hex: libsodium's 64-byte sk>
 *   NAME.pub                 concord-public-key v1 / id: NAME / public: <64 hex>
 *   enrolment file           one "ID PUBLIC_HEX" per line ('#' comments, blank lines ok);
 *                            a malformed line is an error naming file and line.
 * Secrets are wiped (sodium_memzero) when an identity is destroyed. */
#ifndef CONCORD_IDENTITY_H
#define CONCORD_IDENTITY_H

#include <stddef.h>
#include <stdint.h>

#include "util.h"
#include "wire.h"

typedef struct {
    char id[WIRE_MAX_ID + 1];
    uint8_t pk[WIRE_PK_BYTES];        /* Ed25519 public */
    uint8_t sk[WIRE_SK_BYTES];        /* Ed25519 secret (libsodium layout: seed || pk) */
    char curve_public[41];            /* Z85 X25519 public, for ZMQ_CURVE_PUBLICKEY/SERVERKEY */
    char curve_secret[41];            /* Z85 X25519 secret, for ZMQ_CURVE_SECRETKEY */
} identity_t;

/* New random identity for id (must be wire_id_valid). */
int identity_generate(identity_t *ident, const char *id, cc_err_t *err) CC_WUR;
/* Writes DIR/ID.key (0600, atomically) and DIR/ID.pub. Refuses to overwrite an existing
 * .key unless force. */
int identity_save(const identity_t *ident, const char *dir, int force, cc_err_t *err) CC_WUR;
/* Loads a secret key file; refuses a file readable by group or others. */
int identity_load(identity_t *ident, const char *key_path, cc_err_t *err) CC_WUR;
/* Wipes the secret parts. */
void identity_clear(identity_t *ident);

/* A public key with its id (from a .pub file or an enrolment line). */
typedef struct {
    char id[WIRE_MAX_ID + 1];
    uint8_t pk[WIRE_PK_BYTES];
    char curve_public[41];            /* derived Z85 X25519 public key */
} identity_public_t;

int identity_load_public(identity_public_t *pub, const char *pub_path, cc_err_t *err) CC_WUR;
/* Hex (64 chars) of a public key into out (65 bytes). */
void identity_public_hex(char out[65], const uint8_t pk[WIRE_PK_BYTES]);

/* The enrolment list: who may connect and whose signatures count. */
typedef struct {
    size_t n;
    identity_public_t *keys;          /* (n), owned */
} enrolment_t;

/* Loads an enrolment file; duplicate ids or keys are errors. On failure *out is NULL. */
int enrolment_load(const char *path, enrolment_t **out, cc_err_t *err) CC_WUR;
void enrolment_destroy(enrolment_t **e);
/* Entry for id, or NULL. */
const identity_public_t *enrolment_find(const enrolment_t *e, const char *id);
/* Entry whose derived CURVE public key (Z85) is z85, or NULL (for the ZAP handler). */
const identity_public_t *enrolment_find_curve(const enrolment_t *e, const char *z85);
/* A wire_key_lookup_fn over an enrolment_t (ctx = the enrolment_t *). */
int enrolment_lookup(void *ctx, const char *sender_id, uint8_t pk[WIRE_PK_BYTES]);

#endif
