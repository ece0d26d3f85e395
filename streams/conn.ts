/**
 * `Conn`: one connection as Web Streams, for code written in Deno's stream
 * idioms (`pipeTo`, `for await`, `await using`), over a channel of the
 * default loop.
 *
 * @module
 */

import type { Address } from "../ffi/structs.ts";
import type { StreamChannel } from "./_channel.ts";

/**
 * A connection made by {@linkcode connect} or accepted by a
 * {@linkcode Listener}, as Web Streams. The streams run on the default loop
 * by themselves: no `loop()` or `loopAsync()` call is needed (an explicit
 * `loopAsync()` serves them too).
 *
 * - `readable` is a byte stream (BYOB readers read straight into their
 *   buffer). A consumer that stops reading stops the loop reading this
 *   socket once 64 KiB wait unread; the peer is then slowed down by TCP.
 *   The peer's end of stream closes it; an error (`OSError`, `SSLError`)
 *   errors it, after the bytes received before.
 * - `writable` takes `Uint8Array` chunks. A write resolves once no more
 *   than 64 KiB are queued for the socket (the chunk's buffer may be reused
 *   then: what is still queued of it is a copy). `close()` resolves once
 *   everything is sent and the write side is shut down (as `closeWrite()`).
 *
 * The socket is closed once the readable has ended (or been cancelled) and
 * the writable is closed, or at once by `close()`.
 *
 * @example An echo over a connection
 * ```ts
 * import { connect, inetAddress, listen } from "@asyncore/deno";
 *
 * const listener = listen({ hostname: "127.0.0.1", port: 0 }); // an echo server to talk to
 * listener.accept().then((c) => c.readable.pipeTo(c.writable));
 *
 * await using conn = await connect({ hostname: "127.0.0.1", port: inetAddress(listener.addr)[1] });
 * const writer = conn.writable.getWriter();
 * await writer.write(new TextEncoder().encode("hello\n"));
 * await conn.closeWrite();
 * for await (const chunk of conn.readable) console.log(chunk);
 * listener.close();
 * ```
 */
export interface Conn extends AsyncDisposable {
  /** The bytes the peer sends, as they arrive. */
  readonly readable: ReadableStream<Uint8Array>;
  /** Bytes to send to the peer. */
  readonly writable: WritableStream<Uint8Array>;
  /** This end's address (`[host, port]`, or a Unix path). */
  readonly localAddr: Address;
  /** The peer's address (for a listener with `proxyProtocol`, the client's from the header). */
  readonly remoteAddr: Address;
  /**
   * Sends what is queued, then the end of stream (TLS: close_notify, then
   * `shutdown(SHUT_WR)`); resolves then. Reading goes on; a later write
   * rejects with `OSError` `EPIPE`.
   */
  closeWrite(): Promise<void>;
  /**
   * Closes the connection at once: bytes still queued are dropped, pending
   * reads and writes reject (`OSError` `EBADF`). To send what is queued
   * first, close the writable, call `closeWrite()`, or dispose with
   * `await using` (which waits for the queue).
   */
  close(): void;
}

/** The channel under a connection this module made (internal: tests look at its queue). */
export let channelOf: (conn: StreamConn) => StreamChannel;

/** The `Conn` over a {@linkcode StreamChannel}. */
export class StreamConn implements Conn {
  readonly #ch: StreamChannel;
  /** See {@linkcode Conn.localAddr}. */
  readonly localAddr: Address;
  /** See {@linkcode Conn.remoteAddr}. */
  readonly remoteAddr: Address;

  /** The connection of `ch` (connected); closes `ch` if its addresses cannot be read. */
  constructor(ch: StreamChannel) {
    this.#ch = ch;
    try {
      const sock = ch.sock;
      this.localAddr = sock.getsockname();
      this.remoteAddr = ch.peer ?? sock.getpeername();
    } catch (error) {
      ch.close();
      throw error;
    }
  }

  static {
    channelOf = (conn) => conn.#ch;
  }

  /** See {@linkcode Conn.readable}. */
  get readable(): ReadableStream<Uint8Array> {
    return this.#ch.reader.stream;
  }

  /** See {@linkcode Conn.writable}. */
  get writable(): WritableStream<Uint8Array> {
    return this.#ch.writer.stream;
  }

  /** See {@linkcode Conn.closeWrite}. */
  closeWrite(): Promise<void> {
    return this.#ch.writer.end();
  }

  /** See {@linkcode Conn.close}. */
  close(): void {
    this.#ch.close();
  }

  /** Sends what is queued (while the peer takes it), then closes. */
  async [Symbol.asyncDispose](): Promise<void> {
    try {
      await this.#ch.flushed();
    } catch {
      // The connection failed meanwhile: closing is all that is left.
    } finally {
      this.close();
    }
  }
}
