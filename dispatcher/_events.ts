/**
 * Calling a channel's handlers for the loop: every error goes to the
 * channel's `handleError`, and a channel whose `handleError` or `close`
 * is itself broken is taken out by force, so one channel cannot stop the
 * others. Internal: `loop.ts` exports the asyncore names.
 *
 * @module
 */

import { OSError } from "../ffi/errno.ts";
import { C } from "../ffi/platform.ts";
import { compactTraceback, DISCONNECTED, isReraised } from "./errors.ts";
import { type Channel, kCore, removeFromMap } from "./_loop_core.ts";

const { POLLIN, POLLPRI, POLLOUT, POLLERR, POLLHUP, POLLNVAL } = C;

/**
 * Whether `obj` is still open. Plain objects standing in for channels (as in
 * the reference's tests) answer through their `fileno()`, or count as open.
 */
function isOpen(obj: Channel): boolean {
  const core = obj[kCore];
  if (core !== undefined) return core.fd !== null;
  return typeof obj.fileno !== "function" || obj.fileno() !== null;
}

/**
 * Hands `error` to `obj.handleError`. If `handleError` itself throws, the
 * loop reports that on stderr and closes the channel by force.
 */
export function handleErrorSafely(obj: Channel, error: unknown): void {
  try {
    obj.handleError(error);
  } catch (inner) {
    if (isReraised(inner)) throw inner;
    const [, t, v, info] = compactTraceback(inner);
    console.error(`error: handleError of ${safeName(obj)} threw (${t}:${v} ${info}); closing it`);
    forceClose(obj);
  }
}

function safeName(obj: Channel): string {
  try {
    return String(obj);
  } catch {
    return obj?.constructor?.name ?? "channel";
  }
}

/** Closes `obj`; if its `close()` is broken, takes it out of its map by hand. */
export function forceClose(obj: Channel): void {
  try {
    obj.close();
  } catch {
    // As delChannel would: the pollers hear of it before the fd is closed
    // (epoll must forget it first) and fileno() then says closed.
    const core = obj[kCore];
    if (core !== undefined && core.fd !== null) {
      removeFromMap(core.map, core.fd, obj);
      core.fd = null;
    }
    try {
      obj.socket?.close();
    } catch { /* already closed */ }
  }
}

/** Calls one event method of `obj`; what it throws goes to `handleError` (ExitNow leaves). */
function fire(
  obj: Channel,
  event: "handleReadEvent" | "handleWriteEvent" | "handleExptEvent",
): void {
  try {
    obj[event]();
  } catch (error) {
    if (isReraised(error)) throw error;
    handleErrorSafely(obj, error);
  }
}

/** A read event for `obj`, errors to `handleError` (asyncore's `read`). */
export function read(obj: Channel): void {
  fire(obj, "handleReadEvent");
}

/** A write event for `obj`, errors to `handleError` (asyncore's `write`). */
export function write(obj: Channel): void {
  fire(obj, "handleWriteEvent");
}

/** An exceptional-condition event for `obj` (asyncore's `_exception`). */
export function exception(obj: Channel): void {
  fire(obj, "handleExptEvent");
}

/**
 * Fires the handlers `poll()` flags call for (asyncore's `readwrite`).
 * Two differences from the reference: once a handler has closed the channel
 * the remaining events are dropped (no second `handleClose`), and a hang-up
 * that arrives together with readable data (`POLLHUP | POLLIN`, as Unix
 * sockets report a closed peer) reads first: the close comes when `recv`
 * reaches the end of the stream, so no byte is lost.
 */
export function readwrite(obj: Channel, flags: number): void {
  try {
    if (flags & POLLIN) obj.handleReadEvent();
    if (flags & POLLOUT && isOpen(obj)) obj.handleWriteEvent();
    if (flags & POLLPRI && isOpen(obj)) obj.handleExptEvent();
    if (flags & (POLLHUP | POLLERR | POLLNVAL) && isOpen(obj)) {
      const hangupWithData = (flags & (POLLERR | POLLNVAL)) === 0 && (flags & POLLIN) !== 0;
      if (!hangupWithData) obj.handleClose();
    }
  } catch (error) {
    if (isReraised(error)) throw error;
    if (error instanceof OSError && DISCONNECTED.has(error.errno)) {
      try {
        obj.handleClose();
      } catch (inner) {
        if (isReraised(inner)) throw inner;
        handleErrorSafely(obj, inner);
      }
    } else {
      handleErrorSafely(obj, error);
    }
  }
}
