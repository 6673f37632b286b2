// The WebSocket link to the service (docs/api.md): hello, auth, start_listening with
// `since` so a reconnect gets exactly the missed events, and request/response.

const BACKOFF_MS = [250, 500, 1000, 2000, 4000];

export class Connection {
  /**
   * @param {object} hooks  onState(state), onEvent(message), onLink(live: boolean)
   */
  constructor(url, token, hooks) {
    this.url = url;
    this.token = token;
    this.hooks = hooks;
    this.lastSeq = null;
    this.ws = null;
    this.nextId = 1;
    this.pending = new Map();
    this.attempt = 0;
    this.live = false;
  }

  start() {
    const ws = new WebSocket(this.url);
    this.ws = ws;
    ws.addEventListener("message", (msg) => this._onMessage(msg.data));
    ws.addEventListener("close", () => this._onClose(ws));
  }

  /** Send a command and resolve with its result (reject on error or disconnect). */
  request(command, args = {}) {
    return new Promise((resolve, reject) => {
      if (!this.ws || this.ws.readyState !== WebSocket.OPEN) {
        reject(new Error("not connected"));
        return;
      }
      const id = String(this.nextId++);
      this.pending.set(id, { resolve, reject });
      this.ws.send(JSON.stringify({ message_id: id, command, ...args }));
    });
  }

  async _onMessage(text) {
    const msg = JSON.parse(text);
    if (msg.type === "server_info") {
      try {
        if (msg.requires_auth) await this.request("auth", { token: this.token || "" });
        const args = this.lastSeq === null ? {} : { since: this.lastSeq };
        const result = await this.request("start_listening", args);
        if (result.state) this.hooks.onState(result.state);
        for (const event of result.events) this._event(event);
        // A full state (history too short, or the service lost its own) restarts
        // the numbering from the server's last event.
        this.lastSeq = result.last_seq;
        this.attempt = 0;
        this._link(true);
      } catch (err) {
        console.warn("could not start listening:", err.message);
      }
      return;
    }
    if (msg.type === "result") {
      const waiter = this.pending.get(String(msg.message_id));
      if (!waiter) return;
      this.pending.delete(String(msg.message_id));
      if (msg.success) waiter.resolve(msg.result);
      else waiter.reject(new Error(`${msg.error_code}: ${msg.details}`));
      return;
    }
    if (msg.type === "event") this._event(msg);
  }

  _event(msg) {
    if (this.lastSeq !== null && msg.seq <= this.lastSeq) return;
    this.lastSeq = msg.seq;
    this.hooks.onEvent(msg);
  }

  _onClose(ws) {
    if (ws !== this.ws) return;
    for (const waiter of this.pending.values()) waiter.reject(new Error("connection lost"));
    this.pending.clear();
    this._link(false);
    const delay = BACKOFF_MS[Math.min(this.attempt, BACKOFF_MS.length - 1)];
    this.attempt += 1;
    setTimeout(() => this.start(), delay);
  }

  _link(live) {
    if (this.live === live && live) return;
    this.live = live;
    this.hooks.onLink(live);
  }
}
