// Shared test helpers: fd-leak accounting, bounded waiting, subprocess peers.
import { Socket } from "../ffi/socket.ts";

/** The number of open fds of this process. */
export function fdCount(): number {
  let n = 0;
  for (const _ of Deno.readDirSync("/proc/self/fd")) n++;
  return n - 1; // the directory handle itself
}

/** The open fd numbers of this process, with what they point at. */
export function openFds(): Map<number, string> {
  const out = new Map<number, string>();
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

/** The python3 to run peers with, or null when there is none. */
export const python: string | null = (() => {
  try {
    const r = new Deno.Command("python3", { args: ["-c", "print(1)"], stdout: "null" })
      .outputSync();
    return r.success ? "python3" : null;
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
export const POLLERS: readonly ("select" | "poll" | "epoll")[] = (() => {
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
