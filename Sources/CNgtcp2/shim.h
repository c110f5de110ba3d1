#ifndef GUTS_CNGTCP2_SHIM_H
#define GUTS_CNGTCP2_SHIM_H
// ngtcp2 (QUIC) with its GnuTLS crypto backend, and the GnuTLS calls the QUIC
// transport needs. ngtcp2's public entry points are macros around *_versioned
// functions, which Swift cannot import: the inline wrappers below name them.
#include <sys/socket.h>
#include <netinet/in.h>
#include <ngtcp2/ngtcp2.h>
#include <ngtcp2/ngtcp2_crypto.h>
#include <ngtcp2/ngtcp2_crypto_gnutls.h>
#include <gnutls/gnutls.h>
#include <gnutls/abstract.h>
#include <gnutls/x509.h>

static inline void guts_ngtcp2_settings_default(ngtcp2_settings *settings) {
    ngtcp2_settings_default(settings);
}

static inline void guts_ngtcp2_transport_params_default(ngtcp2_transport_params *params) {
    ngtcp2_transport_params_default(params);
}

static inline int guts_ngtcp2_conn_client_new(ngtcp2_conn **pconn, const ngtcp2_cid *dcid, const ngtcp2_cid *scid,
                                              const ngtcp2_path *path, uint32_t version,
                                              const ngtcp2_callbacks *callbacks, const ngtcp2_settings *settings,
                                              const ngtcp2_transport_params *params, void *user_data) {
    return ngtcp2_conn_client_new(pconn, dcid, scid, path, version, callbacks, settings, params, NULL, user_data);
}

static inline int guts_ngtcp2_conn_server_new(ngtcp2_conn **pconn, const ngtcp2_cid *dcid, const ngtcp2_cid *scid,
                                              const ngtcp2_path *path, uint32_t version,
                                              const ngtcp2_callbacks *callbacks, const ngtcp2_settings *settings,
                                              const ngtcp2_transport_params *params, void *user_data) {
    return ngtcp2_conn_server_new(pconn, dcid, scid, path, version, callbacks, settings, params, NULL, user_data);
}

static inline int guts_ngtcp2_conn_read_pkt(ngtcp2_conn *conn, const ngtcp2_path *path,
                                            const uint8_t *pkt, size_t pktlen, ngtcp2_tstamp ts) {
    ngtcp2_pkt_info pi = {0};
    return ngtcp2_conn_read_pkt(conn, path, &pi, pkt, pktlen, ts);
}

static inline ngtcp2_ssize guts_ngtcp2_conn_writev_stream(ngtcp2_conn *conn, ngtcp2_path *path, uint8_t *dest,
                                                          size_t destlen, ngtcp2_ssize *pdatalen, uint32_t flags,
                                                          int64_t stream_id, const ngtcp2_vec *datav,
                                                          size_t datavcnt, ngtcp2_tstamp ts) {
    ngtcp2_pkt_info pi;
    return ngtcp2_conn_writev_stream(conn, path, &pi, dest, destlen, pdatalen, flags, stream_id, datav, datavcnt, ts);
}

static inline ngtcp2_ssize guts_ngtcp2_conn_write_connection_close(ngtcp2_conn *conn, ngtcp2_path *path,
                                                                   uint8_t *dest, size_t destlen,
                                                                   const ngtcp2_connection_close_error *ccerr,
                                                                   ngtcp2_tstamp ts) {
    ngtcp2_pkt_info pi;
    return ngtcp2_conn_write_connection_close(conn, path, &pi, dest, destlen, ccerr, ts);
}

static inline void guts_ngtcp2_conn_get_conn_stat(ngtcp2_conn *conn, ngtcp2_conn_stat *stat) {
    ngtcp2_conn_get_conn_stat(conn, stat);
}

#endif
