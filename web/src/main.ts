// The alignment page: choose a model (models.ts), an image and captions, score them (POST
// /v1/match), then show the selected caption's regions, word-region alignment and attention
// (POST /v1/align with "attention": true) and probe its words (POST /v1/fill-mask). A model
// fine-tuned for a task gets its task's view instead of the captions: VQA (vqa.ts), visual
// entailment (entail.ts), NLVR2 with a second image (nlvr2.ts) or referring expressions
// (refer.ts), with the alignment views of the task's text below. Every request names the chosen
// model. A server with API keys answers 401 without one: the key form (auth.ts) asks for it and
// the page loads again with it.

import {
  describe, getJSON, isUnauthorized, postImage, postImages, type AlignResponse, type DetectorInfo, type EntailmentResponse,
  type MatchResponse, type ModelInfo, type ModelsResponse, type NLVR2Response, type ReferResponse, type VQAResponse,
} from "./api.js";
import { AlignmentView } from "./align.js";
import { AttentionView } from "./attention.js";
import { KeyForm } from "./auth.js";
import { byId, fmt, h, setBusy, unknownWords } from "./dom.js";
import { EntailmentView } from "./entail.js";
import { ModelPicker, taskLabel, viewOf, VIEWS } from "./models.js";
import { NLVR2View } from "./nlvr2.js";
import { Probe } from "./probe.js";
import { ReferView } from "./refer.js";
import { RegionLayer } from "./regions.js";
import { galleryState, Search } from "./search.js";
import { VQAView } from "./vqa.js";

/** A sample's item of each task, with the answer Shapes World's generator computed. */
interface SampleTasks {
  question: string; answer: string; hypothesis: string; label: string; expression: string;
  box: [number, number, number, number]; statement: string; right: string; true: boolean;
}
interface Sample { file: string; width: number; height: number; captions: string[]; truth: boolean[]; tasks: SampleTasks; }

/** Image types the service decodes (others get a readable 415 from it anyway). */
const IMAGE_TYPES = ["image/png", "image/jpeg", "image/gif", "image/webp", "image/bmp"];

const state = {
  /** The chosen model; requests name it. */
  model: null as ModelInfo | null,
  /** The default model's detector: it reads the images of fine-tuned models that have none. */
  detector: undefined as DetectorInfo | undefined,
  image: null as Blob | null,
  imageURL: "",
  /** NLVR2's right image. */
  image2: null as Blob | null,
  image2URL: "",
  image2Name: "",
  imageName: "",
  /** The image the alignment below was computed on (the chosen one may have changed since). */
  analysed: null as { image: Blob; url: string } | null,
  /** The images of the NLVR2 answer shown (left, right). */
  pair: [] as { image: Blob; url: string }[],
  captions: [] as string[],
  /** The task text (question, hypothesis, statement, expression) of the task answer shown. */
  text: "",
  selected: -1,
  runRequest: 0,
  alignRequest: 0,
  /** The task box's text for each view, kept while another model is chosen. */
  texts: new Map<string, string>(),
  /** Ground truth of the chosen sample's captions (Shapes World knows it); empty for uploads. */
  truth: new Map<string, boolean>(),
  /** The bundled samples (samples.json), and the one chosen last (null after an upload). */
  samples: [] as Sample[],
  sample: null as Sample | null,
};

const form = byId<HTMLFormElement>("run-form");
const modelSelect = byId<HTMLSelectElement>("model-select");
const captionsInput = byId("captions-input");
const taskInput = byId("task-input");
const taskText = byId<HTMLInputElement>("task-text");
const secondImage = byId("second-image");
const fileInput2 = byId<HTMLInputElement>("file-input-2");
const preview2 = byId<HTMLImageElement>("preview-2");
const taskPanels = { match: byId("scores-panel"), vqa: byId("vqa-panel"), ve: byId("ve-panel"), nlvr2: byId("nlvr2-panel"), re: byId("refer-panel") };
const runButton = byId<HTMLButtonElement>("run");
const runStatus = byId("run-status");
const errorBox = byId("error");
const captionsBox = byId<HTMLTextAreaElement>("captions");
const fileInput = byId<HTMLInputElement>("file-input");
const dropZone = byId("drop-zone");
const preview = byId<HTMLImageElement>("preview");
const results = byId("results");
const scoresBody = byId<HTMLTableElement>("scores").tBodies[0];
const stageImage = byId<HTMLImageElement>("stage-image");
const alignmentPanel = byId("alignment-panel");
const attentionPanel = byId("attention-panel");
const probePanel = byId("probe-panel");

