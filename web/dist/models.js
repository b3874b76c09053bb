// The model selector, fed by GET /v1/models: one option per served model with its task. The
// chosen model's task decides the page's view: captions scored and aligned (pre-training and
// retrieval models), or a question (VQA), a hypothesis (VE), a statement about two images
// (NLVR2) or a referring expression (RE). Every request then names the model ("model").
/** What each view asks for and how its button and text box read. */
export const VIEWS = {
    match: { title: "Image and captions", run: "Align", label: "", placeholder: "", task: "image-text matching" },
    vqa: { title: "Image and question", run: "Answer", label: "Question", placeholder: "what color is the square?", task: "visual question answering" },
    ve: { title: "Image and hypothesis", run: "Judge", label: "Hypothesis", placeholder: "there is a red square", task: "visual entailment" },
    nlvr2: { title: "Two images and a statement", run: "Judge", label: "Statement", placeholder: "the left image has more circles than the right one", task: "NLVR2: a statement about two images" },
    re: { title: "Image and referring expression", run: "Find", label: "Referring expression", placeholder: "the red square on the left", task: "referring expressions" },
};
/** viewOf is the view of a model's task: match for pre-training, retrieval and any task the page does not know. */
export function viewOf(m) {
    const t = m.task?.name;
    return t === "vqa" || t === "ve" || t === "nlvr2" || t === "re" ? t : "match";
}
/** taskLabel is a model's task in words: "visual question answering (UniterForVisualQuestionAnswering)". */
export function taskLabel(m) {
    const name = m.task?.name ?? "pretrain";
    const words = name === "pretrain" ? "pre-training" : name === "retrieval" ? "image-text retrieval" : VIEWS[viewOf(m)].task;
    return m.task?.class ? `${words} (${m.task.class})` : words;
}
const SHORT = {
    pretrain: "pre-training", retrieval: "retrieval", vqa: "VQA", ve: "visual entailment", nlvr2: "NLVR2", re: "referring expressions",
};
/** shortTask names a model's task in a few words, for the selector: "NLVR2, paired_attn". */
function shortTask(m) {
    const name = m.task?.name ?? "pretrain";
    return (SHORT[name] ?? name) + (m.task?.layout ? `, ${m.task.layout}` : "");
}
export class ModelPicker {
    constructor(select, onChange) {
        this.select = select;
        this.models = [];
        select.addEventListener("change", () => {
            const m = this.models.find((x) => x.name === select.value);
            if (m)
                onChange(m);
        });
    }
    /** set lists models (the first is the default) and returns the one selected: the same as before when it is still served. */
    set(models) {
        const keep = this.select.value;
        this.models = models;
        this.select.replaceChildren(...models.map((m, i) => {
            const o = document.createElement("option");
            o.value = m.name;
            o.textContent = `${m.name} · ${shortTask(m)}${i === 0 ? " (default)" : ""}`;
            return o;
        }));
        const chosen = models.find((m) => m.name === keep) ?? models[0];
        this.select.value = chosen.name;
        this.select.disabled = models.length < 2;
        return chosen;
    }
}
