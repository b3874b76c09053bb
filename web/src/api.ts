// The service's wire types (api/wire.go, api/attention.go, the task answers of /v1/vqa,
// /v1/entailment, /v1/nlvr2 and /v1/refer) and the one way this page calls it:
// every failure becomes an ApiError whose message is fit to show as it is. The API key, when the
// server wants one, lives here too: every call sends it as X-API-Key.

export interface LabelProb { label: string; probability: number; }

export interface Token {
  text: string; id: number; start: number; end: number; word: number; special: boolean;
}

export interface Region {
  index: number;
  box: [number, number, number, number];
  location: number[];
  confidence?: number;
  labels?: LabelProb[];
  attributes?: LabelProb[];
}

export interface ImageInfo {
  sha256: string; format: string; width: number; height: number; regions: number; proposals: number; cache_hit: boolean;
}

/** A word of a text outside the model's vocabulary ([UNK], or in pieces of a closed vocabulary); start/end in code points. */
export interface UnknownWord { word: string; start: number; end: number; }

/** head: "rank" (a retrieval checkpoint's rank score, σ(logit)) or "itm" (score = P(match)). */
export interface MatchResult {
  text: string; score: number; logit: number; head: "rank" | "itm"; ot_distance: number; tokens: number; truncated: boolean;
  unknown_words?: UnknownWord[];
}

/** Milliseconds: `total` for the whole request, then its steps. */
export interface Timings { total: number; }

export interface MatchResponse { results: MatchResult[]; image?: ImageInfo; model: string; timings_ms: Timings; }

export type PatternName = "vertical" | "diagonal" | "vertical_diagonal" | "block" | "heterogeneous" | "reversed_block";

export interface AttentionMeasures {
  vertical: number; diagonal: number; intra: number;
  text_text: number; text_image: number; image_text: number; image_image: number;
}

export interface HeadAttention {
  layer: number; head: number; pattern: PatternName; measures: AttentionMeasures; scale: number; data: string;
}

export interface PatternThresholds {
  strong: number; partial: number; combined: number; block: number; reversed: number; band: number;
}

export interface AttentionJSON {
  layers: number; heads: number; text: number; regions: number; encoding: string;
  thresholds: PatternThresholds; maps: HeadAttention[]; pattern_counts: Record<PatternName, number>[];
  /** tokens × regions, sums to 1: attention between each token and region, both ways, every layer and head. */
  cross_attention: number[][];
}

export interface AlignResponse {
  text: string; tokens: Token[]; truncated: boolean; unknown_words?: UnknownWord[]; regions: Region[]; plan: number[][];
  ot_distance: number; score: number; logit: number; attention?: AttentionJSON; image?: ImageInfo;
  model: string; timings_ms: Timings;
}

export interface TokenPrediction { token: string; id: number; probability: number; }

export interface MaskPrediction {
  position: number; start: number; end: number;
  predictions: TokenPrediction[]; predictions_without_image?: TokenPrediction[];
}

export interface FillMaskResponse { text: string; tokens: Token[]; truncated: boolean; masks: MaskPrediction[]; }

/** description and domain: what the detector is and the images it knows, when the bundle says. */
export interface DetectorInfo {
  description?: string; domain?: string; classes: number; attributes: number; min_confidence: number; min_boxes: number; max_boxes: number;
}

/** The text vocabulary: closed means a word in word pieces is outside it (reported as unknown). */
export interface VocabularyInfo { size: number; cased: boolean; closed: boolean; domain?: string; }

/** task.name: pretrain, retrieval, vqa, ve, nlvr2 or re (read as a string: a newer server may add one). */
export interface ModelInfo {
  name: string; description: string; provider: string; random_weights: boolean;
  layers: number; attention_heads: number; hidden: number; max_text_length: number;
  task: { name: string; class: string; labels?: number; layout?: "paired" | "triplet" | "paired_attn" };
  heads: Record<string, boolean>; graphs: string[]; detector?: DetectorInfo; vocabulary: VocabularyInfo;
}

/** The first model is the default: the one a request without "model" gets. */
export interface ModelsResponse { models: ModelInfo[]; }

/** The request's text as the model read it (tokens counts [CLS] and [SEP]). */
export interface TaskText { text: string; tokens: number; truncated: boolean; unknown_words?: UnknownWord[]; }

/** POST /v1/vqa: the top answers, each score an independent sigmoid (they need not sum to 1). */
export interface VQAResponse {
  question: TaskText; answers: { answer: string; score: number }[]; image?: ImageInfo; model: string; timings_ms: Timings;
}

/** POST /v1/entailment: the three classes' probabilities (they sum to 1) and the most probable. */
export interface EntailmentResponse {
  hypothesis: TaskText; label: "contradiction" | "entailment" | "neutral";
  probabilities: Record<"contradiction" | "entailment" | "neutral", number>;
  image?: ImageInfo; model: string; timings_ms: Timings;
}

/** POST /v1/nlvr2: P(the statement is true of the two images) and the verdict (label). */
export interface NLVR2Response {
  statement: TaskText; true_probability: number; label: boolean; layout: "paired" | "triplet" | "paired_attn";
  images?: [ImageInfo, ImageInfo]; model: string; timings_ms: Timings;
}

