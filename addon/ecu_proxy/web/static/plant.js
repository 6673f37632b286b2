// The live plant view: one card per ECU, one row per inverter, one tile per DC input.
// Nodes are built once per ECU/inverter and then only their texts change, so an
// update of 100 inverters stays cheap.

import { h, setNum, ago } from "./format.js";

// A DC input producing less than this share of the ECU's best input stands out.
const WEAK_SHARE = 0.3;
const WEAK_MIN_BEST_W = 20;

const cards = new Map(); // ecu_id -> {root, nums, invs: Map(inv_id -> row)}

function stat(label, node) {
  return h("div", { class: "stat" }, h("dt", { text: label }), node);
}

function numNode(path, cls = "") {
  return h("dd", { "data-path": path, class: cls });
}

function buildCard(ecuId) {
  const base = `ecus.${ecuId}`;
  const n = {
    model: h("span"),
    power: numNode(`${base}.power_w`),
    today: numNode(`${base}.energy_today_kwh`),
    lifetime: numNode(`${base}.lifetime_energy_kwh`),
    upload: h("dd", { class: "small" }),
    ema: h("dd", { class: "small" }),
    rtt: numNode(`${base}.upstream.rtt_ms`, "small"),
    online: h("span"),
  };
  const invs = h("div", { class: "invs", role: "list", "aria-label": `Inverters of ECU ${ecuId}` });
  const root = h(
    "article",
    { class: "card ecu", "data-ecu": ecuId, "aria-labelledby": `ecu-${ecuId}` },
    h(
      "div",
      { class: "ecu-head" },
      h("h2", { id: `ecu-${ecuId}` }, n.model, " ", h("span", { class: "ecu-id", text: ecuId })),
      n.online,
    ),
    h(
      "dl",
      { class: "stats" },
      stat("Power", n.power),
      stat("Energy today", n.today),
      stat("Lifetime", n.lifetime),
      stat("Last upload", n.upload),
      stat("EMA upload", n.ema),
      stat("EMA round-trip", n.rtt),
    ),
    invs,
  );
  return { root, n, invs, rows: new Map(), order: "" };
}

function buildRow(ecuId, invId) {
  const base = `ecus.${ecuId}.inverters.${invId}`;
  const n = {
    family: h("span", { class: "inv-ac" }),
    badge: h("span", { class: "badge" }),
    power: h("span", { "data-path": `${base}.power_w` }),
    acv: h("span", { "data-path": `${base}.ac_voltage_v` }),
    hz: h("span", { "data-path": `${base}.frequency_hz` }),
    temp: h("span", { "data-path": `${base}.temperature_c` }),
    today: h("span", { "data-path": `${base}.energy_today_kwh` }),
  };
  const tiles = h("div", { class: "tiles", "aria-label": `DC inputs of ${invId}` });
  const root = h(
    "div",
    { class: "inv", role: "listitem", "data-inverter": invId },
    h(
      "div",
      { class: "inv-name" },
      h("div", {}, h("span", { class: "id", text: invId }), n.badge),
      h("div", { class: "inv-ac" }, n.family, " · ", n.power, " · ", n.today),
      h("div", { class: "inv-ac" }, n.acv, " · ", n.hz, " · ", n.temp),
    ),
    tiles,
  );
  return { root, n, tiles, chans: [], base };
}

function buildTile(base, index, number) {
  const p = `${base}.channels.${index}`;
  const n = {
    w: h("div", { class: "w", "data-path": `${p}.power_w` }),
    v: h("span", { "data-path": `${p}.dc_voltage_v` }),
    a: h("span", { "data-path": `${p}.dc_current_a` }),
  };
  const root = h("div", { class: "tile", role: "group", "aria-label": `Input ${number}` },
    h("div", { text: `DC ${number}` }), n.w, h("div", {}, n.v, " · ", n.a));
  return { root, n };
}

