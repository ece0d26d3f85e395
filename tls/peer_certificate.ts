/**
 * The types of `SSLSocket.getpeercert()`'s dictionary, as Python's
 * `ssl.SSLSocket.getpeercert()` returns it (Python's tuples are arrays).
 *
 * @module
 */

/**
 * A distinguished name: its relative names in order, each a list of
 * `[attribute, value]` pairs, e.g.
 * `[[["countryName", "XX"]], [["commonName", "localhost"]]]`. Attribute
 * names are OpenSSL's long names.
 */
export type DistinguishedName = [attribute: string, value: string][][];

/**
 * A verified peer certificate, as Python's dictionary: every key is present
 * for a certificate that was verified; `{}` when the context does not
 * verify (`CERT_NONE`), as in Python.
 */
export type PeerCertificate = {
  /** Whom the certificate names. */
  subject?: DistinguishedName;
  /** Who signed it. */
  issuer?: DistinguishedName;
  /** The X.509 version (3 for almost every certificate). */
  version?: number;
  /** The serial number in upper-case hex. */
  serialNumber?: string;
  /** Start of validity, as `Jan  5 09:03:00 2027 GMT`. */
  notBefore?: string;
  /** End of validity, in the same form. */
  notAfter?: string;
  /** The subject alternative names, e.g. `[["DNS", "localhost"], ["IP Address", "127.0.0.1"]]`. */
  subjectAltName?: [type: string, value: unknown][];
  /** Python's dictionary may grow keys; they read as unknown. */
  [key: string]: unknown;
};
