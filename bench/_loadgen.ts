/**
 * The one load generator, `bench/loadgen.c` (built by `compile`): its
 * command line, pinned to CPU 1, and the JSON it prints.
 *
 * @module
 */

import type { Env } from "./_env.ts";
import { OUT } from "./_proc.ts";

/** The load generator's argv: pinned to CPU 1 when taskset exists, with the raised fd limit. */
export function loadgenCmd(env: Env): string[] {
  return [...(env.taskset ? ["taskset", "-c", "1"] : []), ...env.fdPrefix, `${OUT}/loadgen`];
}

/** What the load generator prints (see bench/loadgen.c). */
export interface LoadgenResult {
  mode: string;
  conns: number;
  idle: number;
  connect_s: number;
  window_s: number;
  ops: number;
  ops_per_s: number;
  bytes_sent: number;
  bytes_recv: number;
  tx_mb_per_s: number;
  rx_mb_per_s: number;
  bytes_echoed_total: number;
  p50_us: number;
  p99_us: number;
  max_us: number;
  /** UDP: datagrams given up for lost (nothing heard for --udp-timeout); 0 otherwise. */
  lost: number;
  /** UDP: echoes that came after their datagrams were given up for lost. */
  late: number;
  jain: number;
  errors: number;
  error_detail: string[];
  drained: boolean;
  server: {
    pid: number;
    cpu_ticks: number;
    clk_tck: number;
    cpu_s: number;
    user_s: number;
    cpu_pct: number;
    vm_rss_connected_kb: number;
    vm_rss_end_kb: number;
    vm_hwm_kb: number;
    fds_before: number;
    fds_connected: number;
    fds_after: number;
  };
  loadgen: { cpu_s: number; cpu_pct: number };
  other_cpu_pct: number;
  cpu_busy_pct: number[];
  per_conn: number[];
}

/** Runs the load generator with `--key=value` arguments; killed after `timeoutS`. */
export async function runLoadgen(
  env: Env,
  args: Record<string, string | number>,
  timeoutS: number,
): Promise<LoadgenResult> {
  const cmd = [...loadgenCmd(env), ...Object.entries(args).map(([k, v]) => `--${k}=${v}`)];
  const child = new Deno.Command(cmd[0], {
    args: cmd.slice(1),
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let timedOut = false;
  const t = setTimeout(() => {
    timedOut = true;
    try {
      child.kill("SIGKILL");
    } catch { /* gone */ }
  }, timeoutS * 1000);
  const out = await child.output();
  clearTimeout(t);
  const stdout = new TextDecoder().decode(out.stdout).trim();
  const stderr = new TextDecoder().decode(out.stderr).trim();
  if (timedOut) throw new Error(`load generator timed out after ${timeoutS} s`);
  if (!out.success) {
    throw new Error(`load generator failed: ${stderr.split("\n").slice(-3).join(" | ")}`);
  }
  try {
    return JSON.parse(stdout.split("\n").pop()!) as LoadgenResult;
  } catch {
    throw new Error(
      `load generator printed no JSON: ${stdout.slice(0, 200)} ${stderr.slice(0, 200)}`,
    );
  }
}
