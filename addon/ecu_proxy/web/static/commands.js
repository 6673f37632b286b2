// The EMA command log (docs/api.md, "EMA commands"): per ECU what EMA asked, what the
// proxy did with it and what the ECU answered, newest first; and the guard setting,
// read-only, with the way to change it.

import { h, ago } from "./format.js";

const KEEP = 20; // as many as the state document carries per ECU
const SLUG = "apsystems_ecu_proxy";

// The actions of control.py's Action enum in plain words.
const LABELS = {
  poll: "Poll",
  no_more_commands: "No more commands",
  acknowledgement: "Acknowledgement",
  request_reports: "Request reports",
  inverter_list_report: "Inverter list report",
  set_inverter_list: "Set the inverter list",
  time_zone_report: "Time zone report",
  set_time_zone: "Set the time zone",
  ema_server_report: "EMA server report",
  set_ema_server: "Set the EMA server",
  custom_command: "Custom command",
  set_max_power: "Set the maximum power",
  max_power_report: "Maximum power report",
  switch_inverters: "Switch inverters on or off",
  clear_gfdi: "Clear ground-fault (GFDI) lock",
  set_reporting: "Turn reporting on or off",
  ird_report: "IRD report",
  set_ird: "Set IRD",
  protection_report: "Grid protection report",
  inverter_protection_report: "Inverter protection report",
  set_protection: "Set grid protection",
  firmware_update: "Firmware update",
  power_factor_report: "Power factor report",
  set_power_factor: "Set the power factor",
  report: "Report",
};

const MODES = {
  off: "off: every command is forwarded",
  block_changes: "block changes: every command that changes the plant is blocked",
  block_listed: "block listed: only the listed actions are blocked",
};

const words = (text) => String(text).replace(/_/g, " ");

/** Return an action in plain words; an unknown one as its command id. */
export function actionLabel(action, command) {
  return LABELS[action] || command || words(action);
}

/** Return the safe parameters of a command in a short readable form. */
export function paramText(params, rawText) {
  const parts = [];
  for (const [key, value] of Object.entries(params || {})) {
    if (key === "inverter_ids" || key === "count") continue;
    if (key === "servers" && Array.isArray(value)) {
      parts.push(value.map((s) => `${s.host}:${(s.ports || []).join("/")}`).join(", "));
    } else if (value !== null && typeof value === "object") {
      parts.push(`${words(key)} ${JSON.stringify(value)}`);
    } else if (value !== null) {
      parts.push(`${words(key)} ${key === "text" ? value : words(value)}`);
    }
  }
  const ids = Array.isArray(params?.inverter_ids) ? params.inverter_ids : [];
  const count = ids.length || params?.count || 0;
  if (count) {
    const shown = ids.slice(0, 3).join(", ");
    const more = ids.length > 3 ? ", …" : "";
    parts.push(`${count} inverter${count === 1 ? "" : "s"}${shown ? ` (${shown}${more})` : ""}`);
  }
  if (!parts.length && rawText) parts.push(rawText);
  const text = parts.join("; ");
  return text.length > 120 ? `${text.slice(0, 119)}…` : text || "–";
}

function answerText(c) {
  const a = c.answer;
  if (!a) return c.blocked ? "– (told: no more commands)" : "no answer";
  if (a.action === "acknowledgement") return `acknowledged${a.result ? `: ${words(a.result)}` : ""}`;
  return actionLabel(a.action, a.command);
}

const key = (c) => `${c.at}|${c.inner_command}|${c.outcome}`;

/** The commands per ECU and the guard, kept apart from the plant's records. */
export class CommandStore {
  constructor() {
    this.byEcu = new Map();
    this.guard = null;
    this.version = 0;
  }

  /** Take the commands and the guard of a full state document. */
  setState(state) {
    this.byEcu.clear();
    for (const [id, ecu] of Object.entries(state.ecus || {})) {
      if (Array.isArray(ecu.commands)) this.byEcu.set(id, ecu.commands.slice(-KEEP));
    }
    this.guard = state.guard || null;
    this.version += 1;
  }

