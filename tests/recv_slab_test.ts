// Dispatcher.recv hands out views of shared memory (a pool for small reads,
// the buffer a big read landed in): every result must keep its own bytes
// while later reads land beside it, for every mix of small, middling and
// big reads and buffer sizes.
import { assertEquals } from "@std/assert";
import { Dispatcher, Socket, type SocketMap } from "../mod.ts";
import { assertNoFdLeak, concat, randomBytes, rng, sha256 } from "./_util.ts";

Deno.test("recv: results of every size keep their bytes while later reads land beside them", async () => {
  await assertNoFdLeak(async () => {
    const listener = new Socket();
    listener.bind(["127.0.0.1", 0]);
    listener.listen(1);
    const sender = new Socket();
    sender.connect(listener.getsockname());
    const [conn] = listener.accept();
    listener.close();
    const map: SocketMap = new Map();
    const d = new Dispatcher(conn, map);
    const r = rng(5);
    const sent: Uint8Array[] = [];
    const got: Uint8Array[] = [];
    for (let i = 0; i < 400; i++) {
      // sizes from 1 byte to 200 KiB, so reads are small, middling, big, and cross slabs
      const size = 1 + Math.floor(r() ** 3 * 200_000);
      const data = randomBytes(size, i + 1);
      sent.push(data);
      sender.sendall(data);
      let have = 0;
      while (have < size) {
        const bufferSize = [4096, 65536, 300_000][i % 3];
        const part = d.recv(Math.min(bufferSize, size - have + (i % 2) * 10));
        have += part.length;
        got.push(part);
      }
    }
    assertEquals(await sha256(concat(got)), await sha256(concat(sent)));
    sender.close();
    d.close();
  });
});
