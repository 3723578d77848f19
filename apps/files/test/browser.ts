// Debian's chromium driven by playwright-core, for the browser tests (.ci/run installs it with apt-get).
import { existsSync } from 'node:fs';
import { type Browser, chromium } from 'playwright-core';

const browserPath = process.env.WEFT_CHROMIUM ?? '/usr/bin/chromium';
const missing = existsSync(browserPath)
  ? undefined
  : `no browser at ${browserPath} (.ci/run installs Debian's chromium with apt-get; WEFT_CHROMIUM names another)`;

/** The `skip` option of a suite that needs the browser: why, when it is missing, unless WEFT_REQUIRE_SERVICES=1. */
export const skipWithoutBrowser: string | false =
  missing && process.env.WEFT_REQUIRE_SERVICES !== '1' ? missing : false;

/** Fails clearly when the browser is missing and skipping is forbidden; call first in the suite's `before`. */
export function requireBrowser(): void {
  if (missing) throw new Error(`${missing}; WEFT_REQUIRE_SERVICES=1 forbids skipping`);
}

/** Starts the browser headless, as root, with no traffic of its own to the closed network. */
export function launchBrowser(): Promise<Browser> {
  return chromium.launch({
    executablePath: browserPath,
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking'],
  });
}
