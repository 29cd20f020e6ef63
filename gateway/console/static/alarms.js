// The alarms queue: open alarms from /api/alarms (so they survive a page load) kept current by
// the events stream; a banner and a repeating beep while any is unattended; acknowledge, close
// with an outcome and a note; an SOS shows its last position and opens its talkgroup's audio.
"use strict";
import {$, api, clock, deviceLabel, el, emit, names, post, talkgroupLabel} from "./common.js";

const KIND = {
  sos: "SOS 紧急求助", low_battery: "Low battery 电量低", offline_too_long: "Offline too long 长时间离线",
  left_grid: "Left grid 离开网格", no_movement: "No movement 静止",
};
const alarms = new Map();          // id -> Alarm (open ones)
let available = true;              // false: this gateway has no alarms API (404)
let legacySos = new Set();         // without the API: devices whose SOS flag is set
let silencedUpTo = 0;              // the newest alarm id heard when "silence" was pressed
let audio = null;
let beepTimer = null;
export const status = {sounding: false, beeps: 0, available: true};
window.xixinAlarms = status;

function beep() {
  try {
    audio ??= new AudioContext();
    if (audio.state === "suspended") audio.resume();
    const t = audio.currentTime;
    for (const [start, freq] of [[0, 880], [0.25, 660]]) {
      const osc = audio.createOscillator(), gain = audio.createGain();
      osc.type = "square"; osc.frequency.value = freq;
      gain.gain.setValueAtTime(0.0001, t + start);
      gain.gain.exponentialRampToValueAtTime(0.25, t + start + 0.02);
      gain.gain.exponentialRampToValueAtTime(0.0001, t + start + 0.22);
      osc.connect(gain).connect(audio.destination);
      osc.start(t + start); osc.stop(t + start + 0.24);
    }
    status.beeps += 1;
  } catch (err) {
    console.warn("alarm sound", err);
  }
}

// A browser lets a page play sound only after a gesture: the first click unlocks it.
document.addEventListener("click", () => { if (audio?.state === "suspended") audio.resume(); }, {capture: true});

function unattended() {
  return [...alarms.values()].filter((a) => a.state === "unattended");
}

export function sosDevices() {
  const out = new Set(legacySos);
  for (const a of alarms.values()) if (a.kind === "sos") out.add(a.device);
  return out;
}

function updateBanner() {
  const open = unattended();
  const legacy = [...legacySos].filter((d) => !open.some((a) => a.device === d));
  const count = open.length + legacy.length;
  $("#alarm-banner").hidden = count === 0;
  const newest = Math.max(0, ...open.map((a) => a.id));
  const sound = count > 0 && (newest > silencedUpTo || (legacy.length > 0 && silencedUpTo === 0));
  if (count) {
    const first = open[0];
    const text = first ? `${KIND[first.kind] ?? first.kind}: ${deviceLabel(first.device)} · ${talkgroupLabel(first.unit)}`
      : `SOS: ${legacy.map(deviceLabel).join(", ")}`;
    $("#alarm-banner-text").textContent = `⚠ ${count} unattended alarm${count > 1 ? "s" : ""} · 未处理告警 — ${text}`;
  }
  status.sounding = sound;
  if (sound && !beepTimer) { beep(); beepTimer = setInterval(beep, 2000); }
  if (!sound && beepTimer) { clearInterval(beepTimer); beepTimer = null; }
  $("#alarm-count").textContent = alarms.size ? `(${alarms.size})` : "";
}

// Hear the alarm's talkgroup above the others (console.js hands it to the voice panel).
function listenTo(alarm) {
  emit("listen", alarm.unit);
}

function locate(alarm) {
  if (alarm.position) emit("locate", alarm.position.lat, alarm.position.lon, alarm.device);
  emit("select-device", alarm.device);
}

async function act(button, fn) {
  button.disabled = true;
  try { upsert(await fn()); } catch (err) { alert(`Failed: ${err.message}`); } finally { button.disabled = false; }
}

