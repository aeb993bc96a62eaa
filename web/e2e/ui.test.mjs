// End-to-end tests of the web UI in a real browser (Debian's Chromium, driven by
// playwright-core) against a real `rma up` (with RMA_E2E_EDGE=1, `rma up --edge`: the edge
// router in local workerd). Screenshots of each page go to web/e2e/artifacts/.
//
// Needs: target/debug/rma and target/debug/rma-fixture built (scripts/test does it), and
// /usr/bin/chromium (scripts/deps.sh installs it).

import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { spawn, execFileSync } from "node:child_process";
import { mkdtempSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { createInterface } from "node:readline";
import { deflateSync } from "node:zlib";
import { chromium } from "playwright-core";

const ROOT = path.resolve(import.meta.dirname, "../..");
const RMA = process.env.RMA_BIN ?? path.join(ROOT, "target/debug/rma");
const FIXTURE = process.env.RMA_FIXTURE_BIN ?? path.join(ROOT, "target/debug/rma-fixture");
const ARTIFACTS = path.join(ROOT, "web/e2e/artifacts");
const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";

let up, url, browser, dir;
const extra = [];

/** Starts a process and resolves with the first line matching `pattern` (and the process). */
function start(args, pattern, env = {}) {
  const child = spawn(RMA, args, { env: { ...process.env, RUST_LOG: "warn", ...env }, stdio: ["ignore", "pipe", "pipe"] });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`rma ${args.join(" ")} printed no ${pattern} in 60 s`)), 60_000);
    for (const stream of [child.stdout, child.stderr]) {
      createInterface({ input: stream }).on("line", (line) => {
        const m = line.match(pattern);
        if (m) {
          clearTimeout(timer);
          resolve({ child, match: m });
        }
      });
    }
    child.on("exit", (code) => reject(new Error(`rma ${args.join(" ")} exited with ${code}`)));
  });
}

before(async () => {
  mkdirSync(ARTIFACTS, { recursive: true });
  dir = mkdtempSync(path.join(tmpdir(), "rma-e2e-"));
  // RMA_E2E_EDGE=1: the same tests against the edge router (edge/ in local workerd).
  const edge = process.env.RMA_E2E_EDGE === "1" ? ["--edge", "--edge-dir", path.join(ROOT, "edge")] : [];
  const started = await start(["up", "--listen", "127.0.0.1:0", "--workers", "2", "--data-dir", path.join(dir, "data"), ...edge], /rma is up: router (http:\/\/[0-9.:]+)/);
  up = started.child;
  url = started.match[1];
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
});

after(async () => {
  await browser?.close();
  for (const p of extra) p.kill("SIGKILL");
  up?.kill("SIGINT");
});

async function openPage(viewport = { width: 1280, height: 900 }) {
  const context = await browser.newContext({ viewport });
  const page = await context.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  page.on("requestfailed", (r) => {
    // Nothing may be fetched from outside this router: the page works offline.
    if (!r.url().startsWith(url)) errors.push(`external request ${r.url()}`);
  });
  await page.goto(url);
  await page.locator("[data-testid=health].ok").waitFor({ timeout: 30_000 });
  return { page, errors };
}

test("the page loads with nothing from outside and shows the federation ready", async () => {
  const { page, errors } = await openPage();
  const requests = [];
  page.on("request", (r) => requests.push(r.url()));
  await page.reload();
  await page.locator("[data-testid=health].ok").waitFor();
  assert.match(await page.locator("[data-testid=health]").textContent(), /1 coordinator · 2 workers active/);
  assert.deepEqual(requests.filter((u) => !u.startsWith(url.replace("http", "ws")) && !u.startsWith(url)), []);
  await page.screenshot({ path: path.join(ARTIFACTS, "home.png"), fullPage: true });
  assert.deepEqual(errors, []);
});

