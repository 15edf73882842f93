// Drives Debian's Chromium (headless, through playwright-core) through one of
// the server's pages, for tests/browser.rs:
//
//     node tests/browser/drive.mjs URL STEPS_JSON
//
// STEPS_JSON is a list of steps, run in order on the page opened at URL:
//   {"fill": LABEL, "value": TEXT}   type TEXT into the input labelled LABEL
//   {"click": NAME}                  click the button called NAME and wait
//                                    for the page it leads to
//   {"expect": TEXT}                 fail unless TEXT is on the page
//   {"screenshot": PATH}             save a full-page PNG at PATH
// It prints one JSON line at the end: {"ok": true} or {"ok": false, "error"}.
// The browser is the machine's own (/usr/bin/chromium, or CHROMIUM), never
// a download, started with the flags a sandboxed, offline machine needs.

import { chromium } from "playwright-core";
import { mkdirSync } from "node:fs";
import { dirname } from "node:path";

const [url, stepsJson] = process.argv.slice(2);
if (!url || !stepsJson) {
  console.error("usage: drive.mjs URL STEPS_JSON");
  process.exit(2);
}
const steps = JSON.parse(stepsJson);

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
  ],
});
let result = { ok: true };
try {
  const page = await browser.newPage({ viewport: { width: 390, height: 844 } });
  const response = await page.goto(url);
  if (!response || response.status() >= 500) {
    throw new Error(`opening the page answered ${response && response.status()}`);
  }
  for (const step of steps) {
    if (step.fill !== undefined) {
      await page.getByLabel(step.fill, { exact: true }).fill(step.value);
    } else if (step.click !== undefined) {
      await Promise.all([
        page.waitForLoadState("load"),
        page.getByRole("button", { name: step.click }).click(),
      ]);
      await page.waitForLoadState("load");
    } else if (step.expect !== undefined) {
      await page.getByText(step.expect).first().waitFor({ timeout: 5000 });
    } else if (step.screenshot !== undefined) {
      mkdirSync(dirname(step.screenshot), { recursive: true });
      await page.screenshot({ path: step.screenshot, fullPage: true });
    } else {
      throw new Error(`unknown step ${JSON.stringify(step)}`);
    }
  }
} catch (e) {
  result = { ok: false, error: String(e && e.message ? e.message : e) };
} finally {
  await browser.close();
}
console.log(JSON.stringify(result));
process.exit(result.ok ? 0 : 1);
