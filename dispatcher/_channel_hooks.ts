/**
 * `ChannelHooks`: what a channel's transport may ask of the channel (the
 * `TransportHooks` of `ffi/transport.ts`): timers on the channel's loop,
 * interest notices, the end of a session's setup (a TLS handshake), and
 * output flushed at the end of the loop's pass. Internal: `Dispatcher`
 * gives one to each transport it takes over.
 *
 * @module
 */

import type { HeldOutput, TransportHooks } from "../ffi/transport.ts";
import { handleErrorSafely } from "./_events.ts";
import { type Channel, type ChannelCore, kCore, notifyInterest } from "./_loop_core.ts";
import { isReraised } from "./errors.ts";

/** The part of a `Dispatcher` its transport's hooks use. */
export interface HookedChannel {
  readonly [kCore]: ChannelCore;
  connected: boolean;
  connecting: boolean;
  fileno(): number | null;
  handleConnect(): void;
  close(): void;
}

/**
 * The hooks of one channel's transport. It is also what the loop flushes
 * at the end of a pass for the transport: the transport's error there goes
 * to the channel's `handleError`, as in its own events.
 */
export class ChannelHooks implements TransportHooks, HeldOutput {
  #output: HeldOutput | null = null;

  /** The hooks of `ch`'s transport. */
  constructor(readonly ch: HookedChannel) {}

  /** A timer on the channel's loop. */
  callLater(seconds: number, fn: () => void): { cancel(): void } {
    return this.ch[kCore].loop.timers.callLater(seconds, fn);
  }

  /** `output` is flushed at the end of the channel's loop's pass. */
  flushLater(output: HeldOutput): void {
    this.#output = output;
    this.ch[kCore].loop.flushLater(this);
  }

  /** The loop's end-of-pass call: flushes the transport's output, errors to `handleError`. */
  flush(): boolean {
    try {
      return this.#output?.flush() ?? true;
    } catch (error) {
      if (isReraised(error)) throw error;
      if (this.ch.fileno() !== null) handleErrorSafely(this.ch as unknown as Channel, error);
      return true;
    }
  }

  /** What the transport waits for changed: the pollers look again. */
  interestChanged(): void {
    notifyInterest(this.ch);
  }

  /** The session is up: a client's connection is made only now (asyncore's order). */
  sessionUp(): void {
    const ch = this.ch;
    if (ch.connecting || !ch.connected) {
      ch.handleConnect();
      ch.connected = true;
      ch.connecting = false;
    }
    notifyInterest(ch);
  }

  /** The session failed outside an event: `handleError`, then close. */
  sessionFailed(error: Error): void {
    const ch = this.ch;
    if (ch.fileno() === null) return;
    handleErrorSafely(ch as unknown as Channel, error);
    if (ch.fileno() !== null) ch.close();
  }
}