const regions = new RegionLayer(byId("boxes"), byId<HTMLInputElement>("show-low"), byId("show-low-label"), byId("region-count"), {
  preview: (j) => alignment.previewRegion(j),
  toggle: (j) => alignment.toggleRegion(j),
});
const alignment = new AlignmentView(byId("tokens"), byId<HTMLTableElement>("heatmap"), regions,
  byId<HTMLFieldSetElement>("align-by"), byId("align-note"), byId("heatmap-summary"));
const attention = new AttentionView(byId("attention-grid"), byId("pattern-chart"), byId("attention-note"), byId<HTMLDialogElement>("attention-dialog"));
const probe = new Probe(probePanel, byId("probe-words"), byId("probe-result"));
const vqa = new VQAView(byId("vqa-question"), byId<HTMLOListElement>("vqa-answers"));
const entailment = new EntailmentView(byId("ve-hypothesis"), byId<HTMLUListElement>("ve-probabilities"), byId("ve-verdict"));
const nlvr2 = new NLVR2View(byId("nlvr2-statement"), byId("nlvr2-pair"), byId("nlvr2-verdict"), (side) => {
  const chosen = state.pair[side];
  if (!chosen) return;
  state.analysed = chosen;
  void align(state.text, ` with the ${side === 0 ? "left" : "right"} image`);
});
const refer = new ReferView(byId("refer-expression"), byId<HTMLImageElement>("refer-image"), byId("refer-boxes"), byId<HTMLOListElement>("refer-list"));
const picker = new ModelPicker(modelSelect, (m) => chooseModel(m));
const search = new Search(byId("search-panel"), byId<HTMLFormElement>("search-form"), byId<HTMLInputElement>("search-query"),
  byId("search-status"), byId("search-error"), byId("search-results"));
byId("search-by-image").addEventListener("click", () => void search.byImage(state.image));

/** showError shows message; auth marks an error that only wanted an API key (cleared once one is entered). */
function showError(message: string, auth = false): void {
  errorBox.textContent = message;
  errorBox.dataset.auth = String(auth);
  errorBox.hidden = false;
}

function hideError(): void {
  errorBox.hidden = true;
  errorBox.textContent = "";
  errorBox.dataset.auth = "false";
}

function setStatus(text: string, busy: boolean): void {
  runStatus.textContent = text;
  runStatus.classList.toggle("busy", busy);
}

// ---- The model -------------------------------------------------------------------------

async function loadModel(): Promise<void> {
  const el = byId("model-info");
  try {
    const resp = await getJSON<ModelsResponse>("/v1/models");
    const first = resp.models[0];
    state.detector = first.detector;
    const m = picker.set(resp.models);
    if (m.name !== state.model?.name) chooseModel(m);
    else {
      state.model = m;
      describeModel(m);
    }
    if (!first.detector) showError(`Model ${first.name} has no detector: this page needs one to take images.`);
  } catch (e) {
    el.textContent = isUnauthorized(e)
      ? "The server needs an API key to describe its model: enter one below."
      : "Could not load the model's description: " + describe(e);
    el.className = "error";
  }
}

/** describeModel says what the chosen model is in the header, and what its detector and vocabulary know. */
function describeModel(m: ModelInfo): void {
  const el = byId("model-info");
  el.className = "";
  let text = `Model ${m.name}, ${taskLabel(m)}: ${m.layers} layers × ${m.attention_heads} heads, hidden ${m.hidden}, on ${m.provider}.`;
  if (!m.detector && state.detector) text += " Its images are read by the default model's detector.";
  if (m.random_weights) {
    el.className = "warn";
    text += " It has random weights: its scores, answers, regions and attention mean nothing.";
  }
  el.replaceChildren(text, h("br"), h("span", { id: "model-domain", class: "small" }, domainText(m)));
}

