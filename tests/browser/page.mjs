// Drives the alignment page in real headless Chromium (Debian's, through playwright-core).
//
//   node tests/browser/page.mjs test --url URL --out DIR --image PNG [--want-low yes] [--key K]
//       the browser test (tests/browser_test.go runs it against `uniter serve`): loads the page,
//       uploads the image, enters captions, waits for the result, checks the region boxes
//       against POST /v1/regions, hovers words and checks the region tints change (and match
//       the transport plan), opens an attention map, runs the masked-word probe, searches the
//       gallery (when there is one) and checks its thumbnails load, checks a readable API error
//       and a narrow screen, and saves screenshots to DIR. It fails on any browser console
//       error or uncaught page error.
//       With --key K the server must have been started with API keys, K one that may add
//       images to the gallery: the API must answer 401 without a key, the page must show its
//       key form at load; the script enters a wrong key (refused, the form stays), then K, and
//       runs the scenario above with it; then "Forget key", an Align refused with 401, the key
//       entered again and Align pressed again. Without --key no key form may appear.
//
//   node tests/browser/page.mjs screenshot --url URL --out FILE [--sample N] [--word W] [--key K]
//       the README screenshot: sample N of the page's Shapes World samples with its captions,
//       word W of the first caption selected (make screenshot); K is stored as the page's key.
//
// Chromium: $CHROMIUM, else /usr/bin/chromium. Exit status 0 on success, 1 on a failed check.

import { chromium } from "playwright-core";
import { mkdirSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";

const FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
  "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"];
const TIMEOUT = 60_000;

function parseArgs(argv) {
  const [mode, ...rest] = argv;
  const opts = { mode };
  for (let i = 0; i < rest.length; i += 2) {
    if (!rest[i].startsWith("--") || rest[i + 1] === undefined) throw new Error(`bad argument ${rest[i]}`);
    opts[rest[i].slice(2)] = rest[i + 1];
  }
  if (!opts.url || !opts.out) throw new Error("usage: page.mjs test|screenshot --url URL --out PATH ...");
  return opts;
}

class CheckError extends Error {}
function check(cond, message) {
  if (!cond) throw new CheckError(message);
}
const log = (...a) => console.log("[page]", ...a);

/**
 * Console errors fail the test, except the HTTP failures the test itself provokes: each entry
 * is [path, status] of a response the page is expected to receive (Chromium logs every non-2xx
 * response as "Failed to load resource").
 */
function watchConsole(page, allowed) {
  const errors = [];
  page.on("console", (msg) => {
    if (msg.type() !== "error") return;
    const text = msg.text();
    const m = /Failed to load resource: the server responded with a status of (\d+)/.exec(text);
    if (m) {
      const path = new URL(msg.location().url).pathname;
      if (allowed.some(([p, s]) => p === path && String(s) === m[1])) return;
    }
    errors.push(`console error: ${text} (${msg.location().url})`);
  });
  page.on("pageerror", (err) => errors.push(`uncaught page error: ${err.message}`));
  return errors;
}

async function launch() {
  return chromium.launch({ executablePath: process.env.CHROMIUM || "/usr/bin/chromium", args: FLAGS, headless: true });
}

/** shares reads each region box's transport share (data-share) in index order. */
async function shares(page) {
  return page.$$eval(".region-box", (els) => els
    .sort((a, b) => Number(a.dataset.index) - Number(b.dataset.index))
    .map((e) => Number(e.dataset.share)));
}

async function visibleBoxes(page) {
  return page.$$eval(".region-box", (els) => els.filter((e) => !e.hidden && e.getBoundingClientRect().width > 0).length);
}

/** enterKey types key into the page's key form and submits it. */
async function enterKey(page, key) {
  await page.locator("#key-form").waitFor({ state: "visible" });
  await page.getByLabel("API key", { exact: true }).fill(key);
  await page.getByRole("button", { name: "Use key" }).click();
}

