// Tests for dispatcher/asynchat.ts. The first part has one counterpart for
// every test of CPython 3.11's Lib/test/test_asynchat.py (named in a comment),
// run against a real echo server on loopback (the reference's echo_server
// thread, as a python3 subprocess) over select, poll and epoll. The rest:
// findPrefixAtEnd, terminators split at every position, a model check
// against a port of the reference's handle_read, numeric terminators larger
// than a read, producers, closeWhenDone, discardBuffers, big pushes, and
// argument errors.
import { assert, assertEquals, assertGreater, assertStrictEquals, assertThrows } from "@std/assert";
import {
  type Address,
  closeAll,
  Dispatcher,
  errno,
  loop,
  OSError,
  type PollerName,
  type Socket,
  type SocketMap,
} from "../mod.ts";
import {
  AsyncChat,
  findPrefixAtEnd,
  type Producer,
  SimpleProducer,
  type Terminator,
} from "../dispatcher/asynchat.ts";
import {
  assertNoFdLeak,
  concat,
  leakTest,
  POLLERS,
  pumpUntil,
  python,
  randomBytes,
  rng,
  sha256,
} from "./_util.ts";
import { libc } from "../ffi/symbols.ts";

// Load libc before the first test, so its sanitizer does not count the load as a leak.
libc();

const enc = new TextEncoder();
const dec = new TextDecoder();
const b = (s: string) => enc.encode(s);
const HOST = "127.0.0.1";
const SERVER_QUIT = b("QUIT\n");

// ---------------------------------------------------------------------------
// The reference's echo_server thread, as a python3 subprocess: it accepts one
// connection, reads one byte at a time until QUIT\n, optionally waits for a
// line on stdin (start_resend_event), sends everything back in chunk_size
// pieces 1 ms apart, and closes. It prints its port, and at the end how many
// bytes it had collected.

const ECHO_SERVER = `
import socket, sys, time
chunk = int(sys.argv[1]); wait = sys.argv[2] == "1"
QUIT = b"QUIT\\n"
srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
srv.bind(("127.0.0.1", 0)); srv.listen()
srv.settimeout(20)
print(srv.getsockname()[1], flush=True)
conn, _ = srv.accept()
conn.settimeout(20)
buf = b""
while QUIT not in buf:
    data = conn.recv(1)
    if not data:
        break
    buf = buf + data
buf = buf.replace(QUIT, b"")
received = len(buf)
if wait:
    sys.stdin.readline()
try:
    while buf:
        n = conn.send(buf[:chunk])
        time.sleep(0.001)
        buf = buf[n:]
except Exception:
    pass
conn.close()
srv.close()
print(received, flush=True)
`;

interface EchoServer {
  port: number;
  /** Lets a waiting server resend (the reference's start_resend_event.set()). */
  go(): Promise<void>;
  /** Waits for the server to finish; returns how many bytes it had collected. */
  join(): Promise<number>;
}

