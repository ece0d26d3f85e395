// Streams under pressure and at their ends, against peers we did not write
// (python3, nc, Deno's own sockets): a slow reader on either side bounds
// memory while the kernel buffers fill, closeWrite's half-close, a write
// after it, a reset after data (the data first, then ECONNRESET), urgent
// data kept in line.
import { assert, assertEquals, assertRejects } from "@std/assert";
import { connect, listen, OSError } from "../mod.ts";
import { channelOf, type StreamConn } from "../streams/conn.ts";
import { READ_AHEAD } from "../streams/_read_side.ts";
import { WRITE_HIGH_WATER_MARK } from "../streams/_write_side.ts";
import { acceptOne, loopSettled, portOf, readAll, readExactly, writePieces } from "./_streams.ts";
import {
  delay,
  hasCommand,
  leakTest,
  python,
  pythonChild,
  randomBytes,
  sha256,
  withTimeout,
} from "./_util.ts";
import { Lines } from "./fixtures/subprocess.ts";

const decoder = new TextDecoder();
const noPython = python === null;

/** The first line of `lines` matching `re` (bounded: 30 s). */
async function line(lines: Lines, re: RegExp, what: string): Promise<string> {
  const found = await lines.waitFor(re, 1, 30_000);
  if (found === null) throw new Error(`no line for ${what}: ${lines.lines.join(" | ")}`);
  return found[0];
}

/** The bytes queued in the channel under `conn`. */
function queued(conn: unknown): number {
  return channelOf(conn as StreamConn).queuedBytes;
}

leakTest("streams: a slow reader at the peer stops writes; memory stays bounded", async () => {
  const deno = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const accepted = deno.accept();
  const conn = await connect({ hostname: "127.0.0.1", port: deno.addr.port });
  const peer = await accepted;
  const CHUNK = 256 * 1024, TOTAL = 64 * 1024 * 1024;
  const data = randomBytes(TOTAL, 21);
  let resolved = 0, maxQueued = 0;
  const writer = conn.writable.getWriter();
  const writing = (async () => {
    for (let off = 0; off < TOTAL; off += CHUNK) {
      await writer.ready;
      await writer.write(data.subarray(off, off + CHUNK));
      resolved += CHUNK;
      maxQueued = Math.max(maxQueued, queued(conn));
    }
    await writer.close();
  })();
  // The peer reads nothing: the kernel's buffers fill, then the writes wait.
  let last = -1;
  await withTimeout(
    (async () => {
      while (resolved !== last) {
        last = resolved;
        await delay(300);
      }
    })(),
    20_000,
    "the writes to stall",
  );
  assert(resolved < TOTAL, `all ${TOTAL} bytes were taken with nobody reading`);
  assert(resolved > 0, "nothing was written");
  assert(
    queued(conn) <= WRITE_HIGH_WATER_MARK + CHUNK,
    `${queued(conn)} bytes queued: more than the high-water mark and one chunk`,
  );
  // Now the peer reads: everything arrives, in order.
  const back = await readAll(peer.readable, 60_000);
  await withTimeout(writing, 10_000, "the writes to finish");
  assert(maxQueued <= WRITE_HIGH_WATER_MARK + CHUNK, `peak queue ${maxQueued}`);
  assertEquals(await sha256(back), await sha256(data)); // (the end of its readable closed peer)
  deno.close();
  await loopSettled();
});

leakTest(
  "streams: a slow consumer stops the loop reading; python's sendall blocks",
  async () => {
    const listener = listen({ hostname: "127.0.0.1", port: 0 });
    const TOTAL = 48 * 1024 * 1024;
    const py = `
import hashlib, os, random, socket, sys
random.seed(5)
data = random.randbytes(${TOTAL})
print(hashlib.sha256(data).hexdigest(), flush=True)
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.sendall(data)
print("sent", flush=True)
s.close()
`;
    await using peer = pythonChild(["-c", py, String(portOf(listener))]);
    const lines = new Lines(peer.child.stdout);
    const conn = await acceptOne(listener);
    const hash = await line(lines, /^[0-9a-f]{64}$/, "python's hash");
    // Nobody reads: the stream's queue fills to its read-ahead, the loop stops reading,
    // the kernel's buffers fill and python's sendall blocks.
    await delay(1500);
    const ch = channelOf(conn as StreamConn);
    assert(!ch.reader.wants, "the loop still reads a connection whose consumer does not");
    assert(!lines.lines.includes("sent"), "python could send everything with nobody reading");
    const reader = conn.readable.getReader();
    const got = await readExactly(reader, TOTAL, 60_000);
    assertEquals(await sha256(got), hash);
    assertEquals((await reader.read()).done, true);
    await line(lines, /^sent$/, "python to finish");
    conn.close();
    listener.close();
    await loopSettled();
  },
  noPython,
);

