/**
 * AsyncChat over a socket: both ends on loopback TCP in one map, run by
 * `loop()` over epoll; the sender `push`es (once, or a push per line), the
 * receiver parses. Is the cost linear in the stream?
 *
 *     deno bench --allow-ffi --allow-env bench/asynchat_socket_bench.ts
 *
 * Each group is one input at two sizes 4x apart, the smaller the baseline:
 * the summary's "x slower" near 4 is linear, near 16 quadratic.
 *
 * @module
 */

import { AsyncChat } from "../dispatcher/asynchat.ts";
import { Dispatcher } from "../dispatcher/dispatcher.ts";
import { closeAll, loop } from "../dispatcher/loop.ts";
import type { SocketMap } from "../dispatcher/dispatcher.ts";
import type { Socket } from "../ffi/socket.ts";
import {
  burstLine,
  expect,
  LINE_COUNTS,
  linesStream,
  noTerminatorStream,
  SIZES_MIB,
} from "./_chat_inputs.ts";

/** Counts what arrives, cut at `term`. */
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

/** Only sends. */
class Sender extends AsyncChat {
  override handleConnect(): void {}
  override collectIncomingData(): void {}
  override foundTerminator(): void {}
}

/** Accepts one connection, as a {@linkcode Receiver}, then stops listening. */
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

/** Sends what `send` pushes, then closes; returns what the receiver counted. */
function overSocket(term: string | null, send: (s: Sender) => void): Receiver {
  const map: SocketMap = new Map();
  try {
    const listener = new Listener(map, term);
    const port = ((listener.socket as Socket).getsockname() as [string, number])[1];
    const sender = new Sender(null, map);
    sender.createSocket();
    sender.connect(["127.0.0.1", port]);
    send(sender);
    sender.closeWhenDone();
    const deadline = performance.now() + 120_000;
    while (!(listener.receiver?.eof) && performance.now() < deadline) {
      loop({ timeout: 1, map, count: 1000, poller: "epoll" });
    }
    if (!listener.receiver?.eof) throw new Error("socket run timed out");
    return listener.receiver;
  } finally {
    closeAll(map);
  }
}

/** A pair of benches, the first the baseline of its group. */
function pair(group: string, cases: [string, () => void][]): void {
  cases.forEach(([name, fn], i) =>
    Deno.bench({ name: `${group}: ${name}`, group, baseline: i === 0, n: 5, warmup: 1, fn })
  );
}

pair(
  "socket, no terminator",
  SIZES_MIB.map((mib) => {
    const data = noTerminatorStream(mib);
    return [`${mib} MiB`, () => {
      expect("bytes", overSocket(null, (s) => s.push(data)).bytes, data.length);
    }];
  }),
);

pair(
  "socket, lines (one push)",
  LINE_COUNTS.map((n) => {
    const src = linesStream(n);
    return [`${n} lines`, () => expect("lines", overSocket("\r\n", (s) => s.push(src)).lines, n)];
  }),
);

pair(
  "socket, lines (a push each)",
  LINE_COUNTS.map((n) => {
    const lines = Array.from({ length: n }, (_, i) => burstLine(i));
    const push = (s: Sender) => {
      for (const l of lines) s.push(l);
    };
    return [`${n} lines`, () => expect("lines", overSocket("\r\n", push).lines, n)];
  }),
);
