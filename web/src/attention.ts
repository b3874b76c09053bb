// Attention: a layer × head grid of small maps labelled with their pattern, a large view of one
// map with token/region axes and the four blocks outlined, and the patterns per layer as a chart.

import type { AlignResponse, AttentionJSON, HeadAttention, PatternName } from "./api.js";
import { fmt, h, pct } from "./dom.js";
import { regionName } from "./regions.js";

export const PATTERNS: PatternName[] = ["vertical", "diagonal", "vertical_diagonal", "block", "heterogeneous", "reversed_block"];

export const PATTERN_LABELS: Record<PatternName, string> = {
  vertical: "Vertical",
  diagonal: "Diagonal",
  vertical_diagonal: "Vertical + Diagonal",
  block: "Block",
  heterogeneous: "Heterogeneous",
  reversed_block: "Reversed Block",
};

const PATTERN_COLOURS: Record<PatternName, string> = {
  vertical: "#1f77b4", diagonal: "#ff7f0e", vertical_diagonal: "#9467bd",
  block: "#2ca02c", heterogeneous: "#8c8c8c", reversed_block: "#d62728",
};

/** decode turns a map's base64 bytes into values (byte / 255 × scale). */
export function decodeMap(m: HeadAttention, size: number): Float32Array {
  const bin = atob(m.data);
  if (bin.length !== size * size) throw new Error(`attention map of layer ${m.layer} head ${m.head}: ${bin.length} bytes, want ${size * size}`);
  const out = new Float32Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = (bin.charCodeAt(i) / 255) * m.scale;
  return out;
}

/** shade is the colour of a value relative to the map's largest: white to dark blue. */
function shade(v: number): [number, number, number] {
  const t = Math.max(0, Math.min(1, v));
  return [Math.round(255 - t * 235), Math.round(255 - t * 210), Math.round(255 - t * 145)];
}

function drawSmall(canvas: HTMLCanvasElement, values: Float32Array, size: number, scale: number): void {
  canvas.width = size;
  canvas.height = size;
  const ctx = canvas.getContext("2d");
  if (!ctx) return;
  const img = ctx.createImageData(size, size);
  for (let i = 0; i < values.length; i++) {
    const [r, g, b] = shade(scale > 0 ? values[i] / scale : 0);
    img.data[4 * i] = r; img.data[4 * i + 1] = g; img.data[4 * i + 2] = b; img.data[4 * i + 3] = 255;
  }
  ctx.putImageData(img, 0, 0);
}

export class AttentionView {
  private att: AttentionJSON | null = null;
  private data: AlignResponse | null = null;
  private maps: Float32Array[] = [];
  private cells: HTMLButtonElement[] = [];
  private open = -1;

  constructor(
    private readonly grid: HTMLElement,
    private readonly chart: HTMLElement,
    private readonly note: HTMLElement,
    private readonly dialog: HTMLDialogElement,
  ) {
    const d = (id: string) => dialog.querySelector<HTMLElement>("#" + id)!;
    d("dialog-close").addEventListener("click", () => dialog.close());
    d("dialog-prev").addEventListener("click", () => this.show(this.open - 1));
    d("dialog-next").addEventListener("click", () => this.show(this.open + 1));
    dialog.addEventListener("keydown", (e) => {
      if (e.key === "ArrowLeft") { this.show(this.open - 1); e.preventDefault(); }
      if (e.key === "ArrowRight") { this.show(this.open + 1); e.preventDefault(); }
    });
    dialog.addEventListener("close", () => {
      if (this.open >= 0) this.cells[this.open]?.focus();
      this.open = -1;
    });
    // A click on the backdrop (outside the dialog's box) closes it.
    dialog.addEventListener("click", (e) => {
      const r = dialog.getBoundingClientRect();
      if (e.clientX < r.left || e.clientX > r.right || e.clientY < r.top || e.clientY > r.bottom) dialog.close();
    });
  }

  /** unavailable says why there is nothing to show (the model has no attention graph). */
  unavailable(why: string): void {
    this.att = null;
    this.grid.replaceChildren();
    this.chart.replaceChildren();
    this.note.textContent = why;
  }