function row(a) {
  const actions = el("div", {class: "actions"});
  if (a.state === "unattended") {
    actions.append(el("button", {type: "button", class: "danger ack", textContent: "Acknowledge · 确认",
      onclick: (e) => act(e.target, () => post(`/api/alarms/${a.id}/ack`))}));
  }
  actions.append(el("button", {type: "button", class: "close", textContent: "Close · 关闭", onclick: () => openClose(a)}));
  if (a.position) actions.append(el("button", {type: "button", class: "locate", textContent: "Locate · 定位", onclick: () => locate(a)}));
  if (a.kind === "sos") actions.append(el("button", {type: "button", class: "listen", textContent: "Listen · 监听", onclick: () => listenTo(a)}));
  const name = a.device_name || names.devices.get(a.device)?.name;
  const pos = a.position ? `last fix ${a.position.lat.toFixed(5)}, ${a.position.lon.toFixed(5)} at ${clock(a.position.at * 1000)}` : "no position";
  const who = a.acknowledged_by ? ` · ack by ${a.acknowledged_by}` : "";
  const esc = a.escalated_to ? ` · escalated to ${talkgroupLabel(a.escalated_to)}` : "";
  return el("div", {class: `alarm-row ${a.state}`, dataset: {alarm: String(a.id), kind: a.kind, state: a.state}},
    el("div", {class: "what", textContent: `${KIND[a.kind] ?? a.kind} — ${name ? `${name} (${a.device})` : a.device}`}),
    el("div", {class: "meta", textContent: `${talkgroupLabel(a.unit)} · raised ${clock(a.raised_at * 1000)} · ${a.state}${who}${esc}`}),
    el("div", {class: "meta", textContent: pos}),
    actions);
}

function render() {
  const box = $("#alarms");
  const list = [...alarms.values()].sort((a, b) =>
    (a.state === "unattended") - (b.state === "unattended") || a.raised_at - b.raised_at).reverse();
  const legacy = [...legacySos].map((d) => el("div", {class: "alarm-row unattended", dataset: {device: d, kind: "sos"}},
    el("div", {class: "what", textContent: `SOS 紧急求助 — ${deviceLabel(d)}`}),
    el("div", {class: "meta", textContent: "this gateway has no alarms queue: no acknowledgement"})));
  box.replaceChildren(...list.map(row), ...legacy);
  if (!box.childElementCount) box.append(el("p", {class: "empty", textContent: "No open alarms · 无告警"}));
  updateBanner();
  emit("alarms-changed");
}

export function upsert(alarm) {
  if (!alarm || typeof alarm !== "object") return;
  const isNew = !alarms.has(alarm.id);
  if (alarm.state === "closed") alarms.delete(alarm.id);
  else alarms.set(alarm.id, alarm);
  render();
  if (isNew && alarm.state === "unattended" && alarm.kind === "sos") {
    locate(alarm);
    listenTo(alarm);
  }
}

let closing = null;
function openClose(alarm) {
  closing = alarm;
  $("#close-what").textContent = `#${alarm.id} ${KIND[alarm.kind] ?? alarm.kind} ${deviceLabel(alarm.device)}`;
  $("#close-form").reset();
  $("#close-error").textContent = "";
  $("#close-dialog").showModal();
}

$("#close-form").addEventListener("submit", async (event) => {
  if (event.submitter?.value !== "close") return;
  event.preventDefault();
  const form = new FormData(event.target);
  const note = String(form.get("note") ?? "").trim();
  if (!note) { $("#close-error").textContent = "A note is required · 请填写备注"; return; }
  try {
    upsert(await post(`/api/alarms/${closing.id}/close`, {outcome: form.get("outcome"), note}));
    $("#close-dialog").close();
  } catch (err) {
    $("#close-error").textContent = err.message;
  }
});

$("#alarm-mute").addEventListener("click", () => {
  silencedUpTo = Math.max(1, ...[...alarms.keys()]);
  updateBanner();
});
$("#alarm-banner-show").addEventListener("click", () => {
  const first = unattended()[0];
  if (first) locate(first);
  $("#alarms-section").scrollIntoView({behavior: "smooth"});
});

export async function loadAlarms() {
  try {
    const open = await api("/api/alarms?state=open");
    alarms.clear();
    for (const a of open) alarms.set(a.id, a);
    available = true;
  } catch (err) {
    if (err.status !== 404) throw err;
    available = false;
  }
  status.available = available;
  render();
  const sos = [...alarms.values()].find((a) => a.kind === "sos" && a.state === "unattended" && a.position);
  if (sos) emit("locate", sos.position.lat, sos.position.lon, sos.device);
  const newest = [...alarms.values()].filter((a) => a.kind === "sos" && a.state === "unattended")
    .sort((a, b) => b.raised_at - a.raised_at)[0];
  if (newest) listenTo(newest);
}

// Without the alarms API, the devices' SOS flags still raise the banner and the sound.
export function devicesSeen(devices) {
  if (available) return;
  const now = new Set(devices.filter((d) => d.sos).map((d) => d.id));
  if (now.size !== legacySos.size || [...now].some((d) => !legacySos.has(d))) {
    const raised = devices.filter((d) => d.sos && !legacySos.has(d.id));
    legacySos = now;
    render();
    const last = raised.at(-1);
    if (last?.unit) listenTo({unit: last.unit});   // a new SOS opens its talkgroup's audio
  }
}

export function onEvent(e) {
  if (e.kind === "alarm" && e.alarm && typeof e.alarm === "object") upsert(e.alarm);
}
