/**
 * Socket activation: the listening sockets systemd (or
 * `systemd-socket-activate`, or any program speaking its protocol) opened
 * for this process, with `sd_listen_fds(3)`'s rules and python-systemd's
 * names. The protocol: fds 3, 4, ... are inherited; `LISTEN_FDS` says how
 * many, `LISTEN_PID` which process they are for (a child that inherited the
 * environment must not take them), `LISTEN_FDNAMES` names them
 * (colon-separated, from `FileDescriptorName=`).
 *
 * The environment is read and cleared through the C library, so activation
 * needs `--allow-ffi` only, and a process this one starts afterwards does not
 * inherit the variables.
 *
 * @module
 */

import { attempt, check } from "./_syscall.ts";
import { readCString, toCString } from "./bytes.ts";
import { errno as E, OSError } from "./errno.ts";
import { C } from "./platform.ts";
import { Socket } from "./socket.ts";
import { libc } from "./symbols.ts";

/** The first inherited fd (`SD_LISTEN_FDS_START`). */
export const SD_LISTEN_FDS_START = 3;

const VARIABLES = ["LISTEN_PID", "LISTEN_PIDFDID", "LISTEN_FDS", "LISTEN_FDNAMES"];

function getenv(name: string): string | null {
  return readCString(libc().getenv(toCString(name)));
}

function unsetListenEnvironment(): void {
  const lib = libc();
  for (const name of VARIABLES) lib.unsetenv(toCString(name));
}

function invalid(text: string): OSError {
  return new OSError(E.EINVAL, { message: `Invalid argument: ${text}`, syscall: "sd_listen_fds" });
}

/** A decimal integer with nothing around it, as systemd's `safe_atoi` reads one; else null. */
function parseDecimal(text: string): number | null {
  if (!/^[+-]?\d+$/.test(text.trim())) return null;
  const n = Number(text.trim());
  return Number.isSafeInteger(n) ? n : null;
}

/** Sets close-on-exec on an inherited fd: what it starts must not inherit the listeners. */
function setCloexec(fd: number): void {
  const lib = libc();
  const flags = check(attempt(() => lib.fcntl(fd, C.F_GETFD, 0)), "fcntl", `fd ${fd}`);
  if ((flags & C.FD_CLOEXEC) === 0) {
    check(attempt(() => lib.fcntl(fd, C.F_SETFD, flags | C.FD_CLOEXEC)), "fcntl", `fd ${fd}`);
  }
}

/**
 * `sd_listen_fds`: the number of fds passed to this process (0 when none
 * were, or they were meant for another process), each set close-on-exec.
 */
function countListenFds(): number {
  const pidText = getenv("LISTEN_PID");
  if (pidText === null) return 0;
  const pid = parseDecimal(pidText);
  if (pid === null || pid <= 0) throw invalid(`LISTEN_PID=${JSON.stringify(pidText)}`);
  if (pid !== libc().getpid()) return 0;
  // Newer systemd also names the process by its pidfd's inode (LISTEN_PIDFDID); the
  // variable is checked for form and cleared, and LISTEN_PID decides, as without it.
  const pidfdid = getenv("LISTEN_PIDFDID");
  if (pidfdid !== null && !/^\d+$/.test(pidfdid)) {
    throw invalid(`LISTEN_PIDFDID=${JSON.stringify(pidfdid)}`);
  }
  const countText = getenv("LISTEN_FDS");
  if (countText === null) return 0;
  const n = parseDecimal(countText);
  if (n === null || n <= 0 || n > 0x7fffffff - SD_LISTEN_FDS_START) {
    throw invalid(`LISTEN_FDS=${JSON.stringify(countText)}`);
  }
  for (let fd = SD_LISTEN_FDS_START; fd < SD_LISTEN_FDS_START + n; fd++) setCloexec(fd);
  return n;
}