  set(a: AlignResponse): void {
    if (!a.attention) {
      this.unavailable("This answer carries no attention maps.");
      return;
    }
    const att = a.attention;
    this.att = att;
    this.data = a;
    const S = att.text + att.regions;
    this.maps = att.maps.map((m) => decodeMap(m, S));
    const th = att.thresholds;
    this.note.textContent = `${att.layers} layers × ${att.heads} heads over ${att.text} tokens and ${att.regions} regions. ` +
      `Each head is labelled from its map: vertical = mass on [CLS]/[SEP], diagonal = mass on the ±${th.band} band, ` +
      `intra = share of the rest kept inside its modality (Vertical ≥ ${th.strong}; V+D both ≥ ${th.partial} and sum ≥ ${th.combined}; ` +
      `Block intra ≥ ${th.block}; Reversed Block intra ≤ ${th.reversed}). Select a map to enlarge it.`;
    this.renderChart(att);
    this.renderGrid(att, S);
  }

  private renderChart(att: AttentionJSON): void {
    const legend = h("div", { class: "legend" }, ...PATTERNS.map((p) => h("span", { class: `p-${p}` }, PATTERN_LABELS[p])));
    const rows = att.pattern_counts.map((counts, l) => {
      const bar = h("div", { class: "chart-bar", role: "img",
        "aria-label": `Layer ${l + 1}: ` + PATTERNS.filter((p) => counts[p]).map((p) => `${counts[p]} ${PATTERN_LABELS[p]}`).join(", ") });
      for (const p of PATTERNS) {
        const n = counts[p] ?? 0;
        if (n === 0) continue;
        bar.append(h("div", { class: `p-${p}`, "data-pattern": p, style: `width:${(100 * n) / att.heads}%;background:${PATTERN_COLOURS[p]}`,
          title: `layer ${l + 1}: ${n} of ${att.heads} heads ${PATTERN_LABELS[p]}` }));
      }
      return h("div", { class: "chart-row" }, h("span", {}, `layer ${l + 1}`), bar);
    });
    this.chart.replaceChildren(h("h3", { class: "small" }, "Patterns per layer (this pair)"), legend, ...rows);
  }

  private renderGrid(att: AttentionJSON, S: number): void {
    this.grid.style.gridTemplateColumns = `auto repeat(${att.heads}, auto)`;
    const kids: HTMLElement[] = [h("div", { class: "corner" }, "layer \\ head")];
    for (let hd = 0; hd < att.heads; hd++) kids.push(h("div", { class: "col-head" }, `head ${hd + 1}`));
    this.cells = [];
    att.maps.forEach((m, i) => {
      if (m.head === 0) kids.push(h("div", { class: "row-head" }, `layer ${m.layer + 1}`));
      const canvas = h("canvas", { width: S, height: S, "aria-hidden": "true" });
      drawSmall(canvas, this.maps[i], S, m.scale);
      const b = h("button", {
        type: "button", class: `head-map p-${m.pattern}`, "data-layer": m.layer, "data-head": m.head, "data-pattern": m.pattern,
        "aria-label": `Layer ${m.layer + 1} head ${m.head + 1}: ${PATTERN_LABELS[m.pattern]}`,
        title: `layer ${m.layer + 1}, head ${m.head + 1}: ${PATTERN_LABELS[m.pattern]} (vertical ${fmt(m.measures.vertical, 2)}, diagonal ${fmt(m.measures.diagonal, 2)}, intra ${fmt(m.measures.intra, 2)})`,
      }, canvas, h("span", {}, PATTERN_LABELS[m.pattern]));
      b.addEventListener("click", () => this.show(i));
      this.cells.push(b);
      kids.push(b);
    });
    this.grid.replaceChildren(...kids);
  }

  /** show opens map i (wrapping around) in the dialog. */
  show(i: number): void {
    const att = this.att;
    const a = this.data;
    if (!att || !a || att.maps.length === 0) return;
    i = (i + att.maps.length) % att.maps.length;
    this.open = i;
    const m = att.maps[i];
    const d = (id: string) => this.dialog.querySelector<HTMLElement>("#" + id)!;
    d("dialog-title").textContent = `Layer ${m.layer + 1}, head ${m.head + 1}: ${PATTERN_LABELS[m.pattern]}`;
    const ms = m.measures;
    d("dialog-measures").textContent =
      `vertical ${pct(ms.vertical)} · diagonal ${pct(ms.diagonal)} · intra ${pct(ms.intra)} · ` +
      `blocks (row mass): text→text ${pct(ms.text_text)}, text→image ${pct(ms.text_image)}, image→text ${pct(ms.image_text)}, image→image ${pct(ms.image_image)}`;
    const labels = [...a.tokens.map((t) => t.text), ...a.regions.map((r) => regionName(r))];
    this.drawLarge(d("dialog-canvas") as HTMLCanvasElement, this.maps[i], m.scale, labels, att.text, d("dialog-hover"));
    if (!this.dialog.open) this.dialog.showModal();
  }

