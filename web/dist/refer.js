// Referring expressions (POST /v1/refer): the regions ranked by the RE head for the expression.
// The chosen region (the best one first; any other from the ranked list) is drawn on the image
// with its probability (softmax over the image's regions) and score (the head's logit).
import { fmt, h, pct, quoted } from "./dom.js";
export class ReferView {
    constructor(expression, image, boxes, list) {
        this.expression = expression;
        this.image = image;
        this.boxes = boxes;
        this.list = list;
        this.ranked = [];
        this.items = [];
        this.width = 1;
        this.height = 1;
    }
    /** set shows the answer on the image at url. */
    set(r, url) {
        this.expression.replaceChildren(...quoted("Expression", r.expression));
        this.ranked = [...r.regions].sort((a, b) => b.probability - a.probability);
        this.width = r.image?.width ?? (this.image.naturalWidth || 1);
        this.height = r.image?.height ?? (this.image.naturalHeight || 1);
        this.image.src = url;
        this.boxes.parentElement?.style.setProperty("--aspect", String(this.width / this.height));
        this.items = this.ranked.map((g, k) => {
            const b = h("button", { type: "button", class: "refer-item", "aria-pressed": "false", "data-index": g.index, "data-probability": g.probability, "data-score": g.score }, h("strong", {}, `#${g.index}`), ` probability ${pct(g.probability)}, score ${fmt(g.score, 3)}`);
            b.addEventListener("click", () => this.show(k));
            return b;
        });
        this.list.replaceChildren(...this.items.map((b) => h("li", {}, b)));
        if (this.ranked.length === 0) {
            this.boxes.replaceChildren();
            this.list.replaceChildren(h("li", { class: "muted" }, "No region."));
            return;
        }
        this.show(0);
    }
    /** show draws the k-th ranked region. */
    show(k) {
        const g = this.ranked[k];
        const [x1, y1, x2, y2] = g.box;
        const W = this.width, H = this.height;
        const label = `${k === 0 ? "best: " : ""}#${g.index} · P ${fmt(g.probability, 3)} · score ${fmt(g.score, 3)}`;
        this.boxes.replaceChildren(h("div", {
            class: "refer-box" + ((x1 + x2) / 2 > W / 2 ? " right" : ""), role: "img", "aria-label": `Region ${label}`,
            "data-index": g.index, "data-probability": g.probability, "data-score": g.score,
            style: `left:${(100 * x1) / W}%;top:${(100 * y1) / H}%;width:${(100 * (x2 - x1)) / W}%;height:${(100 * (y2 - y1)) / H}%`,
        }, h("span", { class: "label" }, label)));
        this.items.forEach((b, j) => b.setAttribute("aria-pressed", String(j === k)));
    }
}
