// The service's wire types (api/wire.go, api/attention.go) and the one way this page calls it:
// every failure becomes an ApiError whose message is fit to show as it is.
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
async function call(path, init) {
    let resp;
    try {
        resp = await fetch(path, init);
    }
    catch (e) {
        throw new ApiError(`Could not reach the server for ${path}: ${e instanceof Error ? e.message : e}`, 0, "network");
    }
    const text = await resp.text();
    let body = undefined;
    try {
        body = text === "" ? undefined : JSON.parse(text);
    }
    catch {
        // Not JSON: a proxy's error page, or a truncated answer.
    }
    if (!resp.ok) {
        const detail = body?.error;
        const message = detail?.message ?? (text.trim().slice(0, 200) || resp.statusText || "request failed");
        throw new ApiError(`${path}: ${message}`, resp.status, detail?.code ?? "http_" + resp.status);
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
    const form = new FormData();
    form.append("image", image, image instanceof File ? image.name : "image");
    for (const [k, v] of fields)
        form.append(k, v);
    return call(path, { method: "POST", body: form, headers: { Accept: "application/json" } });
}
