// What a port from Python leans on: recv(0), the typed socket accessor, and a
// handler's traceback reaching back to the loop.
import { assert, assertEquals, assertThrows } from "@std/assert";
import {
  compactTraceback,
  Dispatcher,
  FileDispatcher,
  loop,
  Socket,
  type SocketMap,
} from "../mod.ts";
import { close, pipe } from "../ffi/os.ts";
import { assertNoFdLeak, POLLERS } from "./_util.ts";

function connectedPair(): [Socket, Socket] {
  const l = new Socket();
  l.bind(["127.0.0.1", 0]);
  l.listen(1);
  const c = new Socket();
  c.connect(l.getsockname());
  const [s] = l.accept();
  l.close();
  return [c, s];
}

Deno.test("porting: Socket.recv(0) and Dispatcher.recv(0) return empty bytes at once, as Python", async () => {
  await assertNoFdLeak(() => {
    const [c, s] = connectedPair();
    s.setblocking(false);
    // Nothing is queued: a system call would say EAGAIN; Python makes none.
    assertEquals(s.recv(0), new Uint8Array(0));
    const map: SocketMap = new Map();
    const d = new Dispatcher(s, map);
    assertEquals(d.recv(0), new Uint8Array(0));
    assertEquals(d.connected, true, "recv(0) is not an end of stream");
    c.send("x");
    c.close();
    d.close();
  });
});

Deno.test("porting: Dispatcher.sock is the Socket, typed; a clear TypeError otherwise", async () => {
  await assertNoFdLeak(() => {
    const map: SocketMap = new Map();
    const d = new Dispatcher(null, map);
    assertThrows(() => d.sock, TypeError, "has no socket yet");
    d.createSocket();
    d.bind(["127.0.0.1", 0]);
    const [host, port] = d.sock.getsockname() as [string, number];
    assertEquals(host, "127.0.0.1");
    assert(port > 0);
    d.close();
    const [r, w] = pipe();
    const f = new FileDispatcher(r, map);
    assertThrows(() => f.sock, TypeError, "is a FileWrapper");
    f.close();
    close(r);
    close(w);
  });
});

function deep(n: number): never {
  if (n === 0) throw new Error("deep down");
  return deep(n - 1);
}

for (const poller of POLLERS) {
  Deno.test(`porting: a handler's traceback reaches back to loop() (${poller})`, async () => {
    await assertNoFdLeak(() => {
      const map: SocketMap = new Map();
      let info = "";
      class Fails extends Dispatcher {
        override writable() {
          return true;
        }
        override handleWrite(): void {
          deep(8); // nine frames of the handler's own, near V8's default of ten
        }
        override handleError(error: unknown): void {
          info = compactTraceback(error)[3];
          this.close();
        }
      }
      const [c, s] = connectedPair();
      new Fails(s, map);
      const limit = Error.stackTraceLimit;
      loop({ map, poller, timeout: 1, count: 5 });
      assertEquals(Error.stackTraceLimit, limit, "restored after the loop");
      c.close();
      assert(info.includes("|Fails.handleWrite|"), info);
      assert(/\|loop\|/.test(info), `the loop's frame is missing: ${info}`);
    });
  });
}
