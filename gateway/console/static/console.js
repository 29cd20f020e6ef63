// The console's start: who is signed in, the map, the tables (refreshed every second), the
// events stream, the alarms queue, the device panel, the incident board and, where the gateway
// has it, voice.
"use strict";
import {$, api, deviceLabel, el, emit, names, on, talkgroupLabel} from "./common.js";
import * as alarms from "./alarms.js";
import * as device from "./device.js";
import {addEvent} from "./events.js";
import * as incidents from "./incidents.js";
import {drawOfficers, initMap, officerState, panTo} from "./map.js";

function cell(text, title) {
  return el("td", {textContent: text ?? "", title: title ?? text ?? ""});
}

let talkers = new Set();

// "民盛社区 · Minsheng Community": the unit's Chinese name (from /api/org) before the API's name.
function chineseAnd(id, name) {
  const zh = names.units.get(id);
  return zh && zh !== name && /[\u4e00-\u9fff]/.test(zh) ? `${zh} · ${name}` : name;
}

function renderTalkgroups(tgs) {
  const body = $("#talkgroups tbody");
  body.replaceChildren(...tgs.map((tg) => {
    const tr = el("tr", {dataset: {tg: tg.id}, class: tg.talker ? "taken" : ""},
      cell(tg.id), cell(chineseAnd(tg.id, tg.name)), cell(String(tg.members)), cell(String(tg.affiliated)),
      cell(tg.talker ? deviceLabel(tg.talker) : ""));
    return tr;
  }));
}

function renderDevices(devices, live) {
  const sos = alarms.sosDevices();
  const body = $("#devices tbody");
  const liveBy = new Map(live.map((r) => [r.device, r]));
  body.replaceChildren(...devices.map((d) => {
    const state = officerState(liveBy.get(d.id), d.id, talkers, sos);
    const battery = d.battery ?? liveBy.get(d.id)?.battery ?? null;
    const id = cell(d.id);
    id.prepend(el("span", {class: `dot ${state}`}));
    if (sos.has(d.id)) id.append(el("span", {class: "sos", textContent: " SOS"}));
    const tr = el("tr", {dataset: {device: d.id, state}, class: d.presence === "online" ? "online" : "",
      onclick: () => emit("select-device", d.id)},
      id, cell(d.name), cell(talkgroupLabel(d.unit)), cell(d.role),
      cell(battery == null ? "—" : `${battery}%`), cell(`${state}${d.stunned ? " · stunned" : ""}`));
    return tr;
  }));
}

async function refresh() {
  try {
    const [health, tgs, devices, live] = await Promise.all([
      api("/api/health"), api("/api/talkgroups"), api("/api/devices"),
      api("/api/tracking/live").catch(() => []),
    ]);
    $("#status").textContent = `${health.status} · broker ${health.broker} · ${health.devices_online}/${health.devices} online`;
    for (const tg of tgs) names.talkgroups.set(tg.id, tg.name);
    for (const d of devices) names.devices.set(d.id, d);
    talkers = new Set(tgs.filter((t) => t.talker).map((t) => t.talker));
    alarms.devicesSeen(devices);
    renderTalkgroups(tgs);
    renderDevices(devices, live);
    drawOfficers(live, talkers, alarms.sosDevices());
    device.liveSeen(live);
    document.body.dataset.ready = "1";
  } catch (err) {
    $("#status").textContent = "gateway unreachable: " + err.message;
  }
}

function listen() {
  const ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/api/events`);
  ws.onopen = () => { document.body.dataset.stream = "open"; };
  ws.onmessage = (msg) => {
    let e;
    try { e = JSON.parse(msg.data); } catch { return; }
    addEvent(e);
    alarms.onEvent(e);
    device.onEvent(e);
    incidents.onEvent(e);
  };
  ws.onclose = () => { document.body.dataset.stream = "closed"; setTimeout(listen, 2000); };
}

async function startVoice() {
  try {
    const voice = await import("/static/voice.js");
    const panel = $("#voice-panel");
    panel.replaceChildren();
    const state = await voice.initVoice({api, panel, names, deviceLabel, talkgroupLabel});
    if (heard) state.listen(heard);
  } catch (err) {
    console.info("voice is not available", err);
  }
}

on("select-device", (id) => device.selectDevice(id));
on("locate", (lat, lon) => panTo(lat, lon));
// An SOS opens its talkgroup's audio: asked before the voice panel is up, it is applied then.
let heard = null;
on("listen", (talkgroup) => { heard = talkgroup; window.xixinVoice?.listen?.(talkgroup); });

$("#signout").onclick = async () => {
  await fetch("/api/auth/logout", {method: "POST", credentials: "same-origin"});
  location.assign("/login");
};

api("/api/auth/me").then(async (me) => {
  $("#account").textContent = `${me.name} (${me.role})`;
  try { await initMap(); } catch (err) { console.error("map", err); }
  await refresh();
  try { await alarms.loadAlarms(); } catch (err) { console.error("alarms", err); }
  incidents.initIncidents($("#incidents-section"));
  setInterval(refresh, 1000);
  listen();
  startVoice();
}).catch((err) => console.error(err));
