// Gallery search (issue 5's POST /v1/search/images): shown only when the server has the route.
// Hits are thumbnails with their scores; with evidence, each hit lists the regions its words
// align to and outlines them on the thumbnail.

import { describe, getJSON, postJSON } from "./api.js";
import { fmt, h, pct } from "./dom.js";

interface EvidenceRegion { region?: number; index?: number; share?: number; box?: number[]; }
interface Evidence { word?: string; text?: string; regions?: EvidenceRegion[]; }
interface Hit { id: string; score: number; logit?: number; metadata?: unknown; evidence?: Evidence[] | { words?: Evidence[] }; }
interface SearchResponse { results: Hit[]; }
interface StoredImage { width?: number; height?: number; regions?: { box: number[] }[] | number; }

function evidenceOf(hit: Hit): Evidence[] {
  const e = hit.evidence;
  if (Array.isArray(e)) return e;
  return e?.words ?? [];
}

export class Search {
  private request = 0;

  constructor(
    private readonly panel: HTMLElement,
    form: HTMLFormElement,
    private readonly query: HTMLInputElement,
    private readonly status: HTMLElement,
    private readonly error: HTMLElement,
    private readonly results: HTMLElement,
  ) {
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      void this.run();
    });
  }

  enable(): void {
    this.panel.hidden = false;
  }

  private async run(): Promise<void> {
    const text = this.query.value.trim();
    this.error.hidden = true;
    if (!text) {
      this.error.textContent = "Type what to look for, e.g. “a red square left of a blue circle”.";
      this.error.hidden = false;
      return;
    }
    const id = ++this.request;
    this.status.textContent = "Searching…";
    this.status.classList.add("busy");
    this.panel.setAttribute("aria-busy", "true");
    try {
      const resp = await postJSON<SearchResponse>("/v1/search/images", { text, limit: 12, evidence: true });
      if (id !== this.request) return;
      this.results.replaceChildren(...resp.results.map((hit, rank) => this.renderHit(hit, rank)));
      this.status.textContent = `${resp.results.length} result${resp.results.length === 1 ? "" : "s"}`;
    } catch (e) {
      if (id !== this.request) return;
      this.error.textContent = describe(e);
      this.error.hidden = false;
      this.status.textContent = "";
    } finally {
      if (id === this.request) {
        this.status.classList.remove("busy");
        this.panel.setAttribute("aria-busy", "false");
      }
    }
  }

  private renderHit(hit: Hit, rank: number): HTMLElement {
    const path = `/v1/images/${encodeURIComponent(hit.id)}`;
    const img = h("img", { src: `${path}/thumbnail`, alt: `Result ${rank + 1}: image ${hit.id}`, loading: "lazy" });
    const thumb = h("div", { class: "thumb" }, img);
    const ev = evidenceOf(hit);
    const li = h("li", {},
      thumb,
      h("div", {}, h("strong", {}, `${rank + 1}. ${hit.id}`)),
      h("div", {}, `P(match) ${fmt(hit.score, 3)}` + (hit.logit !== undefined ? ` · logit ${fmt(hit.logit, 2)}` : "")),
      ev.length ? h("ul", {}, ...ev.map((w) => h("li", {}, `${w.word ?? w.text ?? "?"} → ` +
        (w.regions ?? []).map((r) => `#${r.region ?? r.index ?? "?"}` + (r.share !== undefined ? ` ${pct(r.share)}` : "")).join(", ")))) : "");
    if (ev.length) void this.outline(path, thumb, ev);
    return li;
  }

  /** outline draws the evidence regions on the thumbnail, once the image's size is known. */
  private async outline(path: string, thumb: HTMLElement, ev: Evidence[]): Promise<void> {
    try {
      const info = await getJSON<StoredImage>(path);
      const W = info.width, H = info.height;
      if (!W || !H) return;
      const stored = Array.isArray(info.regions) ? info.regions : [];
      for (const w of ev) {
        for (const r of w.regions ?? []) {
          const box = r.box ?? stored[r.region ?? r.index ?? -1]?.box;
          if (!box || box.length !== 4) continue;
          thumb.append(h("div", { title: `${w.word ?? w.text ?? ""} → #${r.region ?? r.index}`,
            style: `left:${(100 * box[0]) / W}%;top:${(100 * box[1]) / H}%;width:${(100 * (box[2] - box[0])) / W}%;height:${(100 * (box[3] - box[1])) / H}%` }));
        }
      }
    } catch {
      // The boxes are an extra; the hit and its evidence list are shown regardless.
    }
  }
}
