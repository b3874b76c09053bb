// The API key form. A server started with keys answers /v1/* without a valid one with HTTP 401;
// the form appears then (in the header), keeps what the user enters (api.ts: localStorage
// "uniter.apiKey", sent as X-API-Key) and lets the page retry what failed. "Forget key" drops it.
import { forgetApiKey, getApiKey, onUnauthorized, setApiKey } from "./api.js";
import { byId } from "./dom.js";
const NEEDS_KEY = "This server needs an API key for its API (/v1). Ask its operator for one; " +
    "operators find how keys are set up in docs/api.md, “Authentication”.";
const REFUSED_KEY = "The server refused this browser's API key (unknown or revoked): enter another. " +
    "Operators find how keys are set up in docs/api.md, “Authentication”.";
export class KeyForm {
    /** onKey runs after the user enters a key: the page retries what it loads at start. */
    constructor(onKey) {
        this.onKey = onKey;
        this.form = byId("key-form");
        this.input = byId("api-key");
        this.message = byId("key-message");
        this.state = byId("key-state");
        this.stateText = byId("key-state-text");
        this.forget = byId("key-forget");
        onUnauthorized(() => this.show());
        this.form.addEventListener("submit", (e) => {
            e.preventDefault();
            this.use();
        });
        this.forget.addEventListener("click", () => {
            forgetApiKey();
            this.showState("API key forgotten: this browser no longer sends one.");
            if (!this.form.hidden)
                this.input.focus();
        });
        this.showState("");
    }
    /** show opens the form (after a 401); it takes the focus only from no one, or from itself. */
    show() {
        const text = getApiKey() ? REFUSED_KEY : NEEDS_KEY;
        const opening = this.form.hidden;
        this.form.hidden = false;
        // Set after unhiding, so that screen readers announce the alert.
        if (this.message.textContent !== text)
            this.message.textContent = text;
        const active = document.activeElement;
        if (opening && (!active || active === document.body || this.form.contains(active)))
            this.input.focus();
    }
    use() {
        const key = this.input.value.trim();
        if (!key) {
            this.message.textContent = "Type the API key first.";
            this.input.focus();
            return;
        }
        setApiKey(key);
        this.input.value = "";
        this.form.hidden = true;
        this.message.textContent = "";
        this.showState("Using the API key stored in this browser.");
        this.onKey();
    }
    /** showState: the line under the header says whether a key is kept, with "Forget key" when one is. */
    showState(note) {
        const has = getApiKey() !== "";
        this.stateText.textContent = has ? (note || "Using the API key stored in this browser.") : note;
        this.forget.hidden = !has;
        this.state.hidden = !has && note === "";
    }
}
