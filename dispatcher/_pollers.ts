/**
 * The readiness backends by name: which exist on this platform, which one a
 * `Loop` takes by default, and the backend for a name.
 *
 * @module
 */

import { platform } from "../ffi/platform.ts";
import type { Backend } from "./_backend.ts";
import { EpollBackend } from "./_backend_epoll.ts";
import { PollBackend } from "./_backend_poll.ts";
import { SelectBackend } from "./_backend_select.ts";
import type { ChannelMap } from "./_loop_core.ts";

/** The readiness backends a loop can use. */
export type PollerName = "select" | "poll" | "epoll";

/** Checks a poller name; epoll only where the platform has it. */
export function checkPoller(poller: unknown): PollerName {
  if (poller !== "select" && poller !== "poll" && poller !== "epoll") {
    throw new RangeError(`poller must be "select", "poll" or "epoll", not ${String(poller)}`);
  }
  if (poller === "epoll" && !platform.hasEpoll) {
    throw new RangeError(`epoll is not available on ${platform.name}; use "poll"`);
  }
  return poller;
}

/** The best backend here: epoll where there is one, else poll. */
export function bestPoller(): PollerName {
  return platform.hasEpoll ? "epoll" : "poll";
}

/** The backend for `poller` over `map`. */
export function createBackend(poller: PollerName, map: ChannelMap): Backend {
  if (poller === "epoll") return new EpollBackend(map);
  return poller === "poll" ? new PollBackend(map) : new SelectBackend(map);
}
