/**
 * Noticing a signal while the thread is inside a synchronous loop, without
 * running JavaScript in a signal handler.
 *
 * Deno runs a signal listener (`Deno.addSignalListener`) from its event loop,
 * which a synchronous `loop()` never returns to; and JS cannot run inside a
 * signal handler. So the handler installed here is a C function that does
 * nothing (`getpid`), with `SA_RESETHAND`: on delivery the *kernel* puts the
 * disposition back to `SIG_DFL`, and that change is what the loop reads with
 * `sigaction(sig, NULL, &now)` after each pass and after each `EINTR`. No
 * code runs in the handler, no memory is shared with it, and a blocking wait
 * is still interrupted (`EINTR`, handler without `SA_RESTART`). A second
 * signal before the trap is released gets the default action (the process
 * ends), as a second Ctrl-C ends a stuck program.
 *
 * The kernel interrupts the wait of the thread it delivers to, which is the
 * process's first thread when that one does not block the signal. Where the
 * loop runs on another thread (`deno test`, a Worker), the waits are made in
 * slices of {@linkcode STOP_SLICE_MS} and the trap is read between them
 * ({@linkcode stopSliceMs}); a pass still waits as long as it was asked to.
 *
 * `signalfd` would need the signal blocked in every thread of the process,
 * and Deno's own threads are out of reach.
 *
 * Windows has no signals: there {@linkcode armStopSignals} arms a
 * `ConsoleCtrlTrap` (`ffi/console_ctrl.ts`) instead, whose socket joins
 * each wait ({@linkcode stopWakeFd}).
 *
 * @module
 */

import type { ConsoleCtrlTrap } from "./console_ctrl.ts";
import { errno as E, OSError, readErrno } from "./errno.ts";
import { C, platform } from "./platform.ts";
import { libc } from "./symbols.ts";

// Loaded on Windows only: Linux never parses it.
const consoleCtrl = platform.winsock ? await import("./console_ctrl.ts") : null;

const SA = platform.structs.sigaction;
const SIG_DFL = 0n;

/** The signals a loop can be asked to stop on. */
export type StopSignal = "SIGINT" | "SIGTERM" | "SIGHUP" | "SIGQUIT";

const STOP_SIGNALS: readonly StopSignal[] = ["SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT"];

/** Checks a `stopSignals` option: a list of distinct {@linkcode StopSignal} names. */
export function checkStopSignals(names: unknown): StopSignal[] {
  if (!Array.isArray(names)) {
    throw new TypeError(`stopSignals must be an array of signal names, not ${String(names)}`);
  }
  for (const name of names) {
    if (!STOP_SIGNALS.includes(name)) {
      throw new RangeError(
        `stopSignals: ${String(name)} is not one of ${STOP_SIGNALS.join(", ")}`,
      );
    }
    // A table gives -1 for a signal the platform lacks (Windows has no SIGHUP or SIGQUIT).
    if (C[name as StopSignal] < 0) {
      throw new RangeError(`stopSignals: ${name} does not exist on ${platform.name}`);
    }
  }
  return [...new Set(names as StopSignal[])];
}

function sigaction(sig: number, act: Uint8Array | null, old: Uint8Array | null): void {
  const lib = libc();
  while (lib.sigaction(sig, act, old) !== 0) {
    const err = readErrno();
    if (err !== E.EINTR) throw new OSError(err, { syscall: "sigaction" });
  }
}

function handlerOf(action: Uint8Array): bigint {
  return new DataView(action.buffer).getBigUint64(SA.handler, true);
}

/** The action every trap installs: the do-nothing handler, reset on delivery. */
function trapAction(): Uint8Array {
  const act = new Uint8Array(SA.size);
  const view = new DataView(act.buffer);
  view.setBigUint64(SA.handler, BigInt(Deno.UnsafePointer.value(libc().getpidAddress)), true);
  view.setUint32(SA.flags, C.SA_RESETHAND, true);
  return act;
}

/** What a loop holds while its stop signals are armed. */
export interface StopTrap {
  /** The signal {@linkcode StopTrap.fired} has already seen, without asking the system again. */
  seen(): StopSignal | null;
  /** The first signal that arrived since the trap was armed, or null. */
  fired(): StopSignal | null;
  /** Puts back what each signal did before. Idempotent. */
  release(): void;
}

const traps: StopTrap[] = [];
let consoleTrap: ConsoleCtrlTrap | null = null;