/** domainText names the detector (the model's, or the default's that reads its images) and the vocabulary, with what each knows. */
function domainText(m: ModelInfo): string {
  const parts: string[] = [];
  const d = m.detector ?? state.detector;
  if (d) {
    parts.push(`Detector: ${d.description ? `${d.description} (${d.classes} classes, ${d.attributes} attributes)` : `${d.classes} classes, ${d.attributes} attributes`}` +
      (d.domain ? `; it knows ${d.domain}.` : "; the bundle does not say which images it knows."));
  }
  const v = m.vocabulary;
  if (v) {
    parts.push(`Vocabulary: ${v.size} tokens, ${v.cased ? "cased" : "uncased"}, ${v.closed ? "closed (a word spelt in pieces is unknown)" : "open"}` +
      (v.domain ? `; ${v.domain}.` : "."));
  }
  return parts.join(" ");
}

/** viewNow is the chosen model's view. */
function viewNow(): keyof typeof VIEWS {
  return state.model ? viewOf(state.model) : "match";
}

/** chooseModel switches the page to m's view; answers still on their way are for the previous model and dropped. */
function chooseModel(m: ModelInfo): void {
  const before = viewNow();
  if (state.model) state.texts.set(before, taskText.value);
  state.model = m;
  const view = viewOf(m);
  const v = VIEWS[view];
  state.runRequest++;
  state.alignRequest++;
  runButton.disabled = false;
  setStatus("", false);
  hideError();
  results.hidden = true;
  describeModel(m);
  byId("input-title").textContent = v.title;
  captionsInput.hidden = view !== "match";
  taskInput.hidden = view === "match";
  byId("task-label").textContent = v.label;
  taskText.placeholder = v.placeholder;
  if (view !== before) taskText.value = state.texts.get(view) ?? "";
  if (view !== before && state.sample) {
    // A sample chosen before: its item of this task, unless the box holds text of the user's.
    void sampleTask(state.sample, view, !state.texts.has(view)).catch((e) => showError(describe(e)));
  }
  secondImage.hidden = view !== "nlvr2";
  byId("image-inputs").classList.toggle("pair", view === "nlvr2");
  byId("image-1-title").hidden = view !== "nlvr2";
  runButton.textContent = v.run;
  byId("run-hint").textContent = view === "match" ? "Ctrl+Enter in the box runs it too." : "Enter in the box runs it too.";
  probe.disable(m.heads["mlm"] ? "" : `Model ${m.name} has no MLM head: the probe needs one.`);
  document.body.dataset.view = view;
}

// ---- Choosing an image -----------------------------------------------------------------

/** release revokes an object URL that no image of the page uses any more. */
function release(url: string): void {
  const used = [state.imageURL, state.image2URL, state.analysed?.url, ...state.pair.map((p) => p.url)];
  if (url && !used.includes(url)) URL.revokeObjectURL(url);
}

/** unreadable is "" for an image type the service reads, else why not. */
function unreadable(blob: Blob, name: string): string {
  return blob.type && !IMAGE_TYPES.includes(blob.type)
    ? `${name} is ${blob.type}, not an image this service reads (PNG, JPEG, GIF, WebP or BMP).` : "";
}

function setImage(blob: Blob, name: string): void {
  const why = unreadable(blob, name);
  if (why) {
    showError(why);
    return;
  }
  hideError();
  state.truth.clear();
  const old = state.imageURL;
  state.image = blob;
  state.imageName = name;
  state.imageURL = URL.createObjectURL(blob);
  release(old);
  preview.src = state.imageURL;
  preview.alt = `Chosen image: ${name}`;
  preview.hidden = false;
  byId("image-name").textContent = `${name} (${Math.round(blob.size / 1024)} KB)`;
  for (const b of byId("samples").querySelectorAll("button")) {
    b.setAttribute("aria-pressed", String(b.dataset.file === name));
  }
}

