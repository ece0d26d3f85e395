/**
 * What a listening channel keeps beyond asyncore: accept batches, the pause
 * after running out of fds (`EMFILE`), and its live connections for
 * `maxConnections`/`maxConnectionsPerHost`. A connection's slot is freed
 * when the channel that adopted its socket closes (or when the socket is
 * closed without one). Internal: `Dispatcher` exposes the knobs.
 *
 * @module
 */

import { errno as E, OSError } from "../ffi/errno.ts";
import type { Socket } from "../ffi/socket.ts";
import { type ChannelCore, kCore, notifyInterest } from "./_loop_core.ts";
import type { Address } from "../ffi/structs.ts";
import type { TimerHandle, TimerQueue } from "./timers.ts";

/** The most connections one readable event of a listener accepts (as nginx's `multi_accept`). */
export const ACCEPT_BATCH = 64;

/** How long a listening channel stops accepting after running out of fds. */
export const ACCEPT_BACKOFF_SECONDS = 0.1;

/** The host a peer address counts under: its IP (IPv4-mapped IPv6 as IPv4); Unix peers are one host. */
export function hostOf(addr: Address): string {
  if (typeof addr === "string") return "unix";
  const host = addr[0];
  return host.startsWith("::ffff:") && host.includes(".") ? host.slice(7) : host;
}

/** The live connections accepted through one listener. */
export class ConnectionCounter {
  /** Live connections. */
  live = 0;
  readonly #perHost = new Map<string, number>();

  /** Live connections from `host`. */
  from(host: string): number {
    return this.#perHost.get(host) ?? 0;
  }

  /** Whether one more connection from `addr` stays within the limits. */
  admits(addr: Address, max: number, maxPerHost: number): boolean {
    if (this.live >= max) return false;
    return maxPerHost === Infinity || this.from(hostOf(addr)) < maxPerHost;
  }

  /** Counts a connection from `addr`; returns the function that frees its slot (once). */
  take(addr: Address): () => void {
    const host = hostOf(addr);
    this.live++;
    this.#perHost.set(host, this.from(host) + 1);
    let held = true;
    return () => {
      if (!held) return;
      held = false;
      this.live--;
      const n = this.from(host) - 1;
      if (n > 0) this.#perHost.set(host, n);
      else this.#perHost.delete(host);
    };
  }
}

/** What the accept back-off needs of its listening channel. */
export interface BackoffOwner {
  readonly [kCore]: ChannelCore;
  logInfo(message: unknown, type: string): void;
}

/** A listener's pause after running out of fds. */
export class AcceptBackoff {
  /** Until when (`performance.now()` ms) accepting is paused; 0 when it is not. */
  pausedUntil = 0;
  #resume: TimerHandle | null = null;
  // Logged once per episode: each pause ends by itself, so the end of a pause
  // cannot tell a retry from a new shortage.
  #outOfFds = false;

  /**
   * One accept on `sock` for `owner`: the new fd, or -1 when there was none
   * after all (`EAGAIN`, `ECONNABORTED`) or the process ran out of fds (the
   * pause starts, logged once through `owner.logInfo(..., "error")`).
   */
  accept(owner: BackoffOwner, sock: Socket): number {
    let fd: number;
    try {
      fd = sock.tryAccept();
    } catch (error) {
      if (error instanceof OSError) {
        if (error.errno === E.ECONNABORTED || error.errno === E.EAGAIN) return -1;
        if (error.errno === E.EMFILE || error.errno === E.ENFILE) {
          this.start(
            error,
            owner[kCore].loop.timers,
            (line) => owner.logInfo(`${owner} ${line}`, "error"),
            () => notifyInterest(owner),
          );
          return -1;
        }
      }
      throw error;
    }
    if (fd >= 0) this.accepted();
    return fd;
  }

  /**
   * `error` (EMFILE/ENFILE) on accept: pause for {@linkcode ACCEPT_BACKOFF_SECONDS}
   * on `timers`, then call `resume`. `log` gets one line per episode.
   */
  start(error: OSError, timers: TimerQueue, log: (line: string) => void, resume: () => void): void {
    if (!this.#outOfFds) {
      this.#outOfFds = true;
      log(
        `${error.message} on accept: pauses accepting, retrying every ${ACCEPT_BACKOFF_SECONDS}s until an fd is free`,
      );
    }
    this.pausedUntil = performance.now() + ACCEPT_BACKOFF_SECONDS * 1000;
    // The end of the pause is an event of its own: it shortens the loop's
    // wait and tells the pollers to ask this listener again.
    this.#resume?.cancel();
    this.#resume = timers.callLater(ACCEPT_BACKOFF_SECONDS, () => {
      this.#resume = null;
      resume();
    });
  }

  /** An accept succeeded: the episode is over. */
  accepted(): void {
    if (this.pausedUntil !== 0) this.end();
    this.#outOfFds = false;
  }

  /**
   * Whether reading is paused now. Checked against the clock too, so single
   * passes (`poll()`, `poll2()`) driven by a program without timers resume.
   */
  paused(): boolean {
    const until = this.pausedUntil;
    if (until === 0) return false;
    if (performance.now() < until) return true;
    this.pausedUntil = 0;
    return false;
  }

  /** Ends the pause (and its timer). */
  end(): void {
    this.pausedUntil = 0;
    this.#resume?.cancel();
    this.#resume = null;
  }
}

/** A socket being handed to `handleAccepted`, and the slot it holds. */
interface Admission {
  sock: { fileno(): number; close(): void };
  release: (() => void) | null;
  adopted: boolean;
}

/** The admission under way (one per nested `handleAccepted`; set and cleared around the call). */
let admitting: Admission | null = null;
/** Sockets counted under a limit that no channel adopted while they were handed over. */
const parked = new WeakMap<object, () => void>();

/**
 * Runs `handOver` (the listener's `handleAccepted` or `handleAcceptRefused`)
 * for `sock`, which holds the slot `release` frees (null: not counted). A
 * channel that adopts `sock` meanwhile takes the slot (see
 * {@linkcode adoptSlot}). If the handler throws before a channel adopted
 * it, the socket is closed (in Python the dropped object closes itself;
 * here nothing else would close the fd) and the error goes on.
 */
export function admit(
  sock: Admission["sock"],
  release: (() => void) | null,
  handOver: () => void,
): void {
  const outer = admitting;
  const rec: Admission = { sock, release, adopted: false };
  admitting = rec;
  try {
    handOver();
  } catch (error) {
    if (!rec.adopted) sock.close();
    throw error;
  } finally {
    admitting = outer;
    if (!rec.adopted && rec.release !== null) {
      // Closed without a channel: the slot is free again. Kept aside: a
      // channel may adopt it later.
      if (sock.fileno() < 0) rec.release();
      else parked.set(sock, rec.release);
    }
  }
}

/** A channel adopts `sock`: the slot it holds, if any, now goes with the channel. */
export function adoptSlot(sock: object): (() => void) | null {
  const rec = admitting;
  if (rec !== null && rec.sock === sock) {
    rec.adopted = true;
    const release = rec.release;
    rec.release = null;
    return release;
  }
  const release = parked.get(sock);
  if (release === undefined) return null;
  parked.delete(sock);
  return release;
}
