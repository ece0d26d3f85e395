/**
 * `TlsTransport`: one TLS session over a socket's fd, and everything a loop
 * needs to run it, as asyncio's `sslproto.py` is to its socket transport.
 * It owns all of the session's state: the `SSL` object, the handshake and
 * what it waits for, what a blocked read or write waits for, the handshake
 * timeout, and whether close may still send close_notify. `SSLSocket` is
 * Python's surface over it; a channel drives it through the
 * {@linkcode Transport} interface and never sees OpenSSL.
 *
 * Two ways of moving bytes. A socket used on its own (Python's blocking or
 * non-blocking `SSLSocket`) lets OpenSSL read and write the fd itself, one
 * record at a time, so that `select()` and `pending()` mean what they mean
 * in Python. Once a channel takes the session over (`attach`), it moves to
 * the loop's way (`_records.ts`): reads read ahead (one `recv` for many
 * records), records gather in a shared memory BIO and leave in one `send`
 * per pass, and record sizes follow the traffic.
 *
 * OpenSSL's error queue is per thread, and `SSL_get_error` reads it first:
 * a stale entry left by another connection would fail a healthy one. So
 * the queue is emptied before every `SSL_*` call; it is looked at first
 * (`ERR_peek_error`, ~35 ns) and cleared only when it holds something,
 * since `ERR_clear_error` itself walks all 16 slots (100 to 220 ns, measured).
 *
 * @module
 */

import { errno as E, OSError, readErrno } from "../ffi/errno.ts";
import { openssl, SSLC } from "../ffi/openssl.ts";
import { C } from "../ffi/platform.ts";
import { readCString, toCString } from "../ffi/bytes.ts";
import type { Socket } from "../ffi/socket.ts";
import {
  type Cancellable,
  type HeldOutput,
  READ,
  type Transport,
  type TransportHooks,
  WRITE,
} from "../ffi/transport.ts";
import { SSLCertVerificationError, SSLEOFError, SSLError, takeQueuedError } from "./errors.ts";
import { RecordPath } from "./_records.ts";

/** `SSL_read`/`SSL_write` take an `int` length. */
const MAX_IO = 0x3fff_0000;
const IPV4 = /^\d{1,3}(\.\d{1,3}){3}$/;

/** Empties OpenSSL's error queue if it holds anything (see the module's comment). */
export function clearErrors(): void {
  const crypto = openssl().crypto;
  if (crypto.ERR_peek_error() !== 0) crypto.ERR_clear_error();
}

/** What a session is made with (from `SSLContext.wrapSocket`). */
export interface TlsSessionOptions {
  /** The context's `SSL_CTX`. */
  ctx: Deno.PointerObject;
  /** This end is the server of the handshake. */
  serverSide: boolean;
  /** The server's name (clients): SNI, and checked when `checkHostname`. */
  serverHostname: string | null;
  /** Check the server's certificate against `serverHostname`. */
  checkHostname: boolean;
  /** A channel runs the handshake (see `WrapSocketOptions.doHandshakeOnConnect`). */
  doHandshakeOnConnect: boolean;
  /** Seconds a channel-run handshake may take; null for no limit. */
  handshakeTimeout: number | null;
  /** An EOF without close_notify reads as the end (Python's `suppress_ragged_eofs`), else `SSLEOFError`. */
  suppressRaggedEofs: boolean;
}

/**
 * A TLS session over the fd of `sock`. Made by `SSLSocket`; `closeFd`
 * closes the fd once the session is freed.
 */
export class TlsTransport implements Transport, HeldOutput {
  readonly #sock: Socket;
  readonly #closeFd: () => void;
  #ssl: Deno.PointerObject | null;
  readonly #hostname: string | null;
  readonly #timeout: number | null;
  #handshakeDone = false;
  /** What the unfinished handshake waits for: READ or WRITE. */
  #hsWants: number;
  /** What a read that would block waits for; 0 when none is blocked. */
  #readWants = 0;
  /** What a write that would block waits for; 0 when none is blocked. */
  #writeWants = 0;
  /** Close without close_notify (a handshake that timed out: the peer is not reading). */
  #noShutdown = false;
  readonly #suppressRaggedEofs: boolean;
  /** `sendCloseNotify` has sent close_notify. */
  #closeNotifySent = false;

