/**
 * Micro-benchmark of `AsyncChat` input and output: is the cost per byte and
 * per line flat as the stream grows (linear), or does it climb (quadratic)?
 *
 *     deno run --allow-ffi bench/asynchat_bench.ts [--quick]
 *
 * Two kinds of run, each at two sizes (4x apart, so a linear cost shows
 * a time ratio of about 4 and a flat ns/byte):
 *
 * - `parse`: `handleRead` alone, fed 64 KiB reads from memory (recv is
 *   stubbed), so only the terminator search and the buffering are timed.
 *   Beside it, a port of the reference's algorithm (`ac_in_buffer +
 *   data`, re-sliced after each terminator) for comparison.
 * - `socket`: both ends on loopback TCP in one map, run by `loop()` over
 *   epoll: the sender `push`es, the receiver parses.
 *
 * Cases: a stream with no terminator in it (16 and 64 MiB), and a burst of
 * short lines (25,000 and 100,000; also 16 and 64 MiB of lines for `parse`).
 *
 * @module
 */

import { AsyncChat } from "../dispatcher/asynchat.ts";
import { Dispatcher } from "../dispatcher/dispatcher.ts";
import { closeAll, loop } from "../dispatcher/loop.ts";
import type { SocketMap } from "../dispatcher/map.ts";
import type { Socket } from "../ffi/socket.ts";

const MiB = 1024 * 1024;
const quick = Deno.args.includes("--quick");
const REPEAT = quick ? 1 : 3;

// ---- inputs

function noTerminatorStream(bytes: number): Uint8Array {
  // No "\r\n" anywhere, but plenty of "\r" so partial terminators are checked.
  const out = new Uint8Array(bytes);
  for (let i = 0; i < bytes; i++) out[i] = i % 97 === 0 ? 13 : 97 + (i % 26);
  return out;
}

function linesStream(lines: number): Uint8Array {
  const text: string[] = [];
  for (let i = 0; i < lines; i++) text.push(`line ${i} of the burst\r\n`);
  return new TextEncoder().encode(text.join(""));
}

function linesOfBytes(bytes: number): Uint8Array {
  // Short lines up to about `bytes`.
  const one = "short line, about thirty bytes\r\n";
  return new TextEncoder().encode(one.repeat(Math.ceil(bytes / one.length)));
}

// ---- parse: handleRead fed from memory

class FedChat extends AsyncChat {
  #src: Uint8Array = new Uint8Array(0);
  #at = 0;
  lines = 0;
  bytes = 0;

