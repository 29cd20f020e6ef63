// The live events panel: one readable line per event, with device and talkgroup names; a
// device's quick run of floor events on one floor (queued then released a moment later, granted
// then taken) is one line, up to its release.
"use strict";
import {$, clock, deviceLabel, el, talkgroupLabel} from "./common.js";

const MAX_LINES = 300;
const COALESCE_MS = 2000;
const FLOOR_WORDS = {
  floor_granted: "got the floor", floor_taken: "talking", floor_queued: "queued",
  floor_released: "released", floor_idle: "floor free", floor_denied: "denied",
  floor_revoked: "floor taken back", floor_preempted: "pre-empted",
};
const STATE_WORDS = {online: "online 上线", offline: "offline 离线", unknown: "silent 无信号"};
const ALARM_WORDS = {
  sos: "SOS 紧急求助", low_battery: "low battery 电量低", offline_too_long: "offline too long",
  left_grid: "left its grid 离开网格", no_movement: "no movement 静止",
};
const recent = new Map();   // key -> {ts, words, node}: lines that later events may join

function floorLine(e) {
  const word = FLOOR_WORDS[e.event] ?? e.event?.replace(/^floor_/, "") ?? "floor";
  const reason = e.reason ? ` (${e.reason})` : "";
  return {key: `floor|${e.device}|${e.floor}`, word: word + reason,
    text: (words) => `${e.device ? deviceLabel(e.device) + " " : ""}${words.join(" → ")} · ${talkgroupLabel(e.floor)}`};
}

function describe(e) {
  const who = deviceLabel(e.device);
  switch (e.kind) {
    case "floor": return floorLine(e);
    case "presence": case "status":
      return {text: `${who} ${STATE_WORDS[e.state] ?? e.state}${e.reason ? ` (${e.reason})` : ""}`};
    case "alarm": {
      if (e.alarm && typeof e.alarm === "object") {
        const a = e.alarm;
        const by = a.state === "acknowledged" ? ` by ${a.acknowledged_by}` : a.state === "closed" ? ` by ${a.closed_by}: ${a.outcome} — ${a.note ?? ""}` : "";
        return {cls: "alarm", text: `${ALARM_WORDS[a.kind] ?? a.kind} ${deviceLabel(a.device)} · ${talkgroupLabel(a.unit)}: ${a.state}${by}`};
      }
      return {cls: "alarm", text: `${who} ${ALARM_WORDS[e.alarm] ?? e.alarm}${e.active === false ? " cleared 解除" : ""}`};
    }
    case "geofence":
      return {text: `${who} ${e.event === "enter" ? "entered" : "left"} ${e.name || talkgroupLabel(e.geofence)}`};
    case "command": {
      const c = e.command && typeof e.command === "object" ? e.command : null;
      if (c) return {key: `command|${c.id}`, word: c.state, text: (w) => `${deviceLabel(c.device)} command ${c.command}: ${w.join(" → ")}`};
      return {text: `${who} command ${e.cmd ?? ""} sent`};
    }
    case "command_ack":
      return {text: `${who} ${e.ok ? "acknowledged" : "refused"} command ${e.cmd ?? e.re}${e.detail ? ` (${e.detail})` : ""}`};
    case "status_msg":
      return {text: `${who} status ${e.code}${e.text ? `: ${e.text}` : ""}`};
    case "incident": {
      const i = e.incident && typeof e.incident === "object" ? e.incident : null;
      if (!i) return {text: "incident"};
      const did = (e.actions ?? []).join(", ");
      return {text: `Incident 事件 #${i.id} ${i.category_name_zh ?? i.category ?? ""} · ${talkgroupLabel(i.unit)}: ${did ? did + " → " : ""}${i.state}`};
    }
    case "position":
      return null;   // the map shows them; a line per beacon would drown the rest
    default:
      return {text: `${who} ${e.kind}`};
  }
}

export function addEvent(e) {
  const d = describe(e);
  if (!d) return;
  const box = $("#events");
  const ts = e.ts ?? Date.now();
  for (const [key, line] of recent) if (ts - line.ts > COALESCE_MS || !line.node.isConnected) recent.delete(key);
  let line = d.key ? recent.get(d.key) : null;
  // a floor line is one attempt: after "released" the device's next request is a new line
  if (line && line.words.at(-1).startsWith("released") && !d.word.startsWith("released")) line = null;
  if (line) {
    if (line.words.at(-1) !== d.word) line.words.push(d.word);
    line.ts = ts;
    line.node.querySelector(".text").textContent = d.text(line.words);
    return;
  }
  const words = d.key ? [d.word] : null;
  const node = el("li", {class: d.cls ?? "", dataset: {kind: e.kind}},
    el("time", {textContent: clock(ts)}), el("span", {class: "text", textContent: d.key ? d.text(words) : d.text}));
  box.prepend(node);
  if (d.key) recent.set(d.key, {ts, words, node});
  while (box.childElementCount > MAX_LINES) box.lastChild.remove();
}
