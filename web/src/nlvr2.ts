// NLVR2 (POST /v1/nlvr2): is the statement true of the two images? The two images side by side,
// P(true) as a bar and the verdict. Each image has a button to show the statement's alignment
// with it in the views below (the encoder reads one image with the text at a time).

import type { NLVR2Response } from "./api.js";
import { fmt, h, meter, quoted } from "./dom.js";

const SIDES = ["left", "right"] as const;

const LAYOUTS: Record<string, string> = {
  paired: "paired: each image encoded with the statement, the two [CLS] states concatenated",
  triplet: "triplet: both images encoded with the statement in one sequence",
  paired_attn: "paired with attention: each image encoded with the statement, the two attending to each other",
};

export class NLVR2View {
  private buttons: HTMLButtonElement[] = [];

  constructor(
    private readonly statement: HTMLElement,
    private readonly pair: HTMLElement,
    private readonly verdict: HTMLElement,
    private readonly onAlign: (side: number) => void,
  ) {}

  /** set shows the answer for the images at urls (left, right), named names. */
  set(r: NLVR2Response, urls: [string, string], names: [string, string]): void {
    this.statement.replaceChildren(...quoted("Statement", r.statement));
    this.buttons = [];
    this.pair.replaceChildren(...SIDES.map((side, i) => {
      const info = r.images?.[i];
      const b = h("button", { type: "button", "aria-pressed": String(i === 0) }, `Align with the ${side} image`);
      b.addEventListener("click", () => {
        this.setAligned(i);
        this.onAlign(i);
      });
      this.buttons.push(b);
      return h("figure", { class: "pair-image", "data-side": side },
        h("img", { src: urls[i], alt: `The ${side} image: ${names[i]}` }),
        h("figcaption", {}, h("strong", {}, side === "left" ? "Left" : "Right"),
          info ? ` · ${info.width}×${info.height}, ${info.regions} regions` : "", h("br"), b));
    }));
    const p = r.true_probability;
    this.verdict.replaceChildren(
      h("p", { class: "verdict " + (r.label ? "yes" : "no"), "data-label": String(r.label), "data-probability": p },
        h("span", { class: "bar-label" }, "P(true)"), meter(p), h("span", { class: "num" }, fmt(p, 3))),
      h("p", {}, "Verdict: ", h("strong", { class: r.label ? "truth yes" : "truth no" }, r.label ? "✓ true" : "✗ false"),
        " — the statement is judged ", r.label ? "true" : "false", " of the two images."),
      h("p", { class: "muted small" }, `Layout ${LAYOUTS[r.layout] ?? r.layout}.`));
  }

  /** setAligned marks the image whose alignment the views below show. */
  setAligned(side: number): void {
    this.buttons.forEach((b, i) => b.setAttribute("aria-pressed", String(i === side)));
  }
}
