// callLater / callEvery: ordering, cancellation, repetition, timing under
// loop() and loopAsync(), errors, ExitNow and argument checks.
//
// Timers are process-wide: every test cancels what it schedules (finally) and
// checks that pendingTimers() is back where it started. Ordering tests drive
// runDueTimers() with a stubbed performance.now(); tests of the loop use real
// time, since a real FFI wait cannot be faked.
import {
  assert,
  assertAlmostEquals,
  assertEquals,
  assertGreaterOrEqual,
  assertLess,
  assertRejects,
  assertStrictEquals,
  assertThrows,
} from "@std/assert";
import { stub } from "@std/testing/mock";
import {
  callEvery,
  callLater,
  closeAll,
  Dispatcher,
  ExitNow,
  loop,
  loopAsync,
  type PollerName,
  setTimerErrorHandler,
  type Socket,
  type SocketMap,
  type TimerHandle,
} from "../mod.ts";
import {
  assertNoFdLeak,
  BEST_POLLER,
  nextTimerDelay,
  pendingTimers,
  POLLERS,
  runDueTimers,
  TIME_SLACK,
} from "./_util.ts";

/** A listening channel nobody connects to: keeps a map non-empty and idle. */
class IdleListener extends Dispatcher {
  constructor(map: SocketMap) {
    super(null, map);
    this.createSocket();
    this.bind(["127.0.0.1", 0]);
    this.listen(5);
  }

  override handleAccepted(sock: Socket): void {
    sock.close();
  }
}

/**
 * Runs `fn` with a scratch list for handles: every handle is cancelled
 * afterwards, the error handler is reset, no timer is left pending and no fd
 * is leaked.
 */
async function withTimers(
  fn: (keep: (h: TimerHandle) => TimerHandle) => unknown | Promise<unknown>,
): Promise<void> {
  const before = pendingTimers();
  const handles: TimerHandle[] = [];
  await assertNoFdLeak(async () => {
    try {
      await fn((h) => {
        handles.push(h);
        return h;
      });
    } finally {
      for (const h of handles) h.cancel();
      setTimerErrorHandler(null);
    }
  });
  assertEquals(pendingTimers(), before, "a test left timers scheduled");
}

/**
 * {@linkcode withTimers} with a private map holding an {@linkcode IdleListener}
 * (so a loop over it has something to wait on), closed afterwards.
 */
function withIdleMap(
  fn: (
    keep: (h: TimerHandle) => TimerHandle,
    map: SocketMap,
    listener: IdleListener,
  ) => unknown | Promise<unknown>,
): Promise<void> {
  return withTimers(async (keep) => {
    const map: SocketMap = new Map();
    const listener = new IdleListener(map);
    try {
      await fn(keep, map, listener);
    } finally {
      closeAll(map);
    }
  });
}

/** Runs `fn` with console.error captured; returns the lines it printed. */
function stderrLines(fn: () => void): string[] {
  const lines: string[] = [];
  const err = stub(console, "error", (...args: unknown[]) => {
    lines.push(args.join(" "));
  });
  try {
    fn();
  } finally {
    err.restore();
  }
  return lines;
}

/** Runs `fn` with performance.now() frozen at a clock the test advances. */
function withClock(fn: (advance: (ms: number) => void) => void): void {
  let now = performance.now();
  const clock = stub(performance, "now", () => now);
  try {
    fn((ms) => {
      now += ms;
    });
  } finally {
    clock.restore();
  }
}

/** Runs loop() passes until `done()` or the deadline; returns the passes run. */
function loopUntil(map: SocketMap, done: () => boolean, ms = 3000, poller?: PollerName): number {
  const deadline = performance.now() + ms;
  let passes = 0;
  while (!done()) {
    if (performance.now() > deadline) throw new Error(`timed out after ${ms} ms`);
    loop({ map, timeout: 0.5, count: 1, poller });
    passes++;
  }
  return passes;
}

// ---- ordering (fake clock) ----

