/**
 * The options of `deno task bench`, listed in bench/main.ts's doc comment
 * (`--help` prints that list).
 *
 * @module
 */

/** The command-line options of `deno task bench` (see bench/main.ts). */
export interface Options {
  rounds: number;
  duration: number;
  warmup: number;
  soak: number;
  soakConns: number;
  soakServers: string[];
  only: string[] | null;
  scenarios: string[] | null;
  window: number;
  retries: number;
  maxOther: number;
  connCost: boolean;
  /** Also run the AsyncChat benches and loopAsync against loop() (bench/asynchat.ts, loop_async.ts). */
  extras: boolean;
  record: boolean;
  quick: boolean;
  /** The scenario modules run after the echo matrix (see bench/main.ts's MODULES); null: all. */
  modules: string[] | null;
}

/** Parses `args`; `BENCH_QUICK=1` in the environment means `--quick`. */
export function parseOptions(args: string[]): Options {
  const o: Options = {
    rounds: 3,
    duration: 1,
    warmup: 0.4,
    soak: 20,
    soakConns: 2000,
    soakServers: ["asyncore epoll"],
    only: null,
    scenarios: null,
    window: 4 << 20,
    retries: 2,
    maxOther: 10,
    connCost: true,
    extras: true,
    record: false,
    quick: false,
    modules: null,
  };
  const list = (v: string) => v.split(",").map((s) => s.trim()).filter((s) => s !== "");
  const num = (k: string, v: string) => {
    const n = Number(v);
    if (!Number.isFinite(n) || n < 0) throw new Error(`--${k} wants a number, not ${v}`);
    return n;
  };
  // --quick first, so explicit values win whatever the order.
  if (args.includes("--quick") || Deno.env.get("BENCH_QUICK") === "1") {
    Object.assign(o, {
      quick: true,
      rounds: 1,
      duration: 1,
      warmup: 0.25,
      soak: 5,
      soakConns: 500,
    });
  }
  for (const a of args) {
    const [k, v = ""] = a.replace(/^--/, "").split(/=(.*)/s);
    switch (k) {
      case "quick":
        break;
      case "rounds":
        o.rounds = Math.max(1, Math.floor(num(k, v)));
        break;
      case "duration":
        o.duration = num(k, v);
        break;
      case "warmup":
        o.warmup = num(k, v);
        break;
      case "soak":
        o.soak = num(k, v);
        break;
      case "soak-conns":
        o.soakConns = Math.floor(num(k, v));
        break;
      case "soak-servers":
        o.soakServers = list(v);
        break;
      case "only":
        o.only = list(v);
        break;
      case "scenarios":
        o.scenarios = list(v);
        break;
      case "window":
        o.window = Math.floor(num(k, v));
        break;
      case "retries":
        o.retries = Math.floor(num(k, v));
        break;
      case "max-other":
        o.maxOther = num(k, v);
        break;
      case "no-extras":
        o.extras = false;
        break;
      case "no-conn-cost":
        o.connCost = false;
        break;
      case "record":
        o.record = true;
        break;
      case "modules":
        o.modules = list(v);
        break;
      case "no-modules":
        o.modules = [];
        break;
      case "help":
        console.log(
          (Deno.readTextFileSync(new URL("./main.ts", import.meta.url)).match(
            /Options:[\s\S]*?\n \*\n/,
          ) ?? [
            "",
          ])[0].replace(/^ \* ?/gm, ""),
        );
        Deno.exit(0);
        break;
      default:
        throw new Error(`unknown option ${a} (try --help)`);
    }
  }
  return o;
}
