/**
 * AsyncChat's input parsing, pure CPU: is the cost per byte and per line
 * flat as the stream grows (linear), or does it climb (quadratic)?
 * `handleRead` is fed 64 KiB reads from memory (recv is stubbed), so only
 * the terminator search and the buffering are timed; beside it, a port of
 * the reference's algorithm (`ac_in_buffer + data`, re-sliced after each
 * terminator).
 *
 *     deno bench --allow-env bench/asynchat_parse_bench.ts
 *
 * Each group is one input at two sizes 4x apart, the smaller the baseline:
 * the summary's "x slower" near 4 is linear, near 16 quadratic.
 *
 * @module
 */

import { AsyncChat } from "../dispatcher/asynchat.ts";
import {
  expect,
  LINE_COUNTS,
  linesOfBytes,
  linesStream,
  noTerminatorStream,
  SIZES_MIB,
} from "./_chat_inputs.ts";

/** An AsyncChat whose `recv` reads from a buffer; counts lines and their bytes. */
class FedChat extends AsyncChat {
  #src: Uint8Array = new Uint8Array(0);
  #at = 0;
  lines = 0;
  bytes = 0;

  constructor() {
    super(null, new Map());
    this.setTerminator("\r\n");
    // The inputs without a terminator measure the parse, not the overflow guard.
    this.maxInputLength = Infinity;
  }

  load(src: Uint8Array): void {
    this.#src = src;
    this.#at = 0;
    this.lines = 0;
    this.bytes = 0;
  }

  get done(): boolean {
    return this.#at >= this.#src.length;
  }

  override recv(n: number): Uint8Array {
    const chunk = this.#src.subarray(this.#at, this.#at + n);
    this.#at += chunk.length;
    return chunk;
  }

  override collectIncomingData(data: Uint8Array): void {
    this._collectIncomingData(data);
  }

  override foundTerminator(): void {
    this.bytes += this._getData().length;
    this.lines++;
  }
}

/** Parses `src` with our AsyncChat; returns the number of lines. */
function parseOurs(src: Uint8Array): number {
  const c = new FedChat();
  c.load(src);
  while (!c.done) c.handleRead();
  return c.lines;
}

/** asynchat.py's handle_read, ported as is (for comparison only); returns the number of lines. */
function parseReference(src: Uint8Array, inBufferSize = 65536): number {
  const term = new TextEncoder().encode("\r\n");
  let acInBuffer = new Uint8Array(0);
  let incoming: Uint8Array[] = [];
  let lines = 0;
  const collect = (d: Uint8Array) => incoming.push(d);
  const found = () => {
    incoming = [];
    lines++;
  };
  for (let at = 0; at < src.length; at += inBufferSize) {
    const data = src.slice(at, at + inBufferSize);
    const joined = new Uint8Array(acInBuffer.length + data.length); // ac_in_buffer + data
    joined.set(acInBuffer);
    joined.set(data, acInBuffer.length);
    acInBuffer = joined;
    while (acInBuffer.length) {
      const index = findBytes(acInBuffer, term);
      if (index !== -1) {
        if (index > 0) collect(acInBuffer.slice(0, index));
        acInBuffer = acInBuffer.slice(index + term.length); // a copy, as bytes slicing is
        found();
      } else {
        const k = acInBuffer[acInBuffer.length - 1] === term[0] ? 1 : 0;
        if (k) {
          if (k !== acInBuffer.length) {
            collect(acInBuffer.slice(0, acInBuffer.length - k));
            acInBuffer = acInBuffer.slice(acInBuffer.length - k);
          }
          break;
        }
        collect(acInBuffer);
        acInBuffer = new Uint8Array(0);
      }
    }
  }
  return lines;
}

/** The first index of the two-byte needle `n` in `h`, or -1. */
function findBytes(h: Uint8Array, n: Uint8Array): number {
  let i = 0;
  for (;;) {
    i = h.indexOf(n[0], i);
    if (i === -1 || i + n.length > h.length) return -1;
    if (h[i + 1] === n[1]) return i;
    i++;
  }
}

/** A pair of benches, the first the baseline of its group. */
function pair(group: string, cases: [string, () => void][]): void {
  cases.forEach(([name, fn], i) =>
    Deno.bench({ name: `${group}: ${name}`, group, baseline: i === 0, n: 10, warmup: 2, fn })
  );
}

pair(
  "parse, no terminator",
  SIZES_MIB.map((mib) => {
    const src = noTerminatorStream(mib);
    return [`${mib} MiB`, () => expect("lines", parseOurs(src), 0)];
  }),
);

pair(
  "parse, lines",
  LINE_COUNTS.map((n) => {
    const src = linesStream(n);
    return [`${n} lines`, () => expect("lines", parseOurs(src), n)];
  }),
);

pair(
  "parse, short lines",
  SIZES_MIB.map((mib) => {
    const src = linesOfBytes(mib);
    const n = src.length / 32;
    return [`${mib} MiB (${n} lines)`, () => expect("lines", parseOurs(src), n)];
  }),
);

pair(
  "parse, lines (reference port)",
  LINE_COUNTS.map((n) => {
    const src = linesStream(n);
    return [`${n} lines`, () => expect("lines", parseReference(src), n)];
  }),
);
