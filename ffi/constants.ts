/**
 * The socket and poll constants exported by name, with this platform's
 * values (from `ffi/platform.ts`).
 *
 * @module
 */

import { C, platform } from "./platform.ts";

/** Unspecified address family (`getaddrinfo`: any). */
export const AF_UNSPEC: number = C.AF_UNSPEC;
/** IPv4 address family. */
export const AF_INET: number = C.AF_INET;
/** IPv6 address family. */
export const AF_INET6: number = C.AF_INET6;
/** Unix-domain address family. */
export const AF_UNIX: number = C.AF_UNIX;
/** Stream socket type (TCP, Unix stream). */
export const SOCK_STREAM: number = C.SOCK_STREAM;
/** Datagram socket type (UDP, Unix datagram). */
export const SOCK_DGRAM: number = C.SOCK_DGRAM;
/** Raw socket type (appears in `getaddrinfo` results). */
export const SOCK_RAW: number = C.SOCK_RAW;
/** Creation flag: make the socket non-blocking (Linux). */
export const SOCK_NONBLOCK: number = C.SOCK_NONBLOCK;
/** Creation flag: close on exec (always set by this library). */
export const SOCK_CLOEXEC: number = C.SOCK_CLOEXEC;
/** Socket-level options. */
export const SOL_SOCKET: number = C.SOL_SOCKET;
/** Allow reuse of local addresses. */
export const SO_REUSEADDR: number = C.SO_REUSEADDR;
/** Allow several sockets on one port (Linux 3.9+). */
export const SO_REUSEPORT: number = C.SO_REUSEPORT;
/** Read and clear the pending socket error. */
export const SO_ERROR: number = C.SO_ERROR;
/** Send keepalive probes. */
export const SO_KEEPALIVE: number = C.SO_KEEPALIVE;
/** Receive buffer size. */
export const SO_RCVBUF: number = C.SO_RCVBUF;
/** Send buffer size. */
export const SO_SNDBUF: number = C.SO_SNDBUF;
/** Linger on close (`struct linger`, see `encodeLinger`). */
export const SO_LINGER: number = C.SO_LINGER;
/** The socket's type. */
export const SO_TYPE: number = C.SO_TYPE;
/** TCP protocol level. */
export const IPPROTO_TCP: number = C.IPPROTO_TCP;
/** IPv6 protocol level. */
export const IPPROTO_IPV6: number = C.IPPROTO_IPV6;
/** Restrict an IPv6 socket to IPv6. */
export const IPV6_V6ONLY: number = C.IPV6_V6ONLY;
/** Disable Nagle's algorithm. */
export const TCP_NODELAY: number = C.TCP_NODELAY;
/** Shut down reading. */
export const SHUT_RD: number = C.SHUT_RD;
/** Shut down writing. */
export const SHUT_WR: number = C.SHUT_WR;
/** Shut down both directions. */
export const SHUT_RDWR: number = C.SHUT_RDWR;
/** poll: data to read. */
export const POLLIN: number = C.POLLIN;
/** poll: urgent data to read. */
export const POLLPRI: number = C.POLLPRI;
/** poll: writing will not block. */
export const POLLOUT: number = C.POLLOUT;
/** poll: error condition. */
export const POLLERR: number = C.POLLERR;
/** poll: hang up. */
export const POLLHUP: number = C.POLLHUP;
/** poll: invalid fd. */
export const POLLNVAL: number = C.POLLNVAL;
/** send/recv flag: out-of-band (urgent) data. */
export const MSG_OOB: number = C.MSG_OOB;
/** recv flag: peek without consuming. */
export const MSG_PEEK: number = C.MSG_PEEK;
/** Flag: do not block for this one call. */
export const MSG_DONTWAIT: number = C.MSG_DONTWAIT;
/** getaddrinfo: addresses for binding (`host` null gives the any-address). */
export const AI_PASSIVE: number = C.AI_PASSIVE;
/** getaddrinfo: fill in the canonical name of the first result. */
export const AI_CANONNAME: number = C.AI_CANONNAME;
/** getaddrinfo: `host` must be an address literal; no lookup. */
export const AI_NUMERICHOST: number = C.AI_NUMERICHOST;
/** getaddrinfo: with `AF_INET6`, return IPv4-mapped addresses when there is no IPv6 one. */
export const AI_V4MAPPED: number = C.AI_V4MAPPED;
/** getaddrinfo: with `AI_V4MAPPED`, return IPv6 and IPv4-mapped addresses. */
export const AI_ALL: number = C.AI_ALL;
/** getaddrinfo: only families this host has an address for. */
export const AI_ADDRCONFIG: number = C.AI_ADDRCONFIG;
/** getaddrinfo: `port` must be numeric; no service lookup. */
export const AI_NUMERICSERV: number = C.AI_NUMERICSERV;
/** getnameinfo: return the host as an address literal. */
export const NI_NUMERICHOST: number = C.NI_NUMERICHOST;
/** getnameinfo: return the port as digits. */
export const NI_NUMERICSERV: number = C.NI_NUMERICSERV;
/** getnameinfo: only the host part of a local name. */
export const NI_NOFQDN: number = C.NI_NOFQDN;
/** getnameinfo: fail (`EAI_NONAME`) when the host has no name. */
export const NI_NAMEREQD: number = C.NI_NAMEREQD;
/** getnameinfo: the service is a datagram one (`53` is `"domain"` either way; some differ). */
export const NI_DGRAM: number = C.NI_DGRAM;
/** getnameinfo: the longest host name, with its NUL. */
export const NI_MAXHOST: number = C.NI_MAXHOST;
/** getnameinfo: the longest service name, with its NUL. */
export const NI_MAXSERV: number = C.NI_MAXSERV;