async function startEchoServer(chunkSize = 1, wait = false): Promise<EchoServer> {
  const proc = new Deno.Command(python!, {
    args: ["-c", ECHO_SERVER, String(chunkSize), wait ? "1" : "0"],
    stdin: "piped",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const reader = proc.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  const nextLine = async (): Promise<string> => {
    while (!text.includes("\n")) {
      const { value, done } = await reader.read();
      if (done) break;
      text += value;
    }
    const i = text.indexOf("\n");
    const line = i < 0 ? text : text.slice(0, i);
    text = i < 0 ? "" : text.slice(i + 1);
    return line;
  };
  const port = Number(await nextLine());
  assert(port > 0, "echo server did not start");
  const writer = proc.stdin.getWriter();
  return {
    port,
    async go() {
      await writer.write(b("go\n"));
    },
    async join() {
      const received = Number(await nextLine());
      await writer.close().catch(() => {});
      reader.releaseLock();
      await proc.stdout.cancel().catch(() => {});
      const status = await proc.status;
      assert(status.success, `echo server exited with ${status.code}`);
      return received;
    },
  };
}

/** A chat channel that connects to `port` at once, cutting at `terminator`. */
class ChatClient extends AsyncChat {
  constructor(port: number, map: SocketMap, terminator: Terminator | string = "\n") {
    super(null, map);
    this.createSocket();
    this.connect([HOST, port]);
    this.setTerminator(terminator);
  }

  override handleConnect(): void {}
}

/** The reference's echo_client. */
class EchoClient extends ChatClient {
  contents: string[] = [];
  buffer: Uint8Array[] = [];

  constructor(terminator: Terminator | string, port: number, map: SocketMap) {
    super(port, map, terminator);
  }

  override collectIncomingData(data: Uint8Array): void {
    this.buffer.push(data);
  }

  override foundTerminator(): void {
    this.contents.push(dec.decode(concat(this.buffer)));
    this.buffer = [];
  }
}

/** asyncore.loop(count=300, timeout=.01), given more room; it ends once the client closes. */
function runLoop(map: SocketMap, poller: PollerName): void {
  loop({ timeout: 0.01, map, count: 1000, poller });
}

/**
 * One exchange of the reference's tests: a python3 echo server that answers
 * `serverChunk` bytes at a time, an {@linkcode EchoClient} cutting at
 * `terminator`, `queue(c)` pushing what it sends, one loop until it closes.
 */
async function exchange(
  poller: PollerName,
  terminator: Uint8Array | string | number | null,
  queue: (c: EchoClient) => void,
  serverChunk = 1,
): Promise<EchoClient> {
  const map: SocketMap = new Map();
  const s = await startEchoServer(serverChunk);
  const c = new EchoClient(terminator, s.port, map);
  try {
    queue(c);
    runLoop(map, poller);
  } finally {
    closeAll(map);
  }
  await s.join();
  return c;
}

// TestAsynchat.line_terminator_check
async function lineTerminatorCheck(
  poller: PollerName,
  term: string,
  serverChunk: number,
): Promise<void> {
  const c = await exchange(poller, b(term), (c) => {
    c.push(b("hello "));
    c.push(b("world" + term));
    c.push(b("I'm not dead yet!" + term));
    c.push(SERVER_QUIT);
  }, serverChunk);
  assertEquals(c.contents, ["hello world", "I'm not dead yet!"], `term ${JSON.stringify(term)}`);
}

const DATA = "hello world, I'm not dead yet!\n";
const LINES = b("hello world\nI'm not dead yet!\n");

/** Pushes `data`, then the server's quit line. */
const pushThenQuit = (data: string | Uint8Array) => (c: EchoClient) => {
  c.push(data);
  c.push(SERVER_QUIT);
};

// TestAsynchat.numeric_terminator_check
async function numericTerminatorCheck(poller: PollerName, termlen: number): Promise<void> {
  const c = await exchange(poller, termlen, pushThenQuit(b(DATA)));
  assertEquals(c.contents, [DATA.slice(0, termlen)]);
}

for (const poller of POLLERS) {
  /** A reference test that needs python3, named after it, leaving no fd behind. */
  const pyTest = (t: string, fn: () => Promise<void>) =>
    leakTest(`asynchat [${poller}] ${t}`, fn, python === null);

  // TestAsynchat.test_line_terminator1: one-character terminator
  pyTest("test_line_terminator1", async () => {
    for (const l of [1, 2, 3]) await lineTerminatorCheck(poller, "\n", l);
  });

  // TestAsynchat.test_line_terminator2: two-character terminator
  pyTest("test_line_terminator2", async () => {
    for (const l of [1, 2, 3]) await lineTerminatorCheck(poller, "\r\n", l);
  });

  // TestAsynchat.test_line_terminator3: three-character terminator
  pyTest("test_line_terminator3", async () => {
    for (const l of [1, 2, 3]) await lineTerminatorCheck(poller, "qqq", l);
  });

  // TestAsynchat.test_numeric_terminator1
  pyTest("test_numeric_terminator1", () => numericTerminatorCheck(poller, 1));

  // TestAsynchat.test_numeric_terminator2
  pyTest("test_numeric_terminator2", () => numericTerminatorCheck(poller, 6));

  // TestAsynchat.test_none_terminator
  pyTest("test_none_terminator", async () => {
    const c = await exchange(poller, null, pushThenQuit(b(DATA)));
    assertEquals(c.contents, []);
    assertEquals(dec.decode(concat(c.buffer)), DATA);
  });

  // TestAsynchat.test_simple_producer
  pyTest("test_simple_producer", async () => {
    const c = await exchange(poller, b("\n"), (c) => {
      c.pushWithProducer(new SimpleProducer(concat([LINES, SERVER_QUIT]), 8));
    });
    assertEquals(c.contents, ["hello world", "I'm not dead yet!"]);
  });

  // TestAsynchat.test_string_producer
  pyTest("test_string_producer", async () => {
    const c = await exchange(poller, b("\n"), (c) => {
      c.pushWithProducer(concat([LINES, SERVER_QUIT]));
    });
    assertEquals(c.contents, ["hello world", "I'm not dead yet!"]);
  });

  // TestAsynchat.test_empty_line: empty lines are handled correctly
  pyTest("test_empty_line", async () => {
    const c = await exchange(
      poller,
      b("\n"),
      pushThenQuit(b("hello world\n\nI'm not dead yet!\n")),
    );
    assertEquals(c.contents, ["hello world", "", "I'm not dead yet!"]);
  });

  // TestAsynchat.test_close_when_done
  pyTest("test_close_when_done", async () => {
    const map: SocketMap = new Map();
    const s = await startEchoServer(1, true);
    const c = new EchoClient(b("\n"), s.port, map);
    const data = "hello world\nI'm not dead yet!\n";
    try {
      c.push(b(data));
      c.push(SERVER_QUIT);
      c.closeWhenDone();
      runLoop(map, poller);
    } finally {
      closeAll(map);
    }
    // Only now may the server echo: the client has closed already.
    assertEquals(map.size, 0);
    assertStrictEquals(c.fileno(), null);
    await s.go();
    const received = await s.join();
    assertEquals(c.contents, []);
    // The reference checks len(s.buffer) > 0; the server reports the
    // bytes it collected before echoing, which must be all of them.
    assertGreater(received, 0);
    assertEquals(received, data.length);
  });

  // TestAsynchat.test_push: push() raises TypeError for what is not bytes.
  // Deviation (API.md: strings are UTF-8 encoded): a string is accepted.
  pyTest("test_push", async () => {
    const c = await exchange(poller, b("\n"), (c) => {
      const data = b("bytes\n");
      c.push(data); // bytes
      c.push(new Uint8Array(data)); // bytearray
      c.push(concat([b("xx"), data]).subarray(2)); // memoryview
      c.push(new DataView(data.buffer) as unknown as Uint8Array); // any ArrayBufferView
      assertThrows(() => c.push(10 as unknown as Uint8Array), TypeError);
      assertThrows(() => c.push(null as unknown as Uint8Array), TypeError);
      assertThrows(() => c.push({} as unknown as Uint8Array), TypeError);
      c.push("unicode \u00fc\n");
      c.push(SERVER_QUIT);
    });
    assertEquals(c.contents, ["bytes", "bytes", "bytes", "bytes", "unicode \u00fc"]);
  });
}

// TestAsynchatMocked.test_blockingioerror: handle_read() must ignore "would
// block" (here both ways a socket can say it: -1 from tryRecvInto, and an
// OSError(EAGAIN) thrown), and send other OSErrors to handleError.
leakTest("asynchat TestAsynchatMocked.test_blockingioerror", () => {
  for (
    const behaviour of [
      () => -1,
      () => {
        throw new OSError(errno.EAGAIN, { syscall: "recv" });
      },
    ]
  ) {
    const map: SocketMap = new Map();
    const sock = { fileno: () => 100_000, tryRecvInto: behaviour, close() {} };
    const dispatcher = new AsyncChat(null, map);
    dispatcher.setSocket(sock as unknown as Socket);
    dispatcher.connected = true;
    let errors = 0;
    dispatcher.handleError = () => errors++;
    try {
      dispatcher.handleRead();
      assertEquals(errors, 0);
      assertEquals(map.size, 1, "would-block must not close the channel");
    } finally {
      dispatcher.delChannel();
    }
  }
  // Another OSError goes to handleError, as in the reference.
  const map: SocketMap = new Map();
  const sock = {
    fileno: () => 100_001,
    tryRecvInto: () => {
      throw new OSError(errno.EIO, { syscall: "recv" });
    },
    close() {},
  };
  const dispatcher = new AsyncChat(null, map);
  dispatcher.setSocket(sock as unknown as Socket);
  const seen: unknown[] = [];
  dispatcher.handleError = (e) => seen.push(e);
  dispatcher.handleRead();
  dispatcher.delChannel();
  assertEquals(seen.length, 1);
  assert(seen[0] instanceof OSError && seen[0].errno === errno.EIO);
});

// TestHelperFunctions.test_find_prefix_at_end
Deno.test("asynchat TestHelperFunctions.test_find_prefix_at_end", () => {
  assertEquals(findPrefixAtEnd("qwerty\r", "\r\n"), 1);
  assertEquals(findPrefixAtEnd("qwertydkjf", "\r\n"), 0);
});

// TestNotConnected.test_disallow_negative_terminator (Issue #11259)
Deno.test("asynchat TestNotConnected.test_disallow_negative_terminator", () => {
  const client = new AsyncChat(null, new Map());
  assertThrows(() => client.setTerminator(-1), RangeError);
});

// ---------------------------------------------------------------------------
// Beyond the reference's tests.

Deno.test("asynchat findPrefixAtEnd: more cases", () => {
  assertEquals(findPrefixAtEnd(b("qwerty\r"), b("\r\n")), 1);
  assertEquals(findPrefixAtEnd("", "\r\n"), 0);
  assertEquals(findPrefixAtEnd("\r", "\r\n"), 1);
  assertEquals(findPrefixAtEnd("abc\r\n.", "\r\n.\r\n"), 3);
  assertEquals(findPrefixAtEnd("abc\r\n.\r", "\r\n.\r\n"), 4);
  assertEquals(findPrefixAtEnd("abc\r\n.\r\n", "\r\n.\r\n"), 2); // the exact match is assumed checked
  assertEquals(findPrefixAtEnd("xaa", "aab"), 2);
  assertEquals(findPrefixAtEnd("xa", "aab"), 1);
  assertEquals(findPrefixAtEnd("xab", "abab"), 2);
  assertEquals(findPrefixAtEnd("xaba", "abab"), 3);
  assertEquals(findPrefixAtEnd("qq", "qqq"), 2);
  assertEquals(findPrefixAtEnd("qqqq", "qqq"), 2); // at most len(needle) - 1
  assertEquals(findPrefixAtEnd("abc", "\n"), 0); // a 1-byte needle has no proper prefix
  assertEquals(findPrefixAtEnd("abc", ""), 0);
  assertEquals(findPrefixAtEnd("ab", "abcdef"), 2);
  assertEquals(findPrefixAtEnd("\u00fc", "\u00fc!"), 2); // UTF-8: two bytes
  assertThrows(() => findPrefixAtEnd(1 as unknown as string, "a"), TypeError);
});

Deno.test("asynchat setTerminator: types and errors", () => {
  const c = new AsyncChat(null, new Map());
  assertStrictEquals(c.getTerminator(), null);
  c.setTerminator("\r\n");
  assertEquals(c.getTerminator(), b("\r\n"));
  c.setTerminator("\u20ac");
  assertEquals(c.getTerminator(), b("\u20ac"));
  const t = b("END");
  c.setTerminator(t);
  assertStrictEquals(c.getTerminator(), t);
  c.setTerminator(0);
  assertEquals(c.getTerminator(), 0);
  c.setTerminator(123456789);
  assertEquals(c.getTerminator(), 123456789);
  c.setTerminator(null);
  assertStrictEquals(c.getTerminator(), null);
  for (const bad of [-1, 1.5, NaN, Infinity, -Infinity, 2 ** 53]) {
    assertThrows(() => c.setTerminator(bad), RangeError, undefined, String(bad));
  }
  for (const bad of [undefined, true, {}, [], () => 1, 1n, Symbol("x")]) {
    assertThrows(
      () => c.setTerminator(bad as unknown as string),
      TypeError,
      undefined,
      String(typeof bad),
    );
  }
  // A failed call leaves the terminator as it was.
  assertStrictEquals(c.getTerminator(), null);
});

Deno.test("asynchat defaults: collectIncomingData and foundTerminator must be overridden", () => {
  const c = new AsyncChat(null, new Map());
  assertThrows(() => c.collectIncomingData(b("x")), Error, "must be implemented in a subclass");
  assertThrows(() => c.foundTerminator(), Error, "must be implemented in a subclass");
  assertEquals(c.acInBufferSize, 65536);
  assertEquals(c.acOutBufferSize, 65536);
  assertEquals(c.readable(), true);
  assertEquals(c.writable(), true, "not connected: writable");
  c._collectIncomingData(b("ab"));
  c._collectIncomingData(b("cd"));
  assertEquals(c.incoming.length, 2);
  assertEquals(dec.decode(c._getData()), "abcd");
  assertEquals(c.incoming, []);
  assertEquals(c._getData().length, 0);
});

// ---- feeding handleRead directly: a channel whose recv() returns scripted chunks

type Event = string; // "D:<data>" runs are merged; "T" is foundTerminator

/** Records collectIncomingData and foundTerminator calls as merged events. */
class Recorder {
  events: Event[] = [];
  data(d: Uint8Array): void {
    assert(d.length > 0, "collectIncomingData got empty data");
    const s = latin1(d);
    const last = this.events.length - 1;
    if (last >= 0 && this.events[last].startsWith("D:")) this.events[last] += s;
    else this.events.push("D:" + s);
  }
  found(): void {
    this.events.push("T");
  }
}

function latin1(d: Uint8Array): string {
  let s = "";
  for (const x of d) s += String.fromCharCode(x);
  return s;
}

/** What a protocol does at each terminator: the next terminator, or undefined to keep it. */
type Schedule = (found: number, current: Terminator) => Terminator | string | undefined;

class ScriptedChat extends AsyncChat {
  chunks: Uint8Array[] = [];
  rec = new Recorder();
  found = 0;
  constructor(term: Terminator | string, public schedule: Schedule = () => undefined) {
    super(null, new Map());
    this.setTerminator(term);
  }
  override recv(n: number): Uint8Array {
    const c = this.chunks.shift() ?? new Uint8Array(0);
    if (c.length > n) {
      this.chunks.unshift(c.subarray(n));
      return c.subarray(0, n);
    }
    return c;
  }
  override collectIncomingData(data: Uint8Array): void {
    this.rec.data(data);
  }
  override foundTerminator(): void {
    this.rec.found();
    const next = this.schedule(++this.found, this.getTerminator());
    if (next !== undefined) this.setTerminator(next);
  }
  feed(...parts: (Uint8Array | string)[]): void {
    for (const p of parts) {
      this.chunks.push(typeof p === "string" ? b(p) : p);
      this.handleRead();
    }
  }
}

/** A direct port of the reference's handle_read (quadratic, for small inputs). */
class ReferenceModel {
  acInBuffer: Uint8Array = new Uint8Array(0);
  rec = new Recorder();
  found = 0;
  constructor(public terminator: Terminator, public schedule: Schedule = () => undefined) {}
  handleRead(data: Uint8Array): void {
    this.acInBuffer = concat([this.acInBuffer, data]);
    while (this.acInBuffer.length) {
      const lb = this.acInBuffer.length;
      const terminator = this.terminator;
      if (!terminator || (terminator instanceof Uint8Array && terminator.length === 0)) {
        this.rec.data(this.acInBuffer);
        this.acInBuffer = new Uint8Array(0);
      } else if (typeof terminator === "number") {
        const n = terminator;
        if (lb < n) {
          this.rec.data(this.acInBuffer);
          this.acInBuffer = new Uint8Array(0);
          this.terminator = (this.terminator as number) - lb;
        } else {
          this.rec.data(this.acInBuffer.slice(0, n));
          this.acInBuffer = this.acInBuffer.slice(n);
          this.terminator = 0;
          this.foundTerminator();
        }
      } else {
        const tl = terminator.length;
        const index = naiveFind(this.acInBuffer, terminator);
        if (index !== -1) {
          if (index > 0) this.rec.data(this.acInBuffer.slice(0, index));
          this.acInBuffer = this.acInBuffer.slice(index + tl);
          this.foundTerminator();
        } else {
          const idx = naivePrefixAtEnd(this.acInBuffer, terminator);
          if (idx) {
            if (idx !== lb) {
              this.rec.data(this.acInBuffer.slice(0, lb - idx));
              this.acInBuffer = this.acInBuffer.slice(lb - idx);
            }
            break;
          } else {
            this.rec.data(this.acInBuffer);
            this.acInBuffer = new Uint8Array(0);
          }
        }
      }
    }
  }
  foundTerminator(): void {
    this.rec.found();
    const next = this.schedule(++this.found, this.terminator);
    if (next !== undefined) this.terminator = typeof next === "string" ? b(next) : next;
  }
}

function naiveFind(h: Uint8Array, n: Uint8Array): number {
  outer: for (let i = 0; i + n.length <= h.length; i++) {
    for (let j = 0; j < n.length; j++) if (h[i + j] !== n[j]) continue outer;
    return i;
  }
  return -1;
}

// def find_prefix_at_end(haystack, needle): l = len(needle) - 1; while l and
// not haystack.endswith(needle[:l]): l -= 1; return l
function naivePrefixAtEnd(h: Uint8Array, n: Uint8Array): number {
  let l = n.length - 1;
  const endsWith = (k: number) =>
    k <= h.length && latin1(h.subarray(h.length - k)) === latin1(n.subarray(0, k));
  while (l && !endsWith(l)) l--;
  return l;
}

const SPLIT_TERMS = ["\n", "\r\n", "qqq", "\r\n.\r\n", "aab", "abab", "<END-OF-MESSAGE>"];

Deno.test("asynchat handleRead: terminators split at every position across two reads", () => {
  for (const term of SPLIT_TERMS) {
    const msg = b("hello world" + term + "I'm not dead yet!" + term + "tail");
    for (let cut = 0; cut <= msg.length; cut++) {
      const c = new ScriptedChat(term);
      c.feed(msg.subarray(0, cut), msg.subarray(cut));
      assertEquals(
        c.rec.events,
        ["D:hello world", "T", "D:I'm not dead yet!", "T", "D:tail"],
        `term ${JSON.stringify(term)} cut ${cut}`,
      );
      assertEquals(c.acInBuffer.length, 0);
    }
  }
});

Deno.test("asynchat handleRead: split at every pair of positions across three reads", () => {
  for (const term of SPLIT_TERMS) {
    const msg = b("ab" + term + term + "c" + term + "d");
    // What the reference makes of the whole message in one read (for "abab"
    // and "aab" the first match is not where the message was glued).
    const model = new ReferenceModel(b(term));
    model.handleRead(msg);
    if (!["abab", "aab"].includes(term)) {
      assertEquals(model.rec.events, ["D:ab", "T", "T", "D:c", "T", "D:d"]);
    }
    for (let i = 0; i <= msg.length; i++) {
      for (let j = i; j <= msg.length; j++) {
        const c = new ScriptedChat(term);
        c.feed(msg.subarray(0, i), msg.subarray(i, j), msg.subarray(j));
        assertEquals(c.rec.events, model.rec.events, `term ${JSON.stringify(term)} cuts ${i},${j}`);
        assertEquals(latin1(c.acInBuffer), latin1(model.acInBuffer));
      }
    }
  }
});

Deno.test("asynchat handleRead: one byte per read, and a partial terminator kept between reads", () => {
  const c = new ScriptedChat("\r\n.\r\n");
  const msg = "line1\r\nline2\r\n.\r\nnext";
  for (const ch of msg) c.feed(ch);
  assertEquals(c.rec.events, ["D:line1\r\nline2", "T", "D:next"]);
  c.feed("\r\n.");
  assertEquals(latin1(c.acInBuffer), "\r\n.");
  c.feed("\r");
  assertEquals(latin1(c.acInBuffer), "\r\n.\r");
  c.feed("x");
  assertEquals(c.acInBuffer.length, 0);
  assertEquals(c.rec.events, ["D:line1\r\nline2", "T", "D:next\r\n.\rx"]);
});

Deno.test("asynchat handleRead: model check against a port of the reference's handle_read", () => {
  const alphabet = b("ab\r\n.q");
  const terms: (Terminator | string)[] = [
    "\n",
    "\r\n",
    "\r\n.\r\n",
    "aab",
    "abab",
    "a",
    "qqq",
    3,
    1,
    7,
  ];
  const r = rng(42);
  for (let trial = 0; trial < 1500; trial++) {
    const len = Math.floor(r() * 200);
    const data = new Uint8Array(len);
    for (let i = 0; i < len; i++) data[i] = alphabet[Math.floor(r() * alphabet.length)];
    // A protocol that switches terminators as it goes (like SMTP's DATA or a
    // length-prefixed body), the same for both implementations.
    const plan = Array.from({ length: 8 }, () => terms[Math.floor(r() * terms.length)]);
    // After a numeric terminator (now 0: "collect everything") always pick a new one.
    const schedule: Schedule = (n, current) =>
      n % 3 === 0 || current === 0 ? plan[n % plan.length] : undefined;
    const first = plan[0];
    const ours = new ScriptedChat(first, schedule);
    const model = new ReferenceModel(typeof first === "string" ? b(first) : first, schedule);
    let at = 0;
    const reads: Uint8Array[] = [];
    while (at < len) {
      const n = r() < 0.1 ? 0 : 1 + Math.floor(r() * 24);
      reads.push(data.subarray(at, at + n));
      at += n;
    }
    for (const chunk of reads) {
      ours.feed(chunk);
      model.handleRead(chunk);
    }
    const where = `trial ${trial}: ${JSON.stringify(latin1(data))} plan ${JSON.stringify(plan)}`;
    assertEquals(ours.rec.events, model.rec.events, where);
    assertEquals(latin1(ours.acInBuffer), latin1(model.acInBuffer), where);
    assertEquals(ours.getTerminator(), model.terminator, where);
  }
});

Deno.test("asynchat handleRead: numeric terminators larger than one read", () => {
  const c = new ScriptedChat(100, (n) => (n === 1 ? "\n" : undefined));
  c.acInBufferSize = 7; // every read is at most 7 bytes
  const body = "x".repeat(100);
  c.chunks.push(b(body + "after\n"));
  const reads: number[] = [];
  for (let i = 0; i < 20 && c.chunks.length; i++) {
    c.handleRead();
    reads.push(typeof c.getTerminator() === "number" ? c.getTerminator() as number : -1);
  }
  assertEquals(c.rec.events, ["D:" + body, "T", "D:after", "T"]);
  // The count went down by 7 per read: 93, 86, ... 2, then found.
  assertEquals(reads.slice(0, 3), [93, 86, 79]);
});

Deno.test("asynchat handleRead: null terminator collects everything, in views of the read", () => {
  const c = new ScriptedChat(null);
  const chunk = b("a\nb\r\nc");
  c.feed(chunk);
  assertEquals(c.rec.events, ["D:a\nb\r\nc"]);
  let got: Uint8Array | null = null;
  c.collectIncomingData = (d) => (got = d);
  c.feed(chunk);
  assertStrictEquals(got, chunk, "no copy of the received chunk");
});

Deno.test("asynchat handleRead: a throwing handler keeps the rest of the input", () => {
  const c = new ScriptedChat("\n");
  let calls = 0;
  c.foundTerminator = function (this: ScriptedChat) {
    this.rec.found();
    if (++calls === 2) throw new Error("boom");
  };
  assertThrows(() => c.feed("a\nb\nc\n"), Error, "boom");
  c.feed("d\n");
  assertEquals(c.rec.events, ["D:a", "T", "D:b", "T", "D:c", "T", "D:d", "T"]);
});

Deno.test("asynchat discardBuffers: inside foundTerminator it drops the rest of the read", () => {
  const c = new ScriptedChat("\n");
  c.foundTerminator = function (this: ScriptedChat) {
    this.rec.found();
    this.discardBuffers();
  };
  c._collectIncomingData(b("stale"));
  c.feed("a\nb\nc\nd");
  assertEquals(c.rec.events, ["D:a", "T"]);
  assertEquals(c.acInBuffer.length, 0);
  assertEquals(c.incoming, []);
  c.feed("e\n");
  assertEquals(c.rec.events, ["D:a", "T", "D:e", "T"]);
});

Deno.test("asynchat discardBuffers: drops a partial terminator and queued output", () => {
  const c = new ScriptedChat("\r\n");
  c.feed("abc\r");
  assertEquals(latin1(c.acInBuffer), "\r");
  c.push("queued while not connected");
  c.pushWithProducer(new SimpleProducer("more"));
  c.closeWhenDone();
  assertEquals(c.producerFifo.length, 3);
  c.discardBuffers();
  assertEquals(c.acInBuffer.length, 0);
  assertEquals(c.producerFifo.length, 0);
  c.feed("\nx\r\n");
  // The "\r" was dropped: "\n" alone is data. (Recorder merges adjacent data.)
  assertEquals(c.rec.events, ["D:abc\nx", "T"]);
});

// ---- producers and the output queue, without a socket

Deno.test("asynchat SimpleProducer: pieces of bufferSize, views, then empty", () => {
  const data = b("0123456789");
  const p = new SimpleProducer(data, 4);
  const a = p.more();
  assertEquals(latin1(a), "0123");
  assertStrictEquals(a.buffer, data.buffer);
  assertEquals(latin1(p.more()), "4567");
  assertEquals(latin1(p.more()), "89");
  assertEquals(p.more().length, 0);
  assertEquals(p.more().length, 0);
  assertEquals(latin1(new SimpleProducer("\u00fc").more()), "\xc3\xbc");
  assertEquals(new SimpleProducer(b("x".repeat(600))).more().length, 512);
  assertThrows(() => new SimpleProducer("x", 0), RangeError);
  assertThrows(() => new SimpleProducer(5 as unknown as string), TypeError);
});

Deno.test("asynchat push: large data is queued as acOutBufferSize views, no copy", () => {
  const c = new AsyncChat(null, new Map());
  const big = randomBytes(1_000_003);
  c.push(big);
  const n = Math.ceil(big.length / 65536);
  assertEquals(c.producerFifo.length, n);
  let total = 0;
  for (const e of c.producerFifo) {
    assert(e instanceof Uint8Array);
    assertStrictEquals(e.buffer, big.buffer);
    assert(e.length <= 65536);
    total += e.length;
  }
  assertEquals(total, big.length);
  c.acOutBufferSize = 0;
  assertThrows(() => c.push(big), RangeError);
  c.acOutBufferSize = 100_000;
  c.discardBuffers();
  c.push(big.subarray(0, 250_000));
  assertEquals(c.producerFifo.length, 3);
});

Deno.test("asynchat push: strings are UTF-8 encoded, whatever their length and content", () => {
  const c = new AsyncChat(null, new Map());
  const texts = [
    "plain ascii",
    "\u00fc\u00e9 latin",
    "mixed \u20ac and \u{1F600} emoji",
    "lone surrogate \ud800 here",
    "\u{1F600}".repeat(400), // 800 UTF-16 units, 1600 bytes
    "\u20ac".repeat(1365), // the largest string packed directly: 4095 bytes
    "\u20ac".repeat(1366), // encoded first, then packed
    "x".repeat(300), // longer than the ASCII fast path
    "y".repeat(5000), // queued as its own entry
    "",
  ];
  for (const t of texts) c.push(t);
  const got = concat([...c.producerFifo] as Uint8Array[]);
  const want = concat(texts.map((t) => b(t)));
  assertEquals(got, want);
});

Deno.test("asynchat push: small pushes are packed; producers and closeWhenDone keep their place", () => {
  const c = new AsyncChat(null, new Map());
  for (let i = 0; i < 1000; i++) c.push(`line ${i}\n`);
  assert(c.producerFifo.length <= 2, `1000 short pushes make ${c.producerFifo.length} entries`);
  const p: Producer = { more: () => "" };
  c.pushWithProducer(p);
  c.push("after\n");
  c.closeWhenDone();
  c.push("never\n");
  const entries = [...c.producerFifo];
  const pi = entries.indexOf(p);
  assert(pi > 0);
  assertEquals(latin1(entries[pi + 1] as Uint8Array), "after\n");
  assertStrictEquals(entries[pi + 2], null);
  assertEquals(latin1(entries[pi + 3] as Uint8Array), "never\n");
  const text = entries.slice(0, pi).map((e) => latin1(e as Uint8Array)).join("");
  assertEquals(text, Array.from({ length: 1000 }, (_, i) => `line ${i}\n`).join(""));
  // The caller may reuse its buffer after a small push.
  const buf = b("abc");
  const d = new AsyncChat(null, new Map());
  d.push(buf);
  buf.fill(0x78);
  assertEquals(latin1(d.producerFifo.at(0) as Uint8Array), "abc");
  assertThrows(() => d.pushWithProducer(5 as unknown as Producer), TypeError);
  assertThrows(() => d.pushWithProducer({} as unknown as Producer), TypeError);
  assertThrows(() => d.pushWithProducer(null as unknown as Producer), TypeError);
});

// ---- real sockets, both ends in one private map

/** A listening dispatcher on 127.0.0.1 that hands accepted sockets to `onAccept`. */
class Listener extends Dispatcher {
  constructor(map: SocketMap, public onAccept: (sock: Socket, addr: Address) => void) {
    super(null, map);
    this.createSocket();
    this.setReuseAddr();
    this.bind([HOST, 0]);
    this.listen(5);
  }
  get port(): number {
    return ((this.socket as Socket).getsockname() as [string, number])[1];
  }
  override handleAccepted(sock: Socket, addr: Address): void {
    this.onAccept(sock, addr);
  }
}

/** Collects everything until EOF (null terminator), then closes. */
class Sink extends AsyncChat {
  parts: Uint8Array[] = [];
  eof = false;
  constructor(sock: Socket, map: SocketMap) {
    super(sock, map);
    this.setTerminator(null);
  }
  override collectIncomingData(data: Uint8Array): void {
    this.parts.push(data);
  }
  override handleClose(): void {
    this.eof = true;
    this.close();
  }
}

/** A client chat channel that connects and records lines. */
class LineClient extends ChatClient {
  lines: string[] = [];
  closed = false;
  override collectIncomingData(data: Uint8Array): void {
    this._collectIncomingData(data);
  }
  override foundTerminator(): void {
    this.lines.push(dec.decode(this._getData()));
  }
  override handleClose(): void {
    this.closed = true;
    this.close();
  }
}

function pump(map: SocketMap, poller: PollerName, done: () => boolean, what: string, ms = 10000) {
  pumpUntil(() => {
    loop({ timeout: 0.01, map, count: 20, poller });
    return done();
  }, { ms, what });
}

/**
 * A {@linkcode LineClient} connected to a listener whose accepted channel is
 * a {@linkcode Sink}: `send(client)` queues and closes, the loop runs until
 * the sink's EOF, and `check` gets what the sink received (before closeAll).
 */
async function sinkExchange(
  poller: PollerName,
  what: string,
  ms: number,
  send: (client: LineClient) => void,
  check: (got: Uint8Array, client: LineClient) => unknown,
): Promise<void> {
  const map: SocketMap = new Map();
  let sink: Sink | null = null;
  const listener = new Listener(map, (sock) => (sink = new Sink(sock, map)));
  try {
    const client = new LineClient(listener.port, map);
    send(client);
    pump(map, poller, () => sink !== null && (sink as Sink).eof, what, ms);
    await check(concat(sink!.parts), client);
  } finally {
    closeAll(map);
  }
}

for (const poller of POLLERS) {
  Deno.test(`asynchat [${poller}] producers mixing strings and bytes reach the peer intact`, async () => {
    const pieces: (Uint8Array | string)[] = [];
    const r = rng(7);
    for (let i = 0; i < 300; i++) {
      pieces.push(
        r() < 0.5 ? `str ${i} \u00e9\u20ac\u{1F600}\n` : randomBytes(1 + (i * 37) % 3000, i),
      );
    }
    await assertNoFdLeak(() =>
      sinkExchange(poller, "the sink's EOF", 10000, (client) => {
        const queue = [...pieces];
        const producer: Producer = { more: () => queue.shift() ?? "" };
        client.push("pushed first;");
        client.pushWithProducer(producer);
        client.pushWithProducer(new SimpleProducer("simple-producer-data", 3));
        client.push(b(";pushed last"));
        client.closeWhenDone();
      }, async (got, client) => {
        const expected = concat([
          b("pushed first;"),
          ...pieces.map((p) => (typeof p === "string" ? b(p) : p)),
          b("simple-producer-data"),
          b(";pushed last"),
        ]);
        assertEquals(got.length, expected.length);
        assertEquals(await sha256(got), await sha256(expected));
        assertStrictEquals(client.fileno(), null, "closeWhenDone closed the client");
      })
    );
  });

  Deno.test(`asynchat [${poller}] push of 8 MiB (> acOutBufferSize) arrives intact`, async () => {
    const big = randomBytes(8 * 1024 * 1024 + 17, 3);
    await assertNoFdLeak(() =>
      sinkExchange(poller, "8 MiB", 30000, (client) => {
        client.push(big);
        assertGreater(client.producerFifo.length, 100);
        client.closeWhenDone();
      }, async (got) => {
        assertEquals(got.length, big.length);
        assertEquals(await sha256(got), await sha256(big));
      })
    );
  });

  leakTest(`asynchat [${poller}] closeWhenDone: the peer gets everything, then EOF`, () => {
    const map: SocketMap = new Map();
    let server: LineClient | null = null;
    // The server side says goodbye and closes when done, queued before it is connected.
    const listener = new Listener(map, (sock) => {
      const s = new (class extends AsyncChat {
        override collectIncomingData(): void {}
        override foundTerminator(): void {}
      })(sock, map);
      s.setTerminator("\n");
      s.push("one\n");
      s.pushWithProducer(new SimpleProducer("two\nthree\n", 2));
      s.closeWhenDone();
      s.push("not sent\n");
      server = s as unknown as LineClient;
    });
    try {
      const client = new LineClient(listener.port, map);
      pump(map, poller, () => client.closed, "the client's EOF");
      assertEquals(client.lines, ["one", "two", "three"]);
      assertStrictEquals((server as unknown as AsyncChat).fileno(), null);
    } finally {
      closeAll(map);
    }
  });

  Deno.test(`asynchat [${poller}] closeWhenDone before the connection is made`, async () => {
    await assertNoFdLeak(() =>
      sinkExchange(poller, "EOF", 10000, (client) => {
        client.push("early\n");
        client.closeWhenDone();
        assert(client.writable());
      }, (got) => {
        assertEquals(dec.decode(got), "early\n");
      })
    );
  });

  leakTest(`asynchat [${poller}] 100,000 short lines both ways, with numeric terminators`, () => {
    const map: SocketMap = new Map();
    // An echo server on AsyncChat: "N\n" announces an N-byte body, echoed as one line.
    class Echo extends AsyncChat {
      constructor(sock: Socket) {
        super(sock, map);
        this.setTerminator("\n");
      }
      override collectIncomingData(data: Uint8Array): void {
        this._collectIncomingData(data);
      }
      override foundTerminator(): void {
        const data = this._getData();
        const text = dec.decode(data);
        if (text.startsWith("BODY ")) {
          this.setTerminator(Number(text.slice(5)));
          return;
        }
        if (typeof this.getTerminator() === "number") {
          this.setTerminator("\n");
          this.push(`body ${data.length} ${data[0]}\n`);
          return;
        }
        this.push(data);
        this.push("\n");
      }
    }
    const listener = new Listener(map, (sock) => new Echo(sock));
    try {
      const client = new LineClient(listener.port, map);
      const N = 100_000;
      const expected: string[] = [];
      for (let i = 0; i < N; i++) {
        const line = `line ${i}`;
        client.push(line + "\n");
        expected.push(line);
        if (i === 50_000) {
          // A body far larger than one read.
          client.push("BODY 300000\n");
          client.push(new Uint8Array(300_000).fill(7));
          expected.push("body 300000 7");
        }
      }
      assert(client.producerFifo.length < 200, "short pushes were packed");
      pump(map, poller, () => client.lines.length >= expected.length, "the echoed lines", 30000);
      assertEquals(client.lines.length, expected.length);
      assertEquals(client.lines, expected);
    } finally {
      closeAll(map);
    }
  });

  Deno.test(`asynchat [${poller}] discardBuffers before connecting: nothing queued is sent`, async () => {
    await assertNoFdLeak(() =>
      sinkExchange(poller, "EOF", 10000, (client) => {
        client.push("dropped\n");
        client.pushWithProducer(new SimpleProducer("dropped too"));
        client.discardBuffers();
        assertEquals(client.producerFifo.length, 0);
        client.push("kept\n");
        client.closeWhenDone();
      }, (got) => {
        assertEquals(dec.decode(got), "kept\n");
      })
    );
  });
}

leakTest("asynchat writable(): connected with an empty queue is not writable", () => {
  const map: SocketMap = new Map();
  let accepted: Sink | null = null;
  const listener = new Listener(map, (sock) => (accepted = new Sink(sock, map)));
  try {
    const client = new LineClient(listener.port, map);
    assert(client.writable(), "connecting");
    pump(map, "poll", () => accepted !== null && client.connected, "connection");
    assertEquals(client.writable(), false);
    assertEquals(accepted!.writable(), false);
    client.closeWhenDone();
    assert(client.writable());
    pump(map, "poll", () => (accepted as unknown as Sink).eof, "EOF");
    assertEquals(client.fileno(), null);
  } finally {
    closeAll(map);
  }
});
