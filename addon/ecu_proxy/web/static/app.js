// Entry point: wires the WebSocket link, the state and the three views.

import { Connection } from "./conn.js";
import { refreshAges } from "./format.js";
import { renderPlant } from "./plant.js";
import { renderChecks } from "./selfcheck.js";
import { Inspector } from "./inspector.js";
import { CommandStore, renderCommands } from "./commands.js";

const token = document.querySelector('meta[name="api-token"]')?.content || null;
const $ = (id) => document.getElementById(id);
const state = { ecus: {} };
const commands = new CommandStore();
let conn = null;
let renderQueued = false;
let checkTimer = null;

function wsUrl() {
  const url = new URL("ws", document.baseURI);
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  return url.href;
}

function render() {
  renderQueued = false;
  renderPlant($("ecus"), $("plant-empty"), state.ecus);
  renderCommands($("commands"), $("commands-body"), commands);
  if (performance.getEntriesByName("update-start", "mark").length) {
    // Style and layout now rather than at the next frame, so that the measure
    // covers them; the browser would do the same work before painting anyway.
    void document.body.offsetHeight;
    performance.measure("update", "update-start");
    performance.clearMarks("update-start");
  }
}

function scheduleRender() {
  if (!performance.getEntriesByName("update-start", "mark").length) performance.mark("update-start");
  if (renderQueued) return;
  renderQueued = true;
  // One render per frame: a record and its upload status arrive back to back.
  requestAnimationFrame(render);
}

function setState(s) {
  state.ecus = s.ecus;
  commands.setState(s);
  scheduleRender();
}

function onEvent(msg) {
  const d = msg.data;
  const ecu = state.ecus[d.ecu_id];
  if (msg.event === "record") {
    state.ecus[d.ecu_id] = d.ecu;
  } else if (msg.event === "inverter_added") {
    if (ecu) ecu.inverters[d.inverter.id] = d.inverter;
  } else if (msg.event === "ecu_status") {
    if (ecu) ecu.upstream = d.upstream;
    else conn.request("get_state").then((r) => setState(r.state), () => {});
  } else if (msg.event === "ema_command") {
    commands.add(d);
  }
  scheduleRender();
  // The self-check follows what the ECUs do; refresh it shortly after activity.
  clearTimeout(checkTimer);
  checkTimer = setTimeout(() => {
    loadChecks();
    if (!$("frames").hidden) inspector.reload();
  }, 1000);
}

function onLink(live) {
  $("banner").hidden = live;
  const pill = $("link-state");
  pill.dataset.state = live ? "live" : "lost";
  pill.textContent = live ? "live" : "disconnected";
  if (live) loadChecks();
}

async function loadChecks() {
  try {
    const response = await fetch("api/health?selfcheck=1", {
      headers: token ? { Authorization: `Bearer ${token}` } : {},
      cache: "no-store",
    });
    const body = await response.json();
    renderChecks($("checks"), body.selfcheck || null);
  } catch (err) {
    console.warn("self-check unavailable:", err.message);
  }
}

function setupTabs() {
  const tabs = [...document.querySelectorAll('[role="tab"]')];
  const select = (tab) => {
    for (const t of tabs) {
      const on = t === tab;
      t.setAttribute("aria-selected", String(on));
      t.tabIndex = on ? 0 : -1;
      $(t.getAttribute("aria-controls")).hidden = !on;
    }
    if (tab.id === "tab-frames" && !inspector.loaded) {
      inspector.loaded = true;
      inspector.reload();
    }
    if (tab.id === "tab-check") loadChecks();
  };
  tabs.forEach((tab, i) => {
    tab.addEventListener("click", () => select(tab));
    tab.addEventListener("keydown", (e) => {
      const step = { ArrowRight: 1, ArrowLeft: -1 }[e.key];
      if (!step) return;
      const next = tabs[(i + step + tabs.length) % tabs.length];
      next.focus();
      select(next);
    });
  });
}

const inspector = new Inspector($("frames"), async () => (await conn.request("get_frames")).frames, token);
$("check-again").addEventListener("click", loadChecks);
setupTabs();
setInterval(() => refreshAges(), 15000);

conn = new Connection(wsUrl(), token, {
  onState: setState,
  onEvent,
  onLink,
});
conn.start();
window.ecuProxy = { state, commands, conn, inspector };
