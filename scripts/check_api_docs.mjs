// The API reference page (`make api-docs`: Scalar, built from openapi.yaml) in a real headless
// Chromium: it loads with no console error, no page error and no request off the page, and
// shows every operation of openapi.yaml: each scrolled to, its section must show its method,
// path and summary. Usage: node scripts/check_api_docs.mjs <page.html> <operations.json>
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { pathToFileURL } from "node:url";

// playwright-core as scripts/deps.sh installs it, into .local/docs-tools.
const require = createRequire(new URL("../.local/docs-tools/package.json", import.meta.url));
const { chromium } = require("playwright-core");

const [page_file, operations_file] = process.argv.slice(2);
const operations = JSON.parse(readFileSync(operations_file, "utf8"));
const fail = (why) => {
  console.error(`api docs: FAIL ${why}`);
  process.exit(1);
};

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  // As the machine's notes say: no background traffic, which a closed network refuses.
  args: [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
  ],
});
const problems = [];
try {
  const page = await browser.newPage();
  page.on("console", (m) => m.type() === "error" && problems.push(`console error: ${m.text()}`));
  page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
  // The page must be whole: anything it fetches from elsewhere is refused and reported.
  await page.route("**/*", (route) => {
    const url = route.request().url();
    if (url.startsWith("file:") || url.startsWith("data:") || url.startsWith("blob:")) {
      return route.continue();
    }
    problems.push(`request off the page: ${url}`);
    return route.abort();
  });
  await page.goto(pathToFileURL(page_file).href, { waitUntil: "load", timeout: 60_000 });
  // Scalar gives each operation a section `…/<METHOD><path>`, filled when it scrolls into
  // view: each is scrolled to, then must show its method, path and summary.
  await page.waitForSelector("section, [id]", { state: "attached", timeout: 60_000 });
  const missing = [];
  for (const op of operations) {
    const section = page.locator(`[id$="/${op.method}${op.path}"]`).first();
    try {
      await section.waitFor({ state: "attached", timeout: 20_000 });
      await section.scrollIntoViewIfNeeded({ timeout: 10_000 });
      await page.waitForFunction(
        ([id, summary, path]) => {
          const text = document.getElementById(id)?.textContent ?? "";
          return text.includes(summary) && text.includes(path);
        },
        [await section.getAttribute("id"), op.summary, op.path],
        { timeout: 10_000 },
      );
      const text = (await section.textContent()).toLowerCase();
      if (!text.includes(op.method.toLowerCase())) throw new Error("no method");
    } catch (e) {
      missing.push(`${op.method} ${op.path} ("${op.summary}"): ${e.message.split("\n")[0]}`);
    }
  }
  if (missing.length) fail(`${missing.length} of ${operations.length} operations not shown:\n  ${missing.join("\n  ")}`);
  if (problems.length) fail(`${problems.length} problems while loading:\n  ${problems.join("\n  ")}`);
  console.log(`api docs: ${page_file} shows all ${operations.length} operations of openapi.yaml; no console error, no page error, no request off the page`);
} finally {
  await browser.close();
}
