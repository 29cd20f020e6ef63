// Incident board of the dispatch console (issue 15): incidents in the account's scope by tier,
// category and age (overdue highlighted), markers on the console's map, a timeline per incident
// (transitions, talk bursts of its talkgroup, assigned officers' tracks on the map), the nearest
// available officers with one-click assignment, and the dispatcher's actions. console.js calls
// initIncidents(#incidents-section) once the map is drawn and passes it the events stream.
"use strict";
import {api, el as make, post} from "./common.js";
import {incidentLayer} from "./map.js";

const TIERS = {grid: "网格 Grid", area: "片区 Area", centre: "中心 Centre"};
const STATES = {reported: "待受理", accepted: "已受理", assigned: "已派单", en_route: "在途",
              on_scene: "到场", resolved: "已处置", closed: "已办结"};
const state = {tier: "", category: "", selected: null, categories: [], root: null, pending: null};

// GET, or POST `body` when given (the API's `detail` is the error's message).
function call(url, body) {
  return body === undefined ? api(url) : post(url, body);
}
// Properties as element properties (className, textContent, onclick ...), like the board's own.
function el(tag, attrs = {}, ...children) {
  const {className, ...rest} = attrs;
  return make(tag, className === undefined ? rest : {class: className, ...rest}, ...children);
}
function age(seconds) {
  const s = Math.max(0, Math.round(seconds));
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s`;
  if (s < 86400) return `${Math.floor(s / 3600)}h${String(Math.floor(s % 3600 / 60)).padStart(2, "0")}m`;
  return `${Math.floor(s / 86400)}d${Math.floor(s % 86400 / 3600)}h`;
}
function say(root, text) { root.querySelector(".inc-msg").textContent = text; }

function build(root) {
  const tierSel = el("select", {className: "inc-tier"}, el("option", {value: "", textContent: "All tiers"}),
    ...Object.entries(TIERS).map(([v, t]) => el("option", {value: v, textContent: t})));
  const catSel = el("select", {className: "inc-category"}, el("option", {value: "", textContent: "All categories"}));
  tierSel.onchange = () => { state.tier = tierSel.value; refresh(root); };
  catSel.onchange = () => { state.category = catSel.value; refresh(root); };
  const form = el("form", {className: "inc-new"},
    el("select", {name: "category"}), el("input", {name: "text", placeholder: "描述 description", required: true}),
    el("input", {name: "grid", placeholder: "grid-01", size: 8}), el("button", {type: "submit", textContent: "Report"}));
  form.onsubmit = async (ev) => {
    ev.preventDefault();
    const f = new FormData(form);
    try {
      const made = await call("/api/incidents", {category: f.get("category"), text: f.get("text"),
                                                 grid: f.get("grid") || null});
      form.reset(); state.selected = made.id; await refresh(root);
    } catch (err) { say(root, String(err.message || err)); }
  };
  root.replaceChildren(
    el("h2", {textContent: "Incidents · 事件"}),
    el("div", {className: "inc-filters"}, tierSel, catSel, form),
    el("div", {className: "inc-msg"}),
    el("table", {className: "inc-board"},
      el("thead", {}, el("tr", {}, ...["#", "Tier", "Category", "Unit", "State", "Age", "Officers"].map(
        (h) => el("th", {textContent: h})))),
      el("tbody")),
    el("div", {className: "inc-detail"}));
}

function row(root, inc, now) {
  const tr = el("tr", {className: `inc-row tier-${inc.tier}${inc.overdue ? " overdue" : ""}${inc.id === state.selected ? " selected" : ""}`});
  tr.dataset.incident = inc.id;
  tr.append(el("td", {textContent: inc.id}), el("td", {textContent: TIERS[inc.tier]}),
    el("td", {textContent: inc.category_name_zh, title: inc.category_name}),
    el("td", {textContent: inc.grid && inc.grid !== inc.unit ? `${inc.unit} (${inc.grid})` : inc.unit}),
    el("td", {textContent: STATES[inc.state] || inc.state}),
    el("td", {textContent: age((inc.closed_at ?? now) - inc.reported_at)}),
    el("td", {textContent: inc.officers.join(" ")}));
  tr.onclick = () => { state.selected = inc.id; refresh(root); };
  return tr;
}

function markers(root, incidents) {
  incidentLayer.show(incidents, {
    selected: state.selected,
    describe: (inc) => `#${inc.id} ${inc.category_name_zh} · ${STATES[inc.state] || inc.state}${inc.overdue ? " · overdue 超时" : ""}`,
    onSelect: (id) => { state.selected = id; refresh(root); root.scrollIntoView({behavior: "smooth", block: "nearest"}); },
  });
}

// The assigned officers' tracks since the assignment (or the report), drawn by the map.
async function tracks(inc) {
  const end = (inc.closed_at ?? Date.now() / 1000) + 1;
  const lines = await Promise.all(inc.officers.map(async (officer) => {
    try {
      const replay = await call(`/api/tracking/devices/${encodeURIComponent(officer)}/replay?start=${inc.assigned_at ?? inc.reported_at}&end=${end}`);
      return {device: officer, points: (replay.segments || []).flatMap((seg) => seg.points || [])};
    } catch (err) {  // a track out of scope or not stored: the timeline still shows
      return {device: officer, points: []};
    }
  }));
  if (state.selected === inc.id) incidentLayer.tracks(lines);
}

