/*  zf_job_secrets.c — AES-256-GCM for job credentials at rest. */
#include "zf_job_secrets.h"
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#define S_PREFIX    "zs1:"
#define S_NONCE     12
#define S_TAG       16
#define S_PLAIN_MAX (1024 * 1024)

struct zf_job_secrets_s {
    uint8_t key[32];
    bool durable;
};

zf_job_secrets_t *zf_job_secrets_new (const char *cert_path, zf_error_t *err)
{
    zf_job_secrets_t *self = zf_calloc (1, sizeof *self);
    if (!cert_path || !*cert_path) {
        ZF_ASSERT (RAND_bytes (self->key, sizeof self->key) == 1);
        return self;
    }
    zcert_t *cert = zcert_load (cert_path);
    if (!cert) {
        zf_error_set (err, ZF_E_CONFIG, "cert", "%s: cannot read the certificate", cert_path);
        zf_free (self);
        return NULL;
    }
    //  The key: HMAC-SHA256 (CURVE secret key, label). A new label is a new key.
    static const char label[] = "zfly job secrets v1";
    unsigned int size = 0;
    ZF_ASSERT (HMAC (EVP_sha256 (), zcert_secret_key (cert), 32, (const uint8_t *) label,
                     sizeof label - 1, self->key, &size)
               && size == 32);
    zcert_destroy (&cert);
    self->durable = true;
    return self;
}

void zf_job_secrets_destroy (zf_job_secrets_t **self_p)
{
    ZF_ASSERT (self_p);
    if (*self_p) {
        explicit_bzero ((*self_p)->key, sizeof (*self_p)->key);
        zf_free (*self_p);
        *self_p = NULL;
    }
}

bool zf_job_secrets_durable (zf_job_secrets_t *self)
{
    return self->durable;
}

char *zf_job_secrets_seal (zf_job_secrets_t *self, const char *plain)
{
    size_t length = strlen (plain);
    ZF_ASSERT (length <= S_PLAIN_MAX);
    size_t raw_size = S_NONCE + length + S_TAG;
    uint8_t *raw = zf_malloc (raw_size);
    ZF_ASSERT (RAND_bytes (raw, S_NONCE) == 1);
    EVP_CIPHER_CTX *context = EVP_CIPHER_CTX_new ();
    int written = 0, final = 0;
    ZF_ASSERT (context && EVP_EncryptInit_ex (context, EVP_aes_256_gcm (), NULL, self->key, raw));
    ZF_ASSERT (EVP_EncryptUpdate (context, raw + S_NONCE, &written, (const uint8_t *) plain,
                                  (int) length));
    ZF_ASSERT (EVP_EncryptFinal_ex (context, raw + S_NONCE + written, &final));
    ZF_ASSERT ((size_t) (written + final) == length);
    ZF_ASSERT (EVP_CIPHER_CTX_ctrl (context, EVP_CTRL_GCM_GET_TAG, S_TAG, raw + S_NONCE + length));
    EVP_CIPHER_CTX_free (context);
    size_t prefix = strlen (S_PREFIX);
    char *sealed = zf_malloc (prefix + 4 * ((raw_size + 2) / 3) + 1);
    memcpy (sealed, S_PREFIX, prefix);
    EVP_EncodeBlock ((uint8_t *) sealed + prefix, raw, (int) raw_size);
    zf_free (raw);
    return sealed;
}

char *zf_job_secrets_open (zf_job_secrets_t *self, const char *sealed, zf_error_t *err)
{
    size_t prefix = strlen (S_PREFIX);
    size_t text_length = sealed ? strlen (sealed) : 0;
    if (text_length < prefix || strncmp (sealed, S_PREFIX, prefix) != 0
        || (text_length - prefix) % 4 != 0 || text_length - prefix > 2 * S_PLAIN_MAX) {
        zf_error_set (err, ZF_E_INVALID, "secrets", "not sealed job credentials");
        return NULL;
    }
    size_t encoded = text_length - prefix;
    uint8_t *raw = zf_malloc (encoded / 4 * 3 + 1);
    int decoded = EVP_DecodeBlock (raw, (const uint8_t *) sealed + prefix, (int) encoded);
    //  EVP_DecodeBlock counts the '=' padding as zero bytes: take them off.
    if (decoded >= 0 && encoded && sealed[text_length - 1] == '=')
        decoded -= sealed[text_length - 2] == '=' ? 2 : 1;
    if (decoded < S_NONCE + S_TAG) {
        zf_free (raw);
        zf_error_set (err, ZF_E_INVALID, "secrets", "sealed job credentials are cut short");
        return NULL;
    }
    size_t length = (size_t) decoded - S_NONCE - S_TAG;
    char *plain = zf_malloc (length + 1);
    EVP_CIPHER_CTX *context = EVP_CIPHER_CTX_new ();
    int written = 0, final = 0;
    ZF_ASSERT (context && EVP_DecryptInit_ex (context, EVP_aes_256_gcm (), NULL, self->key, raw));
    bool ok = EVP_DecryptUpdate (context, (uint8_t *) plain, &written, raw + S_NONCE, (int) length)
              && EVP_CIPHER_CTX_ctrl (context, EVP_CTRL_GCM_SET_TAG, S_TAG, raw + S_NONCE + length)
              && EVP_DecryptFinal_ex (context, (uint8_t *) plain + written, &final) == 1;
    EVP_CIPHER_CTX_free (context);
    zf_free (raw);
    if (!ok) {
        explicit_bzero (plain, length + 1);
        zf_free (plain);
        zf_error_set (err, ZF_E_REFUSED, "secrets",
                      "the job's credentials were sealed under another key (the manager's "
                      "keypair changed, or it has none and restarted)");
        return NULL;
    }
    plain[length] = '\0';
    return plain;
}