test("uploading a letter shows its type, amounts and text", async () => {
  const letter = path.join(dir, "council-tax-photo.jpg");
  execFileSync(FIXTURE, ["council-tax", letter, "--photo"]);
  const { page, errors } = await openPage();
  await page.setInputFiles("[data-testid=file-input]", letter);
  const job = page.locator("[data-testid=job]").first();
  await job.locator("text=council-tax-photo.jpg").waitFor();
  await page.locator("[data-testid=job][data-state=done]").waitFor({ timeout: 90_000 });
  const facts = page.locator("[data-testid=facts]");
  await facts.waitFor();
  assert.equal(await page.locator("[data-testid=letter-type]").textContent(), "Council tax");
  const amounts = await page.locator("[data-testid=amounts]").textContent();
  assert.match(amounts, /£187\.45/);
  assert.match(amounts, /£1,312\.15/);
  // Each amount says what it is, from the words around it.
  assert.match(amounts, /£187\.45\s*arrears/);
  assert.match(amounts, /£1,312\.15\s*balance/);
  // The evidence is highlighted in the text.
  assert.ok((await page.locator("pre.text mark.amount", { hasText: "£187.45" }).count()) >= 1);
  // Original and cleaned-up image side by side; the cleaned one comes from the store.
  await page.locator(".images img").nth(1).waitFor();
  assert.equal(await page.locator(".images img").count(), 2);
  // The cleaned page is a grey PNG of a megabyte or so: wait until it has loaded (decode()
  // resolves then, and rejects if it cannot be shown).
  const enhancedOk = await page
    .locator(".images img")
    .nth(1)
    .evaluate((img) => img.decode().then(() => img.naturalWidth > 0, () => false));
  assert.ok(enhancedOk, "the enhanced image loaded");
  await page.screenshot({ path: path.join(ARTIFACTS, "result.png"), fullPage: true });
  assert.deepEqual(errors, []);

  // The same on a phone.
  const phone = await openPage({ width: 390, height: 844 });
  await phone.page.setInputFiles("[data-testid=file-input]", letter);
  await phone.page.locator("[data-testid=facts]").waitFor({ timeout: 90_000 });
  const overflow = await phone.page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 1, `no sideways scrolling on a phone (overflow ${overflow}px)`);
  await phone.page.screenshot({ path: path.join(ARTIFACTS, "phone.png"), fullPage: true });
});

test("a figure the scan may have misread is marked, with the reason and the line it came from", async () => {
  // Printed as OCR often reads a photo: the decimal point lost (`£1,482 37`).
  const letter = path.join(dir, "smudged-final-notice.png");
  execFileSync(FIXTURE, ["smudged-final-notice", letter]);
  const { page, errors } = await openPage();
  await page.setInputFiles("[data-testid=file-input]", letter);
  await page.locator("[data-testid=job][data-state=done]").waitFor({ timeout: 90_000 });
  await page.locator("[data-testid=facts]").waitFor();
  // Read as £1,482.37, never as £1,482.00, and never shown like a sure figure.
  const chip = page.locator("[data-testid=amounts] [data-testid=uncertain-fact]");
  assert.equal(await chip.textContent(), "£1482.37?");
  assert.match(await chip.getAttribute("title"), /decimal point/);
  const unsure = await page.locator("[data-testid=uncertain]").textContent();
  assert.match(unsure, /space where the decimal point should be/);
  assert.match(unsure, /The amount now outstanding is £1,482 37/);
  assert.doesNotMatch(await page.locator("[data-testid=amounts]").textContent(), /1,482\.00|1482\.00/);
  await page.screenshot({ path: path.join(ARTIFACTS, "uncertain.png"), fullPage: true });

  // The adviser corrects it from the letter: kept with the job, shown as a person's.
  page.once("dialog", (d) => d.accept("1482.73"));
  await page.locator("[data-testid=amounts] [data-act=correct]").first().click();
  const corrected = page.locator("[data-testid=amounts] [data-testid=corrected-fact]");
  await corrected.waitFor();
  assert.equal(await corrected.textContent(), "1482.73 ✓");
  assert.match(await corrected.getAttribute("title"), /corrected by a person; read as 1482\.37/);
  // The JSON download carries it.
  const download = page.waitForEvent("download");
  await page.locator("[data-act=json]").click();
  const saved = JSON.parse(readFileSync(await (await download).path(), "utf8"));
  assert.equal(saved.corrections[0].value, "1482.73");
  assert.equal(saved.corrections[0].by, "person");
  assert.deepEqual(errors, []);
});

