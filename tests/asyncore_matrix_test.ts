// A port of CPython 3.11's Lib/test/test_asyncore.py, part two: BaseTestAPI
// and its subclasses (TestAPI_UseIPv4Select ... TestAPI_UseUnixSocketsPoll).
// Every API test runs over {IPv4 127.0.0.1, IPv6 ::1, Unix socket} x
// {select, poll, epoll}; Python has no epoll variant, so the *Epoll classes
// are new. Each Python test has a counterpart of the same name.
//
// All peers are dispatchers in the same private map, so the synchronous
// loop() serves both ends and nothing needs Deno's event loop, except
// test_quick_connect's threaded client, which becomes a python3 subprocess.
import { assert, assertEquals, assertFalse, assertInstanceOf, assertThrows } from "@std/assert";
import {
  type Address,
  AF_INET,
  AF_INET6,
  AF_UNIX,
  closeAll,
  Dispatcher,
  encodeLinger,
  errno,
  ExitNow,
  loop,
  OSError,
  type PollerName,
  SO_LINGER,
  SO_REUSEADDR,
  SOCK_STREAM,
  Socket,
  type SocketMap,
  SOL_SOCKET,
} from "../mod.ts";
import { assertNoFdLeak, delay, hasIPv6, onWindows, python, tempSocketPath } from "./_util.ts";

/** Linux's MSG_OOB (not among the exported constants). */
const MSG_OOB = 1;
/** Linux's O_CLOEXEC, as /proc/self/fdinfo prints the fd flags (octal). */
const O_CLOEXEC = 0o2000000;

/** What one TestAPI_* class fixes: the family, the address and the poller. */
interface Ctx {
  family: number;
  addr: Address;
  poller: PollerName;
  map: SocketMap;
}

/**
 * Python's BaseTestHandler.handle_error is a bare `raise`, which ends the
 * loop and fails the test. Our loop keeps going when handleError throws
 * (it logs and closes the channel), except for ExitNow; so a handler error
 * leaves the loop wrapped in this ExitNow and `runLoop` unwraps it.
 */
class Reraised extends ExitNow {
  constructor(readonly error: unknown) {
    super(`re-raised: ${error}`);
  }
}

function reraise(error: unknown): never {
  throw error instanceof Reraised ? error : new Reraised(error);
}

/** loop() over the test's map and poller; a handler's error is thrown as it was. */
function runLoop(ctx: Ctx, timeout: number, count: number): void {
  try {
    loop({ timeout, count, map: ctx.map, poller: ctx.poller });
  } catch (error) {
    if (error instanceof Reraised) throw error.error;
    throw error;
  }
}

/** Python's bind_af_aware: a Unix path is unlinked before binding. */
function bindAfAware(sock: Socket, addr: Address): void {
  if (sock.family === AF_UNIX) {
    try {
      Deno.removeSync(addr as string);
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound)) throw error;
    }
  }
  sock.bind(addr);
}

/** Python's BaseTestHandler: every handler but read/write must not be called. */
class BaseTestHandler extends Dispatcher {
  flag = false;

  constructor(sock: Socket | null, map: SocketMap) {
    super(sock, map);
  }

  override handleAccept(): void {
    throw new Error("handleAccept not supposed to be called");
  }

  override handleAccepted(_sock: Socket, _addr: Address): void {
    throw new Error("handleAccepted not supposed to be called");
  }

  override handleConnect(): void {
    throw new Error("handleConnect not supposed to be called");
  }

  override handleExpt(): void {
    throw new Error("handleExpt not supposed to be called");
  }

  override handleClose(): void {
    throw new Error("handleClose not supposed to be called");
  }

  override handleError(error: unknown): void {
    reraise(error);
  }
}

type HandlerClass = new (sock: Socket, map: SocketMap) => Dispatcher;

/** Python's BaseServer: listens on the test's address, one `handler` per connection. */
class BaseServer extends Dispatcher {
  readonly handler: HandlerClass;