  // ---- the loop's side ----
  #hooks: TransportHooks | null = null;
  /** The loop's byte path, once a channel took the session over. */
  #path: RecordPath | null = null;
  /** The channel runs the handshake, and it has not finished yet. */
  #handshaking = false;
  /**
   * The TCP connection is up (a client may be wrapped before it connects);
   * null until known: the channel says so (`connectionMade`), or one
   * `getpeername` finds out when first needed.
   */
  #tcpUp: boolean | null = null;
  #timer: Cancellable | null = null;
  /** Bytes held that no poller reports wait for a handler: a write event (ready at once) reads them. */
  #drainOnWrite = false;
  /** Whether the channel asked for WRITE at the last `wants`. */
  #channelWrites = true;
  /** Whether the channel asked for READ at the last `wants`. */
  #channelReads = false;
  /** Whether the channel runs the handshake (rather than the program's `doHandshake`). */
  readonly doHandshakeOnConnect: boolean;
  /** TLS encrypts what it carries. */
  readonly secure = true;

  /** Starts a session over the fd of `sock` (its blocking mode is the session's). */
  constructor(sock: Socket, closeFd: () => void, options: TlsSessionOptions) {
    this.#sock = sock;
    this.#closeFd = closeFd;
    this.#hostname = options.serverHostname;
    this.#timeout = options.handshakeTimeout;
    this.#suppressRaggedEofs = options.suppressRaggedEofs;
    this.doHandshakeOnConnect = options.doHandshakeOnConnect;
    this.#hsWants = options.serverSide ? READ : WRITE;
    const { ssl: lib } = openssl();
    clearErrors();
    const ssl = lib.SSL_new(options.ctx);
    if (ssl === null) throw new SSLError(SSLC.SSL_ERROR_SSL, "SSL_new failed (out of memory?)");
    this.#ssl = ssl;
    try {
      lib.SSL_set_fd(ssl, sock.fileno());
      if (options.serverSide) {
        lib.SSL_set_accept_state(ssl);
      } else {
        lib.SSL_set_connect_state(ssl);
        if (this.#hostname !== null) this.#setHostname(this.#hostname, options.checkHostname);
      }
    } catch (error) {
      this.#free();
      throw error;
    }
  }

  #setHostname(hostname: string, check: boolean): void {
    const { ssl: lib, crypto } = openssl();
    const ssl = this.#ssl;
    const name = toCString(hostname);
    const isIp = IPV4.test(hostname) || hostname.includes(":");
    // SNI carries names only (RFC 6066); an address is checked against the IP SANs.
    if (!isIp) lib.SSL_ctrl(ssl, SSLC.SSL_CTRL_SET_TLSEXT_HOSTNAME, 0n, name);
    if (!check) return;
    lib.SSL_set_hostflags(ssl, SSLC.X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    const ok = isIp
      ? crypto.X509_VERIFY_PARAM_set1_ip_asc(lib.SSL_get0_param(ssl), name)
      : lib.SSL_set1_host(ssl, name);
    if (ok !== 1) {
      crypto.ERR_clear_error();
      throw new TypeError(`invalid serverHostname ${JSON.stringify(hostname)}`);
    }
  }

  /** The `SSL` object; `OSError(EBADF)` once the session is closed. */
  #live(): Deno.PointerObject {
    const ssl = this.#ssl;
    if (ssl === null) {
      throw new OSError(E.EBADF, { message: "Bad file descriptor (SSLSocket is closed)" });
    }
    return ssl;
  }

  /** Whether the handshake has completed. */
  get handshakeDone(): boolean {
    return this.#handshakeDone;
  }