/** setImage2 makes blob NLVR2's right image. */
function setImage2(blob: Blob, name: string): void {
  const why = unreadable(blob, name);
  if (why) {
    showError(why);
    return;
  }
  hideError();
  const old = state.image2URL;
  state.image2 = blob;
  state.image2Name = name;
  state.image2URL = URL.createObjectURL(blob);
  release(old);
  preview2.src = state.image2URL;
  preview2.alt = `Chosen right image: ${name}`;
  preview2.hidden = false;
  byId("image-name-2").textContent = `${name} (${Math.round(blob.size / 1024)} KB)`;
}

/** acceptImages takes files from a "choose a file" button, its file input and drops on zone. */
function acceptImages(button: HTMLElement, input: HTMLInputElement, zone: HTMLElement, take: (f: File) => void): void {
  button.addEventListener("click", () => input.click());
  input.addEventListener("change", () => {
    const f = input.files?.[0];
    if (f) take(f);
  });
  for (const ev of ["dragenter", "dragover"]) {
    zone.addEventListener(ev, (e) => {
      e.preventDefault();
      zone.classList.add("over");
    });
  }
  for (const ev of ["dragleave", "drop"]) {
    zone.addEventListener(ev, () => zone.classList.remove("over"));
  }
  zone.addEventListener("drop", (e) => {
    e.preventDefault();
    const f = (e as DragEvent).dataTransfer?.files?.[0];
    if (f) take(f);
  });
}

/** upload makes a file of the user's the image: no sample's ground truth applies any more. */
function upload(f: Blob, name: string): void {
  state.sample = null;
  byId("task-truth").hidden = true;
  setImage(f, name);
}

acceptImages(byId("choose-file"), fileInput, dropZone, (f) => upload(f, f.name));
acceptImages(byId("choose-file-2"), fileInput2, byId("drop-zone-2"), (f) => setImage2(f, f.name));
document.addEventListener("paste", (e) => {
  const f = [...(e.clipboardData?.files ?? [])].find((x) => x.type.startsWith("image/"));
  if (f) upload(f, f.name || "pasted image");
});

async function loadSamples(): Promise<void> {
  const box = byId("samples");
  try {
    const samples = await getJSON<Sample[]>("/static/samples/samples.json");
    box.replaceChildren(h("span", { class: "muted small" }, "Samples:"), ...samples.map((s) => {
      const b = h("button", { type: "button", "data-file": s.file, "aria-pressed": "false", title: s.captions.join("\n") },
        h("img", { src: `/static/samples/${s.file}`, alt: `Shapes World sample: ${s.captions[0]}`, width: 64, height: 64 }));
      b.addEventListener("click", () => void pickSample(s).catch((e) => showError(describe(e))));
      return b;
    }));
    state.samples = samples;
  } catch (e) {
    box.replaceChildren(h("span", { class: "muted small" }, "No samples: " + describe(e)));
  }
}

async function sampleBlob(file: string): Promise<Blob> {
  const resp = await fetch(`/static/samples/${file}`);
  if (!resp.ok) throw new Error(`sample ${file}: HTTP ${resp.status}`);
  return resp.blob();
}

/** pickSample makes s the image, its captions the captions and its task item the task text. */
async function pickSample(s: Sample): Promise<void> {
  setImage(await sampleBlob(s.file), s.file);
  state.sample = s;
  captionsBox.value = s.captions.join("\n");
  s.captions.forEach((c, i) => state.truth.set(c, s.truth[i]));
  state.texts.clear(); // texts typed for the previous image: each view now starts from the sample's item
  await sampleTask(s, viewNow(), true);
}

/**
 * sampleTask shows sample s's true answer for view's task beside the task box; with fill, it
 * also puts the sample's item in the box (and, for NLVR2, the sample's partner as right image).
 */