Deno.test("timers: callLater runs in due order; equal delays keep insertion order", async () => {
  await withTimers((keep) => {
    withClock((advance) => {
      const order: string[] = [];
      const at = (s: number, name: string) => keep(callLater(s, () => order.push(name)));
      at(0.03, "30");
      at(0.01, "10a");
      at(0.02, "20");
      at(0.01, "10b");
      at(0, "0");
      at(0.01, "10c");
      at(0.02, "20b");
      assertEquals(nextTimerDelay(), 0);
      assertEquals(runDueTimers(), 1);
      assertEquals(order, ["0"]);
      advance(9.999);
      assertEquals(runDueTimers(), 0, "nothing is due a microsecond early");
      assertAlmostEquals(nextTimerDelay()!, 0.000001, 1e-9);
      advance(0.001);
      assertEquals(runDueTimers(), 3);
      assertEquals(order, ["0", "10a", "10b", "10c"]);
      advance(1000); // everything left is overdue: still in due order
      assertEquals(runDueTimers(), 3);
      assertEquals(order, ["0", "10a", "10b", "10c", "20", "20b", "30"]);
      assertEquals(nextTimerDelay(), null);
    });
  });
});

Deno.test("timers: a timer scheduled by a callback for 'now' waits for the next pass", async () => {
  await withTimers((keep) => {
    withClock((advance) => {
      const order: string[] = [];
      keep(callLater(0.01, () => {
        order.push("first");
        keep(callLater(0, () => order.push("scheduled by first")));
      }));
      keep(callLater(0.01, () => order.push("second")));
      advance(10);
      assertEquals(runDueTimers(), 2);
      assertEquals(order, ["first", "second"]);
      assertEquals(runDueTimers(), 1);
      assertEquals(order, ["first", "second", "scheduled by first"]);
    });
  });
});

// ---- cancellation ----

Deno.test("timers: cancel before due, twice, and after running", async () => {
  await withTimers((keep) => {
    withClock((advance) => {
      const ran: string[] = [];
      const base = pendingTimers();
      const a = keep(callLater(0.01, () => ran.push("a")));
      const b = keep(callLater(0.01, () => ran.push("b")));
      assertEquals(pendingTimers(), base + 2);
      assertEquals(a.cancelled, false);
      a.cancel();
      a.cancel(); // idempotent: the count must not drop twice
      assertEquals(a.cancelled, true);
      assertEquals(pendingTimers(), base + 1);
      advance(20);
      assertEquals(runDueTimers(), 1);
      assertEquals(ran, ["b"]);
      assertEquals(pendingTimers(), base);
      b.cancel(); // after it ran: a no-op
      assertEquals(pendingTimers(), base);
    });
  });
});

Deno.test("timers: a timer cancels another, later or due in the same pass", async () => {
  await withTimers((keep) => {
    withClock((advance) => {
      const ran: string[] = [];
      const late = keep(callLater(0.03, () => ran.push("late")));
      const sameTick: TimerHandle[] = [];
      keep(callLater(0.01, () => {
        ran.push("canceller");
        late.cancel();
        sameTick[0].cancel();
      }));
      sameTick.push(keep(callLater(0.01, () => ran.push("same tick"))));
      advance(100);
      assertEquals(runDueTimers(), 1);
      assertEquals(ran, ["canceller"]);
      assert(late.cancelled && sameTick[0].cancelled);
    });
  });
});

Deno.test("timers: a callEvery cancels itself from inside its callback", async () => {
  await withTimers((keep) => {
    withClock((advance) => {
      let calls = 0;
      const h: TimerHandle = keep(callEvery(0.01, () => {
        if (++calls === 3) h.cancel();
      }));
      for (let i = 0; i < 10; i++) {
        advance(10);
        runDueTimers();
      }
      assertEquals(calls, 3);
      assert(h.cancelled);
      assertEquals(nextTimerDelay(), null);
    });
  });
});

