/**
 * The successor's side of a zero-downtime restart: {@linkcode takeOverListeners}
 * asks the running process (its `serveHandoff`) for its listening sockets
 * and returns them once it has acknowledged them. Blocking, bounded by one
 * timeout: it runs at start-up, before the successor's loop.
 *
 * @module
 */

import { Socket } from "../ffi/socket.ts";
import { errno as E, OSError } from "../ffi/errno.ts";
import { C, platform } from "../ffi/platform.ts";
import { closeFds, recvFds } from "../ffi/msg.ts";
import { TimeoutError } from "../ffi/timeout.ts";
import {
  ackLine,
  LineReader,
  MAX_HANDOFF_FDS,
  MAX_LINE,
  parseLine,
  quote,
  takeLine,
} from "./_handoff_wire.ts";

/** Throws the error of a handoff call on a platform without fd passing. */
export function unixOnly(call: string): never {
  throw new OSError(E.ENOSYS, {
    syscall: call,
    message:
      `${call}: handing sockets to another process needs SCM_RIGHTS over a Unix socket, which ${platform.name} does not have`,
  });
}

/**
 * An `OSError` about `path` whose message explains itself: the path sits in
 * the sentence (`filename` is still set), not appended at the end.
 */
export function pathError(err: number, syscall: string, path: string, text: string): OSError {
  const error = new OSError(err, { syscall, message: text });
  Object.defineProperty(error, "filename", { value: path, enumerable: true });
  return error;
}

/** A protocol failure: the peer is not a handoff server, or broke the protocol. */
function protocolError(path: string, text: string): OSError {
  return pathError(E.EPROTO, "takeOverListeners", path, `handoff from '${path}' failed: ${text}`);
}

/** Sleeps `ms` milliseconds, blocking (the successor has no loop running yet). */
function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/**
 * Connects `conn` to `path` before `end`. A full backlog (`EAGAIN` on a Unix
 * socket) is retried; nobody at the path is a clear `OSError`.
 */
function connectBefore(conn: Socket, path: string, end: number, seconds: number): void {
  for (;;) {
    const err = conn.connectEx(path);
    if (err === 0) return;
    if (err === E.ENOENT) {
      const text = `No such file or directory: '${path}' (no process serves a handoff there)`;
      throw pathError(err, "connect", path, text);
    }
    if (err === E.ECONNREFUSED) {
      const text =
        `Connection refused: '${path}' (a stale socket file: the process that served a handoff there is gone)`;
      throw pathError(err, "connect", path, text);
    }
    if (err !== E.EAGAIN || performance.now() >= end) {
      if (err === E.EAGAIN) throw timedOut(path, seconds);
      throw new OSError(err, { syscall: "connect", filename: path });
    }
    sleepSync(10);
  }
}

function timedOut(path: string, seconds: number): TimeoutError {
  const error = new TimeoutError("takeOverListeners");
  error.message = `timed out after ${seconds} s waiting for the handoff server at '${path}'`;
  return error;
}

/**
 * Takes over the listening sockets of the process serving a handoff at
 * `path` (`serveHandoff` there, or any program speaking its protocol):
 * connects, asks, receives the fds with their family, type and protocol,
 * checks each against the kernel's view of it, acknowledges, and waits for
 * the old process to confirm that it has stopped accepting and removed its
 * socket file (so this process may bind the same path for the next switch).
 * Returns the sockets in the old process's order, close-on-exec, in the
 * blocking mode they had there (non-blocking for a dispatcher's). Give each
 * to a dispatcher (`new Server(sock)`, or `setSocket`) and call `listen()`,
 * which keeps the socket's queue: connections that waited in it are
 * accepted here.
 *
 * Everything happens within `timeoutSeconds`; the wait for the old
 * process's confirmation, which comes after the sockets are ours, is cut
 * short by the timeout without failing. On any failure before the
 * acknowledgement every fd received is closed, and the old process goes on
 * serving.
 *
 * Unix-only (`OSError` `ENOSYS` on Windows).
 *
 * @param path The old process's handoff socket.
 * @param timeoutSeconds The bound of the whole exchange (default 10).
 * @returns The sockets, in order.
 * @throws {OSError} `ENOENT` (nothing at `path`), `ECONNREFUSED` (a stale
 *   socket file), `EPROTO` (the peer is not a handoff server, refused, or
 *   broke the protocol; the message says which), {@linkcode TimeoutError}.
 * @throws {RangeError} For a timeout that is not a positive number.
 * @example The successor of examples/echo.ts --handoff=/run/echo/handoff.sock
 * ```ts no-run
 * // needs a running server at the path (examples/echo.ts --handoff), then serves until stopped
 * import { Dispatcher, loop, type Socket, takeOverListeners } from "@asyncore/deno";
 *
 * class Server extends Dispatcher {
 *   override handleAccepted(sock: Socket) {
 *     sock.close(); // a real server hands it to a channel
 *   }
 * }
 * for (const sock of takeOverListeners("/run/echo/handoff.sock")) {
 *   new Server(sock).listen(1024); // the queue comes with the socket
 * }
 * loop();
 * ```
 */
