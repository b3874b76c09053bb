// The service's wire types (api/wire.go, api/attention.go, the task answers of /v1/vqa,
// /v1/entailment, /v1/nlvr2 and /v1/refer) and the one way this page calls it:
// every failure becomes an ApiError whose message is fit to show as it is. The API key, when the
// server wants one, lives here too: every call sends it as X-API-Key.
/** ApiError is a failed call: the server's {"error": {code, message}}, or why there was none. */
export class ApiError extends Error {
    constructor(message, status, code) {
        super(message);
        this.status = status;
        this.code = code;
        this.name = "ApiError";
    }
}
/** describe turns anything thrown into one readable line. */
export function describe(err) {
    if (err instanceof ApiError) {
        return err.status > 0 ? `${err.message} (HTTP ${err.status}, ${err.code})` : err.message;
    }
    if (err instanceof Error)
        return err.message;
    return String(err);
}
// ---- The API key ------------------------------------------------------------------------
/** Where the page keeps the key between visits. */
const KEY_STORAGE = "uniter.apiKey";
function readStoredKey() {
    try {
        return localStorage.getItem(KEY_STORAGE) ?? "";
    }
    catch {
        return ""; // storage blocked: the key lasts as long as the page
    }
}
/** The key every call sends; read once at start, changed by setApiKey and forgetApiKey. */
let apiKey = readStoredKey();
const unauthorizedListeners = [];
export function getApiKey() {
    return apiKey;
}
/** setApiKey keeps the key for this page and the next visits (localStorage "uniter.apiKey"). */
export function setApiKey(key) {
    apiKey = key.trim();
    try {
        if (apiKey)
            localStorage.setItem(KEY_STORAGE, apiKey);
        else
            localStorage.removeItem(KEY_STORAGE);
    }
    catch {
        // storage blocked: kept in memory only
    }
}
export function forgetApiKey() {
    setApiKey("");
}
/** onUnauthorized calls listener whenever a call is refused with HTTP 401 (no key, or a wrong one). */
export function onUnauthorized(listener) {
    unauthorizedListeners.push(listener);
}
/** isUnauthorized: the call failed for want of a (valid) API key. */
export function isUnauthorized(err) {
    return err instanceof ApiError && err.status === 401;
}
// ---- Calls ------------------------------------------------------------------------------
/** send makes the request with the key, turning a network failure or a non-2xx answer into an ApiError. */
async function send(path, init) {
    const headers = new Headers(init.headers);
    const sentKey = apiKey;
    if (sentKey)
        headers.set("X-API-Key", sentKey);
    let resp;
    try {
        resp = await fetch(path, { ...init, headers });
    }
    catch (e) {
        throw new ApiError(`Could not reach the server for ${path}: ${e instanceof Error ? e.message : e}`, 0, "network");
    }
    if (resp.ok)
        return resp;
    const text = await resp.text();
    let body = undefined;
    try {
        body = text === "" ? undefined : JSON.parse(text);
    }
    catch {
        // Not JSON: a proxy's error page, or a truncated answer.
    }
    const detail = body?.error;
    const message = detail?.message ?? (text.trim().slice(0, 200) || resp.statusText || "request failed");
    const err = new ApiError(`${path}: ${message}`, resp.status, detail?.code ?? "http_" + resp.status);
    // A 401 for a key that has since been replaced is stale: the new key has not been refused.
    if (resp.status === 401 && sentKey === apiKey)
        for (const l of unauthorizedListeners)
            l(err);
    throw err;
}
async function call(path, init) {
    const resp = await send(path, init);
    const text = await resp.text();
    let body = undefined;
    try {
        body = text === "" ? undefined : JSON.parse(text);
    }
    catch {
        // handled below
    }
    if (body === undefined)
        throw new ApiError(`${path}: the server's answer is not JSON`, resp.status, "bad_response");
    return body;
}
export function getJSON(path) {
    return call(path, { method: "GET", headers: { Accept: "application/json" } });
}
export function postJSON(path, body) {
    return call(path, {
        method: "POST", headers: { "Content-Type": "application/json", Accept: "application/json" }, body: JSON.stringify(body),
    });
}
/** postImage sends the image as the multipart file field "image" with the given fields. */
export function postImage(path, image, fields) {
    return postImages(path, [image], fields);
}
/** postImages sends the images in order, each as a multipart file field "image" (NLVR2: left, right). */
export function postImages(path, images, fields) {
    const form = new FormData();
    for (const image of images)
        form.append("image", image, image instanceof File ? image.name : "image");
    for (const [k, v] of fields)
        form.append(k, v);
    return call(path, { method: "POST", body: form, headers: { Accept: "application/json" } });
}
/** getBlob fetches a binary resource (a thumbnail) with the key, which an <img src> cannot send. */
export async function getBlob(path) {
    const resp = await send(path, { method: "GET" });
    return resp.blob();
}
