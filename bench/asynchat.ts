/**
 * The AsyncChat benchmarks, `Deno.bench` files run by `deno bench`: parsing
 * from memory (`asynchat_parse_bench.ts`, pure CPU) and over a loopback
 * socket (`asynchat_socket_bench.ts`). Each group pairs two input sizes 4x
 * apart: a ratio near 4 is linear.
 *
 * @module
 */

import { type BenchContext, runSection } from "./_context.ts";
import { BENCH, DENO } from "./_proc.ts";

/** Runs both files with `deno bench` and adds its output to the report. */
export async function runAsyncChat(ctx: BenchContext): Promise<void> {
  if (!ctx.opts.extras) return;
  const env = ctx.opts.quick ? "BENCH_QUICK=1" : "BENCH_QUICK=0";
  await runSection(ctx, "AsyncChat input parsing (deno bench bench/asynchat_*_bench.ts)", [
    "env",
    env,
    "NO_COLOR=1",
    DENO,
    "bench",
    "--allow-ffi",
    "--allow-env",
    `${BENCH}/asynchat_parse_bench.ts`,
    `${BENCH}/asynchat_socket_bench.ts`,
  ]);
}
