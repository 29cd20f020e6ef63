// The patrol map: the organisation's grid and area polygons as the base layer (no network), an
// optional tile server under them, officers as markers coloured by state, the talker highlighted.
"use strict";
import {$, api, deviceLabel, emit, names} from "./common.js";

const L = window.L;
let map = null;
const markers = new Map();   // device -> L.marker
let trackLayer = null;
let replayDot = null;
let relabel = () => {};
let incidentMarkers = null;  // L.layerGroup: one marker per open incident (incidentLayer)
let incidentTracks = null;   // L.layerGroup: the selected incident's officers' tracks

// Labels are placed greedily, biggest first, where they belong or a line above or below; a
// label that fits nowhere without overlapping one already placed is hidden at this zoom (it
// comes back when zoomed in far enough). Officers (dots and names) are obstacles placed first.
function placeLabels(labels) {
  const placed = [...document.querySelectorAll("#map .officer, #map .officer-name")].map((n) => {
    const r = n.getBoundingClientRect();
    return {x0: r.left, y0: r.top, x1: r.right, y1: r.bottom};
  });
  const free = (box) => !placed.some((b) => box.x0 < b.x1 && b.x0 < box.x1 && box.y0 < b.y1 && b.y0 < box.y1);
  for (const item of labels) {
    const node = item.marker.getElement();
    if (!node) continue;
    const inner = node.firstElementChild ?? node;
    node.style.visibility = "hidden";
    inner.style.marginTop = "0px";
    const r = inner.getBoundingClientRect();
    const h = r.height + 4;
    // where it belongs, else just above or below that
    const shift = [0, -h, h, -2 * h, 2 * h].find((dy) =>
      free({x0: r.left - 2, y0: r.top + dy - 2, x1: r.right + 2, y1: r.bottom + dy + 2}));
    if (shift === undefined) continue;
    inner.style.marginTop = `${shift}px`;
    placed.push({x0: r.left - 2, y0: r.top + shift - 2, x1: r.right + 2, y1: r.bottom + shift + 2});
    node.style.visibility = "";
  }
}

// `anchor`: "centre" (grids) or "top" (areas: just inside their northern edge, clear of the
// grid labels at the grids' centres).
function label(latlng, html, cls, anchor = "centre") {
  const shift = anchor === "top" ? "translate(-50%, 4px)" : "translate(-50%,-50%)";
  const icon = L.divIcon({className: "", iconSize: null,
    html: `<div class="map-label ${cls}" style="transform:${shift}">${html}</div>`});
  return L.marker(latlng, {icon, interactive: false, keyboard: false});
}

