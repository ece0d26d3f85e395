// Helpers of the streams tests (connect/listen/Conn/Listener): reading a
// stream whole, writing in seeded pieces, and waiting for the default loop's
// background run to end (so a test leaves no async op behind).
import { assert } from "@std/assert";
import { type Conn, type Listener, socketMap } from "../mod.ts";
import { defaultCore } from "../dispatcher/_loop_core.ts";
import { concat, delay, rng, withTimeout } from "./_util.ts";

/** The port of a TCP listener. */
export function portOf(listener: Listener): number {
  return (listener.addr as [string, number])[1];
}

/** Whether a run (background or the program's) serves the default loop's map. */
export function loopServing(): boolean {
  return defaultCore.serving.has(defaultCore.map);
}

/** Whether the run serving the default map is the library's background run. */
export function servedInBackground(): boolean {
  return defaultCore.serving.get(defaultCore.map)?.background === true;
}

/**
 * Waits (bounded) until the default map is empty and no run serves it: the
 * background run has seen its last channel go and ended.
 */
export async function loopSettled(ms = 5000): Promise<void> {
  const deadline = performance.now() + ms;
  while (socketMap.size > 0 || loopServing()) {
    if (performance.now() > deadline) {
      throw new Error(
        `the default loop did not settle: ${socketMap.size} channels, serving ${loopServing()}`,
      );
    }
    await delay(5);
  }
}

/** Everything a readable gives until its end (bounded). */
export async function readAll(
  readable: ReadableStream<Uint8Array>,
  ms = 30_000,
): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  await withTimeout(
    (async () => {
      for await (const chunk of readable) parts.push(chunk);
    })(),
    ms,
    "reading to the end",
  );
  return concat(parts);
}

/** Reads exactly `n` bytes from `reader` (bounded). */
export async function readExactly(
  reader: ReadableStreamDefaultReader<Uint8Array>,
  n: number,
  ms = 30_000,
): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  let got = 0;
  await withTimeout(
    (async () => {
      while (got < n) {
        const { value, done } = await reader.read();
        assert(!done, `the stream ended after ${got} of ${n} bytes`);
        parts.push(value);
        got += value.length;
      }
    })(),
    ms,
    `reading ${n} bytes`,
  );
  return concat(parts);
}

/**
 * Writes `data` to `writable` in seeded pieces of 1 byte to 64 KiB (one
 * buffer, overwritten after each write resolves: a write must not keep a
 * reference to it), then closes it unless `close` is false.
 */
export async function writePieces(
  writable: WritableStream<Uint8Array>,
  data: Uint8Array,
  seed = 1,
  close = true,
): Promise<void> {
  const writer = writable.getWriter();
  const r = rng(seed);
  const buf = new Uint8Array(65536);
  for (let off = 0; off < data.length;) {
    const n = Math.min(data.length - off, 1 + Math.floor(r() * 65536));
    buf.set(data.subarray(off, off + n));
    await writer.write(buf.subarray(0, n));
    buf.fill(0xee); // a write that kept the caller's buffer would now send garbage
    off += n;
  }
  if (close) await writer.close();
  else writer.releaseLock();
}

/** Accepts one connection from `listener` (bounded). */
export function acceptOne(listener: Listener, ms = 10_000): Promise<Conn> {
  return withTimeout(listener.accept(), ms, "accept()");
}
