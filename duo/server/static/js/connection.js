// The WebSocket to `/v1/realtime`, with reconnection.
//
// Browsers cannot set an Authorization header on a WebSocket, so an API key travels as the
// subprotocol `openai-insecure-api-key.KEY` (next to `realtime`), or as `?api_key=` when the key has
// characters a subprotocol may not carry. Unexpected closes reconnect with capped exponential backoff.

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/; // RFC 7230 token: what a subprotocol may contain
const RETRY_S = [1, 2, 4, 8, 15];

/** Why a close happened, in words (codes from docs/protocol.md). */
const CLOSE_REASONS = {
  1000: "closed",
  1001: "the server is shutting down",
  1008: "refused by the server",
  1011: "the session failed on the server",
  1013: "the server is busy",
};

export class Connection {
  /**
   * @param {object} handlers onEvent(event), onState(state, detail) with state in
   *   connecting | open | waiting | closed
   */
  constructor({ onEvent, onState }) {
    this.onEvent = onEvent;
    this.onState = onState;
    this.ws = null;
    this.apiKey = "";
    this.attempt = 0;
    this.timer = null;
    this.wanted = false;
    this.lastError = "";
  }

  get open() {
    return this.ws !== null && this.ws.readyState === WebSocket.OPEN;
  }

  url() {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const url = new URL(`${scheme}//${location.host}/v1/realtime`);
    if (this.apiKey && !TOKEN.test(this.apiKey)) url.searchParams.set("api_key", this.apiKey);
    return url;
  }

  connect(apiKey = this.apiKey) {
    this.apiKey = apiKey;
    this.wanted = true;
    clearTimeout(this.timer);
    this.timer = null;
    this.dispose();
    const protocols = ["realtime"];
    if (this.apiKey && TOKEN.test(this.apiKey)) protocols.push(`openai-insecure-api-key.${this.apiKey}`);
    this.onState("connecting", this.attempt ? `attempt ${this.attempt + 1}` : "");
    const ws = new WebSocket(this.url(), protocols);
    this.ws = ws;
    let opened = false;
    ws.onopen = () => {
      opened = true;
      this.lastError = "";
      this.onState("open", "");
    };
    ws.onmessage = (message) => {
      let event;
      try {
        event = JSON.parse(message.data);
      } catch {
        return; // not ours to judge: the server only sends JSON
      }
      this.onEvent(event);
    };
    ws.onclose = (close) => {
      if (ws !== this.ws) return;
      this.ws = null;
      let why = CLOSE_REASONS[close.code] || (close.reason ? close.reason : `code ${close.code}`);
      if (!opened) why = "could not connect (is the server up, and the API key right?)";
      if (close.reason && close.code !== 1000) why = `${why}: ${close.reason}`;
      if (this.lastError) why = `${why} — ${this.lastError}`;
      this.lastError = "";
      if (!this.wanted) {
        this.onState("closed", "disconnected");
        return;
      }
      const wait = RETRY_S[Math.min(this.attempt, RETRY_S.length - 1)];
      this.attempt++;
      this.onState("waiting", why, wait);
      this.timer = setTimeout(() => this.connect(), wait * 1000);
    };
  }

  /** The server opened a session: the backoff starts over (a refused socket opens too, then closes). */
  established() {
    this.attempt = 0;
  }

  /** A refusal (`error` then close 1013) explains the coming close. */
  noteError(message) {
    this.lastError = message;
  }

  send(event) {
    if (!this.open) return false;
    this.ws.send(JSON.stringify(event));
    return true;
  }

  disconnect() {
    this.wanted = false;
    clearTimeout(this.timer);
    this.timer = null;
    if (this.ws) {
      this.ws.close(1000);
    } else {
      this.onState("closed", "disconnected");
    }
  }

  dispose() {
    if (!this.ws) return;
    const ws = this.ws;
    this.ws = null;
    ws.onopen = ws.onmessage = ws.onclose = null;
    if (ws.readyState <= WebSocket.OPEN) ws.close(1000);
  }
}
