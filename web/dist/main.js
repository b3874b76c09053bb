// The alignment page: choose an image and captions, score them (POST /v1/match), then show the
// selected caption's regions, word-region alignment and attention (POST /v1/align with
// "attention": true) and probe its words (POST /v1/fill-mask). A server with API keys answers
// 401 without one: the key form (auth.ts) asks for it and the page loads again with it.
import { describe, getJSON, isUnauthorized, postImage } from "./api.js";
import { AlignmentView } from "./align.js";
import { AttentionView } from "./attention.js";
import { KeyForm } from "./auth.js";
import { byId, fmt, h, setBusy } from "./dom.js";
import { Probe } from "./probe.js";
import { RegionLayer } from "./regions.js";
import { galleryState, Search } from "./search.js";
/** Image types the service decodes (others get a readable 415 from it anyway). */
const IMAGE_TYPES = ["image/png", "image/jpeg", "image/gif", "image/webp", "image/bmp"];
const state = {
    model: null,
    image: null,
    imageURL: "",
    /** The image the results below were computed on (the chosen one may have changed since). */
    analysed: null,
    captions: [],
    selected: -1,
    alignRequest: 0,
    /** Ground truth of the chosen sample's captions (Shapes World knows it); empty for uploads. */
    truth: new Map(),
};
const form = byId("run-form");
const runButton = byId("run");
const runStatus = byId("run-status");
const errorBox = byId("error");
const captionsBox = byId("captions");
const fileInput = byId("file-input");
const dropZone = byId("drop-zone");
const preview = byId("preview");
const results = byId("results");
const scoresBody = byId("scores").tBodies[0];
const stageImage = byId("stage-image");
const alignmentPanel = byId("alignment-panel");
const attentionPanel = byId("attention-panel");
const probePanel = byId("probe-panel");
const regions = new RegionLayer(byId("boxes"), byId("show-low"), byId("show-low-label"), byId("region-count"), {
    preview: (j) => alignment.previewRegion(j),
    toggle: (j) => alignment.toggleRegion(j),
});
const alignment = new AlignmentView(byId("tokens"), byId("heatmap"), regions, byId("align-by"), byId("align-note"), byId("heatmap-summary"));
const attention = new AttentionView(byId("attention-grid"), byId("pattern-chart"), byId("attention-note"), byId("attention-dialog"));
const probe = new Probe(probePanel, byId("probe-words"), byId("probe-result"));
const search = new Search(byId("search-panel"), byId("search-form"), byId("search-query"), byId("search-status"), byId("search-error"), byId("search-results"));
/** showError shows message; auth marks an error that only wanted an API key (cleared once one is entered). */
function showError(message, auth = false) {
    errorBox.textContent = message;
    errorBox.dataset.auth = String(auth);
    errorBox.hidden = false;
}
function hideError() {
    errorBox.hidden = true;
    errorBox.textContent = "";
    errorBox.dataset.auth = "false";
}
function setStatus(text, busy) {
    runStatus.textContent = text;
    runStatus.classList.toggle("busy", busy);
}
// ---- The model -------------------------------------------------------------------------
async function loadModel() {
    const el = byId("model-info");
    try {
        const resp = await getJSON("/v1/models");
        const m = resp.models[0];
        state.model = m;
        el.className = "";
        el.textContent = `Model ${m.name}: ${m.layers} layers × ${m.attention_heads} heads, hidden ${m.hidden}, on ${m.provider}.`;
        if (m.random_weights) {
            el.className = "warn";
            el.textContent += " It has random weights: its scores, regions and attention mean nothing.";
        }
        if (!m.detector)
            showError(`Model ${m.name} has no detector: this page needs one to take images.`);
        if (!m.heads["mlm"])
            probe.disable(`Model ${m.name} has no MLM head: the probe needs one.`);
    }
    catch (e) {
        el.textContent = isUnauthorized(e)
            ? "The server needs an API key to describe its model: enter one below."
            : "Could not load the model's description: " + describe(e);
        el.className = "error";
    }
}
// ---- Choosing an image -----------------------------------------------------------------
function setImage(blob, name) {
    if (blob.type && !IMAGE_TYPES.includes(blob.type)) {
        showError(`${name} is ${blob.type}, not an image this service reads (PNG, JPEG, GIF, WebP or BMP).`);
        return;
    }
    hideError();
    state.truth.clear();
    if (state.imageURL && state.imageURL !== state.analysed?.url)
        URL.revokeObjectURL(state.imageURL);
    state.image = blob;
    state.imageURL = URL.createObjectURL(blob);
    preview.src = state.imageURL;
    preview.alt = `Chosen image: ${name}`;
    preview.hidden = false;
    byId("image-name").textContent = `${name} (${Math.round(blob.size / 1024)} KB)`;
    for (const b of byId("samples").querySelectorAll("button")) {
        b.setAttribute("aria-pressed", String(b.dataset.file === name));
    }
}
byId("choose-file").addEventListener("click", () => fileInput.click());
fileInput.addEventListener("change", () => {
    const f = fileInput.files?.[0];
    if (f)
        setImage(f, f.name);
});
for (const ev of ["dragenter", "dragover"]) {
    dropZone.addEventListener(ev, (e) => {
        e.preventDefault();
        dropZone.classList.add("over");
    });
}
for (const ev of ["dragleave", "drop"]) {
    dropZone.addEventListener(ev, () => dropZone.classList.remove("over"));
}
dropZone.addEventListener("drop", (e) => {
    e.preventDefault();
    const f = e.dataTransfer?.files?.[0];
    if (f)
        setImage(f, f.name);
});
document.addEventListener("paste", (e) => {
    const f = [...(e.clipboardData?.files ?? [])].find((x) => x.type.startsWith("image/"));
    if (f)
        setImage(f, f.name || "pasted image");
});
async function loadSamples() {
    const box = byId("samples");
    try {
        const samples = await getJSON("/static/samples/samples.json");
        box.replaceChildren(h("span", { class: "muted small" }, "Samples:"), ...samples.map((s) => {
            const b = h("button", { type: "button", "data-file": s.file, "aria-pressed": "false", title: s.captions.join("\n") }, h("img", { src: `/static/samples/${s.file}`, alt: `Shapes World sample: ${s.captions[0]}`, width: 64, height: 64 }));
            b.addEventListener("click", async () => {
                try {
                    const resp = await fetch(`/static/samples/${s.file}`);
                    if (!resp.ok)
                        throw new Error(`sample ${s.file}: HTTP ${resp.status}`);
                    setImage(await resp.blob(), s.file);
                    captionsBox.value = s.captions.join("\n");
                    s.captions.forEach((c, i) => state.truth.set(c, s.truth[i]));
                }
                catch (e) {
                    showError(describe(e));
                }
            });
            return b;
        }));
    }
    catch (e) {
        box.replaceChildren(h("span", { class: "muted small" }, "No samples: " + describe(e)));
    }
}
// ---- Scoring and aligning --------------------------------------------------------------
/** truthBadge marks a sample's caption as true or false of its image (the generator knows). */
function truthBadge(text) {
    const t = state.truth.get(text);
    if (t === undefined)
        return "";
    return h("span", { class: t ? "truth yes" : "truth no", title: t ? "true of this image (Shapes World ground truth)" : "false of this image (Shapes World ground truth)" }, t ? " ✓ true" : " ✗ false");
}
function renderScores(m) {
    scoresBody.replaceChildren(...m.results.map((r, i) => {
        const button = h("button", { type: "button", "aria-label": `Show the alignment of caption ${i + 1}` }, "Show");
        button.addEventListener("click", () => void selectCaption(i));
        const row = h("tr", { "data-caption": i }, h("td", {}, r.text + (r.truncated ? " (truncated)" : ""), truthBadge(r.text)), h("td", { class: "num" }, fmt(r.score, 3), h("span", { class: "bar", style: `width:${Math.round(40 * r.score)}px` })), h("td", { class: "num" }, fmt(r.logit, 3)), h("td", { class: "num" }, fmt(r.ot_distance, 4)), h("td", {}, button));
        return row;
    }));
}
async function run() {
    hideError();
    const captions = captionsBox.value.split("\n").map((s) => s.trim()).filter((s) => s !== "");
    if (!state.image) {
        showError("Choose an image first: upload one, drop one on the box, or pick a sample.");
        return;
    }
    if (captions.length === 0) {
        showError("Type at least one caption (one per line).");
        captionsBox.focus();
        return;
    }
    runButton.disabled = true;
    setStatus(`Detecting regions and scoring ${captions.length} caption${captions.length === 1 ? "" : "s"}…`, true);
    try {
        const image = state.image, url = state.imageURL;
        const m = await postImage("/v1/match", image, captions.map((c) => ["text", c]));
        if (state.analysed && state.analysed.url !== url && state.analysed.url !== state.imageURL)
            URL.revokeObjectURL(state.analysed.url);
        state.analysed = { image, url };
        state.captions = captions;
        renderScores(m);
        results.hidden = false;
        setStatus(`${m.image?.regions ?? "?"} regions; ${captions.length} caption${captions.length === 1 ? "" : "s"} scored in ${Math.round(m.timings_ms.total)} ms.`, false);
        await selectCaption(0);
    }
    catch (e) {
        showError(describe(e), isUnauthorized(e));
        setStatus("", false);
    }
    finally {
        runButton.disabled = false;
    }
}
async function selectCaption(i) {
    const analysed = state.analysed;
    if (!analysed)
        return;
    const id = ++state.alignRequest;
    state.selected = i;
    for (const tr of scoresBody.rows) {
        const current = Number(tr.dataset.caption) === i;
        tr.classList.toggle("current", current);
        tr.querySelector("button")?.setAttribute("aria-pressed", String(current));
    }
    const withAttention = state.model?.heads["attention"] ?? false;
    for (const p of [alignmentPanel, attentionPanel])
        setBusy(p, true);
    byId("alignment-caption").textContent = `— “${state.captions[i]}”`;
    const fields = [["text", state.captions[i]]];
    if (withAttention)
        fields.push(["attention", "true"]);
    try {
        const a = await postImage("/v1/align", analysed.image, fields);
        if (id !== state.alignRequest)
            return;
        showAlignment(a, withAttention, analysed);
    }
    catch (e) {
        if (id === state.alignRequest)
            showError(describe(e), isUnauthorized(e));
    }
    finally {
        if (id === state.alignRequest)
            for (const p of [alignmentPanel, attentionPanel])
                setBusy(p, false);
    }
}
function showAlignment(a, withAttention, analysed) {
    const minConf = state.model?.detector?.min_confidence ?? 0;
    const width = a.image?.width ?? 1, height = a.image?.height ?? 1;
    stageImage.src = analysed.url;
    regions.set(a.regions, width, height, minConf);
    alignment.set(a);
    if (withAttention)
        attention.set(a);
    else
        attention.unavailable(`Model ${state.model?.name ?? ""} has no attention graph (encoder_attention): no maps to show.`);
    probe.set(analysed.image, a.text, a.tokens);
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
    if (e.key === "Escape" && !byId("attention-dialog").open)
        alignment.clearSelection();
});
/** startUp loads what the page needs from the API; it runs again once the user enters a key. */
function startUp() {
    void loadModel();
    void galleryState().then((g) => {
        if (g !== "none")
            search.enable(g === "empty");
    }, () => { });
}
new KeyForm(() => {
    if (errorBox.dataset.auth === "true")
        hideError();
    search.keyEntered();
    startUp();
});
void loadSamples();
startUp();