async function runTest(opts) {
  mkdirSync(opts.out, { recursive: true });
  const base = opts.url.replace(/\/$/, "");
  const image = readFileSync(opts.image);
  const key = opts.key ?? "";
  /** The headers of the script's own API calls. */
  const auth = key ? { "X-API-Key": key } : {};

  if (key) {
    // The server must want the key: 401 with the error body and a WWW-Authenticate challenge.
    const r = await fetch(`${base}/v1/models`);
    const body = await r.text();
    check(r.status === 401, `GET /v1/models without a key: HTTP ${r.status}, want 401 (was the server started with keys?)`);
    check(/^Bearer\b/i.test(r.headers.get("www-authenticate") ?? ""), `401 without WWW-Authenticate: Bearer (${r.headers.get("www-authenticate")})`);
    check(JSON.parse(body)?.error?.code === "unauthorized", `401 body ${body}, want {"error":{"code":"unauthorized",…}}`);
  }

  // What the page should draw, asked of the API directly.
  const form = new FormData();
  form.append("image", new Blob([image], { type: "image/png" }), "fixture.png");
  const regionsResp = await fetch(`${base}/v1/regions`, { method: "POST", body: form, headers: auth });
  check(regionsResp.ok, `POST /v1/regions: HTTP ${regionsResp.status}`);
  const regionsBody = await regionsResp.json();
  const expected = regionsBody.regions;
  const { width: W, height: H } = regionsBody.image;
  const modelsResp = await fetch(`${base}/v1/models`, { headers: auth });
  check(modelsResp.ok, `GET /v1/models: HTTP ${modelsResp.status}`);
  const models = await modelsResp.json();
  const model = models.models[0];
  const minConf = model.detector.min_confidence;
  const confident = expected.filter((r) => r.confidence >= minConf).length;
  log(`expecting ${expected.length} regions (${confident} at or above ${minConf}), ${model.layers}×${model.attention_heads} heads`);

  // With a gallery, store the image so that the page's search finds it.
  const galleryResp = await fetch(`${base}/v1/images?limit=1`, { headers: auth });
  const hasGallery = galleryResp.ok;
  if (hasGallery) {
    const up = new FormData();
    up.append("image", new Blob([image], { type: "image/png" }), "fixture.png");
    up.append("id", "browser-test");
    const r = await fetch(`${base}/v1/images`, { method: "POST", body: up, headers: auth });
    check(r.ok, `POST /v1/images: HTTP ${r.status} ${await r.text()}` + (r.status === 403 ? " (--key must be a key that may add images)" : ""));
  }
  log(hasGallery ? "the server has a gallery: search is tested" : `no gallery (GET /v1/images: ${galleryResp.status}): the search box must stay hidden`);

  const browser = await launch();
  try {
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    const page = await context.newPage();
    page.setDefaultTimeout(TIMEOUT);
    // Provoked on purpose: the gallery probe when there is none, the corrupt upload; with a key,
    // the calls made before it is entered (or after it is forgotten), or with a wrong one.
    const errors = watchConsole(page, [["/v1/images", 404], ["/v1/images", 503], ["/v1/match", 400],
      ...(key ? [["/v1/models", 401], ["/v1/images", 401], ["/v1/match", 401]] : [])]);

    await page.goto(base + "/", { waitUntil: "load" });
    if (key) {
      // No key yet: the start-up calls get 401 and the page asks for one.
      await page.locator("#key-form").waitFor({ state: "visible" });
      check(await page.locator("#api-key").getAttribute("type") === "password", "the key input is not a password field");
      check(/docs\/api\.md.*Authentication/.test(await page.locator("#key-message").innerText()), "the key form does not say where operators find keys");
      await page.waitForFunction(() => /API key/.test(document.getElementById("model-info").textContent));
      check(await page.evaluate(() => document.activeElement?.id) === "api-key", "the key input does not have the focus");
      await page.screenshot({ path: join(opts.out, "page-key.png") });
      // A wrong key is refused: the form comes back, saying so.
      await enterKey(page, "wrong-" + key);
      await page.waitForFunction(() => /refused/.test(document.getElementById("key-message").textContent)
        && !document.getElementById("key-form").hidden);
      await enterKey(page, key);
      await page.waitForFunction(() => document.getElementById("model-info").textContent.startsWith("Model "));
      check(await page.locator("#key-form").isHidden(), "the key form stays after the right key");
      check(await page.evaluate(() => localStorage.getItem("uniter.apiKey")) === key, "the key is not kept in localStorage uniter.apiKey");
      check(await page.getByRole("button", { name: "Forget key" }).isVisible(), "no Forget key button with a key set");
      log("key form ok: shown on 401, a wrong key refused, the right one kept");
    } else {
      await page.waitForFunction(() => !document.getElementById("model-info").textContent.startsWith("Loading"));
      check(await page.locator("#key-form").isHidden(), "key form shown by a server without keys");
    }
    check((await page.locator("#samples button").count()) > 0, "no sample buttons");

    // Upload, caption, run.
    await page.setInputFiles("#file-input", opts.image);
    await page.locator("#preview").waitFor({ state: "visible" });
    const captions = ["a red square left of a blue circle", "two green triangles"];
    await page.fill("#captions", captions.join("\n"));
    await page.click("#run");
    await page.waitForSelector("body[data-aligned]");
    check((await page.locator("#scores tbody tr").count()) === captions.length, "one score row per caption");
    const scoreText = await page.locator("#scores tbody tr").first().innerText();
    check(/\d\.\d{3}/.test(scoreText), `score row shows no numbers: ${scoreText}`);

    // Region boxes: as many as the API's regions; the low-confidence toggle hides exactly those.
    const boxes = await page.locator(".region-box").count();
    check(boxes === expected.length, `${boxes} region boxes drawn, want ${expected.length}`);
    const allLow = confident === 0;
    check((await visibleBoxes(page)) === (allLow ? expected.length : confident),
      `visible boxes ${await visibleBoxes(page)} at start, want ${allLow ? expected.length : confident}`);
    const lows = expected.length - confident;
    if (opts["want-low"] === "yes") check(lows > 0, "no low-confidence region: the toggle is not exercised");
    if (lows === 0) {
      check(await page.locator("#show-low").isDisabled(), "low-confidence toggle enabled with no such region");
    } else {
      await page.click("#show-low");
      const toggled = await visibleBoxes(page);
      check(toggled === (allLow ? 0 : expected.length), `after the low-confidence toggle ${toggled} boxes visible`);
      await page.click("#show-low");
      check((await visibleBoxes(page)) === (allLow ? expected.length : confident), "toggle back");
    }
    // Box geometry follows the API's boxes (percent of the image's size).
    const geometry = await page.$$eval(".region-box", (els) => els.map((e) => [Number(e.dataset.index),
      ...["left", "top", "width", "height"].map((k) => parseFloat(e.style[k]))]));
    for (const [j, left, top, width, height] of geometry) {
      const [x1, y1, x2, y2] = expected[j].box;
      const want = [100 * x1 / W, 100 * y1 / H, 100 * (x2 - x1) / W, 100 * (y2 - y1) / H];
      [left, top, width, height].forEach((v, k) => check(Math.abs(v - want[k]) < 1e-3, `region ${j} geometry ${[left, top, width, height]}, want ${want}`));
    }

    // Hovering a word tints the regions by its share of the word's weight in the alignment
    // shown: attention by default (the model has the graph), the transport plan on request.
    check(await page.locator('#align-by input[value="attention"]').isChecked(), "alignment not by attention by default");
    const before = await shares(page);
    check(before.every((s) => s === 0), `tints before any hover: ${before}`);
    const words = page.locator("#tokens .token:not(.special)");
    check((await words.count()) >= 2, "fewer than two word tokens");
    await words.nth(0).hover();
    const first = await shares(page);
    const sum = first.reduce((a, b) => a + b, 0);
    check(first.some((s) => s > 0) && Math.abs(sum - 1) < 1e-6, `tints after hovering a word: ${first} (sum ${sum}, want 1)`);
    const tintStyle = await page.locator(".region-box").first().evaluate((e) => getComputedStyle(e).backgroundColor);
    await words.nth(1).hover();
    const second = await shares(page);
    check(second.some((s, j) => Math.abs(s - first[j]) > 1e-9), "tints did not change between two words");
    const token0 = Number(await words.nth(1).getAttribute("data-token"));
    // The page's shares equal the alignment's: the word's rows summed and normalised.
    const align = await page.evaluate(async ([text, headers]) => {
      const img = await (await fetch(document.getElementById("preview").src)).blob();
      const f = new FormData();
      f.append("image", img, "x.png");
      f.append("text", text);
      f.append("attention", "true");
      return (await fetch("/v1/align", { method: "POST", body: f, headers })).json();
    }, [captions[0], auth]);
    const word = align.tokens[token0].word;
    const rows = align.tokens.flatMap((t, i) => (t.word === word ? [i] : []));
    const sharesOf = (matrix, name, got) => {
      const mass = align.regions.map((_, j) => rows.reduce((a, i) => a + matrix[i][j], 0));
      const total = mass.reduce((a, b) => a + b, 0);
      mass.forEach((m, j) => check(Math.abs(m / total - got[j]) < 1e-9, `region ${j}: tint share ${got[j]}, ${name} share ${m / total}`));
    };
    sharesOf(align.attention.cross_attention, "cross-attention", second);
    await page.locator('#align-by input[value="ot"]').check();
    await page.mouse.move(0, 0);
    await words.nth(1).hover();
    const byOT = await shares(page);
    sharesOf(align.plan, "transport plan", byOT);
    check(byOT.some((s, j) => Math.abs(s - second[j]) > 1e-9), "the tints did not change from attention to the transport plan");
    check(/transport mass/.test(await page.locator("#align-note").innerText()), "the note does not say the tints are transport mass");
    await page.locator('#align-by input[value="attention"]').check();
    log(`word tints ok, by attention and by the transport plan (first box background ${tintStyle})`);
    // Screenshot with the word selected (a hover would follow the mouse as the page resizes).
    await page.mouse.move(0, 0);
    await words.nth(1).click();
    await page.screenshot({ path: join(opts.out, "page-word.png"), fullPage: true });
    await page.keyboard.press("Escape");

    // Selecting a region highlights the words aligned to it.
    await page.mouse.move(0, 0);
    await page.locator(".region-box:not([hidden])").last().click(); // the smallest: on top of the others
    const wordShares = await page.$$eval("#tokens .token", (els) => els.map((e) => Number(e.dataset.share)));
    check(Math.abs(wordShares.reduce((a, b) => a + b, 0) - 1) < 1e-6, `word shares of a selected region: ${wordShares}`);
    await page.keyboard.press("Escape");

    // The heat map: tokens × regions with labelled axes.
    const cells = await page.locator("#heatmap tbody td").count();
    check(cells === align.tokens.length * align.regions.length, `heat map has ${cells} cells, want ${align.tokens.length}×${align.regions.length}`);

    // Attention: the layer × head grid, the chart, one map opened large.
    const heads = await page.locator(".head-map").count();
    check(heads === model.layers * model.attention_heads, `${heads} attention maps, want ${model.layers * model.attention_heads}`);
    check((await page.locator(".chart-row").count()) === model.layers, "one chart row per layer");
    await page.locator(".head-map").nth(1).click();
    await page.waitForSelector("#attention-dialog[open]");
    const title = await page.locator("#dialog-title").innerText();
    check(/Layer 1, head 2: (Vertical|Diagonal|Vertical \+ Diagonal|Block|Heterogeneous|Reversed Block)$/.test(title), `dialog title ${title}`);
    const canvas = await page.locator("#dialog-canvas").boundingBox();
    check(canvas && canvas.width > 100 && canvas.height > 100, `large map canvas ${JSON.stringify(canvas)}`);
    await page.screenshot({ path: join(opts.out, "page-attention.png") });
    await page.keyboard.press("ArrowRight");
    check((await page.locator("#dialog-title").innerText()).startsWith("Layer 1, head 3"), "ArrowRight moves to the next head");
    await page.keyboard.press("Escape");
    await page.waitForSelector("#attention-dialog[open]", { state: "detached" });

    // Masked-word probe.
    await page.locator("#probe-words button").first().click();
    await page.waitForSelector("#probe-result ol li");
    check((await page.locator("#probe-result ol").count()) === 2, "probe shows predictions with and without the image");

    // Keyboard: a word reached by focus and selected with Enter tints the regions.
    await page.mouse.move(0, 0);
    await words.nth(0).focus();
    await page.keyboard.press("Enter");
    check((await words.nth(0).getAttribute("aria-pressed")) === "true", "Enter does not select a focused word");
    await page.keyboard.press("Escape");

    // Narrow screen: nothing wider than the viewport.
    await page.setViewportSize({ width: 390, height: 844 });
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    const wide = overflow <= 1 ? [] : await page.evaluate(() => [...document.querySelectorAll("body *")]
      .filter((e) => e.getBoundingClientRect().right > window.innerWidth + 1 && e.closest(".scroll") === null)
      .slice(0, 5).map((e) => `${e.tagName.toLowerCase()}${e.id ? "#" + e.id : ""}.${e.className}`));
    check(overflow <= 1, `the page is ${overflow}px wider than a 390px screen (${wide.join(", ")})`);
    await page.screenshot({ path: join(opts.out, "page-narrow.png"), fullPage: true });
    await page.setViewportSize({ width: 1280, height: 900 });

    // Search: a box with thumbnails and evidence when there is a gallery, nothing otherwise.
    if (hasGallery) {
      await page.locator("#search-panel").waitFor({ state: "visible" });
      await page.fill("#search-query", captions[0]);
      await page.click("#search-run");
      await page.waitForSelector("#search-results > li");
      const hit = await page.locator("#search-results > li").first().innerText();
      check(hit.includes("browser-test") && /P\(match\) \d\.\d{3}/.test(hit), `search hit: ${hit}`);
      // Thumbnails come through the API helper (with the key) as object URLs.
      await page.waitForFunction(() => {
        const imgs = [...document.querySelectorAll("#search-results img")];
        return imgs.length > 0 && imgs.every((i) => i.classList.contains("missing") || (i.src.startsWith("blob:") && i.complete));
      });
      const thumbs = await page.$$eval("#search-results img", (imgs) => imgs.map((i) => [i.alt, i.naturalWidth]));
      check(thumbs.every(([, w]) => w > 0), `thumbnails did not load: ${JSON.stringify(thumbs)}`);
      log(`${thumbs.length} search thumbnail(s) loaded`);
      await page.locator("#search-panel").screenshot({ path: join(opts.out, "page-search.png") });
    } else {
      check(await page.locator("#search-panel").isHidden(), "search box shown without a gallery");
    }

    if (key) {
      // Forgotten, the key is not sent: Align is refused, the form comes back; with the key
      // entered again, pressing Align again works.
      const aligned = await page.evaluate(() => document.body.dataset.aligned);
      await page.getByRole("button", { name: "Forget key" }).click();
      check(await page.evaluate(() => localStorage.getItem("uniter.apiKey")) === null, "Forget key left the key in localStorage");
      await page.click("#run");
      await page.waitForSelector("#error:not([hidden])");
      const refused = await page.locator("#error").innerText();
      check(/HTTP 401/.test(refused), `error after forgetting the key: ${refused}`);
      await enterKey(page, key);
      await page.locator("#error").waitFor({ state: "hidden" });
      await page.click("#run");
      await page.waitForFunction((before) => document.body.dataset.aligned !== before, aligned);
      check(await page.locator("#error").isHidden(), `error after Align with the key again: ${await page.locator("#error").innerText()}`);
      log("forget key ok: Align refused with 401, the key entered again, Align pressed again");
    }

    // A readable API error: a corrupt image.
    await page.setInputFiles("#file-input", { name: "broken.png", mimeType: "image/png", buffer: Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), Buffer.from("not really")]) });
    await page.click("#run");
    await page.waitForSelector("#error:not([hidden])");
    const err = await page.locator("#error").innerText();
    check(/HTTP 400/.test(err) && err.length < 400, `error message: ${err}`);
    log(`API error shown: ${err}`);

    check(errors.length === 0, errors.join("\n"));
    log("all checks passed; screenshots in", opts.out);
  } finally {
    await browser.close();
  }
}

