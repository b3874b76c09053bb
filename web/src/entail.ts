// Visual entailment (POST /v1/entailment): does the image entail the hypothesis, contradict it,
// or neither? The three probabilities (they sum to 1) as bars, the model's label marked.

import type { EntailmentResponse } from "./api.js";
import { h, meter, pct, quoted } from "./dom.js";

const LABELS = ["entailment", "neutral", "contradiction"] as const;

export class EntailmentView {
  constructor(private readonly hypothesis: HTMLElement, private readonly list: HTMLUListElement, private readonly verdict: HTMLElement) {}

  set(r: EntailmentResponse): void {
    this.hypothesis.replaceChildren(...quoted("Hypothesis", r.hypothesis));
    this.list.replaceChildren(...LABELS.map((label) => {
      const p = r.probabilities[label];
      const chosen = label === r.label;
      return h("li", { class: chosen ? "chosen" : undefined, "data-label": label, "data-probability": p, "aria-current": chosen ? "true" : undefined },
        h("span", { class: "bar-label" }, label, chosen ? h("span", { class: "chosen-mark" }, " ✓ chosen") : ""),
        meter(p), h("span", { class: "num" }, pct(p)));
    }));
    this.verdict.replaceChildren("The model's label: ", h("strong", {}, r.label), ` (${pct(r.probabilities[r.label])}).`);
  }
}
