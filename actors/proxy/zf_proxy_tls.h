/*  zf_proxy_tls.h — TLS interception: leaf certificates signed by the configured CA.

    One leaf key (EC P-256) is generated at start; a certificate per host name is made on
    first use (subjectAltName DNS or IP, as Go requires; valid from an hour ago for a year,
    never past the CA) and kept in a bounded cache. The server context offers no ALPN, so
    clients stay on HTTP/1.1. The name is the SNI a client sends, else the CONNECT host. */
#ifndef ZF_PROXY_TLS_H_INCLUDED
#define ZF_PROXY_TLS_H_INCLUDED

#include "zf_error.h"
#include <openssl/ssl.h>

typedef struct zf_proxy_tls_s zf_proxy_tls_t;

//  Loads the CA certificate and key (PEM files); NULL with err when they do not load or match.
zf_proxy_tls_t *zf_proxy_tls_new (const char *ca_cert_path, const char *ca_key_path,
                                  zf_error_t *err);
void zf_proxy_tls_destroy (zf_proxy_tls_t **self_p);

//  A server SSL object (memory BIOs attached by the caller) for host; NULL on failure.
SSL *zf_proxy_tls_server (zf_proxy_tls_t *self, const char *host);

//  Certificates made so far (for logs and tests).
size_t zf_proxy_tls_leaf_count (zf_proxy_tls_t *self);

void zf_proxy_tls_test (bool verbose);

#endif
