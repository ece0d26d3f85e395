/**
 * `SSLSocket`: the `Socket` surface over a TLS session on the same fd, as
 * Python's `ssl.SSLSocket`. Every `SSL_*` call is preceded by
 * `ERR_clear_error()`: OpenSSL's error queue is per thread, and a stale entry
 * left by another connection would otherwise fail a healthy one.
 *
 * @module
 */

import { errno as E, OSError, readErrno } from "../ffi/errno.ts";
import { openssl, SSLC } from "../ffi/openssl.ts";
import { asBytes, readCString, toCString } from "../ffi/bytes.ts";
import { C } from "../ffi/platform.ts";
import { type BytesLike, Socket } from "../ffi/socket.ts";
import { READ, WRITE } from "../dispatcher/_interest.ts";
import type { SSLContext } from "./context.ts";
import { CERT_NONE, PROTOCOL_TLS_CLIENT, PROTOCOL_TLS_SERVER } from "./constants.ts";
import { decodeCertificate } from "./_x509.ts";
import {
  SSLCertVerificationError,
  SSLEOFError,
  SSLError,
  SSLWantReadError,
  SSLWantWriteError,
  takeQueuedError,
} from "./errors.ts";

/** `SSL_read`/`SSL_write` take an `int` length. */
const MAX_IO = 0x3fff_0000;
const ptrOut = new BigUint64Array(1);
const ptrOutBytes = new Uint8Array(ptrOut.buffer);
const u32Out = new Uint32Array(1);
const i32Out = new Int32Array(1);
const IPV4 = /^\d{1,3}(\.\d{1,3}){3}$/;

function noFlags(flags: number, call: string): void {
  if (flags !== 0) {
    throw new RangeError(`non-zero flags not allowed in calls to ${call}() on SSLSocket`);
  }
}

/** Options of `SSLContext.wrapSocket`. */
export interface WrapSocketOptions {
  /** Act as the server of the handshake. Default false. */
  serverSide?: boolean;
  /** The server's name: sent as SNI and, with `checkHostname`, checked against its certificate. */
  serverHostname?: string | null;
  /**
   * Who runs the handshake. true (default): a blocking connected socket
   * handshakes at once, and a dispatcher on a non-blocking one runs it in
   * the loop; false: the program calls `doHandshake()` itself.
   */
  doHandshakeOnConnect?: boolean;
  /** Seconds a dispatcher-run handshake may take (default: the context's `handshakeTimeout`). */
  handshakeTimeout?: number | null;
  /**
   * What a read sees when the peer closes the connection without
   * close_notify (a "ragged EOF"): true (default, as Python's
   * `suppress_ragged_eofs`), the end of the stream (an empty read); false,
   * an {@linkcode SSLEOFError}, so a truncation attack is not mistaken for
   * the end.
   */
  suppressRaggedEofs?: boolean;
}

/**
 * A socket whose bytes travel inside TLS. Made by
 * {@linkcode SSLContext.wrapSocket} (which takes over the fd of the socket
 * it wraps), not by `new`.
 *
 * @example
 * ```ts ignore
 * const ctx = createDefaultContext();
 * const raw = new Socket();
 * raw.connect(["example.org", 443]);
 * const tls = ctx.wrapSocket(raw, { serverHostname: "example.org" });
 * tls.sendall("GET / HTTP/1.0\r\nHost: example.org\r\n\r\n");
 * console.log(new TextDecoder().decode(tls.recv(4096)));
 * tls.close();
 * ```
 */
export class SSLSocket extends Socket {
  #ssl: Deno.PointerValue;
  #handshakeDone = false;
  /** The context this socket was made from. */
  readonly context: SSLContext;
  /** Whether this end is the server of the handshake. */
  readonly serverSide: boolean;
  /** The name given as `serverHostname`, or null. */
  readonly serverHostname: string | null;
  /** Whether the handshake is run for the program (see `WrapSocketOptions`). */
  readonly doHandshakeOnConnect: boolean;
  /** Seconds a dispatcher-run handshake may take, null for no limit. */
  readonly handshakeTimeout: number | null;
  /** Whether a read takes an EOF without close_notify as the end (see `WrapSocketOptions`). */
  readonly suppressRaggedEofs: boolean;
  /** The last failure `#settle` read as the end of stream was a ragged EOF. */
  #raggedEof = false;
  /** What the unfinished handshake waits for: READ or WRITE (internal). */
  _hsWants: number;
  /** What a read that would block waits for, 0 when none is blocked (internal). */
  _readWants = 0;
  /** What a write that would block waits for, 0 when none is blocked (internal). */
  _writeWants = 0;
  /** While true, send/recv answer "would block": a dispatcher runs the handshake (internal). */
  _gate = false;
  /** Close without close_notify (a handshake that timed out) (internal). */
  _noShutdown = false;
  /** Called once when the socket closes (internal: the dispatcher layer's timers). */
  _onClose: (() => void) | null = null;