/** waitReady polls GET /readyz (the server may still be loading its model). */
async function waitReady(base, seconds = 300) {
  const deadline = Date.now() + seconds * 1000;
  for (;;) {
    try {
      if ((await fetch(`${base}/readyz`)).ok) return;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) throw new CheckError(`${base}/readyz: not ready within ${seconds}s`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

async function runScreenshot(opts) {
  mkdirSync(dirname(opts.out), { recursive: true });
  await waitReady(opts.url.replace(/\/$/, ""));
  const browser = await launch();
  try {
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 }, deviceScaleFactor: 1 });
    page.setDefaultTimeout(TIMEOUT);
    const errors = watchConsole(page, [["/v1/images", 404], ["/v1/images", 503]]);
    if (opts.key) await page.addInitScript((k) => localStorage.setItem("uniter.apiKey", k), opts.key);
    await page.goto(opts.url.replace(/\/$/, "") + "/", { waitUntil: "load" });
    await page.locator("#samples button").nth(Number(opts.sample ?? 0)).click();
    await page.locator("#preview").waitFor({ state: "visible" });
    await page.click("#run");
    await page.waitForSelector("body[data-aligned]");
    await page.locator("#tokens .token:not(.special)").nth(Number(opts.word ?? 2)).click();
    await page.mouse.move(0, 0);
    await page.screenshot({ path: opts.out, fullPage: true });
    const dialogShot = opts.out.replace(/\.png$/, "-attention.png");
    await page.locator(".head-map").first().click();
    await page.waitForSelector("#attention-dialog[open]");
    await page.screenshot({ path: dialogShot });
    check(errors.length === 0, errors.join("\n"));
    log("wrote", opts.out, "and", dialogShot);
  } finally {
    await browser.close();
  }
}

try {
  const opts = parseArgs(process.argv.slice(2));
  if (opts.mode === "test") await runTest(opts);
  else if (opts.mode === "screenshot") await runScreenshot(opts);
  else throw new Error(`unknown mode ${opts.mode}`);
} catch (e) {
  console.error(e instanceof CheckError ? `[page] check failed: ${e.message}` : e);
  process.exit(1);
}
