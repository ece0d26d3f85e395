// The shared test fixtures: the pollers, fd-leak accounting, bounded waiting,
// echo channels, child processes (python peers) that `await using` reaps, and
// seeded data. Subprocess output capture lives in fixtures/subprocess.ts.
import { assert, assertEquals } from "@std/assert";
import {
  type Address,
  AF_INET,
  AF_UNIX,
  Dispatcher,
  DispatcherWithSend,
  loopAsync,
  type PollerName,
  type Socket as SocketType,
  type SocketMap,
} from "../mod.ts";
import { Socket } from "../ffi/socket.ts";
import { defaultCore } from "../dispatcher/_loop_core.ts";

/** The number of `defaultLoop`'s scheduled, uncancelled timers. */
export function pendingTimers(): number {
  return defaultCore.timers.pending;
}

/** Seconds until `defaultLoop`'s next timer is due, or null. */
export function nextTimerDelay(): number | null {
  return defaultCore.timers.nextDelay();
}

/** Runs `defaultLoop`'s due timers; returns how many ran. */
export function runDueTimers(): number {
  return defaultCore.timers.runDue();
}

/** CPU seconds this process used so far (user + system), from /proc/self/stat. */
export function cpuSeconds(): number {
  const stat = Deno.readTextFileSync("/proc/self/stat");
  // After the ")" closing the command name: field 3 (state) onwards; utime
  // and stime are fields 14 and 15, in clock ticks (100 per second on Linux).
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) / 100;
}
import { winsock } from "../ffi/symbols.ts";

/**
 * Windows has no /proc: there the leak checks count the sockets the library
 * opened and has not closed (ffi/winsock.ts keeps that list).
 */
const windows = Deno.build.os === "windows";

/** The number of open fds of this process. */
export function fdCount(): number {
  if (winsock !== null) return winsock.openSocketHandles().length;
  let n = 0;
  for (const _ of Deno.readDirSync("/proc/self/fd")) n++;
  return n - 1; // the directory handle itself
}

/** The test runs on Windows (under Wine in CI), where some Linux facts do not apply. */
export const onWindows: boolean = windows;

/**
 * What a test's time bound is multiplied by: 10 under Windows (Wine), where a
 * Winsock call costs about 100 us and a thread hop more; 1 elsewhere.
 */
export const TIME_SLACK: number = windows ? 10 : 1;

/** The poller a test picks for speed: epoll, or poll (WSAPoll) where there is no epoll. */
export const BEST_POLLER: PollerName = windows ? "poll" : "epoll";

/** The open fd numbers of this process, with what they point at. */
export function openFds(): Map<number, string> {
  const out = new Map<number, string>();
  if (winsock !== null) {
    for (const handle of winsock.openSocketHandles()) out.set(handle, "socket");
    return out;
  }
  for (const e of Deno.readDirSync("/proc/self/fd")) {
    try {
      out.set(Number(e.name), Deno.readLinkSync(`/proc/self/fd/${e.name}`));
    } catch {
      // the directory's own fd vanished meanwhile
    }
  }
  return out;
}

let warmed = false;

/**
 * Waits until Deno's own lazily opened fds exist (a socketpair about 0.5 s
 * after start) and the library's spare fd is held, so a baseline taken now
 * stays put.
 */
export async function settleFds(): Promise<void> {
  if (warmed) return;
  const wait = 800 - performance.now();
  if (wait > 0) await new Promise((r) => setTimeout(r, wait));
  new Socket().close();
  warmed = true;
}

/**
 * Runs `fn` and asserts that the process holds no more fds afterwards than
 * before (fds are compared by number, and the leaked ones are listed).
 */
export async function assertNoFdLeak(fn: () => unknown | Promise<unknown>): Promise<void> {
  await settleFds();
  const before = openFds();
  await fn();
  // Deno may close child-process pipes a tick later.
  for (let i = 0; i < 50; i++) {
    if (fdCount() <= before.size) return;
    await new Promise((r) => setTimeout(r, 10));
  }
  const after = openFds();
  const leaked = [...after].filter(([fd, target]) => before.get(fd) !== target);
  throw new Error(
    `fd leak: ${before.size} fds before, ${after.size} after; new: ${
      leaked.map(([fd, t]) => `${fd} -> ${t}`).join(", ")
    }`,
  );
}

