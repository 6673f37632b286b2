// Where each decoded field sits in a frame's raw text, from the layouts in
// docs/decoder.md. Each span: {label, path (into `decoded`), start, end}.

const BLOCK_LEN = { "03": 106, "04": 147, "05": 75, "07": 88, "08": 128 };
const ECU_BLOCK = [
  ["version", "version", 3, 5],
  ["length", "length", 5, 10],
  ["ECU id", "ecu_id", 18, 30],
  ["power (W)", "power_w", 30, 40],
  ["round energy (kWh)", "round_energy_kwh", 40, 50],
  ["lifetime energy (kWh)", "lifetime_energy_kwh", 50, 60],
  ["timestamp (ECU clock)", "timestamp", 60, 74],
  ["inverter count", "inverter_count", 74, 77],
  ["more records", "more_records", 78, 79],
];

function group(spans, inv, ch, o, label, withMarker = true) {
  const p = `inverters.${inv}.channels.${ch}`;
  if (withMarker) spans.push({ label: `${label} marker`, path: `${p}.channel`, start: o, end: o + 1 });
  spans.push({ label: `${label} DC voltage (V)`, path: `${p}.dc_voltage_v`, start: o + 1, end: o + 6 });
  spans.push({ label: `${label} DC current (A)`, path: `${p}.dc_current_a`, start: o + 6, end: o + 9 });
  spans.push({ label: `${label} round energy (Wh)`, path: `${p}.round_energy_wh`, start: o + 9, end: o + 15 });
  spans.push({ label: `${label} power (W)`, path: `${p}.power_w`, start: o + 15, end: o + 20 });
}

function v18Block(spans, inv, i, pos) {
  const code = inv.type_code;
  const p = `inverters.${i}`;
  const name = `inverter ${inv.id}`;
  const len = inv.raw ? inv.raw.length : BLOCK_LEN[code];
  if (!len) return Infinity; // nothing after an unreadable block can be placed
  if (inv.raw) {
    spans.push({ label: `${name} (kept raw)`, path: `${p}.raw`, start: pos, end: pos + inv.raw.length });
    return pos + inv.raw.length;
  }
  spans.push({ label: `${name} id`, path: `${p}.id`, start: pos, end: pos + 12 });
  spans.push({ label: `${name} type code`, path: `${p}.type_code`, start: pos + 12, end: pos + 14 });
  if (code === "04") {
    spans.push({ label: `${name} DC voltage (V)`, path: `${p}.channels.0.dc_voltage_v`, start: pos + 14, end: pos + 19 });
    spans.push({ label: `${name} frequency (Hz)`, path: `${p}.frequency_hz`, start: pos + 19, end: pos + 24 });
    spans.push({ label: `${name} temperature (°C)`, path: `${p}.temperature_c`, start: pos + 24, end: pos + 27 });
    let o = pos + 27;
    for (let c = 0; c < 4; c++) {
      const cp = `${p}.channels.${c}`;
      const label = `${name} DC ${c + 1}`;
      spans.push({ label: `${label} DC current (A)`, path: `${cp}.dc_current_a`, start: o + 1, end: o + 4 });
      let e = o + 4;
      if (c < 3) {
        spans.push({ label: `${name} phase ${c + 1} voltage (V)`, path: `${p}.phase_voltages_v.${c}`, start: o + 4, end: o + 7 });
        e = o + 23;
      }
      spans.push({ label: `${label} round energy (Wh)`, path: `${cp}.round_energy_wh`, start: e, end: e + 6 });
      spans.push({ label: `${label} power (W)`, path: `${cp}.power_w`, start: e + 6, end: e + 11 });
      o += 34;
    }
    return pos + len;
  }
  spans.push({ label: `${name} AC voltage (V)`, path: `${p}.ac_voltage_v`, start: pos + 14, end: pos + 17 });
  spans.push({ label: `${name} frequency (Hz)`, path: `${p}.frequency_hz`, start: pos + 17, end: pos + 22 });
  spans.push({ label: `${name} temperature (°C)`, path: `${p}.temperature_c`, start: pos + 22, end: pos + 25 });
  const [first, step] = code === "03" || code === "05" ? [41, 31] : [45, 20];
  (inv.channels || []).forEach((ch, c) => group(spans, i, c, pos + first + c * step, `${name} DC ${ch.channel}`));
  return pos + len;
}