function updateRow(row, inv, best) {
  const n = row.n;
  const family = inv.family || inv.type_code || "";
  if (n.family.textContent !== family) n.family.textContent = family;
  const online = Boolean(inv.online);
  if (row.root.dataset.online !== String(online)) {
    row.root.dataset.online = String(online);
    n.badge.textContent = online ? "online" : "offline";
    n.badge.className = `badge ${online ? "on" : "off"}`;
  }
  setNum(n.power, inv.power_w, 1, "W");
  setNum(n.today, inv.energy_today_kwh, 3, "kWh today");
  setNum(n.acv, inv.ac_voltage_v, 1, "V AC");
  setNum(n.hz, inv.frequency_hz, 1, "Hz");
  setNum(n.temp, inv.temperature_c, 0, "°C");
  const channels = inv.channels || [];
  while (row.chans.length < channels.length) {
    const i = row.chans.length;
    const tile = buildTile(row.base, i, channels[i].channel);
    row.chans.push(tile);
    row.tiles.append(tile.root);
  }
  while (row.chans.length > channels.length) row.chans.pop().root.remove();
  channels.forEach((ch, i) => {
    const tile = row.chans[i];
    setNum(tile.n.w, ch.power_w, 1, "W");
    setNum(tile.n.v, ch.dc_voltage_v, 1, "V");
    setNum(tile.n.a, ch.dc_current_a, 1, "A");
    const level = best > 0 ? Math.max(0, Math.min(1, (ch.power_w || 0) / best)) : 0;
    const shade = level.toFixed(2);
    if (tile.shade !== shade) {
      tile.shade = shade;
      tile.root.style.setProperty("--level", shade);
    }
    const weak = online && best >= WEAK_MIN_BEST_W && level < WEAK_SHARE;
    if (tile.weak !== weak) {
      tile.weak = weak;
      tile.root.classList.toggle("weak", weak);
      tile.root.title = weak ? "Much less than the best input of this ECU" : "";
    }
  });
}

function updateCard(card, ecu) {
  const n = card.n;
  n.model.textContent = ecu.model || "ECU";
  setNum(n.power, ecu.power_w, 0, "W");
  setNum(n.today, ecu.energy_today_kwh, 3, "kWh");
  setNum(n.lifetime, ecu.lifetime_energy_kwh, 1, "kWh");
  n.upload.dataset.ago = ecu.last_seen || "";
  n.upload.title = ecu.last_record_at ? `ECU time of the record: ${ecu.last_record_at}` : "";
  n.upload.textContent = ago(ecu.last_seen);
  const up = ecu.upstream || {};
  n.ema.textContent = up.result ? `${up.result}${up.at ? ` · ${ago(up.at)}` : ""}` : "no upload yet";
  n.ema.className = `small ${up.result === "ok" || up.result === "cloudless" ? "status-ok" : up.result ? "status-bad" : ""}`;
  if (up.result && up.at) {
    n.ema.dataset.ago = up.at;
    n.ema.dataset.agoPrefix = up.result;
  } else {
    delete n.ema.dataset.ago;
  }
  setNum(n.rtt, up.rtt_ms ?? null, 1, "ms");
  n.online.textContent = `${ecu.inverters_online ?? 0} of ${ecu.inverter_count ?? 0} inverters online`;
  const invs = ecu.inverters || {};
  let best = 0;
  for (const inv of Object.values(invs)) {
    if (!inv.online) continue;
    for (const ch of inv.channels || []) best = Math.max(best, ch.power_w || 0);
  }
  const ids = Object.keys(invs).sort();
  for (const id of ids) {
    let row = card.rows.get(id);
    if (!row) {
      row = buildRow(ecu.ecu_id, id);
      card.rows.set(id, row);
    }
    updateRow(row, invs[id], best);
  }
  const order = ids.join(",");
  if (order !== card.order) {
    card.order = order;
    card.invs.replaceChildren(...ids.map((id) => card.rows.get(id).root));
  }
}

/** Render the ECUs of a state document into `container`. */
export function renderPlant(container, empty, ecus) {
  const ids = Object.keys(ecus).sort();
  empty.hidden = ids.length > 0;
  for (const id of ids) {
    let card = cards.get(id);
    if (!card) {
      card = buildCard(id);
      cards.set(id, card);
      container.append(card.root);
    }
    updateCard(card, ecus[id]);
  }
  for (const [id, card] of cards) {
    if (!(id in ecus)) {
      card.root.remove();
      cards.delete(id);
    }
  }
}
