// The word-region alignment of one caption: its tokens, a tokens × regions alignment as a heat
// map, and the linked highlighting between words and regions. The alignment is either the
// optimal-transport plan (the paper's WRA) or the cross-modal attention (the response's
// attention.cross_attention), as the "Align by" choice says; attention is the default when the
// model has it, because on the default model it finds a word's object far more often.
//
// A "word" is the set of tokens sharing a word index ([CLS]/[SEP] stand alone). Hovering or
// focusing a word previews it, clicking selects it (click again or Esc to clear); the same for
// regions. While a word is shown, every region is tinted by its share of the word's weight
// (the word's rows summed and normalised); while a region is shown, every token is tinted by
// its share of the region's weight (the column normalised).
import { h, pct } from "./dom.js";
import { regionName } from "./regions.js";
/** wordTokens lists, for each token, the tokens of its word (itself for special tokens). */
export function wordTokens(tokens) {
    return tokens.map((t, i) => (t.word < 0 ? [i] : tokens.flatMap((u, j) => (u.word === t.word ? [j] : []))));
}
/** regionShares is each region's share of the mass of the given plan rows (sums to 1). */
export function regionShares(plan, rows) {
    const n = plan[0]?.length ?? 0;
    const mass = new Array(n).fill(0);
    for (const i of rows)
        plan[i].forEach((v, j) => (mass[j] += v));
    const total = mass.reduce((a, b) => a + b, 0);
    return mass.map((v) => (total > 0 ? v / total : 0));
}
/** tokenShares is each token's share of one region's mass (the plan column, summing to 1). */
export function tokenShares(plan, region) {
    const col = plan.map((row) => row[region] ?? 0);
    const total = col.reduce((a, b) => a + b, 0);
    return col.map((v) => (total > 0 ? v / total : 0));
}
const NOTES = {
    attention: "Hover, focus or click a word: every region is tinted by its share of the attention between the word and the regions (both directions, summed over every layer and head).",
    ot: "Hover, focus or click a word: every region is tinted by its share of that word's transport mass (optimal transport over the final hidden states, the paper's WRA).",
};
export class AlignmentView {
    constructor(tokensEl, heatmap, regions, byChoice, note, summary) {
        this.tokensEl = tokensEl;
        this.heatmap = heatmap;
        this.regions = regions;
        this.byChoice = byChoice;
        this.note = note;
        this.summary = summary;
        this.data = null;
        this.by = "attention";
        this.groups = [];
        this.chips = [];
        this.rowHeads = [];
        this.colHeads = [];
        this.selectedToken = null; // a token standing for its word
        this.hoverToken = null;
        this.selectedRegion = null;
        this.hoverRegion = null;
        byChoice.addEventListener("change", () => this.setBy(this.chosen()));
    }
    set(a) {
        this.data = a;
        this.groups = wordTokens(a.tokens);
        this.selectedToken = this.hoverToken = this.selectedRegion = this.hoverRegion = null;
        const attention = this.input("attention");
        attention.disabled = !a.attention?.cross_attention;
        attention.parentElement.title = attention.disabled ? "this model has no attention graph" : "";
        this.renderTokens(a.tokens);
        this.setBy(attention.disabled ? "ot" : this.chosen());
    }
    /** setBy switches the alignment shown (attention needs the response's cross_attention). */
    setBy(by) {
        this.by = by;
        this.input(by).checked = true;
        this.note.textContent = NOTES[by];
        this.summary.textContent = by === "ot" ? "Transport plan: tokens × regions" : "Cross-modal attention: tokens × regions";
        if (this.data) {
            this.renderHeatmap(this.data);
            this.update();
        }
    }
    input(by) {
        return this.byChoice.querySelector(`input[value="${by}"]`);
    }
    chosen() {
        return this.input("ot").checked ? "ot" : "attention";
    }
    /** matrix is the alignment shown: tokens × regions. */
    matrix(a) {
        return this.by === "attention" && a.attention?.cross_attention ? a.attention.cross_attention : a.plan;
    }
    // Events from the region layer and the token chips.
    previewRegion(j) { this.hoverRegion = j; this.update(); }
    toggleRegion(j) {
        this.selectedRegion = this.selectedRegion === j ? null : j;
        if (this.selectedRegion !== null)
            this.selectedToken = null;
        this.update();
    }
    previewToken(i) { this.hoverToken = i; this.update(); }
    toggleToken(i) {
        const same = this.selectedToken !== null && this.groups[this.selectedToken].includes(i);
        this.selectedToken = same ? null : i;
        if (this.selectedToken !== null)
            this.selectedRegion = null;
        this.update();
    }
    clearSelection() {
        this.selectedToken = this.selectedRegion = null;
        this.update();
    }
    renderTokens(tokens) {
        this.chips = tokens.map((t, i) => {
            const sub = i > 0 && t.word >= 0 && tokens[i - 1].word === t.word;
            const b = h("button", {
                type: "button",
                class: "token" + (t.special ? " special" : "") + (sub ? " sub" : ""),
                "data-token": i,
                "data-word": t.word,
                "data-share": "0",
                "aria-pressed": "false",
                title: t.special ? "special token" : `word ${t.word}`,
            }, t.text);
            b.addEventListener("mouseenter", () => this.previewToken(i));
            b.addEventListener("mouseleave", () => this.previewToken(null));
            b.addEventListener("focus", () => this.previewToken(i));
            b.addEventListener("blur", () => this.previewToken(null));
            b.addEventListener("click", () => this.toggleToken(i));
            return b;
        });
        this.tokensEl.replaceChildren(...this.chips);
    }
    renderHeatmap(a) {
        const m = this.matrix(a);
        const max = Math.max(...m.flat(), 1e-12);
        const head = h("tr", {}, h("th", { scope: "col", class: "axis" }, h("div", {}, "token ↓  region →")));
        this.colHeads = a.regions.map((r) => {
            const th = h("th", { scope: "col", title: regionName(r) }, h("div", {}, regionName(r)));
            head.append(th);
            return th;
        });
        const body = h("tbody");
        this.rowHeads = a.tokens.map((t, i) => {
            const tr = h("tr", {}, h("th", { scope: "row" }, t.text));
            const rowTotal = m[i].reduce((x, y) => x + y, 0);
            m[i].forEach((v, j) => {
                const alpha = v / max;
                tr.append(h("td", {
                    style: `background: rgba(220, 60, 30, ${alpha.toFixed(3)})`,
                    title: `${t.text} × ${regionName(a.regions[j])}: ${v.toExponential(2)} (${pct(rowTotal > 0 ? v / rowTotal : 0)} of the token's)`,
                }));
            });
            body.append(tr);
            return tr;
        });
        const caption = h("caption", {}, this.by === "ot"
            ? `Colour: transport mass relative to the largest entry (${max.toExponential(2)}). Rows sum to 1/${a.tokens.length}, columns to 1/${a.regions.length}.`
            : `Colour: attention between token and region relative to the largest entry (${max.toExponential(2)}). All entries sum to 1.`);
        this.heatmap.replaceChildren(caption, h("thead", {}, head), body);
    }
    /** update applies the current hover/selection to regions, tokens and the heat map. */
    update() {
        const a = this.data;
        if (!a)
            return;
        const token = this.hoverToken ?? (this.hoverRegion === null ? this.selectedToken : null);
        const region = token === null ? (this.hoverRegion ?? this.selectedRegion) : null;
        const rows = token === null ? [] : this.groups[token];
        const m = this.matrix(a);
        this.regions.setShares(token === null ? null : regionShares(m, rows));
        this.regions.setSelected(this.selectedRegion, region);
        const shares = region === null ? null : tokenShares(m, region);
        const top = shares ? Math.max(...shares, 1e-12) : 1;
        const selectedRows = this.selectedToken === null ? [] : this.groups[this.selectedToken];
        this.chips.forEach((c, i) => {
            const s = shares ? shares[i] / top : 0;
            c.style.setProperty("--share", String(s));
            c.dataset.share = shares ? String(shares[i]) : "0";
            c.classList.toggle("strong", s > 0.6);
            c.classList.toggle("selected", rows.includes(i) || selectedRows.includes(i));
            c.setAttribute("aria-pressed", String(selectedRows.includes(i)));
            c.title = shares ? `${pct(shares[i])} of ${regionName(a.regions[region])}'s weight` : (a.tokens[i].special ? "special token" : `word ${a.tokens[i].word}`);
        });
        this.rowHeads.forEach((tr, i) => tr.classList.toggle("hl", rows.includes(i)));
        this.colHeads.forEach((th, j) => th.classList.toggle("hl", j === region));
    }
}
