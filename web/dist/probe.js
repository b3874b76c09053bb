// The masked-word probe: a word of the caption replaced by [MASK] and predicted by the MLM head
// (POST /v1/fill-mask), reading the image and with the image blanked out.
import { ApiError, describe, postImage } from "./api.js";
import { codePoints, h, pct, setBusy } from "./dom.js";
export function captionWords(text, tokens) {
    const cps = codePoints(text);
    const words = new Map();
    for (const t of tokens) {
        if (t.word < 0 || t.special)
            continue;
        const w = words.get(t.word);
        if (w) {
            w.start = Math.min(w.start, t.start);
            w.end = Math.max(w.end, t.end);
        }
        else {
            words.set(t.word, { index: t.word, start: t.start, end: t.end, text: "" });
        }
    }
    const out = [...words.values()].sort((a, b) => a.index - b.index);
    for (const w of out)
        w.text = cps.slice(w.start, w.end).join("");
    return out;
}
/** maskWord is text with the word's span replaced by one [MASK]. */
export function maskWord(text, w) {
    const cps = codePoints(text);
    return cps.slice(0, w.start).join("") + "[MASK]" + cps.slice(w.end).join("");
}
export class Probe {
    constructor(panel, words, result) {
        this.panel = panel;
        this.words = words;
        this.result = result;
        this.image = null;
        this.text = "";
        this.model = "";
        this.request = 0;
        this.chips = [];
        this.disabledReason = "";
    }
    /** disable says why the probe cannot run (e.g. the model has no MLM head); "" enables it again. */
    disable(reason) {
        this.disabledReason = reason;
    }
    /** set offers the words of text (read by model with image) to mask. */
    set(image, text, tokens, model) {
        this.image = image;
        this.text = text;
        this.model = model;
        this.request++;
        this.result.replaceChildren();
        if (this.disabledReason) {
            this.words.replaceChildren(h("p", { class: "muted" }, this.disabledReason));
            return;
        }
        this.chips = captionWords(text, tokens).map((w) => {
            const b = h("button", { type: "button", class: "token", "aria-pressed": "false", "data-word": w.index }, w.text);
            b.addEventListener("click", () => void this.run(w, b));
            return b;
        });
        this.words.replaceChildren(...this.chips);
    }
    async run(w, chip) {
        if (!this.image)
            return;
        const id = ++this.request;
        for (const c of this.chips) {
            c.classList.toggle("masked", c === chip);
            c.setAttribute("aria-pressed", String(c === chip));
        }
        const masked = maskWord(this.text, w);
        setBusy(this.panel, true);
        this.result.replaceChildren(h("p", { class: "status busy" }, `Predicting “${w.text}” in “${masked}”…`));
        try {
            const resp = await postImage("/v1/fill-mask", this.image, [["text", masked], ["top_k", "5"], ["without_image", "true"], ["model", this.model]]);
            if (id !== this.request)
                return;
            const m = resp.masks[0];
            if (!m)
                throw new ApiError("the answer has no prediction for the mask", 0, "bad_response");
            const list = (title, ps) => h("div", {}, h("h3", {}, title), ps && ps.length ? h("ol", {}, ...ps.map((p) => h("li", { "data-token": p.token }, h("strong", {}, p.token), ` ${pct(p.probability)}`, h("span", { class: "bar", style: `width:${Math.max(1, 120 * p.probability)}px` }), p.token.toLowerCase() === w.text.toLowerCase() ? " ✓" : ""))) : h("p", { class: "muted" }, "no prediction"));
            this.result.replaceChildren(h("p", { class: "small" }, "Masked: ", h("code", {}, masked)), list("With the image", m.predictions), list("Without the image", m.predictions_without_image));
        }
        catch (e) {
            if (id !== this.request)
                return;
            const why = e instanceof ApiError && e.status === 404 && e.code === "not_found"
                ? "This server has no POST /v1/fill-mask: the probe needs a newer service."
                : describe(e);
            this.result.replaceChildren(h("p", { class: "error", role: "alert" }, why));
        }
        finally {
            if (id === this.request)
                setBusy(this.panel, false);
        }
    }
}