  constructor(ctx: Ctx, handler: HandlerClass = BaseTestHandler) {
    super(null, ctx.map);
    this.createSocket(ctx.family);
    this.setReuseAddr();
    bindAfAware(this.socket as Socket, ctx.addr);
    this.listen(5);
    this.handler = handler;
  }

  get address(): Address {
    return (this.socket as Socket).getsockname();
  }

  override handleAccepted(sock: Socket, _addr: Address): void {
    new this.handler(sock, this._map);
  }

  override handleError(error: unknown): void {
    reraise(error);
  }
}

/** Python's BaseClient: connects at once; handleConnect does nothing. */
class BaseClient extends BaseTestHandler {
  constructor(ctx: Ctx, address: Address) {
    super(null, ctx.map);
    this.createSocket(ctx.family);
    this.connect(address);
  }

  override handleConnect(): void {}
}

/** The test_handle_accept* listeners: a {@linkcode BaseTestHandler} listening on the test's address. */
class BaseListener extends BaseTestHandler {
  readonly address: Address;

  constructor(ctx: Ctx) {
    super(null, ctx.map);
    this.createSocket(ctx.family);
    bindAfAware(this.socket as Socket, ctx.addr);
    this.listen(5);
    this.address = (this.socket as Socket).getsockname();
  }
}

/** Python's loop_waiting_for_flag: bounded passes until `instance.flag`. */
function loopWaitingForFlag(ctx: Ctx, instance: { flag: boolean }, seconds = 5): void {
  const deadline = performance.now() + seconds * 1000;
  while (ctx.map.size > 0 && performance.now() < deadline) {
    runLoop(ctx, 0.01, 1);
    if (instance.flag) return;
  }
  throw new Error("flag not set");
}

// ---- the tests of BaseTestAPI ----

interface ApiTest {
  name: string;
  /** Why this family has no such test (as Python's skipTest), or undefined. */
  skip?: (family: number, poller: PollerName) => string | undefined;
  fn: (ctx: Ctx) => void | Promise<void>;
}

const notUnix = (why: string) => (family: number) => family === AF_UNIX ? why : undefined;

