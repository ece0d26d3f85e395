/**
 * Ctrl-C for a synchronous loop on Windows, where there are no POSIX
 * signals: the console delivers Ctrl-C as an event that runs handlers on a
 * new thread, and it interrupts no wait. JS cannot run on that thread while
 * the loop holds the main one (a Deno FFI callback called from another
 * thread waits for the main thread's event loop), so the catching is done
 * by Deno's own signal listener in a Worker, whose event loop is free: it
 * raises a flag in shared memory and sends a byte to a loopback socket pair
 * whose reading end joins every wait of the loop (`stopWakeFd`), so the
 * wait returns and the loop sees the flag after the pass. While the Worker
 * listens, Deno's console handler tells Windows the event was handled;
 * when the trap is released the Worker goes, and Ctrl-C ends the process
 * again.
 *
 * `SIGTERM` is accepted and does nothing here: Windows has no way to send
 * it to a process (under Wine, `kill -TERM` ends the process outright).
 *
 * @module
 */

import { closeHandle, loopbackPair } from "./winsock.ts";

/** How long arming waits for the Worker's listener, in ms. */
const ARM_TIMEOUT_MS = 10_000;
const READY = 0;
const FIRED = 1;

// Runs in the Worker: its own Winsock binding to send the wake-up byte.
const WORKER_SOURCE = `
const ws = Deno.dlopen("ws2_32.dll", {
  send: { parameters: ["u64", "buffer", "i32", "i32"], result: "i32" },
}).symbols;
self.onmessage = ({ data }) => {
  const cells = new Int32Array(data.cells);
  const byte = new Uint8Array([3]);
  Deno.addSignalListener("SIGINT", () => {
    Atomics.store(cells, ${FIRED}, 1);
    ws.send(BigInt(data.handle), byte, 1, 0);
  });
  Atomics.store(cells, ${READY}, 1);
  Atomics.notify(cells, ${READY});
};
`;

/** A Ctrl-C trap for one running loop (see the module doc). */
export class ConsoleCtrlTrap {
  /** The socket that turns readable when Ctrl-C arrives, or -1 when not watching it. */
  readonly wakeFd: number = -1;
  readonly #writeFd: number = -1;
  readonly #cells = new Int32Array(new SharedArrayBuffer(8));
  #worker: Worker | null = null;

  /** Arms the trap; of `names` only `"SIGINT"` needs anything on Windows. */
  constructor(names: readonly string[]) {
    if (!names.includes("SIGINT")) return;
    [this.wakeFd, this.#writeFd] = loopbackPair();
    const url = URL.createObjectURL(new Blob([WORKER_SOURCE], { type: "text/javascript" }));
    try {
      this.#worker = new Worker(url, { type: "module" });
      this.#worker.postMessage({ cells: this.#cells.buffer, handle: this.#writeFd });
      // Synchronous on purpose: a Ctrl-C before the listener is there would end the process.
      if (Atomics.wait(this.#cells, READY, 0, ARM_TIMEOUT_MS) === "timed-out") {
        throw new Error(`asyncore: the Ctrl-C listener did not start within ${ARM_TIMEOUT_MS} ms`);
      }
    } catch (error) {
      this.release();
      throw error;
    } finally {
      URL.revokeObjectURL(url);
    }
  }

  /** `"SIGINT"` once Ctrl-C arrived, else null. */
  fired(): "SIGINT" | null {
    return Atomics.load(this.#cells, FIRED) !== 0 ? "SIGINT" : null;
  }

  /** Stops listening and closes the socket pair. Idempotent. */
  release(): void {
    this.#worker?.terminate();
    this.#worker = null;
    if (this.wakeFd >= 0) {
      closeHandle(this.wakeFd);
      closeHandle(this.#writeFd);
      (this as { wakeFd: number }).wakeFd = -1;
    }
  }
}