  /** @ignore Use `SSLContext.wrapSocket`. */
  constructor(sock: Socket, context: SSLContext, options: WrapSocketOptions = {}) {
    if (!(sock instanceof Socket)) throw new TypeError("wrapSocket needs a Socket");
    if (sock instanceof SSLSocket) throw new TypeError("the socket is already an SSLSocket");
    const sockTimeout = sock.gettimeout();
    if (sockTimeout !== null && sockTimeout !== 0) {
      throw new TypeError(
        "wrapSocket takes a blocking or non-blocking socket, not one with a timeout (for now)",
      );
    }
    const serverSide = options.serverSide ?? false;
    const hostname = options.serverHostname ?? null;
    if (serverSide && hostname !== null) {
      throw new TypeError("serverHostname can only be specified in client mode");
    }
    if (hostname !== null && (typeof hostname !== "string" || hostname === "")) {
      throw new TypeError("serverHostname must be a non-empty string");
    }
    if (serverSide && context.protocol !== PROTOCOL_TLS_SERVER) {
      throw new TypeError("Cannot create a server socket with a PROTOCOL_TLS_CLIENT context");
    }
    if (!serverSide && context.protocol !== PROTOCOL_TLS_CLIENT) {
      throw new TypeError("Cannot create a client socket with a PROTOCOL_TLS_SERVER context");
    }
    if (!serverSide && context.checkHostname && hostname === null) {
      throw new TypeError("checkHostname requires serverHostname");
    }
    const { ssl: lib, crypto } = openssl();
    const fd = sock.fileno();
    const blocking = sock.getblocking();
    super(sock.family, sock.type, sock.proto, sock.detach());
    this.context = context;
    this.serverSide = serverSide;
    this.serverHostname = hostname;
    this.doHandshakeOnConnect = options.doHandshakeOnConnect ?? true;
    this.suppressRaggedEofs = options.suppressRaggedEofs ?? true;
    const timeout = options.handshakeTimeout !== undefined
      ? options.handshakeTimeout
      : context.handshakeTimeout;
    this.handshakeTimeout = timeout;
    this._hsWants = serverSide ? READ : WRITE;
    crypto.ERR_clear_error();
    const ssl = lib.SSL_new(context._pointer());
    if (ssl === null) {
      this.close();
      throw new SSLError(SSLC.SSL_ERROR_SSL, "SSL_new failed (out of memory?)");
    }
    this.#ssl = ssl;
    try {
      this.#noDelay();
      lib.SSL_set_fd(ssl, fd);
      if (serverSide) {
        lib.SSL_set_accept_state(ssl);
      } else {
        lib.SSL_set_connect_state(ssl);
        if (hostname !== null) this.#setHostname(hostname, context.checkHostname);
      }
    } catch (error) {
      this.close();
      throw error;
    }
    // Python: a connected blocking socket with do_handshake_on_connect shakes hands at once.
    if (this.doHandshakeOnConnect && blocking && this.#isConnected()) {
      try {
        this.doHandshake();
      } catch (error) {
        this.close();
        throw error;
      }
    }
  }

  /**
   * TLS writes in records and expects answers: with Nagle's algorithm on, a
   * TLS 1.3 server's data after its session tickets waits for the peer's
   * delayed ACK (about 40 ms per handshake).
   */
  #noDelay(): void {
    if (this.type !== C.SOCK_STREAM || (this.family !== C.AF_INET && this.family !== C.AF_INET6)) {
      return;
    }
    try {
      this.setsockopt(C.IPPROTO_TCP, C.TCP_NODELAY, 1);
    } catch (error) {
      if (!(error instanceof OSError)) throw error;
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

  #isConnected(): boolean {
    try {
      this.getpeername();
      return true;
    } catch (error) {
      if (error instanceof OSError) return false;
      throw error;
    }
  }