/** A blank white PNG, `w` × `h`, made here (no image library needed). */
function blankPng(w, h) {
  const crcTable = Array.from({ length: 256 }, (_, n) => {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    return c >>> 0;
  });
  const crc = (buf) => {
    let c = 0xffffffff;
    for (const b of buf) c = crcTable[(c ^ b) & 0xff] ^ (c >>> 8);
    return (c ^ 0xffffffff) >>> 0;
  };
  const chunk = (type, data) => {
    const t = Buffer.concat([Buffer.from(type), data]);
    const len = Buffer.alloc(4);
    len.writeUInt32BE(data.length);
    const sum = Buffer.alloc(4);
    sum.writeUInt32BE(crc(t));
    return Buffer.concat([len, t, sum]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(w, 0);
  ihdr.writeUInt32BE(h, 4);
  ihdr[8] = 8; // bit depth; colour type 0 (grey), no interlace
  const rows = Buffer.concat(Array.from({ length: h }, () => Buffer.concat([Buffer.from([0]), Buffer.alloc(w, 0xff)])));
  return Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), chunk("IHDR", ihdr), chunk("IDAT", deflateSync(rows)), chunk("IEND", Buffer.alloc(0))]);
}

test("a page with no text says so instead of showing empty facts as if all were fine", async () => {
  const blank = path.join(dir, "blank-page.png");
  writeFileSync(blank, blankPng(300, 200));
  const { page, errors } = await openPage();
  await page.setInputFiles("[data-testid=file-input]", blank);
  await page.locator("[data-testid=job][data-state=done]").waitFor({ timeout: 90_000 });
  const warning = await page.locator("[data-testid=no-text]").textContent();
  assert.match(warning, /no text was found/);
  assert.deepEqual(errors, []);
});