/** A test that must leave no fd behind (see {@linkcode assertNoFdLeak}). */
export function leakTest(
  name: string,
  fn: () => unknown | Promise<unknown>,
  ignore = false,
): void {
  Deno.test({ name, ignore, fn: () => assertNoFdLeak(fn) });
}

/**
 * A test that must leave no fd behind (see {@linkcode assertNoFdLeak}) and
 * no timer of `defaultLoop` scheduled.
 */
export function leakAndTimerTest(
  name: string,
  fn: () => unknown | Promise<unknown>,
  ignore = false,
): void {
  Deno.test({
    name,
    ignore,
    fn: async () => {
      const timers = pendingTimers();
      await assertNoFdLeak(fn);
      assertEquals(pendingTimers(), timers, "timers left scheduled");
    },
  });
}

/** `p`, or a rejection naming `what` after `ms` milliseconds (the timer is always cleared). */
export async function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
  });
  try {
    return await Promise.race([p, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Serves `map` with `loopAsync` until `work` settles (bounded by `ms`). */
export async function serveWhile<T>(
  map: SocketMap,
  poller: PollerName,
  work: Promise<T>,
  ms = 60_000,
): Promise<T> {
  const stop = new AbortController();
  const serving = loopAsync({ map, poller, timeout: 0.05, signal: stop.signal });
  let timer: ReturnType<typeof setTimeout> | undefined;
  const limit = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`work did not finish in ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([work, limit]);
  } finally {
    clearTimeout(timer);
    stop.abort();
    await serving;
  }
}

/** Closes every channel of `map`. */
export function closeMap(map: SocketMap): void {
  for (const d of [...map.values()]) d.close();
}

/**
 * Echoes `data` through a `Deno.connectTls` client (trusting `caPem`) to
 * `port` on localhost, writing and reading at once, and returns the hex
 * SHA-256 of what came back.
 */
export async function denoTlsEcho(caPem: string, port: number, data: Uint8Array): Promise<string> {
  const conn = await Deno.connectTls({ hostname: "localhost", port, caCerts: [caPem] });
  try {
    const reading = (async () => {
      const parts: Uint8Array[] = [];
      let total = 0;
      const buf = new Uint8Array(65536);
      while (total < data.length) {
        const n = await conn.read(buf);
        if (n === null) break;
        parts.push(buf.slice(0, n));
        total += n;
      }
      return concat(parts);
    })();
    for (let off = 0; off < data.length;) off += await conn.write(data.subarray(off, off + 65536));
    return await sha256(await reading);
  } finally {
    conn.close();
  }
}

/** Calls `step` until it returns true; throws after `ms` milliseconds or `max` calls. */
export function pumpUntil(
  step: () => boolean,
  { ms = 5000, max = 1_000_000, what = "condition" } = {},
): void {
  const deadline = performance.now() + ms;
  for (let i = 0; i < max; i++) {
    if (step()) return;
    if (performance.now() > deadline) break;
  }
  throw new Error(`timed out waiting for ${what}`);
}

/** Resolves after `ms` milliseconds. */
export function delay(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/**
 * The python3 to run peers with (its real executable, so a peer is not
 * started through a version manager's shim script: pyenv's forks a shell
 * and `pyenv` itself first, slow enough under load to miss a start
 * deadline), or null when there is none.
 */
export const python: string | null = (() => {
  try {
    const r = new Deno.Command("python3", {
      args: ["-c", "import sys; print(sys.executable)"],
      stdout: "piped",
      stderr: "null",
    }).outputSync();
    if (!r.success) return null;
    const exe = new TextDecoder().decode(r.stdout).trim();
    return exe === "" ? "python3" : exe;
  } catch {
    return null;
  }
})();

/** Whether a command exists on PATH. */
export function hasCommand(name: string): boolean {
  try {
    return new Deno.Command("sh", { args: ["-c", `command -v ${name}`], stdout: "null" })
      .outputSync().success;
  } catch {
    return false;
  }
}

/** Hex SHA-256 of bytes. */
export async function sha256(data: Uint8Array): Promise<string> {
  const d = await crypto.subtle.digest("SHA-256", data as Uint8Array<ArrayBuffer>);
  return [...new Uint8Array(d)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/** A unique Unix socket path under the temp dir. */
export function tempSocketPath(tag = "s"): string {
  return `${Deno.makeTempDirSync({ prefix: "asyncore-" })}/${tag}.sock`;
}

/** Concatenates byte arrays. */
export function concat(parts: Uint8Array[]): Uint8Array {
  let n = 0;
  for (const p of parts) n += p.length;
  const out = new Uint8Array(n);
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

/** Deterministic pseudo-random generator (mulberry32) for reproducible tests. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Pseudo-random bytes from a seed. */
export function randomBytes(n: number, seed = 1): Uint8Array {
  const r = rng(seed);
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = (r() * 256) | 0;
  return out;
}

/**
 * The pollers every dispatcher test runs over: all three, or the subset
 * named in `ASYNCORE_TEST_POLLERS` (e.g. `poll,epoll`; .ci/arm64.sh uses it).
 */
export const POLLERS: readonly PollerName[] = (() => {
  const all = ["select", "poll", "epoll"] as const;
  const only = Deno.env.get("ASYNCORE_TEST_POLLERS")?.split(",").map((p) => p.trim());
  return only ? all.filter((p) => only.includes(p)) : all;
})();

/**
 * `n` scaled by `ASYNCORE_TEST_SCALE` (default 1), at least 1: a repetition
 * count for tests that make a million calls, cut down under emulation
 * (.ci/arm64.sh), where a call costs 40 times more.
 */
export function scaled(n: number): number {
  const scale = Number(Deno.env.get("ASYNCORE_TEST_SCALE") ?? "1");
  return Math.max(1, Math.round(n * (scale > 0 ? scale : 1)));
}

/**
 * Whether this process runs under user-mode emulation: the arm64 leg of CI
 * (.ci/arm64.sh) runs the aarch64 Deno under qemu-user on an x86_64 host,
 * where /proc/cpuinfo is still the host's. qemu translates a few socket calls
 * imperfectly (it drops ancillary data that does not fit without setting
 * MSG_CTRUNC, and has no IP_MULTICAST_IF), and every process starts slowly.
 */
export const emulated: boolean = (() => {
  if (Deno.build.arch !== "aarch64") return false;
  try {
    return Deno.readTextFileSync("/proc/cpuinfo").includes("vendor_id");
  } catch {
    return false;
  }
})();

/** Whether the IPv6 loopback can be bound here. */
export const hasIPv6: boolean = (() => {
  try {
    Deno.listen({ hostname: "::1", port: 0 }).close();
    return true;
  } catch {
    return false;
  }
})();

// ---- echo channels ----

/** Sends back every byte that arrives; closes when the peer does. */
export class EchoHandler extends DispatcherWithSend {
  override handleRead(): void {
    const data = this.recv(65536);
    if (data.length > 0) this.send(data);
  }

  override handleClose(): void {
    this.close();
  }
}

// deno-lint-ignore no-explicit-any
type DispatcherClass = new (...args: any[]) => Dispatcher;

/**
 * `Base` with a record of what happened to the channel: `errors` (what
 * reached handleError, then passed on to the default) and `closes`
 * (handleClose calls; the channel then closes, quietly).
 */
export function Recording<B extends DispatcherClass>(Base: B) {
  return class extends Base {
    /** What reached handleError. */
    readonly errors: unknown[] = [];
    /** handleClose calls. */
    closes = 0;

    override handleError(error: unknown): void {
      this.errors.push(error);
      super.handleError(error);
    }

    override handleClose(): void {
      this.closes++;
      this.close();
    }
  };
}

/**
 * `Base` as a sink: never writable; every chunk it reads is kept in
 * `chunks`; `eof` once the other end closed (the channel then closes).
 */
export function Collecting<B extends DispatcherClass>(Base: B) {
  return class extends Base {
    /** What was read, as it came. */
    readonly chunks: Uint8Array[] = [];
    /** The other end closed. */
    eof = false;

    override writable(): boolean {
      return false;
    }

    override handleRead(): void {
      const chunk = this.recv(65536);
      if (chunk.length) this.chunks.push(chunk);
    }

    override handleClose(): void {
      this.eof = true;
      this.close();
    }
  };
}

/** What a {@linkcode Listener} listens on. */
export interface ListenerOptions {
  /** The map the listener and its channels live in. */
  map: SocketMap;
  /** The address to bind (default an ephemeral 127.0.0.1 port). */
  addr?: Address;
  /** The address family (default AF_INET). */
  family?: number;
  /** The listen backlog (default 128). */
  backlog?: number;
}

/** A listening dispatcher (reuse-addr for IP); subclasses say what an accepted socket becomes. */
export class Listener extends Dispatcher {
  /** The map it and the channels it accepts live in. */
  readonly map: SocketMap;

  constructor({ map, addr = ["127.0.0.1", 0], family = AF_INET, backlog = 128 }: ListenerOptions) {
    super(null, map);
    this.map = map;
    this.createSocket(family);
    if (family !== AF_UNIX) this.setReuseAddr();
    this.bind(addr);
    this.listen(backlog);
  }

  /** The bound TCP port. */
  get port(): number {
    return ((this.socket as SocketType).getsockname() as [string, number])[1];
  }
}

/** A listener that hands each connection to an {@linkcode EchoHandler} in the same map. */
export class EchoServer extends Listener {
  /** Connections accepted so far. */
  accepted = 0;
  /** When the first connection was accepted (`performance.now()`), or 0. */
  acceptedAt = 0;

  override handleAccepted(sock: SocketType): void {
    this.accepted++;
    if (this.acceptedAt === 0) this.acceptedAt = performance.now();
    new EchoHandler(sock, this.map);
  }
}

/** What an {@linkcode EchoClient} connects to and sends. */
export interface EchoClientOptions {
  map: SocketMap;
  /** The address family (default AF_INET). */
  family?: number;
  addr: Address;
  /** The bytes to send; they must all come back. */
  payload: Uint8Array;
  /** Send in seeded random pieces of 1 byte to 64 KiB, one per write event (default: all at once). */
  pieceSeed?: number;
}

/** Connects, sends its payload, collects the echo, and closes once all of it came back. */
export class EchoClient extends DispatcherWithSend {
  readonly payload: Uint8Array;
  /** The echo, as it came. */
  readonly chunks: Uint8Array[] = [];
  /** Bytes of echo so far. */
  received = 0;
  /** All of the payload came back. */
  done = false;
  /** handleClose calls. */
  closes = 0;
  /** The peer closed before all came back. */
  closedEarly = false;
  #sent = 0;
  readonly #pieceSize: (() => number) | null;

  constructor({ map, family = AF_INET, addr, payload, pieceSeed }: EchoClientOptions) {
    super(null, map);
    this.payload = payload;
    if (pieceSeed === undefined) {
      this.#pieceSize = null;
    } else {
      const r = rng(pieceSeed);
      this.#pieceSize = () => 1 + Math.floor(r() * 65536);
    }
    this.createSocket(family);
    this.connect(addr);
  }

  override handleConnect(): void {
    if (this.#pieceSize === null) {
      this.#sent = this.payload.length;
      this.send(this.payload);
    }
  }

  override writable(): boolean {
    const piecesLeft = this.#pieceSize !== null && this.#sent < this.payload.length;
    return super.writable() || (this.connected && piecesLeft);
  }

  override handleWrite(): void {
    if (this.#pieceSize && this.outBuffer.length === 0 && this.#sent < this.payload.length) {
      const piece = this.payload.subarray(this.#sent, this.#sent + this.#pieceSize());
      this.#sent += piece.length;
      this.send(piece);
    } else {
      this.initiateSend();
    }
  }

  override handleRead(): void {
    const data = this.recv(65536);
    if (data.length === 0) return;
    this.chunks.push(data);
    this.received += data.length;
    if (this.received >= this.payload.length) {
      this.done = true;
      this.close();
    }
  }

  override handleClose(): void {
    this.closes++;
    if (!this.done) this.closedEarly = true;
    this.close();
  }

  /** Asserts that all of the payload came back, byte for byte. */
  async verify(): Promise<void> {
    assert(this.done, `${this} got ${this.received} of ${this.payload.length} bytes back`);
    assertEquals(await sha256(concat(this.chunks)), await sha256(this.payload));
  }
}

// ---- child processes ----

/**
 * A child process with piped output that `await using` kills (SIGKILL) and
 * reaps, its pipes included, when the block ends, however it ends.
 */
export class Child implements AsyncDisposable {
  /** The process. */
  readonly child: Deno.ChildProcess;
  #output: Promise<Deno.CommandOutput> | null = null;

  constructor(command: string, args: string[], options: Deno.CommandOptions = {}) {
    this.child = new Deno.Command(command, {
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
      ...options,
      args,
    }).spawn();
  }

  /** Waits for the exit and collects all of stdout and stderr (once; later calls share it). */
  output(): Promise<Deno.CommandOutput> {
    return this.#output ??= this.child.output();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    try {
      this.child.kill("SIGKILL");
    } catch {
      // already exited
    }
    if (this.#output) {
      await this.#output.catch(() => {});
      return;
    }
    for (const s of [this.child.stdout, this.child.stderr]) {
      try {
        if (!s.locked) await s.cancel();
      } catch {
        // not piped
      }
    }
    await this.child.status;
  }
}

/** A python3 child (`python` must not be null): `await using peer = pythonChild([...])`. */
export function pythonChild(args: string[], options: Deno.CommandOptions = {}): Child {
  return new Child(python!, args, options);
}

/** A python3 subprocess whose stdout is read line by line. */
export class PythonPeer implements AsyncDisposable {
  readonly child: Deno.ChildProcess;
  #reader: ReadableStreamDefaultReader<string>;
  #buffer = "";
  #stderr: Promise<string>;
  #done = false;

  constructor(script: string, args: string[]) {
    this.child = new Deno.Command(python!, {
      args: ["-c", script, ...args],
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    this.#reader = this.child.stdout.pipeThrough(new TextDecoderStream()).getReader();
    this.#stderr = new Response(this.child.stderr).text();
  }

  /** The next line of output. */
  async line(ms = 10000): Promise<string> {
    while (!this.#buffer.includes("\n")) {
      const { value, done } = await withTimeout(this.#reader.read(), ms, "python output");
      if (done) throw new Error(`python exited early: ${await this.#stderr}`);
      this.#buffer += value;
    }
    const i = this.#buffer.indexOf("\n");
    const line = this.#buffer.slice(0, i);
    this.#buffer = this.#buffer.slice(i + 1);
    return line;
  }

  /** Waits for exit; returns the rest of stdout. Throws unless it exited with 0. */
  async finish(ms = 10000): Promise<string> {
    this.#done = true;
    let rest = this.#buffer;
    for (;;) {
      const { value, done } = await withTimeout(this.#reader.read(), ms, "python exit");
      if (done) break;
      rest += value;
    }
    const status = await this.child.status;
    const stderr = await this.#stderr;
    assertEquals(status.code, 0, `python failed: ${stderr}`);
    return rest;
  }

  /** Kills the process if `finish` was not reached (a failed test), and reaps it. */
  async [Symbol.asyncDispose](): Promise<void> {
    if (this.#done) return;
    try {
      this.child.kill("SIGKILL");
    } catch {
      // already gone
    }
    await this.#reader.cancel().catch(() => {});
    await this.child.status;
    await this.#stderr.catch(() => {});
  }
}