  /**
   * Turns the result `r` of a failed `SSL_*` call into "would block"
   * (returns READ or WRITE), end of stream (returns 0), or throws.
   */
  settle(r: number, call: string): number {
    const lib = openssl().ssl;
    const ssl = this.#ssl!;
    const err = lib.SSL_get_error(ssl, r);
    if (err === SSLC.SSL_ERROR_WANT_READ) return READ;
    if (err === SSLC.SSL_ERROR_WANT_WRITE) return WRITE;
    if (err === SSLC.SSL_ERROR_ZERO_RETURN) return 0;
    if (err === SSLC.SSL_ERROR_SYSCALL) {
      const errno = readErrno();
      const q = takeQueuedError();
      if (q.code === 0n && errno !== 0 && errno !== E.EAGAIN) {
        throw new OSError(errno, { syscall: call });
      }
      return this.#raggedEof(call);
    }
    const q = takeQueuedError();
    if (q.reasonCode === SSLC.SSL_R_UNEXPECTED_EOF_WHILE_READING) return this.#raggedEof(call);
    if (q.reasonCode === SSLC.SSL_R_CERTIFICATE_VERIFY_FAILED) {
      const code = Number(lib.SSL_get_verify_result(ssl));
      const text = readCString(openssl().crypto.X509_verify_cert_error_string(BigInt(code))) ??
        "unknown";
      const message = code === 62 /* X509_V_ERR_HOSTNAME_MISMATCH */ && this.#hostname
        ? `Hostname mismatch, certificate is not valid for '${this.#hostname}'.`
        : code === 64 /* X509_V_ERR_IP_ADDRESS_MISMATCH */ && this.#hostname
        ? `IP address mismatch, certificate is not valid for '${this.#hostname}'.`
        : text;
      throw new SSLCertVerificationError(code, message, { syscall: call });
    }
    const text = q.reasonText ?? `${call} failed (SSL_get_error ${err})`;
    const head = q.library && q.reason ? `[${q.library}: ${q.reason}] ` : "";
    throw new SSLError(err, head + text, { library: q.library, reason: q.reason, syscall: call });
  }

  /**
   * The peer closed without close_notify: the end of the stream (0), as
   * Python's `suppress_ragged_eofs` has it; without that option, a read
   * throws `SSLEOFError`, so a truncation is not mistaken for the end.
   */
  #raggedEof(call: string): 0 {
    if (this.#suppressRaggedEofs || call !== "SSL_read") return 0;
    throw new SSLEOFError("EOF occurred in violation of protocol", { syscall: call });
  }

  /** One step of the handshake: 0 when it is done, else READ or WRITE for what it waits for. */
  handshakeStep(): number {
    const ssl = this.#live();
    const path = this.#path;
    // The loop's path: the last flight may still wait for room in the kernel.
    if (path !== null && path.sendHeld() > 0) return WRITE;
    clearErrors();
    path?.claim();
    const r = openssl().ssl.SSL_do_handshake(ssl);
    // A flight is complete when the call returns: it leaves now, not at the end of the pass.
    const held = path !== null ? path.flushNow() : 0;
    if (r === 1) {
      // Done, even if the kernel refused part of the last flight: it goes first (see `wants`).
      this.#handshakeDone = true;
      this.#hsWants = 0;
      path?.handshakeDone();
      return 0;
    }
    const want = this.settle(r, "SSL_do_handshake");
    if (want === 0) {
      throw new SSLEOFError("EOF occurred in violation of protocol (during the handshake)");
    }
    this.#hsWants = held > 0 ? want | WRITE : want;
    return want;
  }

  /** A read or write finished the handshake (the program skipped `doHandshake`). */
  noteHandshake(): void {
    if (!this.#handshakeDone && openssl().ssl.SSL_is_init_finished(this.#ssl) === 1) {
      this.#handshakeDone = true;
      this.#hsWants = 0;
    }
  }