  private drawLarge(canvas: HTMLCanvasElement, values: Float32Array, scale: number, labels: string[], T: number, hover: HTMLElement): void {
    const S = labels.length;
    const cell = Math.max(6, Math.min(20, Math.floor(620 / S)));
    const ctx0 = canvas.getContext("2d");
    if (!ctx0) return;
    const font = `${Math.min(12, cell)}px system-ui, sans-serif`;
    ctx0.font = font;
    const margin = Math.ceil(Math.min(160, Math.max(...labels.map((l) => ctx0.measureText(l).width)))) + 10;
    const ratio = window.devicePixelRatio || 1;
    const W = margin + S * cell + 4, H = margin + S * cell + 4;
    canvas.width = Math.round(W * ratio);
    canvas.height = Math.round(H * ratio);
    canvas.style.width = `${W}px`;
    canvas.style.height = `${H}px`;
    const ctx = canvas.getContext("2d")!;
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.fillStyle = "#fff";
    ctx.fillRect(0, 0, W, H);
    for (let q = 0; q < S; q++) {
      for (let k = 0; k < S; k++) {
        const [r, g, b] = shade(scale > 0 ? values[q * S + k] / scale : 0);
        ctx.fillStyle = `rgb(${r},${g},${b})`;
        ctx.fillRect(margin + k * cell, margin + q * cell, cell, cell);
      }
    }
    // Axis labels: queries down the left, keys along the top (rotated).
    ctx.font = font;
    ctx.fillStyle = "#1d2330";
    ctx.textBaseline = "middle";
    ctx.textAlign = "right";
    const clip = (s: string) => (ctx.measureText(s).width > margin - 10 ? s.slice(0, Math.max(3, Math.floor(s.length * (margin - 10) / ctx.measureText(s).width) - 1)) + "…" : s);
    labels.forEach((l, q) => ctx.fillText(clip(l), margin - 4, margin + q * cell + cell / 2));
    ctx.save();
    ctx.rotate(-Math.PI / 2);
    ctx.textAlign = "left";
    labels.forEach((l, k) => ctx.fillText(clip(l), -margin + 4, margin + k * cell + cell / 2));
    ctx.restore();
    ctx.textAlign = "right";
    ctx.textBaseline = "bottom";
    ctx.fillStyle = "#5b6474";
    ctx.fillText("query ↓  key →", margin - 4, margin - 4);
    // The four blocks: rows are queries, columns keys.
    const blocks: [string, number, number, number, number, string][] = [
      ["text→text", 0, 0, T, T, "#2ca02c"],
      ["text→image", 0, T, T, S - T, "#d62728"],
      ["image→text", T, 0, S - T, T, "#d62728"],
      ["image→image", T, T, S - T, S - T, "#2ca02c"],
    ];
    ctx.lineWidth = 2;
    ctx.textAlign = "left";
    ctx.textBaseline = "top";
    ctx.font = "bold 11px system-ui, sans-serif";
    for (const [name, r0, c0, rows, cols, colour] of blocks) {
      const x = margin + c0 * cell, y = margin + r0 * cell;
      ctx.strokeStyle = colour;
      ctx.strokeRect(x + 1, y + 1, cols * cell - 2, rows * cell - 2);
      const w = ctx.measureText(name).width + 6;
      if (w < cols * cell - 4 && rows * cell > 16) {
        ctx.fillStyle = "rgba(255,255,255,.85)";
        ctx.fillRect(x + 3, y + 3, w, 14);
        ctx.fillStyle = colour;
        ctx.fillText(name, x + 6, y + 4);
      }
    }
    canvas.onmousemove = (e) => {
      const rect = canvas.getBoundingClientRect();
      const k = Math.floor((e.clientX - rect.left - margin) / cell);
      const q = Math.floor((e.clientY - rect.top - margin) / cell);
      if (q < 0 || k < 0 || q >= S || k >= S) return;
      hover.textContent = `query ${labels[q]} → key ${labels[k]}: ${fmt(values[q * S + k], 4)} of the query's attention`;
    };
  }
}