  #live(): Deno.PointerObject {
    const ssl = this.#ssl;
    if (ssl === null) {
      throw new OSError(E.EBADF, { message: "Bad file descriptor (SSLSocket is closed)" });
    }
    return ssl;
  }

  /** Whether the TLS handshake has completed. */
  get handshakeDone(): boolean {
    return this.#handshakeDone;
  }

  /**
   * Turns the result `r` of a failed `SSL_*` call into "would block"
   * (returns READ or WRITE), end of stream (returns 0), or throws.
   */
  #settle(r: number, call: string): number {
    const lib = openssl().ssl;
    const ssl = this.#ssl!;
    const err = lib.SSL_get_error(ssl, r);
    this.#raggedEof = false;
    if (err === SSLC.SSL_ERROR_WANT_READ) return READ;
    if (err === SSLC.SSL_ERROR_WANT_WRITE) return WRITE;
    if (err === SSLC.SSL_ERROR_ZERO_RETURN) return 0;
    if (err === SSLC.SSL_ERROR_SYSCALL) {
      const errno = readErrno();
      const q = takeQueuedError();
      if (q.code === 0n && errno !== 0 && errno !== E.EAGAIN) {
        throw new OSError(errno, { syscall: call });
      }
      this.#raggedEof = true;
      return 0; // EOF with no close_notify: Python's suppress_ragged_eofs
    }
    const q = takeQueuedError();
    if (q.reasonCode === SSLC.SSL_R_UNEXPECTED_EOF_WHILE_READING) {
      this.#raggedEof = true;
      return 0; // ragged EOF, as above
    }
    if (q.reasonCode === SSLC.SSL_R_CERTIFICATE_VERIFY_FAILED) {
      const code = Number(lib.SSL_get_verify_result(ssl));
      const text = readCString(openssl().crypto.X509_verify_cert_error_string(BigInt(code))) ??
        "unknown";
      const message = code === 62 /* X509_V_ERR_HOSTNAME_MISMATCH */ && this.serverHostname
        ? `Hostname mismatch, certificate is not valid for '${this.serverHostname}'.`
        : code === 64 /* X509_V_ERR_IP_ADDRESS_MISMATCH */ && this.serverHostname
        ? `IP address mismatch, certificate is not valid for '${this.serverHostname}'.`
        : text;
      throw new SSLCertVerificationError(code, message, { syscall: call });
    }
    const text = q.reasonText ?? `${call} failed (SSL_get_error ${err})`;
    const head = q.library && q.reason ? `[${q.library}: ${q.reason}] ` : "";
    throw new SSLError(err, head + text, { library: q.library, reason: q.reason, syscall: call });
  }

  /**
   * One step of the handshake: 0 when it is done, else READ or WRITE for
   * what it waits for (internal: the dispatcher layer's non-throwing form).
   */
  _handshakeStep(): number {
    const ssl = this.#live();
    const { ssl: lib, crypto } = openssl();
    crypto.ERR_clear_error();
    const r = lib.SSL_do_handshake(ssl);
    if (r === 1) {
      this.#handshakeDone = true;
      this._hsWants = 0;
      return 0;
    }
    const want = this.#settle(r, "SSL_do_handshake");
    if (want === 0) {
      throw new SSLEOFError("EOF occurred in violation of protocol (during the handshake)");
    }
    this._hsWants = want;
    return want;
  }

  /**
   * Runs the handshake. On a non-blocking socket it throws
   * {@linkcode SSLWantReadError} or {@linkcode SSLWantWriteError} until it
   * completes: call it again when the socket is ready that way.
   */
  doHandshake(): void {
    const want = this._handshakeStep();
    if (want === READ) throw new SSLWantReadError();
    if (want === WRITE) throw new SSLWantWriteError();
  }

  #noteHandshake(): void {
    if (!this.#handshakeDone && openssl().ssl.SSL_is_init_finished(this.#ssl) === 1) {
      this.#handshakeDone = true;
      this._hsWants = 0;
    }
  }

  /** Like `send`, but returns -1 instead of throwing when it would block. */
  override trySend(data: BytesLike, flags = 0): number {
    noFlags(flags, "send");
    const bytes = asBytes(data);
    if (this._gate) return -1;
    const ssl = this.#live();
    const n = Math.min(bytes.length, MAX_IO);
    if (n === 0) return 0;
    const { ssl: lib, crypto } = openssl();
    let sent = 0;
    // With partial writes on, SSL_write returns after each 16 KiB record: go on while it takes.
    while (sent < n) {
      crypto.ERR_clear_error();
      const r = lib.SSL_write(ssl, sent === 0 ? bytes : bytes.subarray(sent), n - sent);
      if (r > 0) {
        sent += r;
        continue;
      }
      const want = this.#settle(r, "SSL_write");
      if (want === 0) throw new OSError(E.EPIPE, { syscall: "SSL_write" }); // the peer closed
      this._writeWants = want;
      break;
    }
    if (sent > 0) {
      this._writeWants = 0;
      if (!this.#handshakeDone) this.#noteHandshake();
      return sent;
    }
    return -1;
  }

  /** False: a file's bytes must pass through OpenSSL, never straight from the kernel. */
  override canSendfile(): boolean {
    return false;
  }

  /**
   * Refused: `sendfile(2)` would put the file's bytes on the wire unencrypted.
   * (`sendfile` reads the file and sends it through TLS instead, as Python's
   * `SSLSocket.sendfile` does.)
   */
  override trySendfile(_inFd: number, _offset: number, _count: number): number {
    throw new OSError(E.EOPNOTSUPP, {
      syscall: "sendfile",
      message: "sendfile(2) cannot be used on an SSLSocket: the bytes would bypass TLS",
    });
  }

  /** Sends `data` over TLS; a non-blocking socket that cannot throws `SSLWantWriteError`/`SSLWantReadError`. */
  override send(data: BytesLike, flags = 0): number {
    const n = this.trySend(data, flags);
    if (n === -1) {
      throw this._writeWants === READ ? new SSLWantReadError() : new SSLWantWriteError();
    }
    return n;
  }

  /** Sends all of `data` (blocking sockets). */
  override sendall(data: BytesLike, flags = 0): void {
    let bytes = asBytes(data);
    while (bytes.length > 0) bytes = bytes.subarray(this.send(bytes, flags));
  }

  /** Like `recvInto`, but returns -1 instead of throwing when it would block; 0 at the end. */
  override tryRecvInto(buffer: Uint8Array, n: number = buffer.length, flags = 0): number {
    noFlags(flags, "recv");
    if (n > buffer.length) {
      throw new RangeError(`recv size ${n} exceeds the buffer (${buffer.length} bytes)`);
    }
    if (this._gate) return -1;
    const ssl = this.#live();
    const len = Math.min(n, MAX_IO);
    if (len === 0) return 0;
    const { ssl: lib, crypto } = openssl();
    let got = 0;
    // SSL_read hands out one record at a time. Go on only while OpenSSL holds
    // decrypted bytes: without read-ahead the next record is still in the
    // kernel, where the poller sees it, and asking for it now would mostly
    // cost a failing recv.
    while (got < len) {
      crypto.ERR_clear_error();
      const r = lib.SSL_read(ssl, got === 0 ? buffer : buffer.subarray(got), len - got);
      if (r > 0) {
        got += r;
        if (lib.SSL_pending(ssl) === 0) break;
        continue;
      }
      if (got > 0) {
        // What follows is for the next call: a would-block or the end of stream shows up again.
        crypto.ERR_clear_error();
        break;
      }
      const want = this.#settle(r, "SSL_read");
      if (want === 0) {
        if (this.#raggedEof && !this.suppressRaggedEofs) {
          throw new SSLEOFError("EOF occurred in violation of protocol", { syscall: "SSL_read" });
        }
        return 0;
      }
      this._readWants = want;
      if (!this.#handshakeDone) this.#noteHandshake();
      return -1;
    }
    this._readWants = 0;
    if (!this.#handshakeDone) this.#noteHandshake();
    return got;
  }

  /** Receives up to `n` bytes of application data; empty means the session ended. */
  override recv(n: number, flags = 0): Uint8Array {
    if (!Number.isInteger(n) || n < 0) {
      throw new RangeError(`recv size must be a non-negative integer, not ${n}`);
    }
    const buf = new Uint8Array(Math.min(n, MAX_IO));
    const got = this.tryRecvInto(buf, buf.length, flags);
    if (got === -1) {
      throw this._readWants === WRITE ? new SSLWantWriteError() : new SSLWantReadError();
    }
    return got === buf.length ? buf : buf.slice(0, got);
  }

  /** Receives into `buffer`; returns the count (0: the session ended). */
  override recvInto(buffer: Uint8Array, n: number = buffer.length, flags = 0): number {
    const got = this.tryRecvInto(buffer, n, flags);
    if (got === -1) {
      throw this._readWants === WRITE ? new SSLWantWriteError() : new SSLWantReadError();
    }
    return got;
  }

  /** Datagrams have no TLS here. */
  override sendto(): number {
    throw new TypeError("sendto is not allowed on an SSLSocket");
  }

  /** Datagrams have no TLS here. */
  override recvfrom(): [Uint8Array, never] {
    throw new TypeError("recvfrom is not allowed on an SSLSocket");
  }

  /** Datagrams have no TLS here. */
  override recvfromInto(..._args: Parameters<Socket["recvfromInto"]>): [number, never] {
    throw new TypeError("recvfromInto is not allowed on an SSLSocket");
  }

  /** Refused, as in Python: the bytes would bypass TLS. */
  override sendmsg(..._args: Parameters<Socket["sendmsg"]>): number {
    throw new TypeError("sendmsg is not allowed on an SSLSocket");
  }

  /** Refused, as in Python: the bytes would bypass TLS. */
  override recvmsg(..._args: Parameters<Socket["recvmsg"]>): never {
    throw new TypeError("recvmsg is not allowed on an SSLSocket");
  }

  /** Datagrams have no TLS here. */
  override recvmmsgInto(..._args: Parameters<Socket["recvmmsgInto"]>): number {
    throw new TypeError("recvmmsgInto is not allowed on an SSLSocket");
  }

  /** Datagrams have no TLS here. */
  override tryRecvmmsgInto(..._args: Parameters<Socket["tryRecvmmsgInto"]>): number {
    throw new TypeError("recvmmsgInto is not allowed on an SSLSocket");
  }

  /** Datagrams have no TLS here. */
  override sendmmsg(..._args: Parameters<Socket["sendmmsg"]>): number {
    throw new TypeError("sendmmsg is not allowed on an SSLSocket");
  }

  /** Datagrams have no TLS here. */
  override trySendmmsg(..._args: Parameters<Socket["trySendmmsg"]>): number {
    throw new TypeError("sendmmsg is not allowed on an SSLSocket");
  }

  /**
   * `null` (blocking) and 0 (non-blocking) as on a `Socket`; a timeout in
   * seconds is refused for now: the TLS calls do not wait under one yet.
   */
  override settimeout(seconds: number | null): void {
    if (seconds !== null && seconds !== 0 && typeof seconds === "number" && seconds > 0) {
      throw new TypeError("an SSLSocket takes settimeout(null) or settimeout(0) only, for now");
    }
    super.settimeout(seconds);
  }

  /** Refused, as in Python: two objects cannot share one TLS session. */
  override dup(): never {
    throw new TypeError("Can't dup() SSLSocket instances");
  }

  /** Decrypted bytes OpenSSL already holds, readable without touching the socket. */
  pending(): number {
    const ssl = this.#ssl;
    if (ssl === null) return 0;
    return openssl().ssl.SSL_pending(ssl);
  }

  /**
   * Ends the TLS session (close_notify both ways) and returns the plain
   * socket on the same fd; this object is then closed. A non-blocking socket
   * may throw `SSLWantReadError` (the peer's close_notify has not come yet):
   * call it again when readable.
   */
  unwrap(): Socket {
    const ssl = this.#live();
    const { ssl: lib, crypto } = openssl();
    for (let round = 0; round < 2; round++) {
      crypto.ERR_clear_error();
      const r = lib.SSL_shutdown(ssl);
      if (r === 1) {
        return this.#release();
      }
      if (r === 0) continue; // ours sent, theirs not read yet: ask again
      const want = this.#settle(r, "SSL_shutdown");
      if (want === READ) throw new SSLWantReadError();
      if (want === WRITE) throw new SSLWantWriteError();
      return this.#release(); // the peer is gone: nothing more to exchange
    }
    throw new SSLWantReadError();
  }

  #release(): Socket {
    this.#free();
    return new Socket(this.family, this.type, this.proto, this.detach());
  }

  #free(): void {
    const ssl = this.#ssl;
    if (ssl === null) return;
    this.#ssl = null;
    const done = this._onClose;
    this._onClose = null;
    openssl().ssl.SSL_free(ssl);
    done?.();
  }

  /**
   * Closes the session and the fd. After a completed handshake it sends
   * close_notify first, once and without blocking (the fd is made
   * non-blocking; a full socket buffer just drops it); before, or after a
   * handshake that timed out, it writes nothing. Frees the `SSL` object.
   */
  override close(): void {
    const ssl = this.#ssl;
    if (ssl !== null) {
      if (this.#handshakeDone && !this._noShutdown && this.fileno() >= 0) {
        const { ssl: lib, crypto } = openssl();
        try {
          if (this.getblocking()) this.setblocking(false);
          crypto.ERR_clear_error();
          if ((lib.SSL_get_shutdown(ssl) & SSLC.SSL_SENT_SHUTDOWN) === 0) lib.SSL_shutdown(ssl);
        } catch { /* the fd is going away anyway */ }
        crypto.ERR_clear_error();
      }
      this.#free();
    }
    super.close();
  }

  /**
   * The peer's certificate: Python's dictionary (`subject`, `issuer`,
   * `version`, `serialNumber`, `notBefore`, `notAfter`, `subjectAltName`),
   * `{}` when it was not verified (`CERT_NONE`), its DER bytes with
   * `binaryForm`, or null when the peer sent none. Throws before the
   * handshake is done.
   */
  getpeercert(binaryForm = false): Record<string, unknown> | Uint8Array | null {
    const ssl = this.#live();
    if (!this.#handshakeDone) throw new Error("handshake not done yet");
    const { ssl: lib, crypto } = openssl();
    const x = lib.SSL_get1_peer_certificate(ssl);
    if (x === null) return null;
    try {
      ptrOut[0] = 0n;
      const len = crypto.i2d_X509(x, null);
      if (len <= 0) throw new SSLError(SSLC.SSL_ERROR_SSL, "i2d_X509 failed");
      const der = new Uint8Array(len);
      ptrOut[0] = BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(der)));
      crypto.i2d_X509(x, ptrOutBytes);
      if (binaryForm) return der;
      if (this.context.verifyMode === CERT_NONE) return {};
      return decodeCertificate(der);
    } finally {
      crypto.X509_free(x);
    }
  }

  /** The negotiated protocol, e.g. `"TLSv1.3"`, or null before the handshake. */
  version(): string | null {
    if (this.#ssl === null || !this.#handshakeDone) return null;
    return readCString(openssl().ssl.SSL_get_version(this.#ssl));
  }

  /** `[name, protocol, secretBits]` of the negotiated cipher, or null. */
  cipher(): [name: string, protocol: string, bits: number] | null {
    if (this.#ssl === null || !this.#handshakeDone) return null;
    const lib = openssl().ssl;
    const c = lib.SSL_get_current_cipher(this.#ssl);
    if (c === null) return null;
    const bits = lib.SSL_CIPHER_get_bits(c, new Uint8Array(i32Out.buffer));
    return [
      readCString(lib.SSL_CIPHER_get_name(c)) ?? "",
      readCString(lib.SSL_CIPHER_get_version(c)) ?? "",
      bits,
    ];
  }

  /** The ALPN protocol the server chose, or null. */
  selectedAlpnProtocol(): string | null {
    if (this.#ssl === null || !this.#handshakeDone) return null;
    ptrOut[0] = 0n;
    u32Out[0] = 0;
    openssl().ssl.SSL_get0_alpn_selected(this.#ssl, ptrOutBytes, new Uint8Array(u32Out.buffer));
    const len = u32Out[0];
    const ptr = Deno.UnsafePointer.create(ptrOut[0]);
    if (len === 0 || ptr === null) return null;
    return new TextDecoder().decode(
      new Uint8Array(new Deno.UnsafePointerView(ptr).getArrayBuffer(len)).slice(),
    );
  }

  /** Like Python's repr. */
  override toString(): string {
    return `<SSLSocket fd=${this.fileno()}, family=${this.family}, type=${this.type}, proto=${this.proto}, serverSide=${this.serverSide}>`;
  }
}
