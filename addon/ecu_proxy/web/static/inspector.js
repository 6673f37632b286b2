// The frame inspector: the captured frames with their decoded fields next to the raw
// text; the field under the mouse (or keyboard focus) is highlighted in the raw text.

import { h } from "./format.js";
import { frameSpans, valueAt } from "./spans.js";

export class Inspector {
  constructor(root, load, token) {
    this.load = load; // () => Promise<frames[]>
    this.token = token;
    this.frames = [];
    this.current = null;
    this.selected = new Set();
    this.list = root.querySelector("#frame-list");
    this.detail = root.querySelector("#frame-detail");
    this.note = root.querySelector("#frames-note");
    this.filters = {
      ecu: root.querySelector("#f-ecu"),
      port: root.querySelector("#f-port"),
      kind: root.querySelector("#f-kind"),
    };
    for (const select of Object.values(this.filters)) {
      select.addEventListener("change", () => this.renderList());
    }
    root.querySelector("#frames-reload").addEventListener("click", () => this.reload());
    root.querySelector("#frames-download").addEventListener("click", () => this.download());
  }

  async reload() {
    try {
      this.frames = await this.load();
    } catch (err) {
      this.note.hidden = false;
      this.note.textContent = `Could not load frames: ${err.message}`;
      return;
    }
    this.note.hidden = this.frames.length > 0;
    this.note.textContent = "No frames captured yet (or the capture_frames option is off).";
    this.fillFilter(this.filters.ecu, (f) => f.decoded.ecu_id);
    this.fillFilter(this.filters.port, (f) => String(f.port));
    this.fillFilter(this.filters.kind, (f) => f.decoded.kind);
    this.renderList();
  }

  fillFilter(select, key) {
    const keep = select.value;
    const values = [...new Set(this.frames.map(key).filter(Boolean))].sort();
    select.replaceChildren(h("option", { value: "", text: "all" }),
      ...values.map((v) => h("option", { value: v, text: v })));
    select.value = values.includes(keep) ? keep : "";
  }

  visible() {
    const { ecu, port, kind } = this.filters;
    return this.frames.filter((f) =>
      (!ecu.value || f.decoded.ecu_id === ecu.value) &&
      (!port.value || String(f.port) === port.value) &&
      (!kind.value || f.decoded.kind === kind.value));
  }

  renderList() {
    const frames = this.visible().slice().reverse(); // newest first
    this.list.replaceChildren(...frames.map((f) => {
      const arrow = f.direction === "ecu_to_ema" ? "ECU → EMA" : "EMA → ECU";
      const time = f.received_at.slice(11, 19);
      const box = h("input", { type: "checkbox", "aria-label": `Select frame ${f.seq} for download` });
      box.checked = this.selected.has(f.seq);
      box.addEventListener("change", () => {
        if (box.checked) this.selected.add(f.seq); else this.selected.delete(f.seq);
      });
      const open = h("button", { type: "button", "data-seq": String(f.seq) },
        `#${f.seq} ${time} ${f.port} ${arrow} ${f.decoded.kind}${f.decoded.ecu_id ? ` ${f.decoded.ecu_id}` : ""}`);
      open.addEventListener("click", () => this.show(f));
      return h("li", { "aria-current": this.current === f.seq ? "true" : "false" }, box, open);
    }));
  }

  show(frame) {
    this.current = frame.seq;
    for (const li of this.list.children) {
      li.setAttribute("aria-current", li.querySelector("button").dataset.seq === String(frame.seq) ? "true" : "false");
    }
    const raw = h("pre", { class: "raw", "aria-label": "Raw frame text", tabindex: "0" }, frame.raw);
    const spans = frameSpans(frame.raw, frame.decoded);
    const highlight = (span) => {
      if (!span) {
        raw.replaceChildren(frame.raw);
        return;
      }
      raw.replaceChildren(frame.raw.slice(0, span.start),
        h("span", { class: "hl", text: frame.raw.slice(span.start, span.end) }),
        frame.raw.slice(span.end));
    };
    const rows = spans.map((span) => {
      const value = valueAt(frame.decoded, span.path);
      const row = h("tr", { tabindex: "0", "data-span": `${span.start}-${span.end}`, "data-path": span.path },
        h("th", { scope: "row", text: span.label }),
        h("td", { text: value === undefined ? "" : JSON.stringify(value) }),
        h("td", { class: "offsets", text: `${span.start}–${span.end}` }));
      const on = () => { row.classList.add("hl"); highlight(span); };
      const off = () => { row.classList.remove("hl"); highlight(null); };
      row.addEventListener("mouseenter", on);
      row.addEventListener("focus", on);
      row.addEventListener("mouseleave", off);
      row.addEventListener("blur", off);
      return row;
    });
    const d = frame.decoded;
    const facts = `#${frame.seq} · ${frame.received_at} · port ${frame.port} · ${frame.direction} · ` +
      `from ${frame.peer} · ${frame.size} bytes${frame.truncated ? " (truncated)" : ""} · ${d.kind}`;
    const extra = [];
    if (d.error) extra.push(h("p", { class: "status-bad", text: `Decoder: ${d.error}` }));
    for (const w of d.warnings || []) extra.push(h("p", { class: "status-bad", text: `Warning: ${w}` }));
    this.detail.replaceChildren(
      h("p", { class: "facts", text: facts }),
      ...extra,
      raw,
      rows.length
        ? h("table", { class: "fields" },
          h("caption", { class: "empty", text: "Point at a field to see it in the raw text." }),
          h("thead", {}, h("tr", {}, h("th", { scope: "col", text: "Field" }),
            h("th", { scope: "col", text: "Decoded" }), h("th", { scope: "col", text: "Characters" }))),
          h("tbody", {}, ...rows))
        : h("p", { class: "empty", text: "No field layout for this kind of frame." }),
      h("details", {}, h("summary", { text: "Decoded JSON" }),
        h("pre", { class: "raw", text: JSON.stringify(d, null, 2) })),
    );
  }

  /** The text of the selected frames (all shown frames when none is ticked). */
  exportText() {
    const shown = this.visible();
    const picked = shown.filter((f) => this.selected.has(f.seq));
    const frames = picked.length ? picked : shown;
    const lines = [
      "# APsystems ECU Proxy: captured frames for a bug report",
      `# exported ${new Date().toISOString()}, ${frames.length} frame(s)`,
      "# seq received_at port direction peer size kind",
    ];
    for (const f of frames) {
      lines.push("", `# ${f.seq} ${f.received_at} ${f.port} ${f.direction} ${f.peer} ${f.size} ${f.decoded.kind}` +
        (f.truncated ? " truncated" : ""));
      lines.push(f.raw);
    }
    let text = lines.join("\n") + "\n";
    // Frames carry no secrets, but never let the page's own token slip into a report.
    if (this.token) text = text.split(this.token).join("***");
    return text;
  }

  download() {
    const blob = new Blob([this.exportText()], { type: "text/plain" });
    const url = URL.createObjectURL(blob);
    const stamp = new Date().toISOString().replace(/[:.]/g, "-").slice(0, 19);
    const a = h("a", { href: url });
    a.download = `ecu-proxy-frames-${stamp}.txt`;
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  }
}