async function sampleTask(s: Sample, view: keyof typeof VIEWS, fill: boolean): Promise<void> {
  const t = s.tasks;
  const items: Record<keyof typeof VIEWS, [string, string]> = {
    match: ["", ""],
    vqa: [t.question, `Shapes World's answer: ${t.answer}`],
    ve: [t.hypothesis, `Shapes World's label: ${t.label}`],
    nlvr2: [t.statement, `Shapes World: ${t.true ? "true" : "false"} of this pair (the right image is ${t.right})`],
    re: [t.expression, `Shapes World's referent: the object in [${t.box.join(", ")}]`],
  };
  const [text, truth] = items[view];
  if (fill && view !== "match") {
    if (view === "nlvr2") setImage2(await sampleBlob(t.right), t.right);
    taskText.value = text;
  }
  showTaskTruth(truth, text);
}

/** showTaskTruth shows the sample's answer while the task box still holds the sample's text. */
function showTaskTruth(truth: string, text: string): void {
  const el = byId("task-truth");
  el.textContent = truth;
  el.dataset.text = text;
  el.hidden = !truth || taskText.value !== text;
}
taskText.addEventListener("input", () => {
  const el = byId("task-truth");
  el.hidden = !el.textContent || taskText.value !== el.dataset.text;
});

// ---- Scoring and aligning --------------------------------------------------------------

/** truthBadge marks a sample's caption as true or false of its image (the generator knows). */
function truthBadge(text: string): HTMLElement | string {
  const t = state.truth.get(text);
  if (t === undefined) return "";
  return h("span", { class: t ? "truth yes" : "truth no", title: t ? "true of this image (Shapes World ground truth)" : "false of this image (Shapes World ground truth)" },
    t ? " ✓ true" : " ✗ false");
}

function renderScores(m: MatchResponse): void {
  // A retrieval checkpoint scores with its rank head: σ(logit) ranks, it is no probability.
  const rank = m.results.some((r) => r.head === "rank");
  const head = byId("score-head");
  head.textContent = rank ? "Rank score" : "P(match)";
  head.title = rank ? "σ(rank logit): the retrieval head's ranking score, not a probability" : "softmax(ITM logits)[1]";
  scoresBody.replaceChildren(...m.results.map((r, i) => {
    const button = h("button", { type: "button", "aria-label": `Show the alignment of caption ${i + 1}` }, "Show");
    button.addEventListener("click", () => void selectCaption(i));
    const row = h("tr", { "data-caption": i },
      h("td", {}, r.text + (r.truncated ? " (truncated)" : ""), truthBadge(r.text), r.unknown_words?.length ? h("br") : "", unknownWords(r.unknown_words)),
      h("td", { class: "num" }, fmt(r.score, 3), h("span", { class: "bar", style: `width:${Math.round(40 * r.score)}px` })),
      h("td", { class: "num" }, fmt(r.logit, 3)),
      h("td", { class: "num" }, fmt(r.ot_distance, 4)),
      h("td", {}, button));
    return row;
  }));
}

/** showResults shows the results with the view's panel next to the regions. */
function showResults(view: keyof typeof VIEWS): void {
  for (const [k, p] of Object.entries(taskPanels)) p.hidden = k !== view;
  results.dataset.view = view;
  results.hidden = false;
}

/** setAnalysed makes a the image of the alignment views (pair: the NLVR2 answer's two images, or none). */
function setAnalysed(a: { image: Blob; url: string }, pair: { image: Blob; url: string }[]): void {
  const old = [state.analysed?.url ?? "", ...state.pair.map((p) => p.url)];
  state.analysed = a;
  state.pair = pair;
  for (const u of old) release(u);
}