/** Ancillary data type: passing fds (`sendFds`, `recvFds`). */
export const SCM_RIGHTS: number = C.SCM_RIGHTS;
/** Ancillary data type: the sender's pid, uid and gid (with `SO_PASSCRED`). */
export const SCM_CREDENTIALS: number = C.SCM_CREDENTIALS;
/** Receive `SCM_CREDENTIALS` with each message (Unix sockets). */
export const SO_PASSCRED: number = C.SO_PASSCRED;
/** Keep out-of-band (urgent) data in the normal stream. */
export const SO_OOBINLINE: number = C.SO_OOBINLINE;
/** The kernel's receive timeout (`struct timeval`); `settimeout` does not use it. */
export const SO_RCVTIMEO: number = C.SO_RCVTIMEO;
/** The kernel's send timeout (`struct timeval`); `settimeout` does not use it. */
export const SO_SNDTIMEO: number = C.SO_SNDTIMEO;
/** Allow sending to a broadcast address. */
export const SO_BROADCAST: number = C.SO_BROADCAST;
/** TCP keepalive: seconds idle before the first probe. */
export const TCP_KEEPIDLE: number = C.TCP_KEEPIDLE;
/** TCP keepalive: seconds between probes. */
export const TCP_KEEPINTVL: number = C.TCP_KEEPINTVL;
/** TCP keepalive: probes unanswered before the connection is dropped. */
export const TCP_KEEPCNT: number = C.TCP_KEEPCNT;
/** Milliseconds sent data may stay unacknowledged before the connection is dropped. */
export const TCP_USER_TIMEOUT: number = C.TCP_USER_TIMEOUT;
/** IPv4 protocol level (`IP_*` options). */
export const IPPROTO_IP: number = C.IPPROTO_IP;
/** UDP protocol number. */
export const IPPROTO_UDP: number = C.IPPROTO_UDP;
/** Join an IPv4 multicast group (an `ip_mreq`: group, then interface, from `inetAton`). */
export const IP_ADD_MEMBERSHIP: number = C.IP_ADD_MEMBERSHIP;
/** Leave an IPv4 multicast group (an `ip_mreq`). */
export const IP_DROP_MEMBERSHIP: number = C.IP_DROP_MEMBERSHIP;
/** Time to live of sent IPv4 multicast datagrams. */
export const IP_MULTICAST_TTL: number = C.IP_MULTICAST_TTL;
/** Whether sent IPv4 multicast comes back to this host's own members. */
export const IP_MULTICAST_LOOP: number = C.IP_MULTICAST_LOOP;
/** The interface (its address, 4 bytes) IPv4 multicast is sent from. */
export const IP_MULTICAST_IF: number = C.IP_MULTICAST_IF;
/** Join an IPv6 multicast group (an `ipv6_mreq`: group, then interface index). */
export const IPV6_JOIN_GROUP: number = C.IPV6_JOIN_GROUP;
/** Leave an IPv6 multicast group. */
export const IPV6_LEAVE_GROUP: number = C.IPV6_LEAVE_GROUP;
/** Whether sent IPv6 multicast comes back to this host's own members. */
export const IPV6_MULTICAST_LOOP: number = C.IPV6_MULTICAST_LOOP;
/** The IPv4 any-address as a number (0.0.0.0). */
export const INADDR_ANY: number = C.INADDR_ANY;
/** recv flag: return a datagram's real length; msg flag: the datagram was cut. */
export const MSG_TRUNC: number = C.MSG_TRUNC;
/** msg flag: ancillary data was cut (fds beyond the buffer were dropped). */
export const MSG_CTRUNC: number = C.MSG_CTRUNC;
/** recv flag: wait until the whole request is filled (stream sockets). */
export const MSG_WAITALL: number = C.MSG_WAITALL;
/** recvmsg flag: received fds are close-on-exec (this library always sets it). */
export const MSG_CMSG_CLOEXEC: number = C.MSG_CMSG_CLOEXEC;

/** Encodes a `struct linger` for `setsockopt(SOL_SOCKET, SO_LINGER, ...)`. */
export function encodeLinger(onoff: boolean, seconds: number): Uint8Array {
  // Windows' struct linger holds two u_shorts; elsewhere two ints.
  if (platform.structs.lingerField === 2) {
    return new Uint8Array(new Uint16Array([onoff ? 1 : 0, seconds]).buffer);
  }
  return new Uint8Array(new Int32Array([onoff ? 1 : 0, seconds]).buffer);
}