function v15Blocks(spans, raw, decoded) {
  const index = new Map((decoded.inverters || []).map((inv, i) => [inv.id, i]));
  const chan = { 0: 1, A: 1, B: 2 };
  for (let pos = 86; pos + 50 <= raw.length; pos += 50) {
    const id = raw.slice(pos, pos + 12);
    const i = index.get(id);
    if (i === undefined) break;
    const inv = decoded.inverters[i];
    const c = (inv.channels || []).findIndex((ch) => ch.channel === chan[raw[pos + 12]]);
    const p = `inverters.${i}`;
    const cp = `${p}.channels.${c}`;
    const name = `inverter ${id} DC ${raw[pos + 12]}`;
    spans.push({ label: `${name} id`, path: `${p}.id`, start: pos, end: pos + 12 });
    spans.push({ label: `${name} DC voltage (V)`, path: `${cp}.dc_voltage_v`, start: pos + 13, end: pos + 18 });
    spans.push({ label: `${name} DC current (A)`, path: `${cp}.dc_current_a`, start: pos + 18, end: pos + 21 });
    spans.push({ label: `${name} power (W)`, path: `${cp}.power_w`, start: pos + 21, end: pos + 26 });
    spans.push({ label: `${name} frequency (Hz)`, path: `${p}.frequency_hz`, start: pos + 26, end: pos + 31 });
    spans.push({ label: `${name} temperature (°C)`, path: `${p}.temperature_c`, start: pos + 31, end: pos + 34 });
    spans.push({ label: `${name} AC voltage (V)`, path: `${p}.ac_voltage_v`, start: pos + 34, end: pos + 37 });
    spans.push({ label: `${name} round energy (Wh)`, path: `${cp}.round_energy_wh`, start: pos + 37, end: pos + 47 });
  }
}

/** Return the field spans of a captured frame (empty when the layout is unknown). */
export function frameSpans(raw, decoded) {
  const spans = [];
  switch (decoded.kind) {
    case "data": {
      for (const [label, path, start, end] of ECU_BLOCK) spans.push({ label, path, start, end });
      if (decoded.version === "15") {
        v15Blocks(spans, raw, decoded);
      } else {
        let pos = 86;
        (decoded.inverters || []).forEach((inv, i) => { pos = v18Block(spans, inv, i, pos); });
      }
      break;
    }
    case "control":
      spans.push({ label: "version", path: "version", start: 3, end: 5 });
      spans.push({ label: "length", path: "length", start: 5, end: 10 });
      spans.push({ label: "command", path: "command", start: 10, end: 14 });
      if (decoded.ecu_id) spans.push({ label: "ECU id", path: "ecu_id", start: 18, end: 30 });
      break;
    case "reconcile_query":
      spans.push({ label: "ECU id", path: "ecu_id", start: 10, end: 22 });
      break;
    case "ema_reply":
      spans.push({ label: "status", path: "status", start: 0, end: 1 });
      (decoded.timestamps || []).forEach((_, i) =>
        spans.push({ label: `stored record ${i + 1}`, path: `timestamps.${i}`, start: 3 + 14 * i, end: 17 + 14 * i }));
      break;
    default:
      break;
  }
  return spans.filter((s) => s.start >= 0 && s.end <= raw.length && s.end > s.start);
}

/** Return the value at a dotted path of an object. */
export function valueAt(obj, path) {
  return path.split(".").reduce((o, k) => (o === null || o === undefined ? undefined : o[k]), obj);
}
