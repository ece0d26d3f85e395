/**
 * The command-line conventions the examples share: `node:util`'s `parseArgs`
 * (built into Deno, no dependency), `--help`, a one-line message and exit
 * status 2 for a bad argument.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { GaiError, OSError, type PollerName } from "../mod.ts";

const POLLERS: readonly PollerName[] = ["select", "poll", "epoll"];

/** Prints `prog: message` on stderr and exits with status 2 (a usage error). */
export function usageError(prog: string, message: string): never {
  console.error(`${prog}: ${message} (see --help)`);
  Deno.exit(2);
}

/** What {@linkcode parseCommandLine} returns. */
export interface CommandLine {
  /** The positional arguments. */
  positionals: string[];
  /** `--poller`, checked. */
  poller: PollerName;
  /** The values of the extra string options asked for. */
  options: Record<string, string | undefined>;
}

/**
 * Parses `args`: `--help`/`-h` prints `help` and exits 0; `--poller=NAME`;
 * up to `maxPositionals` positional arguments. Anything else is a usage error.
 */
export function parseCommandLine(
  prog: string,
  help: string,
  args: string[],
  { maxPositionals, poller, extra = [] }: {
    maxPositionals: number;
    poller: PollerName;
    extra?: string[];
  },
): CommandLine {
  let parsed;
  try {
    parsed = parseArgs({
      args,
      options: {
        help: { type: "boolean", short: "h" },
        poller: { type: "string" },
        ...Object.fromEntries(extra.map((name) => [name, { type: "string" as const }])),
      },
      allowPositionals: true,
      strict: true,
    });
  } catch (error) {
    // parseArgs' messages run on with advice about "--"; the first clause is the point.
    const message = (error as Error).message;
    const option = /^Unknown option '([^']*)'/.exec(message)?.[1];
    usageError(prog, option ? `unknown option '${option}'` : message.split(". ")[0]);
  }
  if (parsed.values.help) {
    console.log(help.trim());
    Deno.exit(0);
  }
  const chosen = (parsed.values.poller ?? poller) as PollerName;
  if (!POLLERS.includes(chosen)) {
    usageError(prog, `--poller must be one of ${POLLERS.join(", ")}, not '${chosen}'`);
  }
  if (parsed.positionals.length > maxPositionals) {
    usageError(prog, `unexpected argument '${parsed.positionals[maxPositionals]}'`);
  }
  const options: Record<string, string | undefined> = {};
  const values = parsed.values as Record<string, unknown>;
  for (const name of extra) options[name] = values[name] as string | undefined;
  return { positionals: parsed.positionals, poller: chosen, options };
}

/** Reads `--name=N`, a number > 0, or `fallback` when absent. */
export function parsePositive(
  prog: string,
  name: string,
  text: string | undefined,
  fallback: number,
): number {
  if (text === undefined) return fallback;
  const n = Number(text);
  if (!(n > 0) || !Number.isFinite(n)) {
    usageError(prog, `--${name} must be a number > 0, not '${text}'`);
  }
  return n;
}

/** Reads a port number (0-65535; 0 picks a free port). */
export function parsePort(prog: string, text: string): number {
  if (!/^\d{1,5}$/.test(text) || Number(text) > 65535) {
    usageError(prog, `bad port '${text}': expected a number 0-65535`);
  }
  return Number(text);
}

/**
 * Runs `open` (which creates and binds the server); a host that does not
 * resolve is a usage error (status 2), any other `OSError` (port in use,
 * permission) one line and status 1.
 */
export function openOrExit<T>(prog: string, open: () => T): T {
  try {
    return open();
  } catch (error) {
    if (error instanceof GaiError) usageError(prog, `unknown host: ${error.message}`);
    if (error instanceof OSError) {
      console.error(`${prog}: ${error.message}`); // it names the address
      Deno.exit(1);
    }
    throw error;
  }
}
