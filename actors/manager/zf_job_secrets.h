/*  zf_job_secrets.h — a job's credentials, sealed while they rest in the database.

    A preheat job carries what the registry needs (an Authorization header from Harbor, a
    username and password from zfly-preheat). The manager keeps them only as long as the job
    needs them (zf_jobs_store.c clears them when the job ends) and only sealed: AES-256-GCM
    under a key derived (HMAC-SHA256) from the manager's CURVE secret key, so a copy of the
    database alone, a backup or a MariaDB replica, reveals nothing. A manager restarted with
    the same keypair opens them again and a job interrupted by the restart runs to the end.
    Without a keypair ([bus] cert unset) the key is random per process: sealed credentials of a
    job do not survive a restart, and the job fails saying so.

    Sealed text: "zs1:" + base64 (nonce[12] | ciphertext | tag[16]). */
#ifndef ZF_JOB_SECRETS_H_INCLUDED
#define ZF_JOB_SECRETS_H_INCLUDED

#include "zf_error.h"

typedef struct zf_job_secrets_s zf_job_secrets_t;

//  cert_path: the node's secret certificate (zfly keygen), NULL or "": a random key.
zf_job_secrets_t *zf_job_secrets_new (const char *cert_path, zf_error_t *err);
void zf_job_secrets_destroy (zf_job_secrets_t **self_p);
//  True when the key came from a certificate (it survives restarts).
bool zf_job_secrets_durable (zf_job_secrets_t *self);

//  Seals plain text (caller frees).
char *zf_job_secrets_seal (zf_job_secrets_t *self, const char *plain);
//  Opens sealed text (caller frees, and should wipe it), or NULL with err: ZF_E_INVALID for
//  text that is not sealed, ZF_E_REFUSED when it was sealed under another key or altered.
char *zf_job_secrets_open (zf_job_secrets_t *self, const char *sealed, zf_error_t *err);

void zf_job_secrets_test (bool verbose);

#endif
