/**
 * Winsock's errors as Python sees them: the mapping of a Winsock or Win32
 * error code to Python's errno (CPython's `winerror_to_errno`), and the
 * texts of the codes Wine's `FormatMessage` does not know. Plain data and
 * one pure function: `ffi/winsock.ts` uses them.
 *
 * @module
 */

import { platform } from "./platform.ts";

const E = platform.errno;

/**
 * A Winsock (or Win32) error code as Python's errno: CPython's
 * `winerror_to_errno` keeps Winsock codes, except the six that duplicate a
 * C runtime errno, which become that errno.
 */
export function winerrorToErrno(code: number): number {
  if (code >= 10000 && code < 12000) {
    switch (code) {
      case 10004: // WSAEINTR
      case 10009: // WSAEBADF
      case 10013: // WSAEACCES
      case 10014: // WSAEFAULT
      case 10022: // WSAEINVAL
      case 10024: // WSAEMFILE
        return code - 10000;
      default:
        return code;
    }
  }
  if (code === 6) return E.EBADF; // ERROR_INVALID_HANDLE
  if (code === 8) return E.ENOMEM; // ERROR_NOT_ENOUGH_MEMORY
  if (code === 87) return E.EINVAL; // ERROR_INVALID_PARAMETER
  return code;
}

/** Texts of the Winsock errors FormatMessage may not know (Wine knows few). */
export const wsaTexts: Readonly<Record<number, string>> = {
  10035: "A non-blocking socket operation could not be completed immediately",
  10036: "A blocking operation is currently executing",
  10037:
    "An operation was attempted on a non-blocking socket that already had an operation in progress",
  10038: "An operation was attempted on something that is not a socket",
  10042:
    "An unknown, invalid, or unsupported option or level was specified in a getsockopt or setsockopt call",
  10047: "An address incompatible with the requested protocol was used",
  10048:
    "Only one usage of each socket address (protocol/network address/port) is normally permitted",
  10049: "The requested address is not valid in its context",
  10053: "An established connection was aborted by the software in your host machine",
  10054: "An existing connection was forcibly closed by the remote host",
  10056: "A connect request was made on an already connected socket",
  10057: "A request to send or receive data was disallowed because the socket is not connected",
  10058:
    "A request to send or receive data was disallowed because the socket had already been shut down",
  10060:
    "A connection attempt failed because the connected party did not properly respond after a period of time",
  10061: "No connection could be made because the target machine actively refused it",
  10093: "Either the application has not called WSAStartup, or WSAStartup failed",
  11001: "No such host is known",
};