async function detail(root, inc) {
  const box = root.querySelector(".inc-detail");
  const [steps, ranked, bursts] = await Promise.all([
    call(`/api/incidents/${inc.id}/timeline`),
    inc.state === "closed" || inc.state === "resolved" ? [] : call(`/api/incidents/${inc.id}/suggestions`).catch(() => []),
    inc.talkgroup ? call(`/api/recordings?floor=${encodeURIComponent(inc.talkgroup)}`).catch(() => []) : [],
  ]);
  const act = (label, action, ask) => el("button", {type: "button", className: `inc-${action}`, textContent: label, onclick: async () => {
    const body = {};
    if (ask) { const text = prompt(ask); if (!text) return; body[ask.startsWith("Reason") ? "reason" : "note"] = text; }
    try { await call(`/api/incidents/${inc.id}/${action}`, body); await refresh(root); }
    catch (err) { say(root, String(err.message || err)); }
  }});
  const actions = el("div", {className: "inc-actions"},
    inc.state === "reported" ? act("Accept 受理", "accept") : null,
    inc.tier !== "centre" && inc.state !== "closed" && inc.state !== "resolved" ? act("Escalate 上报", "escalate", "Reason for escalating") : null,
    inc.tier !== "grid" && inc.state !== "closed" && inc.state !== "resolved" ? act("De-escalate 下派", "deescalate", "Reason for de-escalating") : null,
    ["accepted", "assigned", "en_route", "on_scene"].includes(inc.state) ? act("Resolve 处置", "resolve", "Note (what was done)") : null,
    inc.state === "resolved" ? act("Close 办结", "close", "Note: the resolution") : null,
    ["resolved", "closed"].includes(inc.state) ? act("Reopen 重开", "reopen", "Reason for reopening") : null);
  const suggestions = el("ul", {className: "inc-suggestions"}, ...ranked.map((s) => el("li", {},
    el("button", {type: "button", className: "inc-assign", textContent: `Assign ${s.device}`, onclick: async () => {
      try { await call(`/api/incidents/${inc.id}/assign`, {officers: [s.device]}); await refresh(root); }
      catch (err) { say(root, String(err.message || err)); }
    }}), ` ${s.availability}${s.same_grid ? " · same grid" : ""} · ${Math.round(s.distance_m)} m · ETA ${age(s.eta_s)}`)));
  const timeline = el("ol", {className: "inc-timeline"}, ...steps.map((t) => el("li", {},
    `${new Date(t.ts * 1000).toLocaleTimeString()} ${t.actor} ${t.action} → ${STATES[t.to_state] || t.to_state} (${t.to_tier})${t.note ? " · " + t.note : ""}`)));
  const talk = el("ul", {className: "inc-bursts"}, ...bursts.map((b) => el("li", {},
    el("a", {href: `/api/recordings/${b.id}/audio`, textContent: `${new Date(b.started_at * 1000).toLocaleTimeString()} ${b.talker} ${(b.duration_ms / 1000).toFixed(1)} s`}))));
  // (replaceChildren would show a null as the text "null")
  box.replaceChildren(...[el("h3", {textContent: `#${inc.id} ${inc.category_name_zh} · ${inc.text}`}),
    el("div", {textContent: `${TIERS[inc.tier]} ${inc.unit} · ${STATES[inc.state]} · ${inc.talkgroup ? "talkgroup " + inc.talkgroup : "no talkgroup yet"}${inc.voice ? " · voice note " + inc.voice : ""}`}),
    actions, ranked.length ? el("h4", {textContent: "Nearest officers 就近警力"}) : null, suggestions,
    el("h4", {textContent: "Timeline 时间线"}), timeline, bursts.length ? el("h4", {textContent: "Talk 通话"}) : null, talk].filter((node) => node !== null));
  tracks(inc);
}

async function refresh(root) {
  try {
    if (!state.categories.length) {
      state.categories = await call("/api/incidents/categories");
      const opts = () => state.categories.map((c) => el("option", {value: c.id, textContent: `${c.name_zh} ${c.name}`}));
      root.querySelector(".inc-category").append(...opts());
      root.querySelector(".inc-new select[name=category]").append(...opts());
    }
    const q = new URLSearchParams();
    if (state.tier) q.set("tier", state.tier);
    if (state.category) q.set("category", state.category);
    const incidents = await call(`/api/incidents?${q}`);
    const now = Date.now() / 1000;
    root.querySelector(".inc-board tbody").replaceChildren(...incidents.map((i) => row(root, i, now)));
    markers(root, incidents);
    const chosen = incidents.find((i) => i.id === state.selected);
    if (chosen) await detail(root, chosen);
    else incidentLayer.tracks([]);
  } catch (err) {
    if (err.status === 404) { root.hidden = true; return; }  // a gateway without incidents
    say(root, String(err.message || err));
  }
}

export function initIncidents(root) {
  state.root = root;
  build(root);
  refresh(root);
  setInterval(() => { if (!root.querySelector(".inc-detail :focus")) refresh(root); }, 5000);
}

// From the console's events stream: an incident changed, redraw soon (coalesced).
export function onEvent(e) {
  if (e.kind !== "incident" || !state.root || state.pending) return;
  state.pending = setTimeout(() => { state.pending = null; refresh(state.root); }, 300);
}