async function run(): Promise<void> {
  hideError();
  if (!state.image) {
    showError(viewNow() === "nlvr2"
      ? "Choose the left image first: upload one, drop one on the box, or pick a sample."
      : "Choose an image first: upload one, drop one on the box, or pick a sample.");
    return;
  }
  const view = viewNow();
  if (view !== "match" && state.model) return runTask(view, state.model);
  const captions = captionsBox.value.split("\n").map((s) => s.trim()).filter((s) => s !== "");
  if (captions.length === 0) {
    showError("Type at least one caption (one per line).");
    captionsBox.focus();
    return;
  }
  const id = ++state.runRequest;
  const model = state.model?.name ?? "";
  runButton.disabled = true;
  setStatus(`Detecting regions and scoring ${captions.length} caption${captions.length === 1 ? "" : "s"}…`, true);
  try {
    const image = state.image, url = state.imageURL;
    const fields: [string, string][] = captions.map((c) => ["text", c]);
    if (model) fields.push(["model", model]);
    const m = await postImage<MatchResponse>("/v1/match", image, fields);
    if (id !== state.runRequest) return;
    setAnalysed({ image, url }, []);
    state.captions = captions;
    renderScores(m);
    showResults("match");
    setStatus(`${m.image?.regions ?? "?"} regions; ${captions.length} caption${captions.length === 1 ? "" : "s"} scored in ${Math.round(m.timings_ms.total)} ms.`, false);
    await selectCaption(0);
  } catch (e) {
    if (id !== state.runRequest) return;
    showError(describe(e), isUnauthorized(e));
    setStatus("", false);
  } finally {
    if (id === state.runRequest) runButton.disabled = false;
  }
}

/** runTask asks the chosen task model about the image(s) and the task box's text, then aligns that text. */
async function runTask(view: "vqa" | "ve" | "nlvr2" | "re", m: ModelInfo): Promise<void> {
  const text = taskText.value.trim();
  if (!text) {
    showError(`Type a ${VIEWS[view].label.toLowerCase()} first.`);
    taskText.focus();
    return;
  }
  if (view === "nlvr2" && !state.image2) {
    showError("Choose the right image too: NLVR2 judges a statement about two images.");
    byId("choose-file-2").focus();
    return;
  }
  const id = ++state.runRequest;
  const left = { image: state.image!, url: state.imageURL };
  const fields: [string, string][] = [["model", m.name]];
  runButton.disabled = true;
  setStatus(`Detecting regions and asking ${m.name}…`, true);
  try {
    let took = 0, regions: number | undefined, pair: { image: Blob; url: string }[] = [];
    switch (view) {
      case "vqa": {
        const r = await postImage<VQAResponse>("/v1/vqa", left.image, [["question", text], ["top_k", "5"], ...fields]);
        if (id !== state.runRequest) return;
        vqa.set(r);
        [took, regions] = [r.timings_ms.total, r.image?.regions];
        break;
      }
      case "ve": {
        const r = await postImage<EntailmentResponse>("/v1/entailment", left.image, [["hypothesis", text], ...fields]);
        if (id !== state.runRequest) return;
        entailment.set(r);
        [took, regions] = [r.timings_ms.total, r.image?.regions];
        break;
      }
      case "nlvr2": {
        const right = { image: state.image2!, url: state.image2URL };
        const r = await postImages<NLVR2Response>("/v1/nlvr2", [left.image, right.image], [["statement", text], ...fields]);
        if (id !== state.runRequest) return;
        pair = [left, right];
        nlvr2.set(r, [left.url, right.url], [state.imageName, state.image2Name]);
        [took, regions] = [r.timings_ms.total, r.images?.[0]?.regions];
        break;
      }
      case "re": {
        const r = await postImage<ReferResponse>("/v1/refer", left.image, [["expression", text], ["top_k", "5"], ...fields]);
        if (id !== state.runRequest) return;
        refer.set(r, left.url);
        [took, regions] = [r.timings_ms.total, r.image?.regions];
        break;
      }
    }
    setAnalysed(left, pair);
    state.text = text;
    showResults(view);
    document.body.dataset.answered = `${view}-${id}`;
    setStatus(`${regions ?? "?"} regions${view === "nlvr2" ? " in the left image" : ""}; ${m.name} answered in ${Math.round(took)} ms.`, false);
    await align(text, view === "nlvr2" ? " with the left image" : "");
  } catch (e) {
    if (id !== state.runRequest) return;
    showError(describe(e), isUnauthorized(e));
    setStatus("", false);
  } finally {
    if (id === state.runRequest) runButton.disabled = false;
  }
}

