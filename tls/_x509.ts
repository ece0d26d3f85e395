/**
 * Decodes a DER certificate into the dictionary Python's
 * `SSLSocket.getpeercert()` returns: `subject`, `issuer`, `version`,
 * `serialNumber`, `notBefore`, `notAfter`, `subjectAltName` (Python's tuples
 * are arrays). Attribute names are OpenSSL's long names (`commonName`),
 * looked up by OID in libcrypto. Internal.
 *
 * @module
 */

import { openssl } from "../ffi/openssl.ts";
import { readCString, toCString } from "../ffi/bytes.ts";
import type { DistinguishedName, PeerCertificate } from "./peer_certificate.ts";

interface Tlv {
  tag: number;
  /** Content start and end offsets in the buffer. */
  start: number;
  end: number;
}

function readTlv(der: Uint8Array, pos: number): Tlv {
  if (pos + 2 > der.length) throw new RangeError("truncated DER");
  const tag = der[pos];
  let len = der[pos + 1];
  let at = pos + 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    if (n === 0 || n > 4 || at + n > der.length) throw new RangeError("bad DER length");
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + der[at + i];
    at += n;
  }
  if (at + len > der.length) throw new RangeError("truncated DER");
  return { tag, start: at, end: at + len };
}

function children(der: Uint8Array, t: Tlv): Tlv[] {
  const out: Tlv[] = [];
  for (let p = t.start; p < t.end;) {
    const c = readTlv(der, p);
    out.push(c);
    p = c.end;
  }
  return out;
}

function oidText(der: Uint8Array, t: Tlv): string {
  const parts: number[] = [];
  let v = 0;
  for (let i = t.start; i < t.end; i++) {
    v = v * 128 + (der[i] & 0x7f);
    if ((der[i] & 0x80) === 0) {
      if (parts.length === 0) {
        const first = v < 80 ? Math.floor(v / 40) : 2;
        parts.push(first, v - first * 40);
      } else {
        parts.push(v);
      }
      v = 0;
    }
  }
  return parts.join(".");
}

const oidNames = new Map<string, string>();

function oidName(oid: string): string {
  let name = oidNames.get(oid);
  if (name === undefined) {
    const { crypto } = openssl();
    const nid = crypto.OBJ_txt2nid(toCString(oid));
    name = (nid !== 0 ? readCString(crypto.OBJ_nid2ln(nid)) : null) ?? oid;
    oidNames.set(oid, name);
  }
  return name;
}

const utf8 = new TextDecoder();
const latin1 = new TextDecoder("latin1");

function stringValue(der: Uint8Array, t: Tlv): string {
  const bytes = der.subarray(t.start, t.end);
  switch (t.tag) {
    case 0x1e: { // BMPString: UTF-16BE
      let s = "";
      for (let i = 0; i + 1 < bytes.length; i += 2) {
        s += String.fromCharCode((bytes[i] << 8) | bytes[i + 1]);
      }
      return s;
    }
    case 0x14: // TeletexString
    case 0x16: // IA5String
      return latin1.decode(bytes);
    default:
      return utf8.decode(bytes);
  }
}

/** A Name as Python shows it: an array of RDNs, each an array of `[name, value]`. */
function decodeName(der: Uint8Array, t: Tlv): DistinguishedName {
  return children(der, t).map((rdn) =>
    children(der, rdn).map((atv) => {
      const [oid, value] = children(der, atv);
      return [oidName(oidText(der, oid)), stringValue(der, value)] as [string, string];
    })
  );
}

const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

/** `Jan  5 09:03:00 2027 GMT`, as OpenSSL's `ASN1_TIME_print` writes it. */
function decodeTime(der: Uint8Array, t: Tlv): string {
  const s = latin1.decode(der.subarray(t.start, t.end));
  let year: number, rest: string;
  if (t.tag === 0x17) { // UTCTime YYMMDDHHMMSSZ
    const yy = Number(s.slice(0, 2));
    year = yy < 50 ? 2000 + yy : 1900 + yy;
    rest = s.slice(2);
  } else { // GeneralizedTime YYYYMMDDHHMMSSZ
    year = Number(s.slice(0, 4));
    rest = s.slice(4);
  }
  const month = MONTHS[Number(rest.slice(0, 2)) - 1] ?? "???";
  const day = String(Number(rest.slice(2, 4))).padStart(2, " ");
  const hms = `${rest.slice(4, 6)}:${rest.slice(6, 8)}:${rest.slice(8, 10)}`;
  return `${month} ${day} ${hms} ${year} GMT`;
}

function hex(bytes: Uint8Array): string {
  let s = "";
  for (const b of bytes) s += b.toString(16).toUpperCase().padStart(2, "0");
  return s;
}

function decodeIp(bytes: Uint8Array): string {
  if (bytes.length === 4) return bytes.join(".");
  if (bytes.length === 16) {
    const groups: string[] = [];
    for (let i = 0; i < 16; i += 2) {
      groups.push(((bytes[i] << 8) | bytes[i + 1]).toString(16).toUpperCase());
    }
    return groups.join(":");
  }
  return "<invalid>";
}

function decodeAltNames(der: Uint8Array, octets: Tlv): [string, unknown][] {
  const seq = readTlv(der, octets.start);
  return children(der, seq).map((gn): [string, unknown] => {
    const bytes = der.subarray(gn.start, gn.end);
    switch (gn.tag) {
      case 0x81:
        return ["email", latin1.decode(bytes)];
      case 0x82:
        return ["DNS", latin1.decode(bytes)];
      case 0x86:
        return ["URI", latin1.decode(bytes)];
      case 0x87:
        return ["IP Address", decodeIp(bytes)];
      case 0xa4:
        return ["DirName", decodeName(der, readTlv(der, gn.start))];
      case 0x88:
        return ["Registered ID", oidText(der, gn)];
      default:
        return ["othername", "<unsupported>"];
    }
  });
}

/** Python's certificate dictionary for the DER certificate `der`. */
export function decodeCertificate(der: Uint8Array): PeerCertificate {
  const cert = readTlv(der, 0);
  const tbs = children(der, cert)[0];
  const fields = children(der, tbs);
  let i = 0;
  let version = 1;
  if (fields[0].tag === 0xa0) {
    const v = readTlv(der, fields[0].start);
    version = der[v.end - 1] + 1;
    i = 1;
  }
  const serial = fields[i];
  let serialBytes = der.subarray(serial.start, serial.end);
  if (serialBytes.length > 1 && serialBytes[0] === 0) serialBytes = serialBytes.subarray(1);
  const issuer = fields[i + 2];
  const [notBefore, notAfter] = children(der, fields[i + 3]);
  const subject = fields[i + 4];
  const out: PeerCertificate = {
    subject: decodeName(der, subject),
    issuer: decodeName(der, issuer),
    version,
    serialNumber: hex(serialBytes),
    notBefore: decodeTime(der, notBefore),
    notAfter: decodeTime(der, notAfter),
  };
  const extWrap = fields.find((f) => f.tag === 0xa3);
  if (extWrap) {
    for (const ext of children(der, readTlv(der, extWrap.start))) {
      const parts = children(der, ext);
      if (oidText(der, parts[0]) === "2.5.29.17") {
        out.subjectAltName = decodeAltNames(der, parts[parts.length - 1]);
      }
    }
  }
  return out;
}
