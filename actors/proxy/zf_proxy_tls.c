/*  zf_proxy_tls.c — the interception CA and its leaf certificates. */
#include "zf_proxy_tls.h"
#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#define LEAF_CACHE_MAX 1024 //  host names; beyond, the cache starts again

struct zf_proxy_tls_s {
    X509 *ca_cert;
    EVP_PKEY *ca_key;
    EVP_PKEY *leaf_key;
    zhashx_t *contexts; //  host -> SSL_CTX *
    size_t made;
};

static void s_ctx_free (void **item_p)
{
    SSL_CTX_free (*item_p);
    *item_p = NULL;
}

zf_proxy_tls_t *zf_proxy_tls_new (const char *ca_cert_path, const char *ca_key_path,
                                  zf_error_t *err)
{
    FILE *file = fopen (ca_cert_path, "r");
    if (!file) {
        zf_error_set (err, ZF_E_CONFIG, "ca_cert", "cannot open %s: %s", ca_cert_path,
                      strerror (errno));
        return NULL;
    }
    X509 *cert = PEM_read_X509 (file, NULL, NULL, NULL);
    fclose (file);
    file = fopen (ca_key_path, "r");
    if (!file) {
        X509_free (cert);
        zf_error_set (err, ZF_E_CONFIG, "ca_key", "cannot open %s: %s", ca_key_path,
                      strerror (errno));
        return NULL;
    }
    EVP_PKEY *key = PEM_read_PrivateKey (file, NULL, NULL, NULL);
    fclose (file);
    if (!cert || !key || X509_check_private_key (cert, key) != 1) {
        X509_free (cert);
        EVP_PKEY_free (key);
        ERR_clear_error ();
        zf_error_set (err, ZF_E_CONFIG, "ca_cert",
                      "%s and %s are not a PEM certificate and its private key", ca_cert_path,
                      ca_key_path);
        return NULL;
    }
    zf_proxy_tls_t *self = zf_calloc (1, sizeof *self);
    self->ca_cert = cert;
    self->ca_key = key;
    self->leaf_key = EVP_EC_gen ("P-256");
    ZF_ASSERT (self->leaf_key);
    self->contexts = zhashx_new ();
    zhashx_set_destructor (self->contexts, s_ctx_free);
    return self;
}

void zf_proxy_tls_destroy (zf_proxy_tls_t **self_p)
{
    zf_proxy_tls_t *self = *self_p;
    if (!self)
        return;
    zhashx_destroy (&self->contexts);
    X509_free (self->ca_cert);
    EVP_PKEY_free (self->ca_key);
    EVP_PKEY_free (self->leaf_key);
    zf_free (self);
    *self_p = NULL;
}

static X509 *s_leaf (zf_proxy_tls_t *self, const char *host)
{
    X509 *cert = X509_new ();
    X509_set_version (cert, 2);
    unsigned char serial[16];
    RAND_bytes (serial, sizeof serial);
    serial[0] &= 0x7f;
    BIGNUM *number = BN_bin2bn (serial, sizeof serial, NULL);
    BN_to_ASN1_INTEGER (number, X509_get_serialNumber (cert));
    BN_free (number);
    X509_gmtime_adj (X509_getm_notBefore (cert), -3600);
    X509_gmtime_adj (X509_getm_notAfter (cert), 365L * 24 * 3600);
    if (ASN1_TIME_compare (X509_get0_notAfter (cert), X509_get0_notAfter (self->ca_cert)) > 0)
        X509_set1_notAfter (cert, X509_get0_notAfter (self->ca_cert));
    X509_NAME *name = X509_get_subject_name (cert);
    X509_NAME_add_entry_by_txt (name, "O", MBSTRING_ASC, (const unsigned char *) "zfly proxy", -1,
                                -1, 0);
    X509_NAME_add_entry_by_txt (name, "CN", MBSTRING_ASC, (const unsigned char *) host, -1, -1, 0);
    X509_set_issuer_name (cert, X509_get_subject_name (self->ca_cert));
    X509_set_pubkey (cert, self->leaf_key);
    unsigned char address[16];
    bool is_ip =
        inet_pton (AF_INET, host, address) == 1 || inet_pton (AF_INET6, host, address) == 1;
    char *san = zf_asprintf ("%s:%s", is_ip ? "IP" : "DNS", host);
    X509V3_CTX v3;
    X509V3_set_ctx (&v3, self->ca_cert, cert, NULL, NULL, 0);
    const char *extensions[][2] = {
        {"subjectAltName", san},
        {"basicConstraints", "critical,CA:FALSE"},
        {"keyUsage", "critical,digitalSignature,keyEncipherment"},
        {"extendedKeyUsage", "serverAuth"},
    };
    for (size_t index = 0; index < ZF_ARRAY_LEN (extensions); index++) {
        X509_EXTENSION *extension =
            X509V3_EXT_conf (NULL, &v3, extensions[index][0], extensions[index][1]);
        if (extension) {
            X509_add_ext (cert, extension, -1);
            X509_EXTENSION_free (extension);
        }
    }
    zf_free (san);
    if (!X509_sign (cert, self->ca_key, EVP_sha256 ())) {
        X509_free (cert);
        return NULL;
    }
    return cert;
}