async function selectCaption(i: number): Promise<void> {
  if (!state.analysed) return;
  state.selected = i;
  for (const tr of scoresBody.rows) {
    const current = Number(tr.dataset.caption) === i;
    tr.classList.toggle("current", current);
    tr.querySelector("button")?.setAttribute("aria-pressed", String(current));
  }
  await align(state.captions[i], "");
}

/** align shows text's alignment with the analysed image (note: which image, when there are two) in the views below. */
async function align(text: string, note: string): Promise<void> {
  const analysed = state.analysed;
  if (!analysed) return;
  const id = ++state.alignRequest;
  const withAttention = state.model?.heads["attention"] ?? false;
  for (const p of [alignmentPanel, attentionPanel]) setBusy(p, true);
  byId("alignment-caption").textContent = `— “${text}”${note}`;
  const fields: [string, string][] = [["text", text]];
  if (withAttention) fields.push(["attention", "true"]);
  if (state.model) fields.push(["model", state.model.name]);
  try {
    const a = await postImage<AlignResponse>("/v1/align", analysed.image, fields);
    if (id !== state.alignRequest) return;
    showAlignment(a, withAttention, analysed);
  } catch (e) {
    if (id === state.alignRequest) showError(describe(e), isUnauthorized(e));
  } finally {
    if (id === state.alignRequest) for (const p of [alignmentPanel, attentionPanel]) setBusy(p, false);
  }
}

function showAlignment(a: AlignResponse, withAttention: boolean, analysed: { image: Blob; url: string }): void {
  const minConf = (state.model?.detector ?? state.detector)?.min_confidence ?? 0;
  const width = a.image?.width ?? 1, height = a.image?.height ?? 1;
  stageImage.src = analysed.url;
  regions.set(a.regions, width, height, minConf);
  alignment.set(a);
  if (withAttention) attention.set(a);
  else attention.unavailable(`Model ${state.model?.name ?? ""} has no attention graph (encoder_attention): no maps to show.`);
  probe.set(analysed.image, a.text, a.tokens, state.model?.name ?? "");
  const caption = byId("alignment-caption");
  caption.querySelector(".unknown-words")?.remove();
  const warning = unknownWords(a.unknown_words);
  if (warning) caption.append(" ", warning);
  document.body.dataset.aligned = String(state.alignRequest);
}

form.addEventListener("submit", (e) => {
  e.preventDefault();
  void run();
});
captionsBox.addEventListener("keydown", (e) => {
  if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) {
    e.preventDefault();
    form.requestSubmit();
  }
});
document.addEventListener("keydown", (e) => {
  if (e.key === "Escape" && !byId<HTMLDialogElement>("attention-dialog").open) alignment.clearSelection();
});

/** startUp loads what the page needs from the API; it runs again once the user enters a key. */
async function startUp(samples: Promise<void>): Promise<void> {
  void galleryState().then((g) => {
    if (g) search.enable(g);
  }, () => { /* no search box (yet: a 401 shows the key form, and startUp runs again) */ });
  await Promise.all([loadModel(), samples]);
  await openOnSample();
}

/**
 * openOnSample shows the product at once: on a page where nothing was chosen yet, the first
 * bundled sample is picked and run with the chosen model, so its results are drawn.
 */
async function openOnSample(): Promise<void> {
  if (state.image || !state.model || state.samples.length === 0 || document.body.dataset.opened) return;
  document.body.dataset.opened = "running";
  try {
    await pickSample(state.samples[0]);
    await run();
    document.body.dataset.opened = "done";
  } catch (e) {
    document.body.dataset.opened = "failed";
    showError(describe(e));
  }
}

const samplesLoaded = loadSamples();
new KeyForm(() => {
  if (errorBox.dataset.auth === "true") hideError();
  search.keyEntered();
  void startUp(samplesLoaded);
});
void startUp(samplesLoaded);
