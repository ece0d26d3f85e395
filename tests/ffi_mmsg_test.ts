// Datagrams in batches (recvmmsg/sendmmsg over a MessageBatch) against
// python3 UDP peers, and IPv4 multicast on the loopback (IP_ADD_MEMBERSHIP
// with inetAton) with python3 on the other end. All traffic stays on
// 127.0.0.1 (multicast: sent with IP_MULTICAST_IF 127.0.0.1 and TTL 0).
import { assert, assertEquals, assertThrows } from "@std/assert";
import {
  AF_INET,
  AF_UNIX,
  inetAton,
  IP_ADD_MEMBERSHIP,
  IP_DROP_MEMBERSHIP,
  IP_MULTICAST_IF,
  IP_MULTICAST_LOOP,
  IP_MULTICAST_TTL,
  IPPROTO_IP,
  MAX_BATCH,
  MessageBatch,
  MSG_TRUNC,
  OSError,
  SO_RCVBUF,
  SO_REUSEADDR,
  SOCK_DGRAM,
  SOCK_NONBLOCK,
  Socket,
  socketpair,
  SOL_SOCKET,
} from "../mod.ts";
import { delay, emulated, leakTest, python, PythonPeer, scaled } from "./_util.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

function pythonTest(name: string, fn: () => Promise<void>): void {
  leakTest(name, fn, !python);
}

/** Receives into `batch` until `want` datagrams came (each handed to `take`); bounded. */
async function receiveAll(
  sock: Socket,
  batch: MessageBatch,
  want: number,
  take: (i: number) => void,
  ms = 20000,
): Promise<number> {
  let got = 0, calls = 0;
  const deadline = performance.now() + ms;
  while (got < want) {
    const n = sock.tryRecvmmsgInto(batch);
    if (n > 0) {
      calls++;
      for (let i = 0; i < n; i++) take(i);
      got += n;
      continue;
    }
    if (performance.now() > deadline) throw new Error(`got ${got} of ${want} datagrams`);
    await delay(1);
  }
  return calls;
}

leakTest("mmsg: MessageBatch refuses sizes, indexes and lengths out of range", () => {
  assertThrows(() => new MessageBatch(0), RangeError);
  assertThrows(() => new MessageBatch(MAX_BATCH + 1), RangeError);
  assertThrows(() => new MessageBatch(4, 0), RangeError);
  assertThrows(() => new MessageBatch(1024, 1 << 20), RangeError);
  const batch = new MessageBatch(4, 8);
  assertEquals([batch.capacity, batch.size, batch.buffers.length, batch.buffers[3].length], [
    4,
    8,
    4,
    8,
  ]);
  assertThrows(() => batch.data(4), RangeError);
  assertThrows(() => batch.address(-1), RangeError);
  assertEquals(batch.address(0), null);
  const [a, b] = socketpair(AF_UNIX, SOCK_DGRAM);
  try {
    batch.lengths[0] = 9;
    assertThrows(() => a.sendmmsg(batch, 1), RangeError, "more than the batch's size");
    assertThrows(() => a.sendmmsg(batch, 5), RangeError);
    assertThrows(() => a.sendmmsg(batch, 2, 0, 3), RangeError);
    assertThrows(() => b.recvmmsgInto(batch, 5), RangeError);
    assertThrows(() => b.recvmmsgInto({} as MessageBatch), TypeError);
    assertEquals(a.sendmmsg(batch, 0), 0);
    b.setblocking(false);
    assertEquals(b.tryRecvmmsgInto(batch), -1);
    assertEquals(assertThrows(() => b.recvmmsgInto(batch), OSError).code, "EAGAIN");
  } finally {
    a.close();
    b.close();
  }
});

leakTest(
  "mmsg: Unix datagrams go both ways in batches; a blocking receive waits for one only",
  () => {
    const [a, b] = socketpair(AF_UNIX, SOCK_DGRAM);
    const out = new MessageBatch(16, 64);
    const inb = new MessageBatch(32, 64);
    b.settimeout(10); // bounded: a batch that never comes fails instead of hanging
    try {
      for (let i = 0; i < 16; i++) {
        const text = enc.encode(`datagram ${i}`);
        out.buffers[i].set(text);
        out.lengths[i] = text.length;
      }
      assertEquals(a.sendmmsg(out, 10), 10);
      assertEquals(a.sendmmsg(out, 6, 0, 10), 6);
      // Blocking, with room for 32: returns the 16 queued instead of waiting for 32.
      assertEquals(b.recvmmsgInto(inb), 16);
      for (let i = 0; i < 16; i++) {
        assertEquals(dec.decode(inb.data(i)), `datagram ${i}`);
        assertEquals([inb.flags(i), inb.address(i)], [0, null]);
      }
      // A datagram longer than the room arrives cut, flagged MSG_TRUNC.
      a.send(new Uint8Array(100).fill(7));
      assertEquals(b.recvmmsgInto(inb, 1), 1);
      assertEquals([inb.lengths[0], inb.flags(0) & MSG_TRUNC], [64, MSG_TRUNC]);
    } finally {
      a.close();
      b.close();
    }
  },
);

