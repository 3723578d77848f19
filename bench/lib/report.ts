/** Writes an area's markdown to `bench/results/<area>.md` and, on request, into its section of the docs. */
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import os from 'node:os';

/** The 1-minute load average, rounded: other work on the machine skews every number. */
export function load(): string {
  return os.loadavg()[0]!.toFixed(2);
}

/** The machine and command a result was measured with, as a markdown list. */
export function machine(command: string, loadBefore: string, durationMs: number): string {
  const cpu = os.cpus()[0]?.model.trim() ?? 'unknown';
  return [
    `- Date: ${new Date().toISOString().replace(/\.\d+Z$/, 'Z')}`,
    `- Node: ${process.version} (${process.platform}-${process.arch})`,
    `- CPU: ${cpu}; \`os.availableParallelism()\`: ${os.availableParallelism()}`,
    `- Command: \`${command}\`; took ${(durationMs / 1000).toFixed(0)} s`,
    `- 1-minute load average: ${loadBefore} before, ${load()} after`,
  ].join('\n');
}

const DOCS_INTRO = `# Benchmarks

Measured by the harness in \`bench/\`: \`npm run bench\` runs every area, \`npm run bench -- pool\` one area, and
\`--write\` (for example \`npm run bench -- pool --write\`) replaces that area's section below with the new
results. \`BENCH_ROUNDS\` (default 3) sets how many rounds each metric runs; implementations alternate within each
round, in a rotated order each round, and the tables give the median over rounds. The latest full output of each
area is also written to \`bench/results/<area>.md\` (not committed).

Each section records the machine, Node version and command it was measured with. Numbers from a 2-core machine are
noisy: the main thread, the pool's threads and the OS share two cores, so compare ratios rather than absolutes.
`;

const start = (area: string) => `<!-- bench:${area}:start -->`;
const end = (area: string) => `<!-- bench:${area}:end -->`;

/** Replaces (or appends) the marked section of `area` in the docs file, keeping everything else as it is. */
export async function updateDocs(docsUrl: URL, area: string, markdown: string): Promise<void> {
  let text: string;
  try {
    text = await readFile(docsUrl, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    text = DOCS_INTRO;
  }
  const section = `${start(area)}\n${markdown.trim()}\n${end(area)}`;
  const from = text.indexOf(start(area));
  const to = text.indexOf(end(area));
  if (from !== -1 && to > from) {
    text = text.slice(0, from) + section + text.slice(to + end(area).length);
  } else {
    text = `${text.trimEnd()}\n\n${section}\n`;
  }
  await writeFile(docsUrl, text);
}

/** Writes `markdown` to `bench/results/<area>.md`; returns the file's URL. */
export async function writeResult(resultsUrl: URL, area: string, markdown: string): Promise<URL> {
  await mkdir(resultsUrl, { recursive: true });
  const file = new URL(`${area}.md`, resultsUrl);
  await writeFile(file, `${markdown.trim()}\n`);
  return file;
}
