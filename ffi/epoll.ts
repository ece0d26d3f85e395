/**
 * `epoll(7)`: an interest list kept in the kernel and a reusable event
 * buffer. `struct epoll_event`'s size and offsets come from the platform
 * table: packed, 12 bytes, on x86_64; 16 bytes with `data` at 8 on aarch64.
 * The fd is kept in the low 32 bits of `data` (little-endian).
 *
 * @module
 */

import { attempt, check, waitUninterrupted } from "./_syscall.ts";
import { C, platform } from "./platform.ts";
import { type EpollSymbols, epollSymbols } from "./symbols.ts";

const { size: SIZE, events: EVENTS, data: DATA } = platform.structs.epollEvent;

/** One epoll instance. */
export class Epoll {
  #epfd: number;
  #events: Uint8Array;
  #view: DataView;
  readonly #ctlBuf = new Uint8Array(SIZE);
  readonly #ctlView = new DataView(this.#ctlBuf.buffer);
  readonly #lib: EpollSymbols;

  /**
   * Creates the instance (close-on-exec) with room for `maxEvents` per wait.
   * Throws an `Error` naming the platform where libc has no epoll.
   */
  constructor(maxEvents = 1024) {
    const lib = epollSymbols();
    if (!lib) throw new Error(`epoll is not available on ${platform.name}; use poll`);
    this.#lib = lib;
    const fd = check(attempt(() => lib.epoll_create1(C.EPOLL_CLOEXEC)), "epoll_create1");
    this.#epfd = fd;
    this.#events = new Uint8Array(SIZE * maxEvents);
    this.#view = new DataView(this.#events.buffer);
  }

  /** The epoll fd, or -1 once closed. */
  fileno(): number {
    return this.#epfd;
  }

  /** How many events one wait can return. */
  get capacity(): number {
    return this.#events.length / SIZE;
  }

  /** Grows the event buffer to `n` entries (never shrinks). */
  reserve(n: number): void {
    if (n <= this.capacity) return;
    this.#events = new Uint8Array(SIZE * n);
    this.#view = new DataView(this.#events.buffer);
  }

  /**
   * `epoll_ctl(op, fd, events)` with `fd` as the event data. Returns 0 or the
   * errno (`ENOENT`, `EEXIST`, `EPERM`, `EBADF`), confirmed by the errno
   * policy, for the caller to decide on.
   */
  ctl(op: number, fd: number, events: number): number {
    this.#ctlBuf.fill(0);
    this.#ctlView.setUint32(EVENTS, events, true);
    this.#ctlView.setUint32(DATA, fd, true);
    const lib = this.#lib;
    const epfd = this.#epfd, buf = this.#ctlBuf;
    const r = attempt(() => lib.epoll_ctl(epfd, op, fd, buf));
    return r >= 0 ? 0 : -r;
  }

  /**
   * Waits up to `timeout` ms (-1: forever); returns the number of events,
   * read with {@linkcode fd} and {@linkcode events}. EINTR is retried with
   * the time left.
   */
  wait(timeout: number): number {
    const lib = this.#lib;
    const epfd = this.#epfd, events = this.#events, max = this.capacity;
    return waitUninterrupted("epoll_wait", timeout, (ms) => lib.epoll_wait(epfd, events, max, ms));
  }

  /**
   * The same wait on a worker thread; the events land in a buffer of their
   * own, so it may run while the synchronous side uses {@linkcode wait}.
   * Failures (EINTR) resolve to 0.
   */
  async waitAsync(timeout: number, buffer: Uint8Array): Promise<number> {
    const r = await this.#lib.epollWaitAsync(
      this.#epfd,
      buffer,
      Math.floor(buffer.length / SIZE),
      timeout,
    );
    return r < 0 ? 0 : r;
  }

  /** The fd of event `i` of the last wait. */
  fd(i: number): number {
    return this.#view.getInt32(i * SIZE + DATA, true);
  }

  /** The event mask of event `i` of the last wait. */
  events(i: number): number {
    return this.#view.getUint32(i * SIZE + EVENTS, true);
  }

  /** Closes the epoll fd (idempotent). */
  close(): void {
    const fd = this.#epfd;
    if (fd < 0) return;
    this.#epfd = -1;
    this.#lib.close(fd);
  }
}
