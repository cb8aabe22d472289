/*
 * tls.c - GnuTLS side of the transport: our certificate, TLS 1.3-only
 * sessions wired to ngtcp2_crypto, mandatory ALPN, and the pinning hook
 * (no CA: the peer's SPKI SHA-256 is judged by quic.c).
 */
#include "transport/transport_int.h"

#include "util/log.h"

#include <ngtcp2/ngtcp2_crypto_gnutls.h>
#include <string.h>

#define MOD "transport"

/* quic-notes.md §4: TLS 1.3 only, AES-GCM before ChaCha20 (3x cheaper with AES-NI). */
static const char PRIORITY[] =
    "NORMAL:-VERS-ALL:+VERS-TLS1.3:-CIPHER-ALL:+AES-128-GCM:+AES-256-GCM:"
    "+CHACHA20-POLY1305:-GROUP-ALL:+GROUP-X25519:+GROUP-SECP256R1:"
    "%DISABLE_TLS13_COMPAT_MODE";

/*
 * Runs inside the handshake on both sides, instead of any chain validation:
 * there is no CA, the key is the identity. Returning non-zero aborts the
 * handshake with a TLS alert before anything the peer sends is processed.
 */
static int verify_peer(gnutls_session_t s)
{
    ngtcp2_crypto_conn_ref *ref = gnutls_session_get_ptr(s);
    unsigned int n = 0;
    const gnutls_datum_t *certs = gnutls_certificate_get_peers(s, &n);
    struct lr_device_id id;

    if (!ref || !certs || n == 0) {
        lr_debug(MOD, "handshake: peer sent no certificate");
        return GNUTLS_E_CERTIFICATE_ERROR;
    }
    if (lr_device_id_from_cert_der(certs[0].data, certs[0].size, &id) < 0) {
        lr_debug(MOD, "handshake: unparsable peer certificate");
        return GNUTLS_E_CERTIFICATE_ERROR;
    }
    return lr__conn_peer_cert(ref->user_data, &id, lr__tls_alpn(s)) ? 0
                                                                    : GNUTLS_E_CERTIFICATE_ERROR;
}

int lr__tls_init(struct lr__tls *tls, const char *cert_path, const char *key_path,
                 struct lr_err *err)
{
    gnutls_datum_t der = {NULL, 0};
    const char *epos = NULL;
    int rc;

    memset(tls, 0, sizeof(*tls));
    if (!cert_path || !key_path)
        return lr_err_set(err, LR_EUSAGE, "transport: certificate and key paths are required");
    if (gnutls_certificate_allocate_credentials(&tls->cred) < 0)
        return lr_err_set(err, LR_ETLS, "transport: allocate credentials");
    rc = gnutls_certificate_set_x509_key_file(tls->cred, cert_path, key_path, GNUTLS_X509_FMT_PEM);
    if (rc < 0) {
        rc = lr_err_set(err, LR_ETLS, "load %s / %s: %s", cert_path, key_path, gnutls_strerror(rc));
        goto fail;
    }
    rc = gnutls_certificate_get_crt_raw(tls->cred, 0, 0, &der);
    if (rc < 0 || lr_device_id_from_cert_der(der.data, der.size, &tls->id) < 0) {
        rc = lr_err_set(err, LR_ETLS, "%s: cannot compute device ID", cert_path);
        goto fail;
    }
    gnutls_certificate_set_verify_function(tls->cred, verify_peer);
    rc = gnutls_priority_init(&tls->prio, PRIORITY, &epos);
    if (rc < 0) {
        rc = lr_err_set(err, LR_ETLS, "priority string at '%s': %s", epos ? epos : "?",
                        gnutls_strerror(rc));
        goto fail;
    }
    return 0;
fail:
    lr__tls_release(tls);
    return rc;
}

void lr__tls_release(struct lr__tls *tls)
{
    if (tls->prio)
        gnutls_priority_deinit(tls->prio);
    if (tls->cred)
        gnutls_certificate_free_credentials(tls->cred);
    tls->prio = NULL;
    tls->cred = NULL;
}

int lr__tls_session_new(struct lr__tls *tls, bool server, bool pair, ngtcp2_crypto_conn_ref *ref,
                        gnutls_session_t *out)
{
    gnutls_session_t s = NULL;
    gnutls_datum_t alpn[2] = {
        {(unsigned char *)(uintptr_t)LR_PROTO_ALPN, (unsigned int)strlen(LR_PROTO_ALPN)},
        {(unsigned char *)(uintptr_t)LR_TRANSPORT_PAIR_ALPN,
         (unsigned int)strlen(LR_TRANSPORT_PAIR_ALPN)},
    };
    /* A pairing client offers only the pairing ALPN; a server adds it only while pairing is open.
     */
    const gnutls_datum_t *offer = alpn;
    unsigned noffer = 1;
    int rc;

    if (pair && server)
        noffer = 2;
    else if (pair)
        offer = &alpn[1];

    *out = NULL;
    rc = gnutls_init(&s, (server ? GNUTLS_SERVER : GNUTLS_CLIENT) | GNUTLS_NO_END_OF_EARLY_DATA);
    if (rc < 0)
        return LR_ETLS;
    rc = server ? ngtcp2_crypto_gnutls_configure_server_session(s)
                : ngtcp2_crypto_gnutls_configure_client_session(s);
    if (rc != 0)
        goto fail;
    if (gnutls_priority_set(s, tls->prio) < 0 ||
        gnutls_credentials_set(s, GNUTLS_CRD_CERTIFICATE, tls->cred) < 0 ||
        gnutls_alpn_set_protocols(s, offer, noffer, GNUTLS_ALPN_MANDATORY) < 0)
        goto fail;
    if (server)
        gnutls_certificate_server_set_request(s, GNUTLS_CERT_REQUIRE);
    gnutls_session_set_ptr(s, ref);
    *out = s;
    return 0;
fail:
    gnutls_deinit(s);
    return LR_ETLS;
}

int lr__tls_alpn(gnutls_session_t s)
{
    gnutls_datum_t p = {NULL, 0};
    if (gnutls_alpn_get_selected_protocol(s, &p) != 0)
        return 0;
    if (p.size == strlen(LR_PROTO_ALPN) && memcmp(p.data, LR_PROTO_ALPN, p.size) == 0)
        return 1;
    if (p.size == strlen(LR_TRANSPORT_PAIR_ALPN) &&
        memcmp(p.data, LR_TRANSPORT_PAIR_ALPN, p.size) == 0)
        return 2;
    return 0;
}