function escape(text) {
  return String(text ?? "").replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

export async function initMap() {
  const [org, config] = await Promise.all([api("/api/org"), api("/api/console/config")]);
  map = L.map($("#map"), {zoomSnap: 0.25, attributionControl: Boolean(config.map_tiles), preferCanvas: false});
  if (config.map_tiles) {
    L.tileLayer(config.map_tiles, {maxZoom: 19, attribution: config.map_attribution || ""}).addTo(map);
  }
  names.units.set(org.centre.id, org.centre.name_zh || org.centre.name);
  const labels = [];
  const grids = L.featureGroup().addTo(map);
  for (const f of org.features) {
    const p = f.properties;
    names.units.set(p.id, p.name_zh || p.name);
    const [lon, lat] = p.label;
    if (p.kind === "grid") {
      const layer = L.geoJSON(f, {style: {color: "#3d6b93", weight: 1.2, fillColor: "#508cc8", fillOpacity: 0.10}});
      layer.eachLayer((l) => { l.feature = f; l.options.gridId = p.id; });
      layer.bindTooltip(`${escape(p.name_zh)} · ${escape(p.name)} (${escape(p.id)})`, {sticky: true});
      grids.addLayer(layer);
      labels.push({size: 1, marker: label([lat, lon], `${escape(p.name_zh || p.name)}<small>${escape(p.name)}</small>`, "grid")});
    } else {
      const outline = L.geoJSON(f, {style: {color: "#e7c980", weight: 3, opacity: 0.9, dashArray: "8 5"}, interactive: false}).addTo(map);
      const top = outline.getBounds().getNorth();
      labels.push({size: 2, marker: label([top, lon], `${escape(p.name_zh || p.name)}<small>${escape(p.name)}</small>`, "area", "top")});
    }
  }
  labels.sort((a, b) => b.size - a.size);
  const labelLayer = L.layerGroup(labels.map((l) => l.marker)).addTo(map);
  if (grids.getLayers().length) map.fitBounds(grids.getBounds(), {padding: [10, 10]});
  else map.setView([0, 0], 2);
  relabel = () => placeLabels(labels);
  map.on("zoomend moveend resize", relabel);
  requestAnimationFrame(relabel);
  incidentMarkers = L.layerGroup().addTo(map);
  incidentTracks = L.layerGroup().addTo(map);
  window.xixinMap = {map, grids, labelLayer, markers, incidentMarkers, incidentTracks};  // for tests and the curious
  return map;
}

// state: "available" | "talking" | "sos" | "offline"
export function officerState(live, device, talkers, sosDevices) {
  if (sosDevices.has(device)) return "sos";
  if (talkers.has(device)) return "talking";
  const online = live?.state === "online" || names.devices.get(device)?.presence === "online";
  return online ? "available" : "offline";
}

export function drawOfficers(live, talkers, sosDevices) {
  if (!map) return;
  const seen = new Set();
  for (const d of live) {
    if (!d.position) continue;
    seen.add(d.device);
    const state = officerState(d, d.device, talkers, sosDevices);
    const talker = talkers.has(d.device);
    const size = talker || state === "sos" ? 18 : 14;
    const html = `<div class="officer ${state}${talker ? " talker" : ""}" data-device="${escape(d.device)}" data-state="${state}" style="width:${size}px;height:${size}px"></div>`
      + `<div class="officer-name" style="position:absolute;left:${size + 3}px;top:-1px">${escape(names.devices.get(d.device)?.name || d.device)}</div>`;
    const icon = L.divIcon({className: "", html, iconSize: [size, size], iconAnchor: [size / 2, size / 2]});
    const latlng = [d.position.lat, d.position.lon];
    let m = markers.get(d.device);
    if (!m) {
      m = L.marker(latlng, {icon, riseOnHover: true, title: deviceLabel(d.device)}).addTo(map);
      m.on("click", () => emit("select-device", d.device));
      markers.set(d.device, m);
    } else {
      m.setLatLng(latlng);
      if (m._xixinHtml !== html) m.setIcon(icon);
    }
    m._xixinHtml = html;
    m.setZIndexOffset(state === "sos" ? 2000 : talker ? 1000 : 0);
  }
  for (const [device, m] of markers) {
    if (!seen.has(device)) { m.remove(); markers.delete(device); }
  }
  relabel();
}

export function panTo(lat, lon, zoom) {
  if (map) map.setView([lat, lon], Math.max(map.getZoom(), zoom ?? 16));
}

// A device's track for replay: the line, and a dot that the time slider moves.
export function showTrack(points) {
  clearTrack();
  if (!map || !points.length) return;
  trackLayer = L.polyline(points.map((p) => [p.lat, p.lon]), {color: "#7fb4e6", weight: 3, opacity: 0.8}).addTo(map);
  replayDot = L.circleMarker([points[0].lat, points[0].lon], {radius: 7, color: "#fff", fillColor: "#7fb4e6", fillOpacity: 1}).addTo(map);
  map.fitBounds(trackLayer.getBounds(), {padding: [30, 30], maxZoom: 17});
}

export function moveReplay(point) {
  if (replayDot && point) replayDot.setLatLng([point.lat, point.lon]);
}

export function clearTrack() {
  trackLayer?.remove(); replayDot?.remove();
  trackLayer = replayDot = null;
}

// Incidents on the map, drawn for the incident board (incidents.js), which owns no map of its
// own: a marker per open incident with a position (overdue ones highlighted, the selected one
// ringed; a click calls `onSelect(id)`), and the selected incident's assigned officers' tracks.
export const incidentLayer = {
  // incidents: the board's rows ({id, position, state, overdue, category_name_zh, ...})
  show(incidents, {selected = null, onSelect = () => {}, describe = (i) => `#${i.id}`} = {}) {
    if (!incidentMarkers) return;
    incidentMarkers.clearLayers();
    for (const inc of incidents) {
      if (!inc.position || inc.state === "closed") continue;
      const cls = `inc-marker${inc.overdue ? " overdue" : ""}${inc.id === selected ? " selected" : ""}`;
      const icon = L.divIcon({className: "", iconSize: [22, 22], iconAnchor: [11, 11],
        html: `<div class="${cls}" data-incident="${escape(inc.id)}"><span>${escape(inc.id)}</span></div>`});
      const m = L.marker([inc.position.lat, inc.position.lon], {icon, title: describe(inc), riseOnHover: true,
        zIndexOffset: inc.id === selected ? 3000 : inc.overdue ? 2500 : 1500});
      m.on("click", () => onSelect(inc.id));
      incidentMarkers.addLayer(m);
    }
  },
  // lines: [{device, points: [{lat, lon}, ...]}]; fewer than two points draws nothing.
  tracks(lines) {
    if (!incidentTracks) return;
    incidentTracks.clearLayers();
    for (const {device, points} of lines) {
      if (points.length < 2) continue;
      L.polyline(points.map((p) => [p.lat, p.lon]), {className: "inc-track", color: "#e0a21a", weight: 3,
        opacity: 0.9, dashArray: "6 4", interactive: false})
        .addTo(incidentTracks)
        .getElement()?.setAttribute("data-device", device);
    }
  },
};
