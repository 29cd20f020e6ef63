// What every part of the console shares: requests with the session cookie, element helpers and
// the names of devices, talkgroups and units (from the API, refreshed by console.js).
"use strict";

export const $ = (sel, root = document) => root.querySelector(sel);

export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === "dataset") Object.assign(node.dataset, v);
    else if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (v !== undefined && v !== null) node[k] = v;
  }
  node.append(...children.filter((c) => c !== null && c !== undefined));
  return node;
}

function signedOut(r) {
  if (r.status === 401) { location.assign("/login"); throw new Error("signed out"); }
}

// GET a JSON resource; a 401 goes to the login page.
export async function api(url) {
  const r = await fetch(url, {credentials: "same-origin"});
  signedOut(r);
  if (!r.ok) throw Object.assign(new Error(`${url}: ${r.status}`), {status: r.status});
  return r.json();
}

// POST JSON; the error carries the API's `detail`.
export async function post(url, body) {
  const r = await fetch(url, {
    method: "POST", credentials: "same-origin",
    headers: {"content-type": "application/json"}, body: JSON.stringify(body ?? {}),
  });
  signedOut(r);
  const data = await r.json().catch(() => null);
  if (!r.ok) {
    const detail = typeof data?.detail === "string" ? data.detail : JSON.stringify(data?.detail ?? r.status);
    throw Object.assign(new Error(detail), {status: r.status});
  }
  return data;
}

// Names for ids, so people read names: filled from /api/devices, /api/talkgroups and /api/org.
export const names = {devices: new Map(), talkgroups: new Map(), units: new Map()};

export function deviceLabel(id) {
  if (!id) return "";
  const name = names.devices.get(id)?.name;
  return name && name !== id ? `${name} (${id})` : id;
}

export function talkgroupLabel(id) {
  if (!id) return "";
  if (id.startsWith("call:")) {
    const [, a, b] = id.split(":");
    return `private call ${deviceLabel(a)} ↔ ${deviceLabel(b)}`;
  }
  const name = names.units.get(id) || names.talkgroups.get(id);
  return name && name !== id ? `${name} (${id})` : id;
}

export function clock(ts) {
  return new Date(ts).toLocaleTimeString("en-GB", {hour12: false});
}

export function ago(seconds) {
  if (seconds == null) return "";
  const s = Math.max(0, Date.now() / 1000 - seconds);
  if (s < 60) return `${Math.round(s)} s ago`;
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  return `${(s / 3600).toFixed(1)} h ago`;
}

// Small pub/sub so the parts do not import each other in circles.
const listeners = new Map();
export function on(topic, fn) {
  if (!listeners.has(topic)) listeners.set(topic, []);
  listeners.get(topic).push(fn);
}
export function emit(topic, ...args) {
  for (const fn of listeners.get(topic) ?? []) {
    try { fn(...args); } catch (err) { console.error(topic, err); }
  }
}