  /** What the last blocked read (READ/WRITE) or write waited for; 0 when none. */
  blockedOn(op: "read" | "write"): number {
    if (op === "write" && this.#path !== null && this.#path.held > 0) return WRITE;
    return op === "read" ? this.#readWants : this.#writeWants;
  }

  // ---- I/O ----

  /** Encrypts and sends from `data`: the bytes taken, -1 when it would block. */
  trySend(data: Uint8Array): number {
    // While the channel runs the handshake, application data waits in its queue.
    if (this.#handshaking) return -1;
    const ssl = this.#live();
    const n = Math.min(data.length, MAX_IO);
    if (n === 0) return 0;
    if (this.#path !== null) return this.#path.write(ssl, data, n);
    const lib = openssl().ssl;
    let sent = 0;
    // With partial writes on, SSL_write returns after each 16 KiB record: go on while it takes.
    while (sent < n) {
      clearErrors();
      const r = lib.SSL_write(ssl, sent === 0 ? data : data.subarray(sent), n - sent);
      if (r > 0) {
        sent += r;
        continue;
      }
      const want = this.settle(r, "SSL_write");
      if (want === 0) throw new OSError(E.EPIPE, { syscall: "SSL_write" }); // the peer closed
      this.#writeWants = want;
      break;
    }
    if (sent > 0) {
      this.#writeWants = 0;
      if (!this.#handshakeDone) this.noteHandshake();
      return sent;
    }
    return -1;
  }

  /** Receives and decrypts up to `n` bytes into `buffer`: the count, 0 at the end, -1 would block. */
  tryRecvInto(buffer: Uint8Array, n: number): number {
    if (this.#handshaking) return -1;
    const ssl = this.#live();
    const len = Math.min(n, MAX_IO);
    if (len === 0) return 0;
    if (this.#path !== null) return this.#path.read(ssl, buffer, len);
    const lib = openssl().ssl;
    let got = 0;
    // SSL_read hands out one record at a time. Go on only while OpenSSL holds
    // decrypted bytes: without read-ahead the next record is still in the
    // kernel, where the poller sees it, and asking for it now would mostly
    // cost a failing recv.
    while (got < len) {
      clearErrors();
      const r = lib.SSL_read(ssl, got === 0 ? buffer : buffer.subarray(got), len - got);
      if (r > 0) {
        got += r;
        if (lib.SSL_pending(ssl) === 0) break;
        continue;
      }
      if (got > 0) {
        // What follows is for the next call: a would-block or the end of stream shows up again.
        clearErrors();
        break;
      }
      const want = this.settle(r, "SSL_read");
      if (want === 0) return 0;
      this.#readWants = want;
      if (!this.#handshakeDone) this.noteHandshake();
      return -1;
    }
    this.#readWants = 0;
    if (!this.#handshakeDone) this.noteHandshake();
    return got;
  }

  /** False: a file's bytes must pass through OpenSSL, never straight from the kernel. */
  canSendfile(): boolean {
    return false;
  }

  /** Refused: `sendfile(2)` would put the file's bytes on the wire unencrypted. */
  trySendfile(_inFd: number, _offset: number, _count: number): number {
    throw new OSError(E.EOPNOTSUPP, {
      syscall: "sendfile",
      message: "sendfile(2) cannot be used on a TLS connection: the bytes would bypass TLS",
    });
  }

  /** Decrypted bytes OpenSSL already holds, readable without touching the fd. */
  pending(): number {
    const ssl = this.#ssl;
    if (ssl === null) return 0;
    return openssl().ssl.SSL_pending(ssl);
  }

  /**
   * Bytes held that the fd will not report again: decrypted ones, and (on
   * the loop's path, which reads ahead) whole records still to decrypt.
   */
  buffered(): number {
    const path = this.#path;
    return path !== null ? path.readMore : this.pending();
  }

  /** Records gathered or refused by the kernel, not yet sent. */
  queued(): number {
    return this.#path?.queued ?? 0;
  }

  /** Sends what the loop's path holds (the end of a pass); see `HeldOutput`. */
  flush(): boolean {
    const path = this.#path;
    if (path === null) return true;
    if (!path.lingering) {
      path.endOfPass();
      return true;
    }
    if (this.#ssl === null) return true;
    if (!path.lingerStep()) return false;
    this.#finishClose();
    return true;
  }

  /**
   * Ends the session (close_notify both ways): 0 once both are exchanged
   * (or the peer is gone), else READ or WRITE for what it waits for.
   */
  shutdownStep(): number {
    const ssl = this.#live();
    const lib = openssl().ssl;
    const path = this.#path;
    if (path !== null && path.sendHeld() > 0) return WRITE;
    for (let round = 0; round < 2; round++) {
      clearErrors();
      path?.claim();
      const r = lib.SSL_shutdown(ssl);
      if (path !== null && path.flushNow() > 0) return WRITE;
      if (r === 1) return 0;
      if (r === 0) continue; // ours sent, theirs not read yet: ask again
      const want = this.settle(r, "SSL_shutdown");
      if (want !== 0) return want;
      return 0; // the peer is gone: nothing more to exchange
    }
    return READ;
  }

  /**
   * Sends close_notify without waiting for the peer's (TLS's half-close:
   * reading goes on until the peer's own close_notify or end of stream):
   * 0 once it is on its way to the kernel (or the peer is gone), else READ
   * or WRITE for what the send waits for: call it again on that event.
   * Never called again once it returned 0, since a further `SSL_shutdown`
   * would read the peer's application data and drop it.
   */
  sendCloseNotify(): number {
    const path = this.#path;
    // The loop's path: records still held (the alert among them) go first.
    if (path !== null && path.sendHeld() > 0) return WRITE;
    if (this.#closeNotifySent) return 0;
    const ssl = this.#live();
    clearErrors();
    path?.claim();
    const r = openssl().ssl.SSL_shutdown(ssl);
    // 0: ours sent, theirs not read yet; 1: both. A first call that could not
    // write leaves the alert pending in OpenSSL: the next call only sends it.
    const want = r >= 0 ? 0 : this.settle(r, "SSL_shutdown");
    if (want === 0) this.#closeNotifySent = true;
    if (path !== null && path.flushNow() > 0) return WRITE;
    return want;
  }

  /** Ends the write direction (see `Transport.closeWrite`): close_notify, then `shutdown(SHUT_WR)`. */
  closeWrite(): number {
    if (!this.#handshakeDone) return this.#hsWants !== 0 ? this.#hsWants : WRITE;
    const want = this.sendCloseNotify();
    if (want !== 0) return want;
    this.#sock.shutdown(C.SHUT_WR);
    return 0;
  }

  /** Frees the session, leaving the fd open (after `unwrap`). */
  release(): void {
    this.#free();
  }

  /** Shuts down one or both directions of the fd (TLS itself is not told). */
  shutdown(how: number): void {
    this.#sock.shutdown(how);
  }

  /**
   * Ends the session and closes the fd. After a completed handshake it sends
   * close_notify first, once and without blocking (the fd is made
   * non-blocking; a full socket buffer just drops it); before, or after a
   * handshake that timed out, it writes nothing. On the loop's path, records
   * already taken from the channel and still held (the kernel refused them)
   * go out first: the fd stays open for them while the loop runs, as the
   * kernel keeps sending a closed socket's buffer (at most `LINGER_SECONDS`).
   */
  close(): void {
    const ssl = this.#ssl;
    if (ssl === null) {
      this.#closeFd();
      return;
    }
    const path = this.#path;
    const goodbye = this.#handshakeDone && !this.#noShutdown && this.#sock.fileno() >= 0;
    if (goodbye) {
      const lib = openssl().ssl;
      try {
        if (this.#sock.getblocking()) this.#sock.setblocking(false);
        clearErrors();
        path?.claim();
        if ((lib.SSL_get_shutdown(ssl) & SSLC.SSL_SENT_SHUTDOWN) === 0) lib.SSL_shutdown(ssl);
      } catch { /* the fd is going away anyway */ }
      clearErrors();
    }
    if (path !== null && goodbye && path.startLinger()) {
      this.#timer?.cancel();
      this.#timer = null;
      this.#handshaking = false;
      return;
    }
    this.#finishClose();
  }

  #finishClose(): void {
    this.#free();
    this.#closeFd();
  }

  #free(): void {
    const ssl = this.#ssl;
    if (ssl === null) return;
    this.#ssl = null;
    this.#timer?.cancel();
    this.#timer = null;
    this.#handshaking = false;
    this.#path?.release();
    openssl().ssl.SSL_free(ssl);
  }

  /** The fd, or -1 once closed. */
  fileno(): number {
    return this.#sock.fileno();
  }

  /** The `SSL` object for Python's queries (certificate, version, cipher), or null once closed. */
  session(): Deno.PointerObject | null {
    return this.#ssl;
  }

  // ---- the loop's side (the Transport interface) ----

  /**
   * A channel took the session over: its bytes now take the loop's path,
   * and the channel runs the handshake unless the program does.
   */
  attach(hooks: TransportHooks): void {
    if (this.#hooks !== null || this.#ssl === null) return;
    this.#hooks = hooks;
    this.#path = new RecordPath(this, this.#ssl, this.#sock, hooks);
    this.#readWants = 0;
    this.#writeWants = 0;
    if (!this.doHandshakeOnConnect || this.#handshakeDone) return;
    this.#handshaking = true;
    this.#tcpUp = null;
    const seconds = this.#timeout;
    if (seconds !== null && seconds > 0 && Number.isFinite(seconds)) {
      this.#timer = hooks.callLater(seconds, () => this.#timedOut());
    }
  }

  /** Whether TCP is up: known, or asked of the kernel once. */
  #isTcpUp(): boolean {
    if (this.#tcpUp !== null) return this.#tcpUp;
    try {
      this.#sock.getpeername();
      return this.#tcpUp = true;
    } catch {
      return this.#tcpUp = false;
    }
  }

  #timedOut(): void {
    this.#timer = null;
    if (!this.#handshaking || this.#ssl === null) return;
    // Nothing may be written now: the peer is not reading, and a write that
    // cannot go out would keep the fd writable and the loop spinning.
    this.#noShutdown = true;
    this.#hooks?.sessionFailed(
      new OSError(E.ETIMEDOUT, {
        syscall: "SSL_do_handshake",
        message: "The handshake operation timed out",
      }),
    );
  }

  /** While the channel runs the handshake, the fd's events are the handshake's. */
  get busy(): boolean {
    return this.#handshaking && this.#isTcpUp();
  }

  /** The TCP connect finished: the handshake starts (the channel's `handleConnect` waits for it). */
  connectionMade(): boolean {
    if (!this.#handshaking) return true;
    this.#tcpUp = true;
    this.#hooks?.interestChanged();
    return false;
  }

  /**
   * During the handshake what OpenSSL waits for (or the connect, before TCP
   * is up); afterwards what the channel asked, plus the other direction when
   * a read or write waits on it, plus WRITE (ready at once) when bytes wait
   * that no poller can see, plus WRITE while records the kernel refused are
   * held.
   */
  wants(want: number): number {
    const path = this.#path;
    this.#channelReads = (want & READ) !== 0;
    if (this.#handshaking) return this.#isTcpUp() ? this.#hsWants : want;
    this.#channelWrites = (want & WRITE) !== 0;
    this.#drainOnWrite = false;
    if (want & READ) {
      if (this.#readWants === WRITE) want |= WRITE;
      // An unfinished record in OpenSSL's buffer needs more from the kernel,
      // which the poller reports; bytes OpenSSL holds it cannot see.
      if (this.buffered() > 0) {
        this.#drainOnWrite = true;
        want |= WRITE;
      }
    }
    if (want & WRITE && this.#writeWants === READ) want |= READ;
    if (path !== null) want = path.wants(want);
    return want;
  }

  /**
   * During the handshake an event steps it (and uses the event up); once it
   * is done the channel's `handleConnect` (clients) runs through
   * `hooks.sessionUp`. Afterwards a read event also retries a write that
   * waited for it, a write event first sends records the kernel refused,
   * and a write event reads what waited for it.
   */
  ready(events: number): number {
    if (this.#handshaking) {
      if (!this.#isTcpUp()) return events; // the channel finishes the connect first
      this.#step();
      // Application data that came with the handshake's last flight was read
      // ahead: the channel reads it in this event (no poller would report it).
      return !this.#handshaking && this.#channelReads && this.buffered() > 0 ? READ : 0;
    }
    let out = events;
    if (events & READ && this.#writeWants === READ) {
      this.#writeWants = 0;
      out |= WRITE;
    }
    if (events & WRITE) {
      // Held records go first; while the kernel refuses them the channel's write waits.
      if (this.#path !== null && this.#path.sendHeld() > 0) out &= ~WRITE;
      if (this.#readWants === WRITE || this.#drainOnWrite) {
        this.#drainOnWrite = false;
        this.#readWants = 0;
        out |= READ;
      }
      // A write event the channel did not ask for (TLS asked) is not its to handle.
      if (!this.#channelWrites) out &= ~WRITE;
    }
    return out;
  }

  #step(): void {
    if (this.handshakeStep() !== 0) return;
    this.#handshaking = false;
    this.#timer?.cancel();
    this.#timer = null;
    this.#hooks?.sessionUp();
  }
}
