// Small DOM helpers: typed lookups and element construction without innerHTML (every text
// from the server or the user goes in as text, never as markup).

export function byId<T extends HTMLElement = HTMLElement>(id: string): T {
  const el = document.getElementById(id);
  if (!el) throw new Error(`page is missing #${id}`);
  return el as T;
}

type Attrs = Record<string, string | number | boolean | undefined>;

/** h makes an element with attributes (class, data-*, aria-*, …) and children. */
export function h<K extends keyof HTMLElementTagNameMap>(tag: K, attrs: Attrs = {}, ...children: (Node | string)[]): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === false) continue;
    el.setAttribute(k, v === true ? "" : String(v));
  }
  el.append(...children);
  return el;
}

export function clear(el: Element): void {
  el.replaceChildren();
}

/** busy marks a panel (aria-busy, spinner in its heading) while work for it runs. */
export function setBusy(el: HTMLElement, busy: boolean): void {
  el.setAttribute("aria-busy", busy ? "true" : "false");
}

export function fmt(x: number, digits = 3): string {
  if (!Number.isFinite(x)) return String(x);
  return x.toFixed(digits);
}

export function pct(x: number): string {
  return `${(100 * x).toFixed(x < 0.1 ? 1 : 0)}%`;
}

/** codePoints slices a string by Unicode code points, as the API's offsets count them. */
export function codePoints(s: string): string[] {
  return Array.from(s);
}

/** meter is a bar as long as fraction (0–1) of its track: decoration beside a number shown as text. */
export function meter(fraction: number): HTMLElement {
  const f = Number.isFinite(fraction) ? Math.min(1, Math.max(0, fraction)) : 0;
  return h("span", { class: "meter", "aria-hidden": "true" }, h("span", { class: "meter-fill", style: `width:${(100 * f).toFixed(2)}%` }));
}

/** quoted is "Label: “text”", with " (truncated)" when the model read only its start. */
export function quoted(label: string, text: string, truncated: boolean): (Node | string)[] {
  return [`${label}: `, h("q", {}, text), truncated ? " (truncated to the model's maximum length)" : ""];
}