const PY_UDP_PEER = `
import hashlib, socket, sys
n, port = int(sys.argv[1]), int(sys.argv[2])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1], flush=True)
sent = []
for i in range(n):
    payload = (b"%d:" % i) + bytes([i % 251]) * (i % 200)
    sent.append(payload)
    s.sendto(payload, ("127.0.0.1", port))
s.sendto(b"x" * 3000, ("127.0.0.1", port))  # longer than the batch's room
s.settimeout(10)
echoed = [s.recv(4096) for _ in range(n)]
print("echoed", len(echoed), sorted(echoed) == sorted(sent), flush=True)
`;

/** Sends messages `from..to-1` of `batch` back, all of them, in as few calls as it takes; bounded. */
async function sendRange(sock: Socket, batch: MessageBatch, from: number, to: number) {
  const deadline = performance.now() + 10000;
  while (from < to) {
    const n = sock.trySendmmsg(batch, to - from, 0, from);
    if (n > 0) {
      from += n;
      continue;
    }
    if (performance.now() > deadline) throw new Error("sendmmsg made no progress");
    await delay(1);
  }
}

pythonTest(
  "mmsg: a batch echo of a python UDP peer: every datagram back to its sender",
  async () => {
    const total = scaled(400);
    const sock = new Socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK);
    const batch = new MessageBatch(64, 1024);
    try {
      sock.setsockopt(SOL_SOCKET, SO_RCVBUF, 4 << 20);
      sock.bind(["127.0.0.1", 0]);
      const port = (sock.getsockname() as [string, number])[1];
      await using peer = new PythonPeer(PY_UDP_PEER, [String(total), String(port)]);
      const pyPort = Number(await peer.line());
      let got = 0, most = 0, truncated = 0;
      const deadline = performance.now() + 20000;
      while (got < total + 1) {
        const n = sock.tryRecvmmsgInto(batch);
        if (n <= 0) {
          if (performance.now() > deadline) throw new Error(`got ${got} of ${total + 1}`);
          await delay(1);
          continue;
        }
        most = Math.max(most, n);
        let start = 0;
        for (let i = 0; i < n; i++) {
          assertEquals(batch.address(i), ["127.0.0.1", pyPort]);
          if ((batch.flags(i) & MSG_TRUNC) !== 0) {
            // The 3000-byte datagram: cut to the room, flagged, and not echoed.
            assertEquals([batch.lengths[i], dec.decode(batch.data(i).subarray(0, 3))], [
              1024,
              "xxx",
            ]);
            truncated++;
            await sendRange(sock, batch, start, i);
            start = i + 1;
            continue;
          }
          const data = batch.data(i);
          const head = dec.decode(data.subarray(0, data.indexOf(58 /* : */)));
          const k = Number(head);
          assertEquals(data.length, head.length + 1 + (k % 200), `datagram ${k}`);
          assert(
            data.subarray(head.length + 1).every((b) => b === k % 251),
            `datagram ${k}'s bytes`,
          );
        }
        await sendRange(sock, batch, start, n);
        got += n;
      }
      assertEquals(truncated, 1);
      assert(most > 1, `one recvmmsg took up to ${most} datagrams`);
      assertEquals(await peer.line(), "echoed " + total + " True");
      await peer.finish();
    } finally {
      sock.close();
    }
  },
);

const PY_TWO_RECEIVERS = `
import socket, sys
socks = []
for _ in range(2):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    s.settimeout(10)
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks), flush=True)
n = int(sys.argv[1])
for k, s in enumerate(socks):
    got = sorted(s.recv(64).decode() for _ in range(n))
    print(k, ",".join(got), flush=True)
`;