Deno.test("timers: callEvery fires one interval after the call, then on its grid", async () => {
  await withTimers((keep) => {
    withClock((advance) => {
      let calls = 0;
      keep(callEvery(0.05, () => calls++));
      assertAlmostEquals(nextTimerDelay()!, 0.05, 1e-9);
      advance(49);
      assertEquals(runDueTimers(), 0);
      advance(1);
      assertEquals(runDueTimers(), 1);
      advance(50);
      assertEquals(runDueTimers(), 1);
      assertEquals(calls, 2);
      // A loop that stalled for 3.5 intervals: one call, no burst to catch up,
      // and the next call stays on the original grid.
      advance(175);
      assertEquals(runDueTimers(), 1);
      assertEquals(runDueTimers(), 0, "no second call right after a stall");
      assertAlmostEquals(nextTimerDelay()!, 0.025, 1e-9);
      advance(25);
      assertEquals(runDueTimers(), 1);
      assertEquals(calls, 4);
    });
  });
});

Deno.test("timers: cancelling many timers keeps the heap small and the order right", async () => {
  await withTimers((keep) => {
    withClock((advance) => {
      const base = pendingTimers();
      const ran: number[] = [];
      // "cancel and reschedule an idle timeout on every read", 10000 times
      let idle = keep(callLater(10, () => ran.push(-1)));
      for (let i = 0; i < 10_000; i++) {
        idle.cancel();
        idle = keep(callLater(10 + i / 1000, () => ran.push(i)));
      }
      const survivors = [5, 1, 3].map((s) => keep(callLater(s, () => ran.push(s * 1000))));
      assertEquals(pendingTimers(), base + 4);
      assertAlmostEquals(nextTimerDelay()!, 1, 1e-9);
      advance(30_000);
      const t0 = Date.now();
      assertEquals(runDueTimers(), 4);
      assertLess(Date.now() - t0, 500);
      assertEquals(ran, [1000, 3000, 5000, 9999]);
      assert(survivors.every((h) => h.cancelled));
    });
  });
});

// ---- reset (fake clock) ----

Deno.test("timers: reset() pushes a pending callLater back, by its own delay or a new one", async () => {
  await withTimers((keep) => {
    withClock((advance) => {
      const ran: string[] = [];
      const base = pendingTimers();
      const a = keep(callLater(0.1, () => ran.push("a")));
      advance(60);
      a.reset(); // 100 ms from now again
      assertEquals(pendingTimers(), base + 1, "still one timer");
      advance(60);
      assertEquals(runDueTimers(), 0, "not at its first due time");
      advance(50);
      assertEquals(runDueTimers(), 1);
      assertEquals(ran, ["a"]);
      // An earlier time moves it ahead of others.
      const late = keep(callLater(5, () => ran.push("late")));
      const mid = keep(callLater(1, () => ran.push("mid")));
      late.reset(0.5);
      assertAlmostEquals(nextTimerDelay()!, 0.5, 1e-9);
      advance(2000);
      assertEquals(runDueTimers(), 2);
      assertEquals(ran, ["a", "late", "mid"]);
      assert(mid.cancelled && late.cancelled);
      assertEquals(pendingTimers(), base);
    });
  });
});

Deno.test("timers: reset() re-arms a callLater that ran, also from its own callback; cancel is final", async () => {
  await withTimers((keep) => {
    withClock((advance) => {
      const base = pendingTimers();
      let calls = 0;
      const h: TimerHandle = keep(callLater(0.01, () => {
        if (++calls < 3) h.reset();
      }));
      for (let i = 0; i < 10; i++) {
        advance(10);
        runDueTimers();
      }
      assertEquals(calls, 3, "ran three times: twice re-armed from inside");
      assert(h.cancelled);
      assertEquals(pendingTimers(), base);
      h.reset(0.01); // after it ran: runs once more
      assertEquals(h.cancelled, false);
      assertEquals(pendingTimers(), base + 1);
      advance(10);
      assertEquals(runDueTimers(), 1);
      assertEquals(calls, 4);
      // cancel() is final: reset() does not bring it back.
      const c = keep(callLater(0.01, () => calls++));
      c.cancel();
      c.reset();
      assertEquals(c.cancelled, true);
      assertEquals(pendingTimers(), base);
      advance(100);
      assertEquals(runDueTimers(), 0);
      assertEquals(calls, 4);
    });
  });
});

