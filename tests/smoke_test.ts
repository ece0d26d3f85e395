import { assertEquals } from "@std/assert";
import { AF_INET, Socket } from "../mod.ts";
import { assertNoFdLeak } from "./_util.ts";

Deno.test("smoke: a socket opens and closes without leaking", async () => {
  await assertNoFdLeak(() => {
    const s = new Socket(AF_INET);
    assertEquals(s.family, AF_INET);
    s.close();
  });
});
