// A terminal's panel: battery, last fix, talkgroups, commands with their live state (text,
// stun/revive, radio check), and its track replayed on the map with a time slider.
"use strict";
import {$, ago, api, clock, el, names, post, talkgroupLabel} from "./common.js";
import {clearTrack, moveReplay, panTo, showTrack} from "./map.js";

let current = null;                 // device id shown
const commands = new Map();         // command id -> Command, of the device shown
let live = new Map();               // device -> tracking live row

const STATE_WORDS = {pending: "pending…", queued: "queued (offline)", acknowledged: "acknowledged ✓",
  timed_out: "timed out", failed: "failed"};

export function liveSeen(rows) {
  live = new Map(rows.map((r) => [r.device, r]));
  if (current) renderFacts();
}

function battery(id) {
  const d = names.devices.get(id);
  return d?.battery ?? live.get(id)?.battery ?? null;
}

function renderFacts() {
  const box = $("#device-facts");
  if (!box || !current) return;
  const d = names.devices.get(current) ?? {};
  const l = live.get(current);
  const bat = battery(current);
  const fix = l?.position;
  const rows = [
    ["Device", current], ["Name 姓名", d.name ?? ""], ["Unit 网格", talkgroupLabel(d.unit)],
    ["Role", d.role ?? ""], ["State", `${d.presence ?? l?.state ?? "unknown"}${d.stunned ? " · stunned 已遥毙" : ""}`],
    ["Battery 电量", bat == null ? "—" : `${bat}%`],
    ["Last fix", fix ? `${fix.lat.toFixed(5)}, ${fix.lon.toFixed(5)} · ${clock(fix.t * 1000)} (${ago(fix.t)})` : "none"],
    ["Talkgroups", (d.talkgroups ?? []).map(talkgroupLabel).join(", ") || "—"],
  ];
  box.replaceChildren(...rows.flatMap(([k, v]) => [el("dt", {textContent: k}), el("dd", {textContent: v})]));
}

function renderCommands() {
  const list = $("#device-commands");
  if (!list) return;
  const sorted = [...commands.values()].sort((a, b) => b.created_at - a.created_at).slice(0, 20);
  list.replaceChildren(...sorted.map((c) => el("li", {dataset: {command: c.id, state: c.state}},
    el("span", {textContent: `${clock(c.created_at * 1000)} ${c.command}${c.args?.text ? ` “${c.args.text}”` : ""}`}),
    el("span", {class: `cmd-${c.state}`, textContent: STATE_WORDS[c.state] ?? c.state,
      title: c.result ? JSON.stringify(c.result) : ""}))));
  if (!sorted.length) list.append(el("li", {class: "empty", textContent: "no commands yet"}));
}

async function send(command, args = {}) {
  const msg = $("#device-cmd-error");
  msg.textContent = "";
  try {
    const c = await post(`/api/devices/${encodeURIComponent(current)}/commands`, {command, ...args});
    if (c?.id) { commands.set(c.id, c); renderCommands(); }
  } catch (err) {
    msg.textContent = `${command}: ${err.message}`;
  }
}

async function loadCommands(id) {
  commands.clear();
  try {
    for (const c of await api(`/api/devices/${encodeURIComponent(id)}/commands`)) commands.set(c.id, c);
  } catch (err) {
    if (err.status !== 404 && err.status !== 405) console.warn(err);
  }
  if (id === current) renderCommands();
}

let track = [];
async function loadTrack(hours) {
  const end = Date.now() / 1000, start = end - hours * 3600;
  const info = $("#replay-info"), slider = $("#replay-slider");
  try {
    const r = await api(`/api/tracking/devices/${encodeURIComponent(current)}/replay?start=${start}&end=${end}`);
    track = r.segments.flatMap((s) => s.points);
  } catch (err) {
    track = [];
    info.textContent = `no track: ${err.message}`;
    return;
  }
  if (!track.length) { info.textContent = "no positions in that time"; slider.disabled = true; clearTrack(); return; }
  slider.disabled = false; slider.max = String(track.length - 1); slider.value = slider.max;
  showTrack(track);
  scrub();
}

function scrub() {
  const p = track[Number($("#replay-slider").value)];
  if (!p) return;
  moveReplay(p);
  $("#replay-info").textContent = `${clock(p.t * 1000)} · ${p.lat.toFixed(5)}, ${p.lon.toFixed(5)}${p.speed != null ? ` · ${p.speed.toFixed(1)} m/s` : ""}${p.battery != null ? ` · ${p.battery}%` : ""}`;
}

export function selectDevice(id) {
  current = id;
  $("#device-section").hidden = false;
  document.querySelectorAll("tr.selected").forEach((tr) => tr.classList.remove("selected"));
  document.querySelector(`tr[data-device="${CSS.escape(id)}"]`)?.classList.add("selected");
  const text = el("input", {id: "device-text", placeholder: "message 消息", maxLength: 200});
  const panel = $("#device-panel");
  panel.dataset.device = id;
  panel.replaceChildren(
    el("dl", {id: "device-facts"}),
    el("div", {class: "cmds"}, text,
      el("button", {type: "button", id: "cmd-text", textContent: "Send text", onclick: () => {
        if (text.value.trim()) { send("text", {text: text.value.trim()}); text.value = ""; }
      }})),
    el("div", {class: "cmds"},
      el("button", {type: "button", id: "cmd-radio-check", textContent: "Radio check 点名", onclick: () => send("radio_check")}),
      el("button", {type: "button", id: "cmd-stun", class: "danger", textContent: "Stun 遥毙", onclick: () => {
        if (confirm(`Stun ${id}? It will not transmit until revived.`)) send("stun");
      }}),
      el("button", {type: "button", id: "cmd-revive", textContent: "Revive 复活", onclick: () => send("revive")}),
      el("button", {type: "button", id: "cmd-locate", textContent: "Locate", onclick: () => {
        const fix = live.get(id)?.position; if (fix) panTo(fix.lat, fix.lon);
      }})),
    el("p", {id: "device-cmd-error", class: "error"}),
    el("ul", {id: "device-commands", class: "commands"}),
    el("div", {class: "replay"},
      el("label", {}, "Track replay 轨迹回放 ",
        el("select", {id: "replay-hours", onchange: (e) => loadTrack(Number(e.target.value))},
          ...[1, 4, 12, 24].map((h) => el("option", {value: String(h), textContent: `last ${h} h`})))),
      el("input", {type: "range", id: "replay-slider", min: "0", max: "0", value: "0", disabled: true, oninput: scrub}),
      el("div", {id: "replay-info", class: "meta"})),
  );
  renderFacts();
  renderCommands();
  loadCommands(id);
  loadTrack(1);
}

export function onEvent(e) {
  if (e.kind === "command" && e.command && typeof e.command === "object" && e.command.device === current) {
    commands.set(e.command.id, e.command);
    renderCommands();
  }
}

export function refreshed() {
  if (current) renderFacts();
}

$("#device-close").addEventListener("click", () => {
  current = null; clearTrack();
  $("#device-section").hidden = true;
  document.querySelectorAll("tr.selected").forEach((tr) => tr.classList.remove("selected"));
});
