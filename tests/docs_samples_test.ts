// The code samples of the documentation: every TypeScript block in README.md
// and docs/*.md and every one in the library's JSDoc type-checks, and runs
// unless it is marked `no-run`.
//
// Deno has one attribute for a block, `ignore`, which skips it altogether. A
// sample that serves until Ctrl-C, or needs a certificate file or the
// internet, can still be type-checked: it is marked `no-run` (```ts no-run),
// which Deno does not know and so checks and runs like any block. This test
// type-checks every block as it is (`deno check --doc-only`), then runs the
// blocks on copies of the files in which `no-run` is made `ignore`
// (`deno test --doc`). `ignore` itself is refused: it would skip the type
// check too.
import { assert, assertEquals } from "@std/assert";
import { allSamples, libraryModules, root, type Sample, samplePages } from "./fixtures/docs.ts";

const decoder = new TextDecoder();
const where = (s: Sample) => `${s.file}:${s.line}`;

/** Runs deno with `args` in `cwd`; the exit code and everything it printed. */
async function deno(args: string[], cwd: string, ms: number): Promise<[number, string]> {
  const child = new Deno.Command(Deno.execPath(), {
    args,
    cwd,
    env: { NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const timer = setTimeout(() => child.kill("SIGKILL"), ms);
  const out = await child.output();
  clearTimeout(timer);
  return [out.code, decoder.decode(out.stdout) + decoder.decode(out.stderr)];
}

Deno.test("doc samples: every TypeScript block is plain `ts`, or `ts no-run`; none is `ignore`", () => {
  const samples = allSamples();
  assert(samples.length > 0);
  const odd = samples.filter((s) => s.lang !== "ts" || s.attributes.some((a) => a !== "no-run"))
    .map((s) => `${where(s)}: \`\`\`${[s.lang, ...s.attributes].join(" ")}`);
  assertEquals(odd, [], "write ```ts, or ```ts no-run for a sample that cannot run here");
  const unexplained = samples.filter((s) =>
    s.attributes.includes("no-run") && !/\/\/.*\b(serves until|needs)\b/.test(s.code)
  ).map(where);
  assertEquals(
    unexplained,
    [],
    "a no-run sample says why in a comment: // serves until ..., // needs ...",
  );
  const fragments = samples.filter((s) => /\bfrom "(\.\.?\/|jsr:)/.test(s.code)).map(where);
  assertEquals(fragments, [], 'samples import the package as users do: from "@asyncore/deno"');
  const runs = samples.filter((s) => !s.attributes.includes("no-run")).length;
  const inDocs = samples.filter((s) => s.file.endsWith(".md")).length;
  console.log(
    `${samples.length} samples (${inDocs} in Markdown, ${samples.length - inDocs} in JSDoc): ` +
      `all type-checked, ${runs} run, ${samples.length - runs} no-run`,
  );
});

Deno.test("doc samples: every one type-checks (deno check --doc-only)", async () => {
  const [code, out] = await deno(
    ["check", "--doc-only", ...samplePages(), ...libraryModules()],
    root,
    300_000,
  );
  assertEquals(code, 0, out);
});

Deno.test("doc samples: every one not marked no-run runs and stops (deno test --doc)", async () => {
  const dir = Deno.makeTempDirSync({ prefix: "asyncore-doc-samples-" });
  try {
    const files = [...samplePages(), ...libraryModules()];
    for (const file of files) {
      const text = Deno.readTextFileSync(root + file).replace(
        /^(\s*(?:\* ?)?`{3,}\s*ts\b[^\n`]*?)\bno-run\b/gm,
        "$1ignore",
      );
      Deno.mkdirSync(`${dir}/${file}`.replace(/\/[^/]+$/, ""), { recursive: true });
      Deno.writeTextFileSync(`${dir}/${file}`, text);
    }
    // Only the files with a sample to run are test modules; the others are there for imports.
    const runnable = allSamples().filter((s) => !s.attributes.includes("no-run"));
    const withSamples = files.filter((f) => runnable.some((s) => s.file === f));
    const [code, out] = await deno(
      [
        "test",
        "--doc",
        "--no-check",
        "--parallel",
        "-P",
        "--config",
        `${root}deno.json`,
        ...withSamples,
      ],
      dir,
      300_000,
    );
    assertEquals(code, 0, out);
    const ran = Number(/ok \| (\d+) passed/.exec(out)?.[1] ?? 0);
    assertEquals(ran, runnable.length, `every sample not marked no-run ran:\n${out}`);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});