  constructor() {
    super(null, new Map());
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

function parseOurs(src: Uint8Array): { ms: number; lines: number } {
  const c = new FedChat();
  c.setTerminator("\r\n");
  c.load(src);
  const t0 = performance.now();
  while (!c.done) c.handleRead();
  const ms = performance.now() - t0;
  return { ms, lines: c.lines };
}

/** asynchat.py's handle_read, ported as is (for comparison only). */
function parseReference(src: Uint8Array, inBufferSize = 65536): { ms: number; lines: number } {
  const term = new TextEncoder().encode("\r\n");
  let acInBuffer = new Uint8Array(0);
  let incoming: Uint8Array[] = [];
  let lines = 0;
  const collect = (d: Uint8Array) => incoming.push(d);
  const found = () => {
    incoming = [];
    lines++;
  };
  const t0 = performance.now();
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
  return { ms: performance.now() - t0, lines };
}

function findBytes(h: Uint8Array, n: Uint8Array): number {
  let i = 0;
  for (;;) {
    i = h.indexOf(n[0], i);
    if (i === -1 || i + n.length > h.length) return -1;
    if (h[i + 1] === n[1]) return i;
    i++;
  }
}

// ---- socket: both ends in one map

class Receiver extends AsyncChat {
  bytes = 0;
  lines = 0;
  eof = false;
  constructor(sock: Socket, map: SocketMap, term: string | null) {
    super(sock, map);
    this.setTerminator(term);
  }
  override collectIncomingData(data: Uint8Array): void {
    this.bytes += data.length;
  }
  override foundTerminator(): void {
    this.lines++;
  }
  override handleClose(): void {
    this.eof = true;
    this.close();
  }
}

class Sender extends AsyncChat {
  override handleConnect(): void {}
  override collectIncomingData(): void {}
  override foundTerminator(): void {}
}

class Listener extends Dispatcher {
  receiver: Receiver | null = null;
  constructor(public map: SocketMap, public term: string | null) {
    super(null, map);
    this.createSocket();
    this.setReuseAddr();
    this.bind(["127.0.0.1", 0]);
    this.listen(5);
  }
  override handleAccepted(sock: Socket): void {
    this.receiver = new Receiver(sock, this.map, this.term);
    this.close();
  }
}

function overSocket(
  term: string | null,
  send: (s: Sender) => void,
): { ms: number; bytes: number; lines: number } {
  const map: SocketMap = new Map();
  try {
    const listener = new Listener(map, term);
    const port = ((listener.socket as Socket).getsockname() as [string, number])[1];
    const sender = new Sender(null, map);
    sender.createSocket();
    sender.connect(["127.0.0.1", port]);
    const t0 = performance.now();
    send(sender);
    sender.closeWhenDone();
    const deadline = t0 + 120_000;
    while (!(listener.receiver?.eof) && performance.now() < deadline) {
      loop({ timeout: 1, map, count: 1000, poller: "epoll" });
    }
    const ms = performance.now() - t0;
    const r = listener.receiver!;
    if (!r.eof) throw new Error("socket run timed out");
    return { ms, bytes: r.bytes, lines: r.lines };
  } finally {
    closeAll(map);
  }
}

// ---- reporting

function best<T extends { ms: number }>(run: () => T): T {
  let out = run();
  for (let i = 1; i < REPEAT; i++) {
    const r = run();
    if (r.ms < out.ms) out = r;
  }
  return out;
}

const rows: string[][] = [];
const ratios: [string, number][] = [];
function report(
  name: string,
  size: string,
  ms: number,
  bytes: number,
  lines: number,
  prev?: number,
): number {
  rows.push([
    name,
    size,
    ms.toFixed(1),
    ((ms * 1e6) / bytes).toFixed(2),
    lines ? ((ms * 1e6) / lines).toFixed(0) : "-",
    prev ? `${(ms / prev).toFixed(2)}x` : "",
  ]);
  if (prev && !name.includes("reference")) ratios.push([name, ms / prev]);
  return ms;
}

function printTable(): void {
  const head = ["case", "size", "ms", "ns/byte", "ns/line", "time ratio (4x input)"];
  const all = [head, ...rows];
  const widths = head.map((_, i) => Math.max(...all.map((r) => r[i].length)));
  for (const r of all) console.log(r.map((c, i) => c.padEnd(widths[i])).join("  "));
}

// Warm up the JIT on a small input.
parseOurs(linesStream(20_000));
parseReference(linesStream(2_000));

const sizes = quick ? [4, 16] : [16, 64];
const lineCounts = quick ? [6_250, 25_000] : [25_000, 100_000];

let prev: number | undefined;
for (const mib of sizes) {
  const src = noTerminatorStream(mib * MiB);
  const r = best(() => parseOurs(src));
  prev = report("parse, no terminator", `${mib} MiB`, r.ms, src.length, 0, prev);
}
prev = undefined;
for (const n of lineCounts) {
  const src = linesStream(n);
  const r = best(() => parseOurs(src));
  if (r.lines !== n) throw new Error(`parsed ${r.lines} lines, expected ${n}`);
  prev = report("parse, lines", `${n} lines`, r.ms, src.length, n, prev);
}
prev = undefined;
for (const mib of sizes) {
  const src = linesOfBytes(mib * MiB);
  const r = best(() => parseOurs(src));
  prev = report("parse, lines", `${mib} MiB`, r.ms, src.length, r.lines, prev);
}
prev = undefined;
for (const n of lineCounts) {
  const src = linesStream(n);
  const r = best(() => parseReference(src));
  if (r.lines !== n) throw new Error(`reference parsed ${r.lines} lines, expected ${n}`);
  prev = report("parse, lines (reference port)", `${n} lines`, r.ms, src.length, n, prev);
}
prev = undefined;
for (const mib of sizes) {
  const data = noTerminatorStream(mib * MiB);
  const r = best(() => overSocket(null, (s) => s.push(data)));
  if (r.bytes !== data.length) throw new Error(`received ${r.bytes} of ${data.length} bytes`);
  prev = report("socket, no terminator", `${mib} MiB`, r.ms, data.length, 0, prev);
}
prev = undefined;
for (const n of lineCounts) {
  const src = linesStream(n);
  const r = best(() => overSocket("\r\n", (s) => s.push(src)));
  if (r.lines !== n) throw new Error(`received ${r.lines} lines, expected ${n}`);
  prev = report("socket, lines (one push)", `${n} lines`, r.ms, src.length, n, prev);
}
prev = undefined;
for (const n of lineCounts) {
  const lines: string[] = [];
  for (let i = 0; i < n; i++) lines.push(`line ${i} of the burst\r\n`);
  let bytes = 0;
  for (const l of lines) bytes += l.length;
  const r = best(() =>
    overSocket("\r\n", (s) => {
      for (const l of lines) s.push(l);
    })
  );
  if (r.lines !== n) throw new Error(`received ${r.lines} lines, expected ${n}`);
  prev = report("socket, lines (a push each)", `${n} lines`, r.ms, bytes, n, prev);
}

console.log(`AsyncChat benchmark (best of ${REPEAT}; Deno ${Deno.version.deno})`);
printTable();
// 4x the input in linear time takes about 4x as long; quadratic would be about 16x.
const worst = ratios.reduce((a, r) => (r[1] > a[1] ? r : a), ["", 0] as [string, number]);
console.log(
  `worst time ratio for 4x input: ${worst[1].toFixed(2)}x (${worst[0]}); ` +
    (worst[1] < 8 ? "linear" : "NOT linear: look into it"),
);