pythonTest(
  "mmsg: one sendmmsg reaches two python receivers, each message to its own address",
  async () => {
    const sock = new Socket(AF_INET, SOCK_DGRAM);
    const batch = new MessageBatch(8, 32);
    try {
      await using peer = new PythonPeer(PY_TWO_RECEIVERS, ["4"]);
      const ports = (await peer.line()).split(" ").map(Number);
      for (let i = 0; i < 8; i++) {
        const text = enc.encode(`m${i}`);
        batch.buffers[i].set(text);
        batch.lengths[i] = text.length;
        batch.setAddress(i, ["127.0.0.1", ports[i % 2]], AF_INET);
      }
      assertEquals(batch.address(3), ["127.0.0.1", ports[1]]);
      assertEquals(sock.sendmmsg(batch, 8), 8);
      assertEquals(await peer.line(), "0 m0,m2,m4,m6");
      assertEquals(await peer.line(), "1 m1,m3,m5,m7");
      await peer.finish();
      // copyAddress moves an address between batches as bytes.
      const other = new MessageBatch(2, 8);
      other.copyAddress(1, batch, 5);
      assertEquals(other.address(1), ["127.0.0.1", ports[1]]);
      other.setAddress(1, null);
      assertEquals(other.address(1), null);
    } finally {
      sock.close();
    }
  },
);

const PY_MCAST_SEND = `
import socket, sys
group, port = sys.argv[1], int(sys.argv[2])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton("127.0.0.1"))
s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 0)
for line in sys.stdin:
    s.sendto(line.strip().encode(), (group, port))
    print("sent", flush=True)
`;

const PY_MCAST_RECV = `
import socket, sys
group = sys.argv[1]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((group, 0))
s.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP,
             socket.inet_aton(group) + socket.inet_aton("127.0.0.1"))
s.settimeout(10)
print(s.getsockname()[1], flush=True)
data, addr = s.recvfrom(64)
print(data.decode(), flush=True)
`;

pythonTest(
  "mmsg: IPv4 multicast on the loopback with python: join with inetAton, leave, send",
  async () => {
    const group = "239.255.77.1";
    const member = new Socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK);
    const sender = new Socket(AF_INET, SOCK_DGRAM);
    const batch = new MessageBatch(4, 64);
    try {
      member.setsockopt(SOL_SOCKET, SO_REUSEADDR, 1);
      member.bind([group, 0]);
      const port = (member.getsockname() as [string, number])[1];
      const mreq = new Uint8Array([...inetAton(group), ...inetAton("127.0.0.1")]);
      member.setsockopt(IPPROTO_IP, IP_ADD_MEMBERSHIP, mreq);
      const child = new Deno.Command(python!, {
        args: ["-c", PY_MCAST_SEND, group, String(port)],
        stdin: "piped",
        stdout: "piped",
        stderr: "inherit",
      }).spawn();
      const lines = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
      let pending = "";
      const nextLine = async () => {
        while (!pending.includes("\n")) {
          const { value, done } = await lines.read();
          if (done) throw new Error("python's sender exited");
          pending += value;
        }
        const line = pending.slice(0, pending.indexOf("\n"));
        pending = pending.slice(line.length + 1);
        return line;
      };
      const writer = child.stdin.getWriter();
      try {
        await writer.write(enc.encode("to the group\n"));
        assertEquals(await nextLine(), "sent");
        await receiveAll(member, batch, 1, (i) => {
          assertEquals(dec.decode(batch.data(i)), "to the group");
          assertEquals((batch.address(i) as [string, number])[0], "127.0.0.1");
        });
        // After IP_DROP_MEMBERSHIP nothing sent to the group arrives.
        member.setsockopt(IPPROTO_IP, IP_DROP_MEMBERSHIP, mreq);
        await writer.write(enc.encode("after leaving\n"));
        assertEquals(await nextLine(), "sent");
        await delay(200);
        assertEquals(member.tryRecvmmsgInto(batch), -1, "nothing after leaving the group");
      } finally {
        await writer.close();
        await lines.cancel();
        assertEquals((await child.status).code, 0);
      }
      // The other way: python joins, we send from 127.0.0.1 with TTL 0 (qemu-user has no
      // IP_MULTICAST_IF, and without it the datagram would take the default route: not there).
      if (emulated) return;
      await using peer = new PythonPeer(PY_MCAST_RECV, [group]);
      const pyPort = Number(await peer.line());
      sender.setsockopt(IPPROTO_IP, IP_MULTICAST_IF, inetAton("127.0.0.1"));
      sender.setsockopt(IPPROTO_IP, IP_MULTICAST_TTL, 0);
      sender.setsockopt(IPPROTO_IP, IP_MULTICAST_LOOP, 1);
      assertEquals(sender.getsockopt(IPPROTO_IP, IP_MULTICAST_LOOP), 1);
      sender.sendto("hello, members", [group, pyPort]);
      assertEquals(await peer.line(), "hello, members");
      await peer.finish();
    } finally {
      member.close();
      sender.close();
    }
  },
);