  /** Add the data of an `ema_command` event. */
  add(data) {
    const list = this.byEcu.get(data.ecu_id) || [];
    if (list.some((c) => key(c) === key(data))) return;
    const { blocked_count: count, ...entry } = data;
    list.push(entry);
    this.byEcu.set(data.ecu_id, list.slice(-KEEP));
    const g = this.guard;
    if (g) {
      g.mode = data.guard;
      if (typeof count === "number") {
        g.blocked_by_ecu = { ...g.blocked_by_ecu, [data.ecu_id]: count };
        g.blocked_total = Object.values(g.blocked_by_ecu).reduce((a, b) => a + b, 0);
      }
    }
    this.version += 1;
  }
}

function optionsLink() {
  const names = " (options ema_command_guard and blocked_actions)";
  try {
    // Under Ingress the page sits in Home Assistant's frame, on its origin.
    if (new URL(document.baseURI).pathname.startsWith("/api/hassio_ingress/")) {
      const href = `${window.top.location.origin}/hassio/addon/${SLUG}/config`;
      return h("span", {}, h("a", { href, target: "_top", id: "guard-options", text: "Change it in the app's options" }), names);
    }
  } catch {
    // A foreign frame: no link, the words below say where.
  }
  return h("span", { id: "guard-options", text: `Change it in the app's configuration${names}.` });
}

function guardLine(g) {
  if (!g) return null;
  const listed = (g.blocked_actions || []).map((a) => `${actionLabel(a)} (${a})`).join(", ");
  return h(
    "p",
    { class: "guard", id: "guard", "data-mode": g.mode },
    h("strong", { text: "Guard: " }),
    h("span", { class: "guard-mode", text: MODES[g.mode] || words(g.mode) }),
    g.mode === "block_listed" ? ` · listed: ${listed || "none"}` : "",
    ` · ${g.blocked_total} blocked since the app started · `,
    optionsLink(),
  );
}

function row(c) {
  const exact = new Date(c.at).toLocaleString();
  const outcome = c.blocked ? "blocked" : "forwarded";
  return h(
    "tr",
    { "data-outcome": outcome, "data-action": c.action },
    h("td", { "data-label": "When" },
      h("time", { dateTime: c.at, title: exact, "data-ago": c.at, text: ago(c.at) })),
    h("td", { "data-label": "Action", title: c.inner_command || "" }, actionLabel(c.action, c.inner_command || c.command)),
    h("td", { "data-label": "Changes plant", text: c.changes_plant ? "yes" : "no" }),
    h("td", { "data-label": "Parameters", class: "params", title: JSON.stringify(c.parameters) },
      paramText(c.parameters, c.raw_text)),
    h("td", { "data-label": "Proxy" },
      h("span", { class: `outcome ${outcome}`, text: c.blocked ? "✕ blocked" : "✓ forwarded" })),
    h("td", { "data-label": "ECU answer", class: "answer", text: answerText(c) }),
  );
}

function table(ecuId, list) {
  const head = ["When", "Action", "Changes plant", "Parameters", "Proxy", "ECU answer"];
  return h(
    "table",
    { class: "cmds", "data-ecu-commands": ecuId },
    h("caption", { text: `ECU ${ecuId}` }),
    h("thead", {}, h("tr", {}, ...head.map((t) => h("th", { scope: "col", text: t })))),
    h("tbody", {}, ...list.slice().reverse().map(row)),
  );
}

let shown = -1;

/** Show the guard and each ECU's commands; hidden until the service reports either. */
export function renderCommands(section, body, store) {
  if (store.version === shown) return;
  shown = store.version;
  const lists = [...store.byEcu.entries()].filter(([, list]) => list.length);
  section.hidden = !store.guard && !lists.length;
  if (section.hidden) return;
  body.replaceChildren(
    guardLine(store.guard) || "",
    ...(lists.length
      ? lists.map(([id, list]) => table(id, list))
      : [h("p", { class: "empty", text: "No commands from EMA yet. The ECU asks EMA for them about every 15 minutes." })]),
  );
}
