/**
 * The numbers of Python's `ssl` module this library uses: protocol sides,
 * verification modes, and the default handshake timeout.
 *
 * @module
 */

/** A context for the client end of connections (`ssl.PROTOCOL_TLS_CLIENT`). */
export const PROTOCOL_TLS_CLIENT = 16;
/** A context for the server end of connections (`ssl.PROTOCOL_TLS_SERVER`). */
export const PROTOCOL_TLS_SERVER = 17;
/** Do not ask for or check the peer's certificate. */
export const CERT_NONE = 0;
/** Check the peer's certificate if it sends one (servers: ask clients for one). */
export const CERT_OPTIONAL = 1;
/** The peer must send a certificate that verifies. */
export const CERT_REQUIRED = 2;
/** How long, in seconds, a dispatcher waits for a handshake by default. */
export const HANDSHAKE_TIMEOUT = 30;
