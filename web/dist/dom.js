// Small DOM helpers: typed lookups and element construction without innerHTML (every text
// from the server or the user goes in as text, never as markup).
export function byId(id) {
    const el = document.getElementById(id);
    if (!el)
        throw new Error(`page is missing #${id}`);
    return el;
}
/** h makes an element with attributes (class, data-*, aria-*, …) and children. */
export function h(tag, attrs = {}, ...children) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
        if (v === undefined || v === false)
            continue;
        el.setAttribute(k, v === true ? "" : String(v));
    }
    el.append(...children);
    return el;
}
export function clear(el) {
    el.replaceChildren();
}
/** busy marks a panel (aria-busy, spinner in its heading) while work for it runs. */
export function setBusy(el, busy) {
    el.setAttribute("aria-busy", busy ? "true" : "false");
}
export function fmt(x, digits = 3) {
    if (!Number.isFinite(x))
        return String(x);
    return x.toFixed(digits);
}
export function pct(x) {
    return `${(100 * x).toFixed(x < 0.1 ? 1 : 0)}%`;
}
/** codePoints slices a string by Unicode code points, as the API's offsets count them. */
export function codePoints(s) {
    return Array.from(s);
}
/** meter is a bar as long as fraction (0–1) of its track: decoration beside a number shown as text. */
export function meter(fraction) {
    const f = Number.isFinite(fraction) ? Math.min(1, Math.max(0, fraction)) : 0;
    return h("span", { class: "meter", "aria-hidden": "true" }, h("span", { class: "meter-fill", style: `width:${(100 * f).toFixed(2)}%` }));
}
/** quoted is "Label: “text”", with " (truncated)" when the model read only its start, and the warning of its unknown words. */
export function quoted(label, t) {
    const warning = unknownWords(t.unknown_words);
    return [`${label}: `, h("q", {}, t.text), t.truncated ? " (truncated to the model's maximum length)" : "", warning ? h("br") : "", warning];
}
/**
 * unknownWords is the visible warning for a text's words outside the model's vocabulary (the
 * server decides which: unknown_words), naming each; "" when there are none.
 */
export function unknownWords(words) {
    if (!words || words.length === 0)
        return "";
    const names = [];
    words.forEach((w, i) => names.push(i === 0 ? "" : ", ", h("q", { "data-start": w.start, "data-end": w.end }, w.word)));
    return h("span", { class: "warn unknown-words small", role: "note", style: "display:inline-block; margin-top:.25rem", "data-words": words.map((w) => w.word).join(" ") }, "⚠ Outside the model's vocabulary: ", ...names, ". Its scores say little about ", words.length === 1 ? "this word." : "these words.");
}
