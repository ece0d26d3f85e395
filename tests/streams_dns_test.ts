// connect({ hostname }) with names: resolved off the loop's thread (a
// nonblocking getaddrinfo), each address tried in turn, a name that does not
// resolve is a GaiError; and a slow DNS answer (a resolver made slow in a
// network namespace of its own) leaves the other connections running.
import { assert, assertEquals, assertInstanceOf } from "@std/assert";
import { connect, GaiError, listen } from "../mod.ts";
import { loopSettled, portOf, readAll } from "./_streams.ts";
import { hasCommand, leakTest, python, withTimeout } from "./_util.ts";

const ROOT = new URL("..", import.meta.url).pathname;

leakTest("streams DNS: connect({ hostname: 'localhost' }) finds the listener", async () => {
  // localhost may resolve to ::1 first: refused there, the next address is tried.
  const listener = listen({ hostname: "127.0.0.1", port: 0 });
  const serving = (async () => {
    const c = await listener.accept();
    const w = c.writable.getWriter();
    await w.write(new TextEncoder().encode("hi"));
    await w.close();
    c.readable.cancel();
  })();
  const conn = await connect({ hostname: "localhost", port: portOf(listener) });
  assertEquals(conn.remoteAddr, ["127.0.0.1", portOf(listener)]);
  assertEquals(new TextDecoder().decode(await readAll(conn.readable)), "hi");
  conn.close();
  await serving;
  listener.close();
  await loopSettled();
});

leakTest("streams DNS: a name that does not resolve rejects with GaiError", async () => {
  const e = await withTimeout(
    connect({ hostname: "no-such-host.invalid", port: 80 }).then(() => null, (e) => e),
    60_000,
    "the lookup",
  );
  assertInstanceOf(e, GaiError);
  assert(e.code.startsWith("EAI_"), e.code);
  await loopSettled();
});

/** Whether a user and network namespace with a mount of our own can be made here. */
function canUnshare(): boolean {
  if (!hasCommand("unshare") || !hasCommand("ip") || python === null) return false;
  try {
    return new Deno.Command("unshare", {
      args: ["-rmn", "sh", "-c", "ip link set lo up && mount -t tmpfs none /mnt"],
      stdout: "null",
      stderr: "null",
    }).outputSync().success;
  } catch {
    return false;
  }
}

Deno.test({
  name: "streams DNS: a slow answer leaves the other connections running",
  ignore: !canUnshare(),
  fn: async () => {
    const dir = await Deno.makeTempDir({ prefix: "asyncore-dns-" });
    await Deno.writeTextFile(`${dir}/resolv.conf`, "nameserver 127.0.0.1\noptions timeout:5\n");
    // In a namespace of its own: resolv.conf points at a server that answers after 1.5 s.
    const script = [
      `mount --bind ${dir}/resolv.conf /etc/resolv.conf`,
      "ip link set lo up",
      `${python} ${ROOT}tests/fixtures/slow_dns.py 1.5 > ${dir}/dns.log 2>&1 &`,
      // sh -c has no job control: keep the pid, as `kill %1` would miss and leave it running.
      "dns=$!",
      `for i in $(seq 50); do grep -q ready ${dir}/dns.log && break; sleep 0.1; done`,
      `${Deno.execPath()} run -A ${ROOT}tests/fixtures/slow_lookup.ts slow.test`,
      "status=$?",
      "kill $dns",
      "exit $status",
    ].join("\n");
    const out = await withTimeout(
      new Deno.Command("unshare", {
        args: ["-rmn", "sh", "-c", script],
        stdout: "piped",
        stderr: "piped",
      }).output(),
      60_000,
      "the program in the namespace",
    );
    const text = new TextDecoder().decode(out.stdout);
    assertEquals(out.code, 0, `${text}\n${new TextDecoder().decode(out.stderr)}`);
    const r = JSON.parse(text.trim().split("\n").pop()!);
    assertEquals(r.error, null);
    assert(r.lookupMs >= 1400, `the lookup took ${r.lookupMs} ms: the resolver was not slow`);
    // The echo went on meanwhile: many round trips, none held up by the lookup.
    assert(r.rounds >= 20, `only ${r.rounds} round trips during a ${r.lookupMs} ms lookup`);
    assert(r.maxRttMs < 500, `a round trip took ${r.maxRttMs} ms during the lookup`);
    await Deno.remove(dir, { recursive: true });
  },
});