void zf_job_secrets_test (bool verbose)
{
    if (verbose)
        printf (" * zf_job_secrets: ");
    zf_error_t err;
    zf_job_secrets_t *secrets = zf_job_secrets_new (NULL, &err);
    ZF_ASSERT (secrets && !zf_job_secrets_durable (secrets));
    const char *plain = "{\"headers\":{\"Authorization\":\"Bearer abc\"},\"password\":\"p\"}";
    char *sealed = zf_job_secrets_seal (secrets, plain);
    ZF_ASSERT (strncmp (sealed, S_PREFIX, strlen (S_PREFIX)) == 0 && !strstr (sealed, "abc"));
    char *opened = zf_job_secrets_open (secrets, sealed, &err);
    ZF_ASSERT (opened && streq (opened, plain));
    zf_free (opened);
    for (size_t length = 0; length < 5; length++) { //  every padding case
        char text[8] = "abcd";
        text[length] = '\0';
        char *again = zf_job_secrets_seal (secrets, text);
        char *back = zf_job_secrets_open (secrets, again, &err);
        ZF_ASSERT (back && streq (back, text));
        zf_free (back);
        zf_free (again);
    }
    //  altered: refused
    char *altered = zf_strdup (sealed);
    altered[strlen (S_PREFIX) + 20] = altered[strlen (S_PREFIX) + 20] == 'A' ? 'B' : 'A';
    ZF_ASSERT (!zf_job_secrets_open (secrets, altered, &err) && err.code == ZF_E_REFUSED);
    zf_free (altered);
    //  another key: refused; not sealed: invalid
    zf_job_secrets_t *other = zf_job_secrets_new (NULL, &err);
    ZF_ASSERT (!zf_job_secrets_open (other, sealed, &err) && err.code == ZF_E_REFUSED);
    ZF_ASSERT (!zf_job_secrets_open (other, "plain", &err) && err.code == ZF_E_INVALID);
    ZF_ASSERT (!zf_job_secrets_open (other, "zs1:AAAA", &err) && err.code == ZF_E_INVALID);
    zf_job_secrets_destroy (&other);
    zf_free (sealed);

    //  from a certificate: the same key every time
    char dir[] = "/tmp/zf-secrets-XXXXXX";
    ZF_ASSERT (mkdtemp (dir));
    char *path = zf_asprintf ("%s/node.key", dir);
    zcert_t *cert = zcert_new ();
    ZF_ASSERT (zcert_save_secret (cert, path) == 0);
    zcert_destroy (&cert);
    zf_job_secrets_t *first = zf_job_secrets_new (path, &err);
    zf_job_secrets_t *second = zf_job_secrets_new (path, &err);
    ZF_ASSERT (first && second && zf_job_secrets_durable (first));
    sealed = zf_job_secrets_seal (first, plain);
    opened = zf_job_secrets_open (second, sealed, &err);
    ZF_ASSERT (opened && streq (opened, plain));
    zf_free (opened);
    zf_free (sealed);
    zf_job_secrets_destroy (&first);
    zf_job_secrets_destroy (&second);
    ZF_ASSERT (!zf_job_secrets_new ("/nonexistent/x.key", &err) && err.code == ZF_E_CONFIG);
    unlink (path);
    rmdir (dir);
    zf_free (path);
    zf_job_secrets_destroy (&secrets);
    if (verbose)
        printf ("OK\n");
}
