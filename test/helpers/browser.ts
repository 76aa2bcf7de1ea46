import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { REPO_ROOT } from './paths.js';

/**
 * Debian's chromium driven by playwright-core (which downloads nothing). Without the package the dashboard's
 * browser tests are skipped with a message naming it; CI sets TEST_REQUIRE_CHROMIUM=1 so that they fail instead.
 */
export const CHROMIUM = '/usr/bin/chromium';
export const SCREENSHOTS = join(REPO_ROOT, 'test-results/screenshots');

export function chromiumAvailable(): boolean {
  if (existsSync(CHROMIUM)) return true;
  const message = `${CHROMIUM} is missing: the dashboard's browser tests need the Debian package chromium (apt-get install chromium)`;
  if (process.env.TEST_REQUIRE_CHROMIUM === '1') throw new Error(`${message}, and TEST_REQUIRE_CHROMIUM=1`);
  console.warn(`skipped: ${message}`);
  return false;
}

export async function launchChromium(): Promise<Browser> {
  return chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox'] });
}

/** Every console error and uncaught page error of a page, for a test to assert there were none. */
export function collectErrors(page: Page): string[] {
  const errors: string[] = [];
  page.on('console', (message) => {
    if (message.type() === 'error') errors.push(`console: ${message.text()}`);
  });
  page.on('pageerror', (err) => errors.push(`pageerror: ${err.message}`));
  return errors;
}

/** A full-page screenshot under test-results/screenshots (not committed). */
export async function screenshot(page: Page, name: string): Promise<string> {
  mkdirSync(SCREENSHOTS, { recursive: true });
  const path = join(SCREENSHOTS, `${name}.png`);
  await page.screenshot({ path, fullPage: true });
  return path;
}