/** The inherited fds as sockets (their family, type and blocking mode read from the kernel). */
function adopt(n: number): Socket[] {
  const out: Socket[] = [];
  for (let fd = SD_LISTEN_FDS_START; fd < SD_LISTEN_FDS_START + n; fd++) {
    try {
      out.push(Socket.fromFd(fd));
    } catch (error) {
      if (error instanceof OSError && error.errno === E.ENOTSOCK) {
        throw new OSError(E.ENOTSOCK, {
          message: `fd ${fd} passed by the service manager is not a socket (a FIFO or file?)`,
          syscall: "sd_listen_fds",
        });
      }
      throw error;
    }
  }
  return out;
}

/**
 * The listening sockets passed to this process by socket activation, as
 * systemd's `sd_listen_fds` finds them (python-systemd's `listen_fds`
 * returns the same fds as numbers): an empty array when `LISTEN_PID` is not
 * set or names another process. The fds are set close-on-exec. With
 * `unsetEnvironment` (the default) `LISTEN_PID`, `LISTEN_FDS`,
 * `LISTEN_FDNAMES` and `LISTEN_PIDFDID` are removed first, so a second call
 * and any process started later find nothing.
 *
 * @param unsetEnvironment Remove the variables (default true).
 * @returns One `Socket` per fd, from fd 3 on, in blocking mode as they came
 *   (a dispatcher makes its socket non-blocking).
 * @throws {OSError} `EINVAL` when a variable is malformed (the variables are
 *   still removed); `EBADF` for an fd that is not open; `ENOTSOCK` for one
 *   that is not a socket.
 * @example Serving the sockets of a systemd `.socket` unit
 * ```ts
 * import { Dispatcher, listenFds, loop, type Socket } from "@asyncore/deno";
 *
 * class EchoServer extends Dispatcher {
 *   override handleAccepted(sock: Socket) {
 *     sock.close(); // a real server makes a handler here
 *   }
 * }
 *
 * for (const sock of listenFds()) { // none unless started by systemd (or systemd-socket-activate)
 *   const server = new EchoServer(sock);
 *   server.listen(128);
 * }
 * loop();
 * ```
 */
export function listenFds(unsetEnvironment = true): Socket[] {
  let n: number;
  try {
    n = countListenFds();
  } finally {
    if (unsetEnvironment) unsetListenEnvironment();
  }
  return adopt(n);
}

/**
 * {@linkcode listenFds} with each socket's name from `LISTEN_FDNAMES`
 * (systemd's `sd_listen_fds_with_names`; `FileDescriptorName=` in the unit,
 * `--fdname=` for `systemd-socket-activate`): `"unknown"` for each when the
 * variable is not set.
 *
 * @param unsetEnvironment Remove the variables (default true).
 * @returns `[socket, name]` pairs, in fd order.
 * @throws {OSError} `EINVAL` when there are not as many names as fds, or a
 *   variable is malformed; as {@linkcode listenFds} otherwise.
 * @example Telling the public listener from the admin one
 * ```ts
 * import { listenFdsWithNames } from "@asyncore/deno";
 *
 * const byName = new Map(listenFdsWithNames().map(([sock, name]) => [name, sock]));
 * const web = byName.get("web"), admin = byName.get("admin");
 * console.log(web ? "serving web" : "no web socket", admin ? "and admin" : "");
 * ```
 */
export function listenFdsWithNames(unsetEnvironment = true): [Socket, string][] {
  let n: number;
  let names: string[] | null;
  try {
    const text = getenv("LISTEN_FDNAMES");
    // Split as systemd does: every colon separates, so "a::b" names three fds.
    names = text === null ? null : text === "" ? [] : text.split(":");
    n = countListenFds();
  } finally {
    if (unsetEnvironment) unsetListenEnvironment();
  }
  if (n === 0) return [];
  if (names !== null && names.length !== n) {
    throw invalid(`LISTEN_FDNAMES names ${names.length} fds, LISTEN_FDS says ${n}`);
  }
  const sockets = adopt(n);
  return sockets.map((sock, i) => [sock, names === null ? "unknown" : names[i]]);
}