const API_TESTS: ApiTest[] = [
  {
    // test_handle_connect: handleConnect is called on connect()
    name: "test_handle_connect",
    fn(ctx) {
      class TestClient extends BaseClient {
        override handleConnect(): void {
          this.flag = true;
        }
      }
      const server = new BaseServer(ctx);
      const client = new TestClient(ctx, server.address);
      loopWaitingForFlag(ctx, client);
    },
  },
  {
    // test_handle_accept: handleAccept is called when a client connects
    name: "test_handle_accept",
    fn(ctx) {
      class TestListener extends BaseListener {
        override handleAccept(): void {
          this.flag = true;
        }
      }
      const server = new TestListener(ctx);
      new BaseClient(ctx, server.address);
      loopWaitingForFlag(ctx, server);
    },
  },
  {
    // test_handle_accepted: the default handleAccept calls handleAccepted
    name: "test_handle_accepted",
    fn(ctx) {
      class TestListener extends BaseListener {
        override handleAccept(): void {
          Dispatcher.prototype.handleAccept.call(this);
        }
        override handleAccepted(sock: Socket, addr: Address): void {
          sock.close();
          // the address is the peer's, in the listener's family
          if (ctx.family === AF_UNIX) assertEquals(typeof addr, "string");
          else assert(Array.isArray(addr));
          this.flag = true;
        }
      }
      const server = new TestListener(ctx);
      new BaseClient(ctx, server.address);
      loopWaitingForFlag(ctx, server);
    },
  },
  {
    // test_handle_read: handleRead is called on data received
    name: "test_handle_read",
    fn(ctx) {
      class TestClient extends BaseClient {
        override handleRead(): void {
          this.flag = true;
        }
      }
      class TestHandler extends BaseTestHandler {
        constructor(conn: Socket, map: SocketMap) {
          super(conn, map);
          this.send(new Uint8Array(1024).fill(0x78)); // b'x' * 1024
        }
      }
      const server = new BaseServer(ctx, TestHandler);
      const client = new TestClient(ctx, server.address);
      loopWaitingForFlag(ctx, client);
    },
  },
  {
    // test_handle_write: handleWrite is called
    name: "test_handle_write",
    fn(ctx) {
      class TestClient extends BaseClient {
        override handleWrite(): void {
          this.flag = true;
        }
      }
      const server = new BaseServer(ctx);
      const client = new TestClient(ctx, server.address);
      loopWaitingForFlag(ctx, client);
    },
  },
  {
    // test_handle_close: handleClose is called when the other end closes
    name: "test_handle_close",
    fn(ctx) {
      class TestClient extends BaseClient {
        override handleRead(): void {
          // handleClose comes from a recv() that reads the end of the stream
          this.recv(1024);
        }
        override handleClose(): void {
          this.flag = true;
          this.close();
        }
      }
      class TestHandler extends BaseTestHandler {
        constructor(conn: Socket, map: SocketMap) {
          super(conn, map);
          this.close();
        }
      }
      const server = new BaseServer(ctx, TestHandler);
      const client = new TestClient(ctx, server.address);
      loopWaitingForFlag(ctx, client);
    },
  },
  {
    // test_handle_close_after_conn_broken: ECONNRESET/EPIPE on send end in
    // handleClose (CPython issues #5661 and #11265)
    name: "test_handle_close_after_conn_broken",
    fn(ctx) {
      const data = new Uint8Array(128);
      class TestClient extends BaseClient {
        override handleWrite(): void {
          this.send(data);
        }
        override handleClose(): void {
          this.flag = true;
          this.close();
        }
        override handleExpt(): void {
          this.flag = true;
          this.close();
        }
      }
      class TestHandler extends BaseTestHandler {
        override handleRead(): void {
          this.recv(data.length);
          this.close();
        }
        override writable(): boolean {
          return false;
        }
      }
      const server = new BaseServer(ctx, TestHandler);
      const client = new TestClient(ctx, server.address);
      loopWaitingForFlag(ctx, client);
    },
  },
  {
    // test_handle_expt: handleExpt is called on OOB data received (sent
    // with MSG_OOB through Socket.send's flags)
    name: "test_handle_expt",
    skip: (family, poller) =>
      notUnix("Not applicable to AF_UNIX sockets (no out-of-band data).")(family) ??
        (onWindows && poller === "poll"
          ? "WSAPoll has no POLLPRI: urgent data shows under select only"
          : undefined),
    fn(ctx) {
      let oob: Uint8Array | null = null;
      class TestClient extends BaseClient {
        override handleExpt(): void {
          oob = (this.socket as Socket).recv(1024, MSG_OOB);
          this.flag = true;
        }
      }
      class TestHandler extends BaseTestHandler {
        constructor(conn: Socket, map: SocketMap) {
          super(conn, map);
          (this.socket as Socket).send(new Uint8Array([244]), MSG_OOB);
        }
      }
      const server = new BaseServer(ctx, TestHandler);
      const client = new TestClient(ctx, server.address);
      loopWaitingForFlag(ctx, client);
      assertEquals(oob, new Uint8Array([244]));
    },
  },
  {
    // test_handle_error: a handler's error reaches handleError. Python
    // divides by zero; in JS 1/0 is Infinity, so BigInt division (which
    // throws RangeError) stands in for ZeroDivisionError.
    name: "test_handle_error",
    fn(ctx) {
      class TestClient extends BaseClient {
        override handleWrite(): void {
          void (1n / 0n);
        }
        override handleError(error: unknown): void {
          this.flag = true;
          if (!(error instanceof RangeError)) throw new Error("exception not raised");
        }
      }
      const server = new BaseServer(ctx);
      const client = new TestClient(ctx, server.address);
      loopWaitingForFlag(ctx, client);
    },
  },
  {
    // test_connection_attributes: connected/accepting through a connection's life
    name: "test_connection_attributes",
    fn(ctx) {
      const server = new BaseServer(ctx);
      const client = new BaseClient(ctx, server.address);

      // we start disconnected
      assertFalse(server.connected);
      assert(server.accepting);
      // client.connected can't be taken for granted (a Unix connect completes at once)
      assertFalse(client.accepting);

      // some passes, so that the client connects to the server
      runLoop(ctx, 0.01, 100);
      assertFalse(server.connected);
      assert(server.accepting);
      assert(client.connected);
      assertFalse(client.accepting);

      // disconnect the client
      client.close();
      assertFalse(server.connected);
      assert(server.accepting);
      assertFalse(client.connected);
      assertFalse(client.accepting);

      // stop serving
      server.close();
      assertFalse(server.connected);
      assertFalse(server.accepting);
    },
  },
  {
    // test_create_socket: a stream socket of the family, non-blocking
    // (gettimeout() == 0) and not inheritable (close-on-exec)
    name: "test_create_socket",
    fn(ctx) {
      const s = new Dispatcher(null, ctx.map);
      s.createSocket(ctx.family);
      const sock = s.socket as Socket;
      assertEquals(sock.type, SOCK_STREAM);
      assertEquals(sock.family, ctx.family);
      assertEquals(sock.getblocking(), false);
      // Windows has no fdinfo; its sockets are made with WSA_FLAG_NO_HANDLE_INHERIT.
      if (!onWindows) {
        const info = Deno.readTextFileSync(`/proc/self/fdinfo/${sock.fileno()}`);
        const flags = parseInt(info.match(/^flags:\s*([0-7]+)/m)![1], 8);
        assert(flags & O_CLOEXEC, "the socket is inheritable");
      }
      assertEquals(ctx.map.get(sock.fileno()), s);
    },
  },
  {
    // test_bind: EADDRINUSE shows the first socket was bound
    name: "test_bind",
    skip: notUnix("Not applicable to AF_UNIX sockets."),
    fn(ctx) {
      const s1 = new Dispatcher(null, ctx.map);
      s1.createSocket(ctx.family);
      s1.bind(ctx.addr);
      s1.listen(5);
      const port = ((s1.socket as Socket).getsockname() as [string, number])[1];
      assertEquals(s1.addr, ctx.addr); // bind remembers the address given

      const s2 = new Dispatcher(null, ctx.map);
      s2.createSocket(ctx.family);
      const host = (ctx.addr as [string, number])[0];
      const error = assertThrows(() => s2.bind([host, port]), OSError);
      assertEquals(error.errno, errno.EADDRINUSE);
    },
  },
  {
    // test_set_reuse_addr: setReuseAddr turns SO_REUSEADDR on
    name: "test_set_reuse_addr",
    skip: notUnix("Not applicable to AF_UNIX sockets."),
    fn(ctx) {
      const probe = new Socket(ctx.family);
      try {
        // Python skips when the platform refuses SO_REUSEADDR; Linux never does.
        probe.setsockopt(SOL_SOCKET, SO_REUSEADDR, 1);
      } finally {
        probe.close();
      }
      const s = new Dispatcher(new Socket(ctx.family), ctx.map);
      assertFalse((s.socket as Socket).getsockopt(SOL_SOCKET, SO_REUSEADDR));
      s.socket!.close();
      s.createSocket(ctx.family);
      s.setReuseAddr();
      assert((s.socket as Socket).getsockopt(SOL_SOCKET, SO_REUSEADDR));
    },
  },
  {
    // test_quick_connect (bpo-10340): a client that connects and resets at
    // once (SO_LINGER 0) must not break the server's accept. Python's
    // client runs on a thread during loop(timeout=0.1, count=5). Here it
    // runs twice: in-process before the loop (the connection is reset while
    // still queued), and as a python3 subprocess while the loop runs.
    name: "test_quick_connect",
    skip: notUnix("test specific to AF_INET and AF_INET6"),
    async fn(ctx) {
      let closes = 0;
      class QuietHandler extends Dispatcher {
        override handleRead(): void {
          this.recv(1024);
        }
        override handleWrite(): void {}
        override handleClose(): void {
          closes++;
          this.close();
        }
        override handleError(error: unknown): void {
          reraise(error);
        }
      }
      const server = new BaseServer(ctx, QuietHandler);
      const address = server.address;

      const s = new Socket(ctx.family, SOCK_STREAM);
      try {
        s.setsockopt(SOL_SOCKET, SO_LINGER, encodeLinger(true, 0));
        try {
          s.connect(address);
        } catch (error) {
          if (!(error instanceof OSError)) throw error;
        }
      } finally {
        s.close();
      }
      runLoop(ctx, 0.1, 5);
      assert(server.accepting);
      assertEquals(ctx.map.get(server.fileno()!), server);
      assertEquals(closes, 1, "the reset connection was accepted and closed");

      if (python === null) return;
      const [host, port] = address as [string, number];
      const script = `
import socket, struct, sys
with socket.socket(${ctx.family === AF_INET6 ? "socket.AF_INET6" : "socket.AF_INET"}) as s:
    s.settimeout(.2)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii', 1, 0))
    try:
        s.connect((${JSON.stringify(host)}, ${port}))
    except OSError:
        pass
`;
      const child = new Deno.Command(python, {
        args: ["-c", script],
        stdout: "null",
        stderr: "piped",
      }).spawn();
      // The loop blocks this process's event loop; the child is on its own.
      const deadline = performance.now() + 5000;
      let done = false;
      child.status.then(() => done = true);
      while (!done && performance.now() < deadline) {
        runLoop(ctx, 0.1, 5);
        await delay(1);
      }
      const out = await child.output();
      assertEquals(new TextDecoder().decode(out.stderr), "");
      assert(out.success);
      runLoop(ctx, 0.01, 5);
      assert(server.accepting);
      assertEquals(ctx.map.get(server.fileno()!), server);
    },
  },
];

