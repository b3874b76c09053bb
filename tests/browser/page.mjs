// Drives the alignment page in real headless Chromium (Debian's, through playwright-core).
//
//   node tests/browser/page.mjs test --url URL --out DIR --image PNG [--image2 PNG] [--want-low yes] [--key K]
//       the browser test (tests/browser_test.go runs it against `uniter serve`): loads the page,
//       uploads the image, enters captions, waits for the result, checks the region boxes
//       against POST /v1/regions, hovers words and checks the region tints change (and match
//       the transport plan), opens an attention map, runs the masked-word probe, searches the
//       gallery (when there is one) and checks its thumbnails load, checks a readable API error
//       and a narrow screen, and saves screenshots to DIR. It fails on any browser console
//       error or uncaught page error.
//       When the server also serves the task fixtures (tiny-vqa, tiny-ve, tiny-nlvr2-paired,
//       tiny-re: `uniter serve --model testdata/bundles`), it then picks each in the model
//       selector and checks its view next to the alignment views: VQA's five answer bars, the
//       three entailment probabilities with the label marked, NLVR2's two images (the second
//       is --image2) side by side with P(true) and the verdict, the referred region's box and
//       the ranked regions; a task's API error shown readably (page-vqa.png, page-ve.png,
//       page-nlvr2.png, page-refer.png).
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

/** chooseModel picks name in the page's model selector and waits for its view. */
async function chooseModel(page, name, view) {
  await page.getByLabel("Model", { exact: true }).selectOption(name);
  await page.waitForFunction((v) => document.body.dataset.view === v, view);
  check(await page.locator("#results").isHidden(), `results of the previous model still shown after choosing ${name}`);
  check(/^Model /.test(await page.locator("#model-info").innerText()) && (await page.locator("#model-info").innerText()).includes(name),
    `the header does not describe ${name}: ${await page.locator("#model-info").innerText()}`);
}

/**
 * askTask types text into the task box labelled label, submits it with Enter and waits for the
 * answer of path, its view (results[data-view=view]) and the text's alignment; it checks that
 * model answered both (the answers name it) and returns the API's answer.
 */
