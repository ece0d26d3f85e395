/**
 * What a channel's transport may ask of it (`TransportHooks`): timers on the
 * channel's loop, interest notices, and the session (a TLS handshake) coming
 * up or failing, which the channel answers as asyncore would a connect.
 *
 * @module
 */

import type { TransportHooks } from "../ffi/transport.ts";
import { handleErrorSafely } from "./_events.ts";
import { type Channel, type ChannelCore, kCore, notifyInterest } from "./_loop_core.ts";

/** The parts of a `Dispatcher` the hooks use. */
export interface HookedChannel extends Channel {
  readonly [kCore]: ChannelCore;
  connected: boolean;
  connecting: boolean;
  handleConnect(): void;
}

/** What a channel's transport may ask of it. */
export class ChannelHooks implements TransportHooks {
  /** The hooks of `ch`. */
  constructor(readonly ch: HookedChannel) {}
  /** A timer on the channel's loop. */
  callLater(seconds: number, fn: () => void): { cancel(): void } {
    return this.ch[kCore].loop.timers.callLater(seconds, fn);
  }
  /** Tells the pollers. */
  interestChanged(): void {
    notifyInterest(this.ch);
  }
  /** The session is up: a client's connection is made only now. */
  sessionUp(): void {
    const ch = this.ch;
    if (ch.connecting || !ch.connected) {
      // A client: the connection is made only now (asyncore's order).
      ch.handleConnect();
      ch.connected = true;
      ch.connecting = false;
    }
    notifyInterest(ch);
  }
  /** The session failed outside an event: handleError, then close. */
  sessionFailed(error: Error): void {
    const ch = this.ch;
    if (ch.fileno() === null) return;
    handleErrorSafely(ch, error);
    if (ch.fileno() !== null) ch.close();
  }
}
