// Visual question answering (POST /v1/vqa): the question as the model read it and its top
// answers as bars, each as long as its score. The scores are independent sigmoids (the VQA head
// is trained with binary cross-entropy over its answer vocabulary): they need not sum to 1.
import { fmt, h, meter, quoted } from "./dom.js";
export class VQAView {
    constructor(question, answers) {
        this.question = question;
        this.answers = answers;
    }
    set(r) {
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