Deno.test("timers: reset() restarts a callEvery's grid; bad delays are refused", async () => {
  await withTimers((keep) => {
    withClock((advance) => {
      const at: number[] = [];
      let t = 0;
      const step = (ms: number) => {
        t += ms;
        advance(ms);
        runDueTimers();
      };
      const h = keep(callEvery(0.1, () => at.push(t)));
      step(100); // fires at 100
      step(50);
      h.reset(); // next at 250, then every 100
      step(60); // 210: nothing
      step(40); // 250
      step(100); // 350
      h.reset(0.01); // next at 360
      step(10);
      assertEquals(at, [100, 250, 350, 360]);
      assertThrows(() => h.reset(0), RangeError);
      assertThrows(() => h.reset(-1), RangeError);
      assertThrows(() => h.reset(NaN), RangeError);
      const once = keep(callLater(1, () => {}));
      assertThrows(() => once.reset(Infinity), RangeError);
      once.reset(0); // 0 is fine for callLater
      assertAlmostEquals(nextTimerDelay()!, 0, 1e-9);
    });
  });
});

Deno.test("timers: many resets keep the heap in due order", async () => {
  await withTimers((keep) => {
    withClock((advance) => {
      const ran: number[] = [];
      const hs = Array.from({ length: 300 }, (_, i) => keep(callLater(10 + i, () => ran.push(i))));
      // Reset each to a delay that reverses the order, some twice.
      for (let i = 0; i < 300; i++) hs[i].reset(1 + (299 - i) / 100);
      for (let i = 0; i < 300; i += 7) hs[i].reset(1 + (299 - i) / 100);
      advance(10_000);
      assertEquals(runDueTimers(), 300);
      assertEquals(ran, Array.from({ length: 300 }, (_, i) => 299 - i));
    });
  });
});

// ---- timing under the loop (real time) ----

for (const poller of POLLERS) {
  Deno.test(`timers: loop(${poller}) shortens a 30 s wait to fire callLater(0.05) on time`, async () => {
    await withIdleMap((keep, map) => {
      let firedAt = 0;
      const start = performance.now();
      keep(callLater(0.05, () => firedAt = performance.now()));
      loop({ map, timeout: 30, count: 1, poller });
      const returned = performance.now();
      assert(firedAt > 0, "the timer did not fire in the one pass");
      const late = firedAt - (start + 50);
      assertGreaterOrEqual(late, -1, "fired early");
      assertLess(late, 20 * TIME_SLACK, `fired ${late.toFixed(1)} ms late`);
      assertLess(returned - start, 200);
      assertEquals(map.size, 1);
    });
  });
}

Deno.test("timers: several callLater under loop() fire in order, each on time", async () => {
  await withIdleMap((keep, map) => {
    const start = performance.now();
    const fired: [number, number][] = [];
    for (const ms of [60, 20, 40, 20, 0]) {
      keep(callLater(ms / 1000, () => fired.push([ms, performance.now() - start])));
    }
    loopUntil(map, () => fired.length === 5, 3000, BEST_POLLER);
    assertEquals(fired.map(([ms]) => ms), [0, 20, 20, 40, 60]);
    for (const [ms, at] of fired) {
      assertGreaterOrEqual(at, ms - 1, `${ms} ms timer fired early`);
      assertLess(at, ms + 20 * TIME_SLACK, `${ms} ms timer fired at ${at.toFixed(1)} ms`);
    }
  });
});

