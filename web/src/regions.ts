// The image with its detected regions: one button per region, positioned in percent of the
// image so it follows any displayed size. Tints (--share) show a word's transport mass.

import type { Region } from "./api.js";
import { fmt, h, pct } from "./dom.js";

export interface RegionEvents {
  /** preview: a region is hovered or focused (null: none). */
  preview(index: number | null): void;
  /** toggle: a region was clicked or activated with the keyboard. */
  toggle(index: number): void;
}

/** regionName is a region's short description: "#3 circle (yellow)". */
export function regionName(r: Region): string {
  const label = r.labels?.[0]?.label;
  const attr = r.attributes?.[0]?.label;
  return `#${r.index}` + (label ? ` ${label}` : "") + (attr ? ` (${attr})` : "");
}

/** Above this many visible boxes, labels are shown only where they matter (see applyVisibility). */
const CROWDED = 12;

export class RegionLayer {
  private boxes: HTMLButtonElement[] = [];
  private regions: Region[] = [];
  private minConfidence = 0;

  constructor(
    private readonly container: HTMLElement,
    private readonly showLow: HTMLInputElement,
    private readonly showLowLabel: HTMLElement,
    private readonly count: HTMLElement,
    private readonly events: RegionEvents,
  ) {
    showLow.addEventListener("change", () => this.applyVisibility());
  }

  /**
   * set draws the regions of an image of width × height. Regions below minConfidence are
   * "low-confidence" (kept only to reach the detector's minimum count); they start hidden
   * unless no region reaches the threshold, so that something is always shown.
   */
  set(regions: Region[], width: number, height: number, minConfidence: number): void {
    this.regions = regions;
    this.minConfidence = minConfidence;
    // The stage scales the image to the panel; boxes are placed in percent of it.
    this.container.parentElement?.style.setProperty("--aspect", String(width / height));
    this.container.replaceChildren();
    this.boxes = regions.map((r) => {
      const [x1, y1, x2, y2] = r.box;
      const low = r.confidence !== undefined && r.confidence < minConfidence;
      const conf = r.confidence !== undefined ? ` ${fmt(r.confidence, 2)}` : "";
      const b = h("button", {
        type: "button",
        // A box in the right half anchors its label at its right edge, so that the label grows
        // leftwards into the image instead of past the page's edge.
        class: "region-box" + (low ? " low" : "") + ((x1 + x2) / 2 > width / 2 ? " right" : ""),
        "data-index": r.index,
        "data-share": "0",
        "data-share-text": "",
        "aria-label": `Region ${regionName(r)}` + (r.confidence !== undefined ? `, confidence ${fmt(r.confidence, 2)}` : ""),
        "aria-pressed": "false",
        style: `left:${(100 * x1) / width}%;top:${(100 * y1) / height}%;width:${(100 * (x2 - x1)) / width}%;height:${(100 * (y2 - y1)) / height}%`,
      }, h("span", { class: "label" }, regionName(r) + conf), h("span", { class: "share" }));
      b.addEventListener("mouseenter", () => this.events.preview(r.index));
      b.addEventListener("mouseleave", () => this.events.preview(null));
      b.addEventListener("focus", () => this.events.preview(r.index));
      b.addEventListener("blur", () => this.events.preview(null));
      b.addEventListener("click", () => this.events.toggle(r.index));
      return b;
    });
    // Larger boxes first, so that small boxes inside them stay on top and clickable.
    const area = (r: Region) => (r.box[2] - r.box[0]) * (r.box[3] - r.box[1]);
    const order = regions.map((_, i) => i).sort((a, b) => area(regions[b]) - area(regions[a]));
    this.container.append(...order.map((i) => this.boxes[i]));
    const lows = regions.filter((r) => r.confidence !== undefined && r.confidence < minConfidence).length;
    this.showLow.checked = lows === regions.length;
    this.showLow.disabled = lows === 0;
    this.showLowLabel.textContent = `Show ${lows} low-confidence region${lows === 1 ? "" : "s"} (< ${fmt(minConfidence, 2)})`;
    this.applyVisibility();
  }

  private applyVisibility(): void {
    let shown = 0;
    this.regions.forEach((r, i) => {
      const low = r.confidence !== undefined && r.confidence < this.minConfidence;
      const hidden = low && !this.showLow.checked;
      this.boxes[i].hidden = hidden;
      if (!hidden) shown++;
    });
    this.count.textContent = `${shown} of ${this.regions.length} regions shown`;
    // Many boxes: labels only on the hovered, focused, selected or most aligned ones.
    this.container.classList.toggle("crowded", shown > CROWDED);
  }

  /** setShares tints each region by shares[j] (scaled so the largest is full); null clears. */
  setShares(shares: number[] | null): void {
    const top = shares ? Math.max(...shares, 1e-12) : 1;
    this.boxes.forEach((b, j) => {
      const s = shares ? shares[j] : 0;
      b.style.setProperty("--share", String(shares ? s / top : 0));
      const shown = shares !== null && (s >= 0.05 || s / top >= 0.5);
      b.dataset.share = String(s);
      b.dataset.shareText = shown ? pct(s) : "";
      b.classList.toggle("top", shares !== null && s / top >= 0.5);
      (b.querySelector(".share") as HTMLElement).textContent = shown ? pct(s) : "";
    });
  }

  /** setSelected marks one region (null: none); the others are dimmed while one is shown. */
  setSelected(index: number | null, focus: number | null): void {
    this.boxes.forEach((b, j) => {
      b.classList.toggle("selected", j === index);
      b.setAttribute("aria-pressed", String(j === index));
      b.classList.toggle("dim", focus !== null && j !== focus);
    });
  }
}
