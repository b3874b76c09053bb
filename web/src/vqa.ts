// Visual question answering (POST /v1/vqa): the question as the model read it and its top
// answers as bars, each as long as its score. The scores are independent sigmoids (the VQA head
// is trained with binary cross-entropy over its answer vocabulary): they need not sum to 1.

import type { VQAResponse } from "./api.js";
import { fmt, h, meter, quoted } from "./dom.js";

export class VQAView {
  constructor(private readonly question: HTMLElement, private readonly answers: HTMLOListElement) {}

  set(r: VQAResponse): void {
    this.question.replaceChildren(...quoted("Question", r.question));
    if (r.answers.length === 0) {
      this.answers.replaceChildren(h("li", { class: "muted" }, "No answer."));
      return;
    }
    this.answers.replaceChildren(...r.answers.map((a, i) => h("li", {
      class: i === 0 ? "chosen" : undefined, "data-answer": a.answer, "data-score": a.score,
    }, h("span", { class: "bar-label" }, a.answer), meter(a.score), h("span", { class: "num" }, fmt(a.score, 3)))));
  }
}