/** POST /v1/refer: the regions ranked by the RE head (score: its logit; probability: softmax over the regions); boxes in image pixels. */
export interface ReferResponse {
  expression: TaskText;
  regions: { index: number; box: [number, number, number, number]; score: number; probability: number }[];
  image?: ImageInfo; model: string; timings_ms: Timings;
}

/** ApiError is a failed call: the server's {"error": {code, message}}, or why there was none. */
export class ApiError extends Error {
  constructor(message: string, readonly status: number, readonly code: string) {
    super(message);
    this.name = "ApiError";
  }
}

/** describe turns anything thrown into one readable line. */
export function describe(err: unknown): string {
  if (err instanceof ApiError) {
    return err.status > 0 ? `${err.message} (HTTP ${err.status}, ${err.code})` : err.message;
  }
  if (err instanceof Error) return err.message;
  return String(err);
}

// ---- The API key ------------------------------------------------------------------------

/** Where the page keeps the key between visits. */
const KEY_STORAGE = "uniter.apiKey";

function readStoredKey(): string {
  try {
    return localStorage.getItem(KEY_STORAGE) ?? "";
  } catch {
    return ""; // storage blocked: the key lasts as long as the page
  }
}

/** The key every call sends; read once at start, changed by setApiKey and forgetApiKey. */
let apiKey = readStoredKey();
const unauthorizedListeners: ((err: ApiError) => void)[] = [];

export function getApiKey(): string {
  return apiKey;
}

/** setApiKey keeps the key for this page and the next visits (localStorage "uniter.apiKey"). */
export function setApiKey(key: string): void {
  apiKey = key.trim();
  try {
    if (apiKey) localStorage.setItem(KEY_STORAGE, apiKey);
    else localStorage.removeItem(KEY_STORAGE);
  } catch {
    // storage blocked: kept in memory only
  }
}

export function forgetApiKey(): void {
  setApiKey("");
}

/** onUnauthorized calls listener whenever a call is refused with HTTP 401 (no key, or a wrong one). */
export function onUnauthorized(listener: (err: ApiError) => void): void {
  unauthorizedListeners.push(listener);
}

/** isUnauthorized: the call failed for want of a (valid) API key. */
export function isUnauthorized(err: unknown): boolean {
  return err instanceof ApiError && err.status === 401;
}

// ---- Calls ------------------------------------------------------------------------------

/** send makes the request with the key, turning a network failure or a non-2xx answer into an ApiError. */
async function send(path: string, init: RequestInit): Promise<Response> {
  const headers = new Headers(init.headers);
  const sentKey = apiKey;
  if (sentKey) headers.set("X-API-Key", sentKey);
  let resp: Response;
  try {
    resp = await fetch(path, { ...init, headers });
  } catch (e) {
    throw new ApiError(`Could not reach the server for ${path}: ${e instanceof Error ? e.message : e}`, 0, "network");
  }
  if (resp.ok) return resp;
  const text = await resp.text();
  let body: unknown = undefined;
  try {
    body = text === "" ? undefined : JSON.parse(text);
  } catch {
    // Not JSON: a proxy's error page, or a truncated answer.
  }
  const detail = (body as { error?: { code?: string; message?: string } } | undefined)?.error;
  const message = detail?.message ?? (text.trim().slice(0, 200) || resp.statusText || "request failed");
  const err = new ApiError(`${path}: ${message}`, resp.status, detail?.code ?? "http_" + resp.status);
  // A 401 for a key that has since been replaced is stale: the new key has not been refused.
  if (resp.status === 401 && sentKey === apiKey) for (const l of unauthorizedListeners) l(err);
  throw err;
}

async function call<T>(path: string, init: RequestInit): Promise<T> {
  const resp = await send(path, init);
  const text = await resp.text();
  let body: unknown = undefined;
  try {
    body = text === "" ? undefined : JSON.parse(text);
  } catch {
    // handled below
  }
  if (body === undefined) throw new ApiError(`${path}: the server's answer is not JSON`, resp.status, "bad_response");
  return body as T;
}

export function getJSON<T>(path: string): Promise<T> {
  return call<T>(path, { method: "GET", headers: { Accept: "application/json" } });
}

export function postJSON<T>(path: string, body: unknown): Promise<T> {
  return call<T>(path, {
    method: "POST", headers: { "Content-Type": "application/json", Accept: "application/json" }, body: JSON.stringify(body),
  });
}

/** postImage sends the image as the multipart file field "image" with the given fields. */
export function postImage<T>(path: string, image: Blob, fields: [string, string][]): Promise<T> {
  return postImages<T>(path, [image], fields);
}

/** postImages sends the images in order, each as a multipart file field "image" (NLVR2: left, right). */
export function postImages<T>(path: string, images: Blob[], fields: [string, string][]): Promise<T> {
  const form = new FormData();
  for (const image of images) form.append("image", image, image instanceof File ? image.name : "image");
  for (const [k, v] of fields) form.append(k, v);
  return call<T>(path, { method: "POST", body: form, headers: { Accept: "application/json" } });
}

/** getBlob fetches a binary resource (a thumbnail) with the key, which an <img src> cannot send. */
export async function getBlob(path: string): Promise<Blob> {
  const resp = await send(path, { method: "GET" });
  return resp.blob();
}