leakTest(
  "streams: closeWrite half-closes; python reads to EOF and answers; a later write rejects",
  async () => {
    const py = `
import hashlib, socket
srv = socket.create_server(("127.0.0.1", 0))
print(srv.getsockname()[1], flush=True)
c, _ = srv.accept()
h = hashlib.sha256()
n = 0
while True:
    b = c.recv(65536)
    if not b:
        break
    h.update(b)
    n += len(b)
c.sendall(f"{n} {h.hexdigest()}\\n".encode())
c.close()
`;
    await using peer = pythonChild(["-c", py]);
    const lines = new Lines(peer.child.stdout);
    const port = Number(await line(lines, /^\d+$/, "python's port"));
    const conn = await connect({ hostname: "127.0.0.1", port });
    const data = randomBytes(3 * 1024 * 1024 + 17, 22);
    await writePieces(conn.writable, data, 4, false);
    await withTimeout(conn.closeWrite(), 10_000, "closeWrite");
    const e = await assertRejects(
      () => conn.writable.getWriter().write(new Uint8Array(1)),
      OSError,
    );
    assertEquals(e.code, "EPIPE");
    const answer = decoder.decode(await readAll(conn.readable));
    assertEquals(answer, `${data.length} ${await sha256(data)}\n`);
    await conn.closeWrite(); // again: already done
    conn.close();
    await loopSettled();
  },
  noPython,
);

leakTest(
  "streams: nc -N sends a file and half-closes; the server answers after the end",
  async () => {
    const listener = listen({ hostname: "127.0.0.1", port: 0 });
    const data = randomBytes(1024 * 1024, 23);
    const file = await Deno.makeTempFile();
    await Deno.writeFile(file, data);
    const serving = (async () => {
      const conn = await acceptOne(listener);
      const got = await readAll(conn.readable);
      const w = conn.writable.getWriter();
      await w.write(new TextEncoder().encode(`${got.length} ${await sha256(got)}\n`));
      await w.close(); // both sides done: the socket closes, and nc exits
    })();
    const out = await withTimeout(
      new Deno.Command("sh", {
        args: ["-c", `nc -N 127.0.0.1 ${portOf(listener)} < ${file}`],
        stdout: "piped",
        stderr: "piped",
      }).output(),
      30_000,
      "nc",
    );
    await serving;
    assertEquals(decoder.decode(out.stdout), `${data.length} ${await sha256(data)}\n`);
    listener.close();
    await Deno.remove(file);
    await loopSettled();
  },
  !hasCommand("nc"),
);

leakTest(
  "streams: a reset after data delivers the data, then ECONNRESET",
  async () => {
    const listener = listen({ hostname: "127.0.0.1", port: 0 });
    // More than the read-ahead: part waits in the stream's queue, part in the kernel.
    const SIZE = READ_AHEAD + 40_960;
    // A reset drops what the sender's kernel has not sent yet: python waits until its send
    // queue is empty (SIOCOUTQ), so that every byte is in our kernel before the reset.
    const py = `
import fcntl, socket, struct, sys, termios, time
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.sendall(bytes(range(256)) * ${SIZE / 256})
for _ in range(500):
    if struct.unpack("i", fcntl.ioctl(s, termios.TIOCOUTQ, b"\\0" * 4))[0] == 0:
        break
    time.sleep(0.01)
s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
s.close()
print("reset", flush=True)
`;
    await using peer = pythonChild(["-c", py, String(portOf(listener))]);
    const lines = new Lines(peer.child.stdout);
    const conn = await acceptOne(listener);
    await line(lines, /^reset$/, "python's reset");
    await delay(200);
    // Some of it waits in the stream's queue, the rest in the kernel: all of it comes first.
    const reader = conn.readable.getReader();
    const got = await readExactly(reader, SIZE);
    for (let i = 0; i < SIZE; i += 4099) assertEquals(got[i], i & 0xff);
    const e = await assertRejects(() => withTimeout(reader.read(), 10_000, "the reset"), OSError);
    assertEquals(e.code, "ECONNRESET");
    conn.close();
    listener.close();
    await loopSettled();
  },
  noPython,
);

leakTest(
  "streams: urgent data stays in the stream, in order",
  async () => {
    const listener = listen({ hostname: "127.0.0.1", port: 0 });
    const py = `
import socket, sys, time
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.sendall(b"abc")
time.sleep(0.1)
s.send(b"!", socket.MSG_OOB)
time.sleep(0.1)
s.sendall(b"def")
s.close()
`;
    await using _peer = pythonChild(["-c", py, String(portOf(listener))]);
    const conn = await acceptOne(listener);
    assertEquals(decoder.decode(await readAll(conn.readable)), "abc!def");
    conn.close();
    listener.close();
    await loopSettled();
  },
  noPython,
);

leakTest("streams: the read-ahead stays within its bound while nobody reads", async () => {
  const listener = listen({ hostname: "127.0.0.1", port: 0 });
  const accepted = acceptOne(listener);
  const peer = await Deno.connect({ hostname: "127.0.0.1", port: portOf(listener) });
  const conn = await accepted;
  const data = randomBytes(8 * 1024 * 1024, 24);
  const writing = (async () => {
    const w = peer.writable.getWriter();
    await w.write(data);
    await w.close();
  })();
  await delay(800);
  const ch = channelOf(conn as StreamConn);
  assert(!ch.reader.wants, "still reading");
  const reader = conn.readable.getReader();
  // The queue holds at most the read-ahead and one read beyond it.
  const first = await reader.read();
  assert(!first.done && first.value.length <= READ_AHEAD);
  const rest = await readExactly(reader, data.length - first.value.length, 60_000);
  const all = new Uint8Array(data.length);
  all.set(first.value);
  all.set(rest, first.value.length);
  assertEquals(await sha256(all), await sha256(data));
  await withTimeout(writing, 10_000, "the peer's writes"); // (closing its writable closed peer)
  conn.close();
  listener.close();
  await loopSettled();
});