export function takeOverListeners(path: string, timeoutSeconds = 10): Socket[] {
  if (platform.hasUnixSockets === false) unixOnly("takeOverListeners");
  if (typeof path !== "string" || path === "" || path === "\0") {
    throw new TypeError(`path must be a non-empty string, not ${JSON.stringify(path)}`);
  }
  if (typeof timeoutSeconds !== "number" || !(timeoutSeconds > 0) || timeoutSeconds > 1e6) {
    throw new RangeError(
      `timeoutSeconds must be a positive number of seconds, not ${timeoutSeconds}`,
    );
  }
  const end = performance.now() + timeoutSeconds * 1000;
  const left = () => {
    const s = (end - performance.now()) / 1000;
    if (s <= 0) throw timedOut(path, timeoutSeconds);
    return s;
  };
  const conn = new Socket(C.AF_UNIX, C.SOCK_STREAM | C.SOCK_NONBLOCK);
  const received: number[] = [];
  const sockets: Socket[] = [];
  try {
    connectBefore(conn, path, end, timeoutSeconds);
    conn.settimeout(left());
    conn.sendall(takeLine());
    const lines = new LineReader();
    let line: string | null = null;
    while (line === null) {
      conn.settimeout(left());
      const [data, fds, flags] = recvFds(conn, MAX_LINE, MAX_HANDOFF_FDS);
      received.push(...fds);
      if (flags & C.MSG_CTRUNC) {
        throw protocolError(path, "it sent more fds than a handoff carries");
      }
      if (data.length === 0) {
        throw protocolError(path, "the process there closed the connection without an answer");
      }
      if (received.length > MAX_HANDOFF_FDS) throw protocolError(path, "too many fds");
      line = lines.push(data);
    }
    const msg = parseLine(line);
    if (msg.kind === "error") throw protocolError(path, `the process there refused: ${msg.text}`);
    if (msg.kind !== "fds") throw protocolError(path, `expected FDS, got ${quote(line)}`);
    if (msg.sockets.length !== received.length) {
      throw protocolError(
        path,
        `the FDS line announces ${msg.sockets.length} fds, ${received.length} came`,
      );
    }
    // One at a time: on a failure, the catch below closes what is left in `received`.
    while (received.length > 0) sockets.push(adopt(received.shift()!, sockets.length, path));
    for (const [i, want] of msg.sockets.entries()) {
      const s = sockets[i];
      const proto = want.proto !== 0 && s.proto !== want.proto;
      if (s.family !== want.family || s.type !== want.type || proto) {
        throw protocolError(
          path,
          `fd ${
            i + 1
          } is ${s.family}/${s.type}/${s.proto}, announced as ${want.family}/${want.type}/${want.proto}`,
        );
      }
    }
    conn.settimeout(left());
    conn.sendall(ackLine(sockets.length));
  } catch (error) {
    closeFds(received);
    for (const s of sockets) s.close();
    conn.close();
    if (error instanceof TimeoutError) throw timedOut(path, timeoutSeconds);
    if (error instanceof Error && !(error instanceof OSError)) {
      throw protocolError(path, error.message); // the wire module's words
    }
    throw error;
  }
  // The sockets are ours now, whatever follows.
  awaitDone(conn, end);
  conn.close();
  return sockets;
}

/** Adopts `fd` (the `i`th) as a Socket; if it cannot be (it is no socket), it is closed. */
function adopt(fd: number, i: number, path: string): Socket {
  try {
    return Socket.fromFd(fd);
  } catch (error) {
    closeFds([fd]);
    if (error instanceof OSError && error.errno === E.ENOTSOCK) {
      throw protocolError(path, `fd ${i + 1} is not a socket`);
    }
    throw error;
  }
}

/** Waits (until `end`) for DONE or the end of the connection; the answer changes nothing. */
function awaitDone(conn: Socket, end: number): void {
  try {
    for (;;) {
      const s = (end - performance.now()) / 1000;
      if (s <= 0) return;
      conn.settimeout(s);
      // A plain recv: fds sent now are dropped by the kernel, never installed here.
      const data = conn.recv(MAX_LINE);
      if (data.length === 0) return;
      if (new TextDecoder().decode(data).includes("\n")) return;
    }
  } catch {
    // A timeout or a reset: the old process is slow or gone, the sockets are ours anyway.
  }
}