test("a file that is not a document fails in plain words with a retry button", async () => {
  const bogus = path.join(dir, "notes.png");
  writeFileSync(bogus, "just words, not an image");
  const { page } = await openPage();
  await page.setInputFiles("[data-testid=file-input]", bogus);
  const err = page.locator("[data-testid=job-error]");
  await err.waitFor({ timeout: 30_000 });
  assert.match(await err.textContent(), /isn't a PDF or an image rma can read/);
  assert.equal(await err.locator("button", { hasText: "Try again" }).count(), 1);
  await page.screenshot({ path: path.join(ARTIFACTS, "failed.png"), fullPage: true });
});

test("an HEIC photo this browser cannot open is refused in plain words before it is sent", async () => {
  const heic = path.join(dir, "IMG_0001.HEIC");
  writeFileSync(heic, Buffer.from("\0\0\0\x18ftypheic\0\0\0\0mif1heic", "binary"));
  const { page } = await openPage();
  const sent = [];
  page.on("request", (r) => r.url().includes("/api/service/") && sent.push(r.url()));
  await page.setInputFiles("[data-testid=file-input]", heic);
  const err = page.locator("[data-testid=job-error]");
  await err.waitFor({ timeout: 30_000 });
  assert.match(await err.textContent(), /can't open HEIC photos/);
  assert.deepEqual(sent, [], "nothing was uploaded");
});

test("addresses are shown only to an admin who signs in with the admin token", async () => {
  const { page, errors } = await openPage();
  const address = page.locator("[data-testid=coordinators] td.address").first();
  await address.waitFor({ timeout: 30_000 });
  assert.equal(await address.textContent(), "—", "the public view has no addresses");
  assert.equal(await page.locator("[data-testid=usage]").isVisible(), false, "nor the usage");
  await page.locator("[data-testid=admin-token]").fill("not the token");
  await page.locator("[data-testid=admin-form] button").click();
  await page.waitForFunction(() => /not valid/.test(document.querySelector("[data-testid=admin-state]")?.textContent ?? ""), null, { timeout: 10_000 });
  assert.equal(await address.textContent(), "—");
  const token = readFileSync(path.join(dir, "data", "admin.token"), "utf8").trim();
  await page.locator("[data-testid=admin-token]").fill(token);
  await page.locator("[data-testid=admin-form] button").click();
  await page.waitForFunction((u) => document.querySelector("[data-testid=coordinators] td.address")?.textContent?.startsWith("http://127.0.0.1:"), url, { timeout: 10_000 });
  assert.match(await page.locator("[data-testid=admin-state]").textContent(), /admin view/);
  // The admin sees today's usage against the edge's free tier: three gauges.
  const usage = page.locator("[data-testid=usage]");
  await usage.waitFor({ state: "visible", timeout: 10_000 });
  assert.match(await usage.textContent(), /Requests.*Registry calls.*Rows written/s);
  assert.equal(await usage.locator("meter").count(), 3);
  await page.screenshot({ path: path.join(ARTIFACTS, "admin-view.png"), fullPage: true });
  assert.deepEqual(errors, []);
});

test("the topology shows every node and loses a worker whose process stops", async () => {
  const { page } = await openPage();
  const nodes = page.locator("[data-testid=topology] g.node");
  // router, coordinator, two workers
  await page.waitForFunction(() => document.querySelectorAll("[data-testid=topology] g.node").length === 4);
  assert.equal(await nodes.count(), 4);
  assert.equal(await page.locator("g.node.coordinator").count(), 1);
  assert.equal(await page.locator("g.node.storage").count(), 1, "rma up has one storage worker");

  // A new worker joins as anyone would: an admin invites it, it enrols with the token.
  const join = execFileSync(RMA, ["invite", "--router", url, "--role", "worker", "--admin-token-file", path.join(dir, "data", "admin.token")], { encoding: "utf8" }).trim();
  assert.match(join, /^rmaj1_/);
  const worker = spawn(RMA, ["worker", "--worker-id", "e2e-extra", "--data-dir", path.join(dir, "extra"), "--ocr-threads", "1"], {
    env: { ...process.env, RUST_LOG: "warn", RMA_JOIN_TOKEN: join },
    stdio: "ignore",
  });
  extra.push(worker);
  const node = page.locator('g.node[data-id="w:e2e-extra"]');
  await node.waitFor({ timeout: 30_000 });
  await page.waitForFunction(() => !document.querySelector('g.node[data-id="w:e2e-extra"]')?.classList.contains("stale"), null, { timeout: 30_000 });
  assert.equal(await nodes.count(), 5);
  await page.locator('g.node[data-id="w:e2e-extra"]').hover();
  assert.match(await page.locator("#tooltip").textContent(), /e2e-extra.*services:.*ocr/s);
  await page.screenshot({ path: path.join(ARTIFACTS, "topology.png"), fullPage: true });

  // The page is pushed the change: no reload.
  const killed = Date.now();
  worker.kill("SIGKILL");
  await page.waitForFunction(() => {
    const n = document.querySelector('g.node[data-id="w:e2e-extra"]');
    return !n || n.classList.contains("stale");
  }, null, { timeout: 10_000 });
  const seconds = (Date.now() - killed) / 1000;
  console.log(`# a killed worker turned grey on the page after ${seconds.toFixed(2)} s`);
  assert.match(await page.locator("[data-testid=health]").textContent(), /1 stale/);
  await page.screenshot({ path: path.join(ARTIFACTS, "topology-worker-lost.png"), fullPage: true });
});
