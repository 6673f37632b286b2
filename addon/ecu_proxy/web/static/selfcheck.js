// The setup self-check: the `selfcheck` object of /api/health, one line per check,
// with a tick or the step to fix it.

import { h, ago } from "./format.js";

const TITLES = {
  ports: "Relay ports bound",
  ecus: "ECU connections",
  dns: "DNS rewrite of ecu.apsystemsema.com",
  ema: "EMA reachable",
  clock: "ECU clocks",
};
const MARKS = { ok: "✓", error: "✗", warning: "!", waiting: "…", off: "–" };

function when(iso) {
  if (!iso) return null;
  const t = new Date(iso);
  return Number.isNaN(t.getTime()) ? iso : `${t.toLocaleString()} (${ago(iso)})`;
}

function table(head, rows) {
  if (!rows.length) return null;
  return h(
    "table",
    {},
    h("thead", {}, h("tr", {}, ...head.map((t) => h("th", { scope: "col", text: t })))),
    h("tbody", {}, ...rows.map((r) => h("tr", {}, ...r.map((c) => h("td", { text: c ?? "–" }))))),
  );
}

function details(name, c) {
  switch (name) {
    case "ports":
      return table(["Listening", "Failed"], [[c.listening.join(", ") || "none",
        Object.entries(c.failed).map(([p, s]) => `${p}: ${s}`).join(", ") || "none"]]);
    case "ecus":
      return table(["ECU", "From", "Port", "When"],
        c.seen.map((s) => [s.ecu_id, s.peer, s.port === null ? null : String(s.port),
          when(s.at)]));
    case "dns":
      return table(["Resolves to", "This host"],
        [[c.resolved.join(", ") || "nothing", c.host_addresses.join(", ") || "unknown"]]);
    case "ema":
      return table(["Address", "Last reply", "Round-trip"],
        [[c.address, when(c.last_reply_at),
          c.rtt_ms === null ? null : `${c.rtt_ms} ms`]]);
    case "clock":
      return table(["ECU", "Clock offset"], c.ecus.map((e) => [e.ecu_id, `${e.skew_s} s`]));
    default:
      return null;
  }
}

/** Render the self-check report into the list element. */
export function renderChecks(list, report) {
  if (!report) {
    list.replaceChildren(h("li", { class: "check", "data-status": "error" },
      "The self-check needs the API token; reload the page."));
    return;
  }
  list.replaceChildren(
    ...Object.keys(TITLES).filter((k) => report[k]).map((name) => {
      const c = report[name];
      return h(
        "li",
        { class: "check", "data-check": name, "data-status": c.status },
        h("h3", {}, h("span", { class: "mark", "aria-hidden": "true", text: MARKS[c.status] || "?" }),
          `${TITLES[name]}: `, h("span", { class: "status", text: c.status })),
        h("p", { class: "summary", text: c.summary }),
        c.fix ? h("p", { class: "fix" }, h("strong", { text: "To fix: " }), c.fix, " ",
          c.link ? h("a", { href: c.link, target: "_blank", rel: "noopener", text: "Guide" }) : null) : null,
        details(name, c),
      );
    }),
  );
}