// ---- the TestAPI_* classes ----

const FAMILIES = [
  { name: "IPv4", family: AF_INET, addr: (): Address => ["127.0.0.1", 0], ok: true },
  { name: "IPv6", family: AF_INET6, addr: (): Address => ["::1", 0], ok: hasIPv6 },
  {
    name: "UnixSockets",
    family: AF_UNIX,
    addr: (): Address => tempSocketPath("api"),
    ok: !onWindows, // Python on Windows has no AF_UNIX
  },
];
const POLLERS: [string, PollerName][] = [["Select", "select"], ["Poll", "poll"], [
  "Epoll",
  "epoll",
]];

for (const fam of FAMILIES) {
  for (const [pollerName, poller] of POLLERS) {
    const cls = `TestAPI_Use${fam.name}${pollerName}`;
    for (const t of API_TESTS) {
      const skipped = t.skip?.(fam.family, poller);
      Deno.test({
        name: `${cls}: ${t.name}${skipped ? ` (skipped: ${skipped})` : ""}`,
        // Python skips these with skipTest (IPv6 missing, or not applicable to the family).
        ignore: !fam.ok || skipped !== undefined,
        async fn() {
          await assertNoFdLeak(async () => {
            const ctx: Ctx = { family: fam.family, addr: fam.addr(), poller, map: new Map() };
            try {
              await t.fn(ctx);
            } finally {
              // Python's tearDown: close_all(ignore_all=True), and unlink for Unix.
              closeAll(ctx.map, true);
              if (typeof ctx.addr === "string") {
                Deno.removeSync(ctx.addr.slice(0, ctx.addr.lastIndexOf("/")), {
                  recursive: true,
                });
              }
            }
          });
        },
      });
    }
  }
}

Deno.test("BaseTestAPI helpers: a handler error leaves the loop as it was thrown", async () => {
  await assertNoFdLeak(() => {
    const ctx: Ctx = { family: AF_INET, addr: ["127.0.0.1", 0], poller: "poll", map: new Map() };
    try {
      class TestClient extends BaseClient {
        override handleWrite(): void {
          throw new TypeError("from handleWrite");
        }
      }
      const server = new BaseServer(ctx);
      new TestClient(ctx, server.address);
      const error = assertThrows(() => loopWaitingForFlag(ctx, { flag: false }), TypeError);
      assertEquals(error.message, "from handleWrite");
      assertInstanceOf(new Reraised(error), ExitNow);
    } finally {
      closeAll(ctx.map, true);
    }
  });
});