Deno.test("timers: callEvery repeats under loop() on its grid", async () => {
  await withIdleMap((keep, map) => {
    const times: number[] = [];
    const start = performance.now();
    keep(callEvery(0.03, () => times.push(performance.now() - start)));
    loopUntil(map, () => times.length >= 5, 3000, "poll");
    times.forEach((t, i) => {
      const due = 30 * (i + 1);
      assertGreaterOrEqual(t, due - 1, `tick ${i} early at ${t.toFixed(1)}`);
      assertLess(t, due + 20 * TIME_SLACK, `tick ${i} late at ${t.toFixed(1)}`);
    });
  });
});

Deno.test("timers: loopAsync fires callLater on time and callEvery repeats", async () => {
  await withTimers(async (keep) => {
    const map: SocketMap = new Map();
    new IdleListener(map);
    const ac = new AbortController();
    const start = performance.now();
    let onceAt = 0;
    const ticks: number[] = [];
    const { promise: done, resolve } = Promise.withResolvers<void>();
    keep(callLater(0.05, () => onceAt = performance.now() - start));
    keep(callEvery(0.025, () => {
      ticks.push(performance.now() - start);
      if (ticks.length === 4) resolve();
    }));
    const looping = loopAsync({ map, timeout: 30, poller: BEST_POLLER, signal: ac.signal });
    const guard = setTimeout(resolve, 3000);
    try {
      await done;
      assertEquals(ticks.length, 4, "callEvery did not tick 4 times within 3 s");
      // Never early; late only by what a loaded machine adds (the bounds are
      // loose so a busy CI machine does not fail them).
      assertGreaterOrEqual(onceAt, 49);
      assertLess(onceAt, 50 + 250);
      ticks.forEach((t, i) => {
        assertGreaterOrEqual(t, 25 * (i + 1) - 1);
        assertLess(t, 25 * (i + 1) + 250);
      });
    } finally {
      clearTimeout(guard);
      ac.abort();
      await looping;
      closeAll(map);
    }
  });
});

Deno.test("timers: callLater scheduled from a Deno setTimeout wakes a waiting loopAsync", async () => {
  await withTimers(async (keep) => {
    const map: SocketMap = new Map();
    new IdleListener(map);
    const ac = new AbortController();
    const { promise: fired, resolve } = Promise.withResolvers<number>();
    const looping = loopAsync({ map, timeout: 30, signal: ac.signal });
    let due = 0;
    const kick = setTimeout(() => {
      due = performance.now() + 30;
      keep(callLater(0.03, () => resolve(performance.now())));
    }, 20);
    const guard = setTimeout(() => resolve(-1), 3000);
    try {
      const at = await fired;
      assert(at > 0, "the timer never fired");
      assertGreaterOrEqual(at - due, -1);
      assertLess(at - due, 20 * TIME_SLACK, `fired ${(at - due).toFixed(1)} ms late`);
    } finally {
      clearTimeout(kick);
      clearTimeout(guard);
      ac.abort();
      await looping;
      closeAll(map);
    }
  });
});

// ---- errors ----

Deno.test("timers: a throwing timer goes to the error handler and the loop goes on", async () => {
  await withIdleMap((keep, map) => {
    const caught: [unknown, TimerHandle][] = [];
    setTimerErrorHandler((error, handle) => caught.push([error, handle]));
    const boom = new Error("boom");
    let everyCalls = 0;
    let after = false;
    const bad = keep(callLater(0.01, () => {
      throw boom;
    }));
    const badEvery = keep(callEvery(0.01, () => {
      everyCalls++;
      throw new TypeError(`tick ${everyCalls}`);
    }));
    keep(callLater(0.04, () => after = true));
    loopUntil(map, () => after && everyCalls >= 3, 3000, "select");
    assertStrictEquals(caught[0][0], boom);
    assertStrictEquals(caught[0][1], bad);
    const fromEvery = caught.filter(([, h]) => h === badEvery);
    assertGreaterOrEqual(fromEvery.length, 3, "a throwing callEvery keeps its schedule");
    assert(fromEvery.every(([e]) => e instanceof TypeError));
    assertEquals(badEvery.cancelled, false);
    assertEquals(bad.cancelled, true);
    assertEquals(map.size, 1, "the channel is untouched");
  });
});