/**
 * Arms `names` for one running loop: a {@linkcode SignalTrap} where there
 * are POSIX signals, a Ctrl-C trap on Windows.
 */
export function armStopSignals(names: StopSignal[]): StopTrap {
  if (consoleCtrl === null) return new SignalTrap(names);
  const trap = new consoleCtrl.ConsoleCtrlTrap(names);
  const previous = consoleTrap;
  consoleTrap = trap;
  const armed: StopTrap = {
    seen: () => trap.fired(),
    fired: () => trap.fired(),
    release: () => {
      trap.release();
      if (consoleTrap === trap) consoleTrap = previous;
      const at = traps.indexOf(armed);
      if (at >= 0) traps.splice(at, 1);
    },
  };
  traps.push(armed);
  return armed;
}

/**
 * The socket that a wait must also watch so that a stop signal ends it, or
 * -1: on Windows while a Ctrl-C trap is armed (nothing interrupts a wait
 * there); never elsewhere (the kernel interrupts it with `EINTR`).
 */
export function stopWakeFd(): number {
  return consoleTrap === null ? -1 : consoleTrap.wakeFd;
}

/**
 * Watches some signals until {@linkcode release}: while armed, they no longer
 * have their previous effect (ending the process, or a Deno listener); the
 * first one that arrives is reported by {@linkcode fired}.
 */
export class SignalTrap implements StopTrap {
  readonly #names: StopSignal[];
  readonly #numbers: number[];
  readonly #saved: Uint8Array[] = [];
  readonly #now = new Uint8Array(SA.size);
  #fired: StopSignal | null = null;

  /** Installs the trap for `names`. */
  constructor(names: StopSignal[]) {
    this.#names = names;
    this.#numbers = names.map((n) => C[n]);
    const act = trapAction();
    try {
      for (const sig of this.#numbers) {
        const old = new Uint8Array(SA.size);
        sigaction(sig, act, old);
        this.#saved.push(old);
      }
    } catch (error) {
      this.release();
      throw error;
    }
    traps.push(this);
  }

  /** The signal {@linkcode fired} has already seen, without asking the kernel again. */
  seen(): StopSignal | null {
    return this.#fired;
  }

  /** The first signal that arrived since the trap was armed, or null (one `sigaction` per signal). */
  fired(): StopSignal | null {
    if (this.#fired !== null) return this.#fired;
    for (let i = 0; i < this.#saved.length; i++) {
      sigaction(this.#numbers[i], null, this.#now);
      if (handlerOf(this.#now) === SIG_DFL) return this.#fired = this.#names[i];
    }
    return null;
  }

  /**
   * Whether a signal sent to the process may miss this thread's wait: the
   * kernel gives a process-wide signal to the process's first thread when it
   * can, and JS may run on another one (`deno test` does). The trap still
   * sees it, but only when the current wait ends.
   */
  static offMainThread(): boolean {
    const lib = libc();
    return lib.gettid() !== lib.getpid();
  }

  /** Puts back what each signal did before. Idempotent. */
  release(): void {
    for (let i = this.#saved.length - 1; i >= 0; i--) {
      sigaction(this.#numbers[i], this.#saved[i], null);
    }
    this.#saved.length = 0;
    const at = traps.indexOf(this);
    if (at >= 0) traps.splice(at, 1);
  }
}

/** Longest slice of a wait while stop signals are armed off the first thread, in ms. */
export const STOP_SLICE_MS = 250;

let offMain: boolean | undefined;

/**
 * The part of a wait of `ms` (-1: forever) to make before looking for a stop
 * signal again: all of it normally; at most {@linkcode STOP_SLICE_MS} while a
 * trap is armed and this thread is not the process's first, since the kernel
 * interrupts only the thread it delivers to.
 */
export function stopSliceMs(ms: number): number {
  if (traps.length === 0 || consoleTrap !== null) return ms;
  offMain ??= SignalTrap.offMainThread();
  if (!offMain) return ms;
  return ms < 0 || ms > STOP_SLICE_MS ? STOP_SLICE_MS : ms;
}

/**
 * Whether an armed trap has seen its signal: asked by the waits after `EINTR`
 * so that they return at once instead of waiting again. Free when no trap is
 * armed.
 */
export function stopRequested(): boolean {
  for (let i = 0; i < traps.length; i++) {
    if (traps[i].fired() !== null) return true;
  }
  return false;
}
