/**
 * The oldest Deno this library runs on, checked once when the module graph
 * loads: `mod.ts` names this module first, so on an older Deno (or on a
 * runtime that is not Deno) the program stops with one sentence saying what
 * to do, instead of failing later at some FFI call with an error that names
 * neither. The check reads one string; it costs nothing measurable.
 *
 * @module
 */

/**
 * The oldest Deno version this library is tested on and supports.
 *
 * @example
 * ```ts
 * import { MIN_DENO_VERSION } from "@asyncore/deno";
 *
 * console.log(`needs Deno ${MIN_DENO_VERSION} or later; this is ${Deno.version.deno}`);
 * ```
 */
export const MIN_DENO_VERSION = "2.0.0";

function parse(version: string): [number, number, number] | null {
  const m = /^(\d+)\.(\d+)\.(\d+)/.exec(version);
  return m ? [Number(m[1]), Number(m[2]), Number(m[3])] : null;
}

/**
 * Why this library cannot run on Deno `version` (a sentence), or null when
 * it can. A version string that does not start with `MAJOR.MINOR.PATCH` is
 * given the benefit of the doubt (a custom build).
 */
export function denoVersionProblem(
  version: string | undefined,
  min: string = MIN_DENO_VERSION,
): string | null {
  if (version === undefined) {
    return "asyncore for Deno runs on Deno only (it binds libc with Deno.dlopen)";
  }
  const have = parse(version);
  const want = parse(min)!;
  if (have === null) return null;
  for (let i = 0; i < 3; i++) {
    if (have[i] > want[i]) return null;
    if (have[i] < want[i]) {
      return `asyncore for Deno needs Deno ${min} or later, and this is Deno ${version}: ` +
        "run `deno upgrade`";
    }
  }
  return null;
}

/** Throws one `Error` when the running Deno is too old (or this is not Deno). */
export function checkDenoVersion(): void {
  const deno = (globalThis as { Deno?: { version?: { deno?: string } } }).Deno;
  const problem = denoVersionProblem(deno?.version?.deno);
  if (problem !== null) throw new Error(problem);
}

checkDenoVersion();