async function askTask(page, { path, model, view, label, text }) {
  const aligned = await page.evaluate(() => document.body.dataset.aligned);
  const box = page.getByLabel(label, { exact: true });
  await box.fill(text);
  const isPost = (p) => (r) => new URL(r.url()).pathname === p && r.request().method() === "POST";
  const [resp, alignResp] = await Promise.all([page.waitForResponse(isPost(path)), page.waitForResponse(isPost("/v1/align")), box.press("Enter")]);
  const body = await resp.json();
  check(resp.status() === 200, `${path}: HTTP ${resp.status()} ${JSON.stringify(body)}`);
  check(body.model === model, `${path} answered by ${body.model}, want ${model}`);
  const alignBody = await alignResp.json();
  check(alignResp.status() === 200 && alignBody.model === model, `/v1/align: HTTP ${alignResp.status()}, answered by ${alignBody.model}, want ${model}`);
  await page.waitForSelector(`#results:not([hidden])[data-view="${view}"]`);
  await page.waitForFunction((before) => document.body.dataset.aligned !== before, aligned);
  check(await page.locator("#error").isHidden(), `error after ${path}: ${await page.locator("#error").innerText()}`);
  // The alignment views stay next to the task's: the text's tokens, one heat-map row each.
  const textOf = body.question ?? body.hypothesis ?? body.statement ?? body.expression;
  const tokens = await page.locator("#tokens .token").count();
  check(tokens === textOf.tokens, `${tokens} tokens in the alignment view, the model read ${textOf.tokens}`);
  check((await page.locator("#alignment-caption").innerText()).includes(text), "the alignment view is not of the task's text");
  check(await page.locator("#image-panel").isVisible() && (await page.locator(".region-box").count()) > 0, "no regions next to the task view");
  check(await page.locator("#scores-panel").isHidden(), "the captions' scores shown for a task model");
  return body;
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
  const galleryTexts = ["a red square left of a blue circle", "two green triangles", "a yellow star"];
  const galleryResp = await fetch(`${base}/v1/images?limit=1`, { headers: auth });
  const hasGallery = galleryResp.ok;
  if (hasGallery) {
    const up = new FormData();
    up.append("image", new Blob([image], { type: "image/png" }), "fixture.png");
    up.append("id", "browser-test");
    const r = await fetch(`${base}/v1/images`, { method: "POST", body: up, headers: auth });
    check(r.ok, `POST /v1/images: HTTP ${r.status} ${await r.text()}` + (r.status === 403 ? " (--key must be a key that may add images)" : ""));
    // And texts, for the search by the chosen image.
    const t = await fetch(`${base}/v1/texts`, { method: "POST", headers: { ...auth, "Content-Type": "application/json" },
      body: JSON.stringify({ texts: galleryTexts.map((text, i) => ({ id: `browser-text-${i}`, text })) }) });
    check(t.ok, `POST /v1/texts: HTTP ${t.status} ${await t.text()}`);
  }
  log(hasGallery ? "the server has a gallery: search is tested" : `no gallery (GET /v1/images: ${galleryResp.status}): the search box must stay hidden`);

  const browser = await launch();
  try {
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    const page = await context.newPage();
    page.setDefaultTimeout(TIMEOUT);
    // Provoked on purpose: the gallery probe when there is none, the corrupt upload; with a key,
    // the calls made before it is entered (or after it is forgotten), or with a wrong one.
    const errors = watchConsole(page, [["/v1/gallery", 503], ["/v1/match", 400], ["/v1/refer", 400],
      ...(key ? [["/v1/models", 401], ["/v1/gallery", 401], ["/v1/match", 401]] : [])]);

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

    // The page opens on the first bundled sample, run: its captions scored and the first aligned.
    await page.waitForSelector('body[data-opened="done"]');
    check(await page.locator("#samples button").first().getAttribute("aria-pressed") === "true", "the first sample is not the chosen image at start");
    const sampleRows = await page.locator("#scores tbody tr").count();
    check(sampleRows === 3 && await page.locator("#results").isVisible() && (await page.locator(".region-box").count()) > 0,
      `the page did not open on the sample's results: ${sampleRows} score rows`);
    check(/✓ true/.test(await page.locator("#scores tbody tr").first().innerText()), "the sample's first caption has no ground-truth mark");
    log(`opened on sample 0: ${sampleRows} captions scored, ${await page.locator(".region-box").count()} region boxes`);

    // Upload, caption, run.
    await page.setInputFiles("#file-input", opts.image);
    await page.locator("#preview").waitFor({ state: "visible" });
    // The third caption has a word outside the vocabulary ("straße" is [UNK] in the fixture's).
    const captions = ["a red square left of a blue circle", "two green triangles", "a red square near the straße"];
    await page.fill("#captions", captions.join("\n"));
    const alignedAtStart = await page.evaluate(() => document.body.dataset.aligned);
    await page.click("#run");
    await page.waitForFunction((before) => document.body.dataset.aligned !== before, alignedAtStart);
    check((await page.locator("#scores tbody tr").count()) === captions.length, "one score row per caption");
    const scoreText = await page.locator("#scores tbody tr").first().innerText();
    check(/\d\.\d{3}/.test(scoreText), `score row shows no numbers: ${scoreText}`);
    // Unknown words: a visible warning next to the caption that has one, naming it; none elsewhere.
    const warnings = await page.$$eval("#scores tbody tr", (rows) => rows.map((r) => {
      const w = r.querySelector(".unknown-words");
      return w ? { words: w.dataset.words, text: w.innerText, visible: w.getBoundingClientRect().height > 0 } : null;
    }));
    check(warnings[0] === null && warnings[1] === null, `unknown-word warnings on captions without unknown words: ${JSON.stringify(warnings)}`);
    check(warnings[2] && warnings[2].visible && warnings[2].words === "straße" && /vocabulary/.test(warnings[2].text) && warnings[2].text.includes("straße"),
      `no visible warning naming "straße" next to the third caption: ${JSON.stringify(warnings[2])}`);
    check(/Vocabulary: \d+ tokens, uncased, open/.test(await page.locator("#model-domain").innerText()),
      `the header does not describe the vocabulary: ${await page.locator("#model-domain").innerText()}`);
    log(`unknown-word warning ok: ${warnings[2].text}`);

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
      // The chosen image finds the gallery's texts: each hit a stored text with its P(match).
      const [textsResp] = await Promise.all([page.waitForResponse((r) => new URL(r.url()).pathname === "/v1/search/texts"),
        page.click("#search-by-image")]);
      const byImage = await textsResp.json();
      check(textsResp.status() === 200 && byImage.results.length > 0, `/v1/search/texts: HTTP ${textsResp.status()} ${JSON.stringify(byImage).slice(0, 300)}`);
      await page.waitForSelector('#search-results[data-kind="texts"] > li.text-hit');
      const textHits = await page.$$eval("#search-results > li.text-hit", (lis) => lis.map((li) => li.innerText));
      check(textHits.length === byImage.results.length && textHits.every((t, i) => t.includes(byImage.results[i].text) && /P\(match\) \d\.\d{3}/.test(t))
        && byImage.results.every((r) => galleryTexts.includes(r.text)), `text hits ${JSON.stringify(textHits)} for ${JSON.stringify(byImage.results)}`);
      check(/of \d+ texts/.test(await page.locator("#search-status").innerText()), `search status: ${await page.locator("#search-status").innerText()}`);
      log(`search by the chosen image: ${textHits.length} text hit(s), first ${JSON.stringify(textHits[0])}`);
      await page.locator("#search-panel").screenshot({ path: join(opts.out, "page-search-texts.png") });
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

    if (["tiny-vqa", "tiny-ve", "tiny-nlvr2-paired", "tiny-re"].every((n) => models.models.some((m) => m.name === n))) {
      await taskViews(page, opts);
    } else {
      log("the server serves no task fixtures: the task views are not tested");
      check(!opts.image2, "--image2 given but the server serves no task fixtures (start it with --model testdata/bundles)");
    }

    check(errors.length === 0, errors.join("\n"));
    log("all checks passed; screenshots in", opts.out);
  } finally {
    await browser.close();
  }
}