static SSL_CTX *s_context (zf_proxy_tls_t *self, const char *host)
{
    SSL_CTX *ctx = zhashx_lookup (self->contexts, host);
    if (ctx)
        return ctx;
    X509 *cert = s_leaf (self, host);
    if (!cert)
        return NULL;
    ctx = SSL_CTX_new (TLS_server_method ());
    SSL_CTX_set_min_proto_version (ctx, TLS1_2_VERSION);
    SSL_CTX_use_certificate (ctx, cert);
    SSL_CTX_add1_chain_cert (ctx, self->ca_cert);
    SSL_CTX_use_PrivateKey (ctx, self->leaf_key);
    SSL_CTX_set_mode (ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    X509_free (cert);
    if (zhashx_size (self->contexts) >= LEAF_CACHE_MAX)
        zhashx_purge (self->contexts);
    zhashx_insert (self->contexts, host, ctx);
    self->made++;
    return ctx;
}

//  SNI: switch to the certificate of the name the client asked for.
static int s_servername (SSL *ssl, int *alert, void *arg)
{
    (void) alert;
    zf_proxy_tls_t *self = arg;
    const char *name = SSL_get_servername (ssl, TLSEXT_NAMETYPE_host_name);
    if (!name || !*name || strlen (name) > 253)
        return SSL_TLSEXT_ERR_OK;
    SSL_CTX *ctx = s_context (self, name);
    if (ctx && ctx != SSL_get_SSL_CTX (ssl))
        SSL_set_SSL_CTX (ssl, ctx);
    return SSL_TLSEXT_ERR_OK;
}

SSL *zf_proxy_tls_server (zf_proxy_tls_t *self, const char *host)
{
    SSL_CTX *ctx = s_context (self, host);
    if (!ctx)
        return NULL;
    SSL_CTX_set_tlsext_servername_callback (ctx, s_servername);
    SSL_CTX_set_tlsext_servername_arg (ctx, self);
    SSL *ssl = SSL_new (ctx);
    SSL_set_accept_state (ssl);
    return ssl;
}

size_t zf_proxy_tls_leaf_count (zf_proxy_tls_t *self)
{
    return self->made;
}

void zf_proxy_tls_test (bool verbose)
{
    if (verbose)
        printf (" * zf_proxy_tls: ");
    //  a throwaway CA in a temp dir
    char dir[] = "/tmp/zf-proxy-tls-XXXXXX";
    ZF_ASSERT (mkdtemp (dir));
    char *cert_path = zf_asprintf ("%s/ca.pem", dir), *key_path = zf_asprintf ("%s/ca.key", dir);
    EVP_PKEY *key = EVP_EC_gen ("P-256");
    X509 *ca = X509_new ();
    X509_set_version (ca, 2);
    ASN1_INTEGER_set (X509_get_serialNumber (ca), 1);
    X509_gmtime_adj (X509_getm_notBefore (ca), 0);
    X509_gmtime_adj (X509_getm_notAfter (ca), 3600);
    X509_NAME_add_entry_by_txt (X509_get_subject_name (ca), "CN", MBSTRING_ASC,
                                (const unsigned char *) "test CA", -1, -1, 0);
    X509_set_issuer_name (ca, X509_get_subject_name (ca));
    X509_set_pubkey (ca, key);
    X509_sign (ca, key, EVP_sha256 ());
    FILE *file = fopen (cert_path, "w");
    PEM_write_X509 (file, ca);
    fclose (file);
    file = fopen (key_path, "w");
    PEM_write_PrivateKey (file, key, NULL, NULL, 0, NULL, NULL);
    fclose (file);

    zf_error_t err;
    ZF_ASSERT (!zf_proxy_tls_new (cert_path, "/nonexistent", &err));
    zf_proxy_tls_t *tls = zf_proxy_tls_new (cert_path, key_path, &err);
    ZF_ASSERT (tls);
    SSL *ssl = zf_proxy_tls_server (tls, "registry.example");
    ZF_ASSERT (ssl);
    X509 *leaf = SSL_get_certificate (ssl);
    ZF_ASSERT (X509_check_host (leaf, "registry.example", 0, 0, NULL) == 1);
    ZF_ASSERT (X509_verify (leaf, key) == 1);
    SSL_free (ssl);
    ssl = zf_proxy_tls_server (tls, "registry.example"); //  cached
    SSL_free (ssl);
    ZF_ASSERT (zf_proxy_tls_leaf_count (tls) == 1);
    ssl = zf_proxy_tls_server (tls, "127.0.0.1");
    ZF_ASSERT (X509_check_ip_asc (SSL_get_certificate (ssl), "127.0.0.1", 0) == 1);
    SSL_free (ssl);
    zf_proxy_tls_destroy (&tls);
    X509_free (ca);
    EVP_PKEY_free (key);
    unlink (cert_path);
    unlink (key_path);
    rmdir (dir);
    zf_free (cert_path);
    zf_free (key_path);
    if (verbose)
        printf ("OK\n");
}