Deno.test("timers: the default error handler prints one line to stderr", async () => {
  await withTimers((keep) => {
    withClock((advance) => {
      const lines = stderrLines(() => {
        let ranAfter = false;
        keep(callLater(0, () => {
          throw new RangeError("kaput");
        }));
        keep(callLater(0, () => ranAfter = true));
        advance(1);
        assertEquals(runDueTimers(), 2);
        assert(ranAfter);
      });
      assertEquals(lines.length, 1);
      assert(lines[0].includes("uncaptured exception in timer"), lines[0]);
      assert(lines[0].includes("RangeError:kaput"), lines[0]);
    });
  });
});

Deno.test("timers: an error handler that throws falls back to stderr", async () => {
  await withTimers((keep) => {
    withClock((advance) => {
      const lines = stderrLines(() => {
        setTimerErrorHandler(() => {
          throw new Error("handler broke");
        });
        keep(callLater(0, () => {
          throw new Error("first");
        }));
        advance(1);
        runDueTimers();
      });
      assertEquals(lines.length, 1);
      assert(lines[0].includes("handler broke"), lines[0]);
    });
  });
});

Deno.test("timers: ExitNow from a timer leaves loop(), keeping the channels", async () => {
  await withIdleMap((keep, map, l) => {
    const caught: unknown[] = [];
    setTimerErrorHandler((e) => caught.push(e));
    keep(callLater(0.02, () => {
      throw new ExitNow("from a timer");
    }));
    const start = performance.now();
    assertThrows(() => loop({ map, timeout: 30, poller: BEST_POLLER }), ExitNow, "from a timer");
    assertLess(performance.now() - start, 500);
    assertEquals(caught, [], "ExitNow is not an error to report");
    assertEquals(map.size, 1);
    assert(l.fileno() !== null);
    // the loop can be entered again
    let fired = false;
    keep(callLater(0, () => fired = true));
    loop({ map, timeout: 30, count: 1, poller: BEST_POLLER });
    assert(fired);
  });
});

Deno.test("timers: ExitNow from a timer rejects loopAsync", async () => {
  await withIdleMap(async (keep, map) => {
    keep(callLater(0.02, () => {
      throw new ExitNow("async exit");
    }));
    const start = performance.now();
    await assertRejects(() => loopAsync({ map, timeout: 30 }), ExitNow, "async exit");
    assertLess(performance.now() - start, 500);
    assertEquals(map.size, 1);
  });
});

// ---- arguments ----

Deno.test("timers: bad arguments are refused and schedule nothing", async () => {
  await withTimers(() => {
    const before = pendingTimers();
    const fn = () => {};
    for (const s of [-1, -0.001, NaN, Infinity, -Infinity]) {
      assertThrows(() => callLater(s, fn), RangeError);
      assertThrows(() => callEvery(s, fn), RangeError);
    }
    for (const s of ["1", null, undefined, 1n, {}]) {
      assertThrows(() => callLater(s as unknown as number, fn), RangeError);
      assertThrows(() => callEvery(s as unknown as number, fn), RangeError);
    }
    assertThrows(() => callEvery(0, fn), RangeError, "interval > 0");
    assertThrows(() => callEvery(-0, fn), RangeError);
    for (const f of [null, undefined, 42, "fn", {}]) {
      assertThrows(() => callLater(1, f as unknown as () => void), TypeError);
      assertThrows(() => callEvery(1, f as unknown as () => void), TypeError);
    }
    assertEquals(pendingTimers(), before);
    // 0 is a valid callLater delay, fractions are valid intervals
    callLater(0, fn).cancel();
    callEvery(0.0001, fn).cancel();
    assertEquals(pendingTimers(), before);
  });
});
