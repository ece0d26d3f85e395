/**
 * The inputs of the AsyncChat benchmarks, and their sizes (4x apart, so a
 * linear cost shows a time ratio of about 4; `BENCH_QUICK=1` makes them 4x
 * smaller).
 *
 * @module
 */

const MiB = 1024 * 1024;
const quick = Deno.env.get("BENCH_QUICK") === "1";

/** The two stream sizes, in MiB. */
export const SIZES_MIB: readonly number[] = quick ? [4, 16] : [16, 64];
/** The two line counts. */
export const LINE_COUNTS: readonly number[] = quick ? [6_250, 25_000] : [25_000, 100_000];

/** `mib` MiB with no "\r\n" anywhere, but plenty of "\r", so partial terminators are checked. */
export function noTerminatorStream(mib: number): Uint8Array {
  const bytes = mib * MiB;
  const out = new Uint8Array(bytes);
  for (let i = 0; i < bytes; i++) out[i] = i % 97 === 0 ? 13 : 97 + (i % 26);
  return out;
}

/** The `i`-th line of a burst. */
export const burstLine = (i: number): string => `line ${i} of the burst\r\n`;

/** `lines` numbered lines ending in "\r\n". */
export function linesStream(lines: number): Uint8Array {
  const text: string[] = [];
  for (let i = 0; i < lines; i++) text.push(burstLine(i));
  return new TextEncoder().encode(text.join(""));
}

/** Short lines (about thirty bytes) up to about `mib` MiB. */
export function linesOfBytes(mib: number): Uint8Array {
  const one = "short line, about thirty bytes\r\n";
  return new TextEncoder().encode(one.repeat(Math.ceil((mib * MiB) / one.length)));
}

/** Throws unless `got` is `want`. */
export function expect(what: string, got: number, want: number): void {
  if (got !== want) throw new Error(`${what}: ${got}, expected ${want}`);
}
