// Gallery search: shown only when the server has a gallery, i.e. when GET /v1/gallery answers
// (an older server has no route; one without a gallery answers 503). A text finds images (POST
// /v1/search/images): hits are thumbnails with their scores; with evidence, each hit lists the
// regions its words align to and outlines them on the thumbnail. The page's chosen image finds
// texts (POST /v1/search/texts): hits are the stored texts with their scores. Thumbnails come through the API helper (the key
// goes in a header, which an <img src> cannot send) as object URLs, revoked with their results.
import { ApiError, describe, getBlob, getJSON, isUnauthorized, postImage, postJSON } from "./api.js";
import { fmt, h, pct } from "./dom.js";
function regionLabel(r) {
    return `#${r.region}` + (r.label ? ` ${r.label}` : "") + (r.attribute ? ` (${r.attribute})` : "");
}
/**
 * galleryState asks GET /v1/gallery: null when the server has no gallery (503 no_gallery, or an
 * older server without the route). A 401 is thrown: the page asks again once it has a key.
 */
export async function galleryState() {
    try {
        return await getJSON("/v1/gallery");
    }
    catch (e) {
        if (e instanceof ApiError && !isUnauthorized(e))
            return null;
        throw e;
    }
}
/** A demo fill still running is asked about again after this many milliseconds. */
const DEMO_POLL_MS = 1500;
/** demoText says how far the demo gallery's fill is. */
function demoText(d) {
    const what = `the demo gallery (Shapes World ${d.split})`;
    switch (d.state) {
        case "generating": return `Filling ${what}: generating its images…`;
        case "indexing": return `Filling ${what}: ${d.images} of ${d.total || "?"} images indexed…`;
        case "texts": return `Filling ${what}: storing its captions…`;
        case "failed": return `Could not fill ${what}: ${d.error ?? "see the server's log"}.`;
        default: return `Search ${what}: ${d.total} images, e.g. “a red circle above a square”.`;
    }
}
export class Search {
    constructor(panel, form, query, status, error, results) {
        this.panel = panel;
        this.query = query;
        this.status = status;
        this.error = error;
        this.results = results;
        this.request = 0;
        /** The request whose results are shown. */
        this.shown = 0;
        /** The object URLs of the thumbnails shown, revoked when the results are replaced. */
        this.thumbnails = [];
        form.addEventListener("submit", (e) => {
            e.preventDefault();
            void this.run();
        });
    }
    /** enable shows the search box with what the gallery holds; while a demo fill runs it follows it. */
    enable(g) {
        this.panel.hidden = false;
        const d = g.demo;
        const filling = d !== undefined && d.state !== "ready" && d.state !== "failed";
        this.panel.dataset.demo = d?.state ?? "";
        if (d)
            this.status.textContent = demoText(d);
        else if (g.images === 0)
            this.status.textContent = "The gallery is empty: add images with POST /v1/images or `uniter index DIR`.";
        this.status.classList.toggle("busy", filling);
        if (filling) {
            setTimeout(() => void galleryState().then((next) => { if (next)
                this.enable(next); }, () => { }), DEMO_POLL_MS);
        }
    }
    /** keyEntered hides an error that said the server wanted a key (the user can search again). */
    keyEntered() {
        if (this.error.dataset.auth === "true")
            this.error.hidden = true;
    }
    async run() {
        const text = this.query.value.trim();
        this.error.hidden = true;
        if (!text) {
            this.error.textContent = "Type what to look for, e.g. “a red square left of a blue circle”.";
            this.error.hidden = false;
            return;
        }
        await this.show(() => postJSON("/v1/search/images", { text, limit: 12, evidence: true }), "images", (hit, rank, id) => this.renderHit(hit, rank, id));
    }
    /** byImage lists the gallery's texts that best match image (the page's chosen image). */
    async byImage(image) {
        this.error.hidden = true;
        if (!image) {
            this.error.textContent = "Choose an image first: upload one, drop one on the box, or pick a sample.";
            this.error.hidden = false;
            return;
        }
        await this.show(() => postImage("/v1/search/texts", image, [["limit", "12"]]), "texts", (hit, rank) => h("li", { class: "text-hit" }, h("div", {}, h("strong", {}, `${rank + 1}. `), hit.text ?? hit.id), h("div", { class: "muted" }, `P(match) ${fmt(hit.score, 3)} · logit ${fmt(hit.logit, 2)}`)));
    }
    /** show runs one search and shows its hits, unless a later search was started meanwhile. */
    async show(ask, noun, render) {
        const id = ++this.request;
        this.error.dataset.auth = "false";
        this.status.textContent = "Searching…";
        this.status.classList.add("busy");
        this.panel.setAttribute("aria-busy", "true");
        try {
            const resp = await ask();
            if (id !== this.request)
                return;
            for (const url of this.thumbnails)
                URL.revokeObjectURL(url);
            this.thumbnails = [];
            this.shown = id;
            this.results.dataset.kind = noun;
            this.results.replaceChildren(...resp.results.map((hit, rank) => render(hit, rank, id)));
            this.status.textContent = `${resp.results.length} of ${resp.gallery_size} ${noun} (${resp.mode}, ${resp.candidates} scored, ${Math.round(resp.timings_ms.total)} ms)`;
        }
        catch (e) {
            if (id !== this.request)
                return;
            this.error.textContent = describe(e);
            this.error.dataset.auth = String(isUnauthorized(e));
            this.error.hidden = false;
            this.status.textContent = "";
        }
        finally {
            if (id === this.request) {
                this.status.classList.remove("busy");
                this.panel.setAttribute("aria-busy", "false");
            }
        }
    }
    renderHit(hit, rank, request) {
        const path = `/v1/images/${encodeURIComponent(hit.id)}`;
        const img = h("img", { alt: `Result ${rank + 1}: image ${hit.id}` });
        const thumb = h("div", { class: "thumb" }, img);
        void this.thumbnail(`${path}/thumbnail`, img, request);
        const ev = hit.evidence?.words ?? [];
        const li = h("li", {}, thumb, h("div", {}, h("strong", {}, `${rank + 1}. ${hit.id}`)), h("div", {}, `P(match) ${fmt(hit.score, 3)} · logit ${fmt(hit.logit, 2)}`), ev.length ? h("ul", { class: "evidence", title: `aligned by ${hit.evidence.by === "ot" ? "optimal transport" : "attention"}` }, ...ev.filter((w) => w.regions.length > 0).map((w) => h("li", {
            title: `${w.word}: ` + w.regions.map((r) => `${regionLabel(r)} ${pct(r.share)}`).join(", "),
        }, h("strong", {}, w.word), ` → ${regionLabel(w.regions[0])} ${pct(w.regions[0].share)}`))) : "");
        if (ev.length)
            void this.outline(path, thumb, ev);
        return li;
    }
    /** thumbnail loads the hit's thumbnail with the key and shows it as an object URL. */
    async thumbnail(path, img, request) {
        try {
            const blob = await getBlob(path);
            if (request !== this.shown)
                return; // results replaced meanwhile: nothing to show it in
            const url = URL.createObjectURL(blob);
            this.thumbnails.push(url);
            img.src = url;
        }
        catch (e) {
            if (request !== this.shown)
                return;
            img.alt += ` (no thumbnail: ${describe(e)})`;
            img.classList.add("missing");
        }
    }
    /** outline draws the evidence regions on the thumbnail, once the image's size is known. */
    async outline(path, thumb, ev) {
        try {
            const info = await getJSON(path);
            const W = info.width, H = info.height;
            if (!W || !H)
                return;
            // Each word's best region, labelled with the word.
            for (const w of ev) {
                const r = w.regions[0];
                if (!r)
                    continue;
                const [x1, y1, x2, y2] = r.box;
                thumb.append(h("div", { class: "evidence-box", title: `${w.word} → ${regionLabel(r)} (${pct(r.share)})`,
                    style: `left:${(100 * x1) / W}%;top:${(100 * y1) / H}%;width:${(100 * (x2 - x1)) / W}%;height:${(100 * (y2 - y1)) / H}%` }, h("span", {}, w.word)));
            }
        }
        catch {
            // The boxes are an extra; the hit and its evidence list are shown regardless.
        }
    }
}