/** taskViews picks each task fixture in the model selector and checks its view. */
async function taskViews(page, opts) {
  check(opts.image2, "the task views need --image2 (NLVR2's right image)");
  await page.setViewportSize({ width: 1280, height: 900 });
  const options = await page.$$eval("#model-select option", (os) => os.map((o) => o.value));
  check(options.length === 8, `model selector lists ${options}, want the default and seven task fixtures`);
  await page.setInputFiles("#file-input", opts.image);
  await page.locator("#preview").waitFor({ state: "visible" });

  // A retrieval model keeps the captions view; its rank head's scores are no P(match).
  await chooseModel(page, "tiny-retrieval", "match");
  check(await page.locator("#captions").isVisible() && await page.locator("#task-input").isHidden(), "the retrieval model does not show the captions box");
  const alignedBefore = await page.evaluate(() => document.body.dataset.aligned);
  const [matchResp] = await Promise.all([page.waitForResponse((r) => new URL(r.url()).pathname === "/v1/match"), page.click("#run")]);
  const match = await matchResp.json();
  check(matchResp.status() === 200 && match.model === "tiny-retrieval" && match.results.every((r) => r.head === "rank"),
    `/v1/match for tiny-retrieval: HTTP ${matchResp.status()} ${JSON.stringify(match).slice(0, 300)}`);
  await page.waitForFunction((before) => document.body.dataset.aligned !== before, alignedBefore);
  check(await page.locator("#score-head").innerText() === "Rank score", `score column "${await page.locator("#score-head").innerText()}" for a rank head`);
  check(/no MLM head/.test(await page.locator("#probe-words").innerText()), "the probe does not say the retrieval model has no MLM head");

  // VQA: a question box, the top five answers as bars as long as their scores.
  await chooseModel(page, "tiny-vqa", "vqa");
  check(await page.locator("#captions").isHidden() && await page.locator("#second-image").isHidden(), "VQA shows the captions box or a second image");
  check(await page.locator("#run").innerText() === "Answer", "the run button does not say Answer for VQA");
  // A question is needed: said readably, the box focused.
  await page.click("#run");
  await page.locator("#error").waitFor({ state: "visible" });
  check(/Type a question first/.test(await page.locator("#error").innerText()), `no readable error for a missing question: ${await page.locator("#error").innerText()}`);
  check(await page.evaluate(() => document.activeElement?.id) === "task-text", "the question box does not get the focus");
  const vqa = await askTask(page, { path: "/v1/vqa", model: "tiny-vqa", view: "vqa", label: "Question", text: "what color is the square?" });
  const bars = await page.$$eval("#vqa-answers li", (lis) => lis.map((li) => ({
    answer: li.dataset.answer, score: Number(li.dataset.score), text: li.innerText,
    fill: li.querySelector(".meter-fill").getBoundingClientRect().width, track: li.querySelector(".meter").getBoundingClientRect().width })));
  check(bars.length === 5, `${bars.length} answer bars, want 5`);
  bars.forEach((b, i) => {
    check(b.score >= 0 && b.score <= 1, `answer ${b.answer}: score ${b.score} outside [0,1]`);
    check(b.answer === vqa.answers[i].answer && Math.abs(b.score - vqa.answers[i].score) < 1e-6, `bar ${i} ${b.answer} ${b.score}, the API ${JSON.stringify(vqa.answers[i])}`);
    check(b.text.includes(b.score.toFixed(3)), `bar ${i} does not show its score: ${b.text}`);
    check(Math.abs(b.fill - b.score * b.track) < 1.5, `bar ${i} is ${b.fill}px of ${b.track}px, want score ${b.score}`);
  });
  check(/no MLM head/.test(await page.locator("#probe-words").innerText()), "the probe does not say the VQA model has no MLM head");
  log(`VQA ok: ${bars.map((b) => `${b.answer} ${b.score.toFixed(3)}`).join(", ")}`);
  await page.mouse.move(0, 0);
  await page.screenshot({ path: join(opts.out, "page-vqa.png"), fullPage: true });

  // VE: a hypothesis box, three probabilities summing to 1, the label marked.
  await chooseModel(page, "tiny-ve", "ve");
  check(await page.getByLabel("Hypothesis", { exact: true }).inputValue() === "", "the question carried over into the hypothesis box");
  const ve = await askTask(page, { path: "/v1/entailment", model: "tiny-ve", view: "ve", label: "Hypothesis", text: "there is a red square" });
  const probs = await page.$$eval("#ve-probabilities li", (lis) => lis.map((li) => ({
    label: li.dataset.label, p: Number(li.dataset.probability), chosen: li.classList.contains("chosen"), current: li.getAttribute("aria-current"), text: li.innerText })));
  check(probs.length === 3, `${probs.length} entailment rows, want 3`);
  const total = probs.reduce((a, r) => a + r.p, 0);
  check(Math.abs(total - 1) < 1e-3 && probs.every((r) => r.p >= 0 && r.p <= 1), `entailment probabilities ${JSON.stringify(probs)} (sum ${total})`);
  const marked = probs.filter((r) => r.chosen);
  check(marked.length === 1 && marked[0].label === ve.label && marked[0].current === "true" && /chosen/.test(marked[0].text),
    `marked ${JSON.stringify(marked)}, want ${ve.label}`);
  check(probs.every((r) => r.p <= marked[0].p), `the marked label ${marked[0].label} is not the most probable: ${JSON.stringify(probs)}`);
  check(probs.every((r) => Math.abs(r.p - ve.probabilities[r.label]) < 1e-6), "entailment rows differ from the API's probabilities");
  log(`VE ok: ${probs.map((r) => `${r.label} ${r.p.toFixed(3)}`).join(", ")}; marked ${ve.label}`);
  await page.screenshot({ path: join(opts.out, "page-ve.png"), fullPage: true });

  // NLVR2: a second image, the two side by side, P(true) and the verdict.
  await chooseModel(page, "tiny-nlvr2-paired", "nlvr2");
  await page.locator("#second-image").waitFor({ state: "visible" });
  await page.click("#run"); // no statement yet
  await page.locator("#error").waitFor({ state: "visible" });
  check(/Type a statement first/.test(await page.locator("#error").innerText()), "no readable error for a missing statement");
  await page.getByLabel("Statement", { exact: true }).fill("there is a red square");
  await page.click("#run"); // no right image yet
  check(/right image/.test(await page.locator("#error").innerText()), `no readable error for a missing right image: ${await page.locator("#error").innerText()}`);
  await page.setInputFiles("#file-input-2", opts.image2);
  await page.locator("#preview-2").waitFor({ state: "visible" });
  const inputs = await Promise.all(["#preview", "#preview-2"].map((s) => page.locator(s).boundingBox()));
  check(inputs[1].x > inputs[0].x + inputs[0].width - 1, `the two image inputs are not side by side: ${JSON.stringify(inputs)}`);
  const nl = await askTask(page, { path: "/v1/nlvr2", model: "tiny-nlvr2-paired", view: "nlvr2", label: "Statement", text: "there is a red square" });
  await page.waitForFunction(() => {
    const imgs = [...document.querySelectorAll("#nlvr2-pair img")];
    return imgs.length === 2 && imgs.every((i) => i.complete && i.naturalWidth > 0);
  });
  const pics = await page.$$eval("#nlvr2-pair img", (imgs) => imgs.map((i) => {
    const r = i.getBoundingClientRect();
    return { x: r.x, y: r.y, w: r.width, h: r.height, nw: i.naturalWidth };
  }));
  check(Math.abs(pics[0].y - pics[1].y) < 2 && pics[1].x >= pics[0].x + pics[0].w - 1 && pics.every((p) => p.w > 50),
    `the two images are not side by side: ${JSON.stringify(pics)}`);
  check(pics[0].nw === nl.images[0].width && pics[1].nw === nl.images[1].width, `images shown ${pics.map((p) => p.nw)} wide, the API read ${nl.images.map((i) => i.width)}`);
  const verdict = await page.locator("#nlvr2-verdict .verdict").evaluate((e) => ({ p: Number(e.dataset.probability), label: e.dataset.label, text: e.innerText }));
  const verdictText = await page.locator("#nlvr2-verdict").innerText();
  check(verdict.p >= 0 && verdict.p <= 1 && Math.abs(verdict.p - nl.true_probability) < 1e-6 && verdict.text.includes(verdict.p.toFixed(3)),
    `P(true) shown ${JSON.stringify(verdict)}, the API ${nl.true_probability}`);
  check(verdict.label === String(nl.label) && new RegExp(`Verdict: . ${nl.label}`).test(verdictText), `verdict ${verdictText}, the API's label ${nl.label}`);
  check((await page.locator(".region-box").count()) === nl.images[0].regions, "the regions shown are not the left image's");
  // The alignment with the right image instead.
  const alignedLeft = await page.evaluate(() => document.body.dataset.aligned);
  await page.getByRole("button", { name: "Align with the right image" }).click();
  await page.waitForFunction((before) => document.body.dataset.aligned !== before, alignedLeft);
  check(/right image/.test(await page.locator("#alignment-caption").innerText()), "the alignment view does not say it shows the right image");
  check(await page.locator("#stage-image").getAttribute("src") === await page.locator("#nlvr2-pair img").nth(1).getAttribute("src"), "the regions are not drawn on the right image");
  check((await page.locator(".region-box").count()) === nl.images[1].regions, "the regions shown are not the right image's");
  log(`NLVR2 ok: P(true) ${verdict.p.toFixed(3)}, verdict ${nl.label}, images ${pics.map((p) => `${Math.round(p.w)}px`).join(" | ")}`);
  await page.mouse.move(0, 0);
  await page.screenshot({ path: join(opts.out, "page-nlvr2.png"), fullPage: true });
  // The widest task view still fits a narrow screen.
  await page.setViewportSize({ width: 390, height: 844 });
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  check(overflow <= 1, `the NLVR2 view is ${overflow}px wider than a 390px screen`);
  await page.setViewportSize({ width: 1280, height: 900 });

  // RE: an expression box, the best region drawn with its probability and score, the ranked list.
  await chooseModel(page, "tiny-re", "re");
  const re = await askTask(page, { path: "/v1/refer", model: "tiny-re", view: "re", label: "Referring expression", text: "the red square on the left" });
  await page.waitForFunction(() => document.getElementById("refer-image").complete);
  const ranked = await page.$$eval("#refer-list .refer-item", (bs) => bs.map((b) => ({ index: Number(b.dataset.index), p: Number(b.dataset.probability), pressed: b.getAttribute("aria-pressed") })));
  check(ranked.length === re.regions.length && ranked.length >= 2, `${ranked.length} ranked regions, the API ${re.regions.length}`);
  check(ranked.every((r) => r.p <= ranked[0].p), `the first ranked region is not the most probable: ${JSON.stringify(ranked)}`);
  check(ranked[0].index === re.regions[0].index && ranked[0].pressed === "true", `first ranked ${JSON.stringify(ranked[0])}, the API's best ${re.regions[0].index}`);
  const drawn = async () => page.locator(".refer-box").evaluate((e) => {
    const r = e.getBoundingClientRect(), img = document.getElementById("refer-image").getBoundingClientRect();
    return { index: Number(e.dataset.index), label: e.innerText, style: ["left", "top", "width", "height"].map((k) => parseFloat(e.style[k])),
      box: [r.x, r.y, r.width, r.height], img: [img.x, img.y, img.width, img.height] };
  });
  check((await page.locator(".refer-box").count()) === 1, "not exactly one referred box drawn");
  const best = await drawn();
  const { width: RW, height: RH } = re.image;
  const [x1, y1, x2, y2] = re.regions[0].box;
  const want = [100 * x1 / RW, 100 * y1 / RH, 100 * (x2 - x1) / RW, 100 * (y2 - y1) / RH];
  best.style.forEach((v, k) => check(Math.abs(v - want[k]) < 1e-3, `referred box ${best.style}, want ${want}`));
  check(best.index === re.regions[0].index && best.box[2] > 5 && best.box[3] > 5 && best.box[0] >= best.img[0] - 2 && best.box[0] + best.box[2] <= best.img[0] + best.img[2] + 2,
    `referred box ${JSON.stringify(best)}`);
  check(best.label.includes(re.regions[0].probability.toFixed(3)) && best.label.includes(re.regions[0].score.toFixed(3)), `the box's label ${best.label} lacks its probability or score`);
  // Another ranked region, chosen with the keyboard, is drawn instead.
  await page.locator("#refer-list .refer-item").nth(1).focus();
  await page.keyboard.press("Enter");
  check((await drawn()).index === ranked[1].index, "choosing the second ranked region does not draw it");
  await page.locator("#refer-list .refer-item").nth(0).click();
  log(`RE ok: best #${best.index} (${best.label}), ${ranked.length} ranked`);
  await page.mouse.move(0, 0);
  await page.screenshot({ path: join(opts.out, "page-refer.png"), fullPage: true });

  // A sample in a task view brings its item of the task and the answer Shapes World computed;
  // in NLVR2 also its partner as the right image. Editing the text hides the answer.
  const samples = JSON.parse(readFileSync(new URL("../../web/samples/samples.json", import.meta.url), "utf8"));
  await page.locator("#samples button").nth(1).click();
  await page.waitForFunction((q) => document.getElementById("task-text").value === q, samples[1].tasks.expression);
  check(await page.locator("#task-truth").isVisible() && (await page.locator("#task-truth").innerText()).includes("referent"),
    `no Shapes World referent beside the sample's expression: ${await page.locator("#task-truth").innerText()}`);
  await chooseModel(page, "tiny-vqa", "vqa");
  check(await page.locator("#task-text").inputValue() === samples[1].tasks.question, "switching to VQA does not bring the sample's question");
  check((await page.locator("#task-truth").innerText()) === `Shapes World's answer: ${samples[1].tasks.answer}`, `VQA truth: ${await page.locator("#task-truth").innerText()}`);
  await page.fill("#task-text", "what shape is it?");
  check(await page.locator("#task-truth").isHidden(), "the sample's answer stays beside a question of the user's");
  await chooseModel(page, "tiny-nlvr2-paired", "nlvr2");
  await page.waitForFunction((f) => document.getElementById("image-name-2").textContent.startsWith(f), samples[1].tasks.right);
  check(await page.locator("#task-text").inputValue() === samples[1].tasks.statement, "switching to NLVR2 does not bring the sample's statement");
  log("sample task items ok");
  await chooseModel(page, "tiny-re", "re");

  // A task's API error is shown readably: a corrupt image.
  await page.setInputFiles("#file-input", { name: "broken.png", mimeType: "image/png", buffer: Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), Buffer.from("not really")]) });
  await page.click("#run");
  await page.waitForSelector("#error:not([hidden])");
  const err = await page.locator("#error").innerText();
  check(/^\/v1\/refer: .*HTTP 400/.test(err) && err.length < 400, `task error message: ${err}`);
  log(`task views ok; task API error shown: ${err}`);
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
    const errors = watchConsole(page, [["/v1/gallery", 503]]);
    if (opts.key) await page.addInitScript((k) => localStorage.setItem("uniter.apiKey", k), opts.key);
    await page.goto(opts.url.replace(/\/$/, "") + "/", { waitUntil: "load" });
    await page.waitForSelector('body[data-opened="done"]'); // the page runs sample 0 at start
    await page.locator("#samples button").nth(Number(opts.sample ?? 0)).click();
    await page.locator("#preview").waitFor({ state: "visible" });
    const before = await page.evaluate(() => document.body.dataset.aligned);
    await page.click("#run");
    await page.waitForFunction((b) => document.body.dataset.aligned !== b, before);
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
