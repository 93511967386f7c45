// The map of seed 002: pick a user, see every transaction of theirs in event-time order (the
// stored ones, the live simulator's as they come, the ones made here by double-clicking),
// each verdict headlined by its tier and score.
//
// Works with no internet: the basemap is the vendored country borders (world-atlas, Natural
// Earth 1:50m, through topojson-client) with a few city names; OpenStreetMap tiles are laid
// on top when they load (removed at the first tile error).

import { ApiError, fmtAmount, fmtNumber, fmtTime, get, h, onDecision, post, setUserNames, status } from "./api.js";

const L = window.L;
const COLORS = { approve: "#1a7f37", review: "#d97706", decline: "#cf222e" };
const HEADLINES = { approve: "APPROVE", review: "REVIEW", decline: "DECLINE" };
const TRACK_LIMIT = 500;
const LABELLED = 3; // the newest pins carry a permanent label; the others on hover

const CITIES = [
  ["London", 51.507, -0.128], ["Paris", 48.857, 2.352], ["Berlin", 52.52, 13.405],
  ["Madrid", 40.417, -3.704], ["Rome", 41.903, 12.496], ["Amsterdam", 52.368, 4.904],
  ["Oxford", 51.752, -1.258], ["Cambridge", 52.205, 0.122], ["Brighton", 50.823, -0.137],
  ["Reading", 51.454, -0.978], ["New York", 40.713, -74.006], ["Chicago", 41.878, -87.63],
  ["Los Angeles", 34.052, -118.244], ["Toronto", 43.653, -79.383], ["Mexico City", 19.433, -99.133],
  ["Sao Paulo", -23.55, -46.633], ["Lagos", 6.524, 3.379], ["Cairo", 30.044, 31.236],
  ["Johannesburg", -26.204, 28.047], ["Dubai", 25.205, 55.271], ["Mumbai", 19.076, 72.878],
  ["Singapore", 1.352, 103.82], ["Hong Kong", 22.32, 114.169], ["Tokyo", 35.676, 139.65],
  ["Seoul", 37.567, 126.978], ["Sydney", -33.869, 151.209], ["Melbourne", -37.814, 144.963],
  ["Wollongong", -34.425, 150.893], ["Newcastle NSW", -32.928, 151.781],
];

let map;
let cityLayer;
let selected = null; // the selected profile
let profiles = new Map();
let layer; // the selected user's pins and lines
let track = []; // [{decision, tx}] of the selected user, in event-time order
let pending = null; // {lat, lon} of the double-click waiting for an amount
let loading = 0; // which selection the track being loaded belongs to

export function initMap() {
  map = L.map("map", { doubleClickZoom: false, worldCopyJump: true, minZoom: 2 });
  map.setView([50, 6], 5); // western Europe: the seed users' homes
  map.attributionControl.setPrefix(false);
  map.createPane("basemap").style.zIndex = "150"; // under the tiles (200): tiles cover it
  drawBasemap();
  cityLayer = L.layerGroup().addTo(map);
  drawCities();
  map.on("moveend", drawCities);
  addTiles();
  layer = L.layerGroup().addTo(map);
  map.on("dblclick", (event) => askAmount(event.latlng));
  window.fraudstream = Object.assign(window.fraudstream || {}, { map });

  document.getElementById("user-select").addEventListener("change", (event) => {
    selectUser(event.target.value);
  });
  const dialog = document.getElementById("tx-dialog");
  document.getElementById("tx-form").addEventListener("submit", (event) => {
    event.preventDefault();
    if (event.submitter && event.submitter.value === "cancel") {
      dialog.close();
      return;
    }
    submitTransaction();
  });
  onDecision(fromFeed);
  loadProfiles();
}

export function mapShown() {
  if (map) map.invalidateSize();
}

async function drawBasemap() {
  const response = await fetch("/static/vendor/world-atlas/countries-50m.json");
  const topology = await response.json();
  const countries = window.topojson.feature(topology, topology.objects.countries);
  L.geoJSON(countries, {
    pane: "basemap",
    renderer: L.canvas({ pane: "basemap" }),
    interactive: false,
    style: { color: "#8c8c8c", weight: 0.8, fillColor: "#f4f1ea", fillOpacity: 1 },
  }).addTo(map);
  document.getElementById("map").dataset.basemap = "countries";
}

function addTiles() {
  const note = document.getElementById("tiles-status");
  const tiles = L.tileLayer("https://tile.openstreetmap.org/{z}/{x}/{y}.png", {
    maxZoom: 18,
    attribution: "&copy; OpenStreetMap contributors",
  });
  let failed = false;
  tiles.on("tileload", () => {
    if (!failed) note.textContent = "map tiles: OpenStreetMap";
  });
  tiles.on("tileerror", () => {
    if (failed) return;
    failed = true;
    map.removeLayer(tiles);
    note.textContent = "map tiles unreachable: offline basemap (country borders, Natural Earth)";
  });
  note.textContent = "map tiles: loading ...";
  tiles.addTo(map);
}

function drawCities() {
  cityLayer.clearLayers();
  if (map.getZoom() < 4) return;
  const bounds = map.getBounds();
  for (const [name, lat, lon] of CITIES) {
    if (!bounds.contains([lat, lon])) continue;
    L.circleMarker([lat, lon], { radius: 2, color: "#52606d", weight: 1, interactive: false })
      .bindTooltip(name, { permanent: true, direction: "right", className: "city-label" })
      .addTo(cityLayer);
  }
}

async function loadProfiles() {
  const select = document.getElementById("user-select");
  try {
    const list = await get("/v1/profiles");
    profiles = new Map(list.map((p) => [p.user_id, p]));
    setUserNames(list);
    select.replaceChildren(
      h("option", { value: "" }, "choose a user ..."),
      ...list.map((p) =>
        h("option", { value: p.user_id }, `${p.first_name || ""} ${p.last_name || ""} (${p.user_id}, max ${fmtNumber(p.max_speed_kmh, 0)} km/h)`.trim()),
      ),
    );
    if (selected && profiles.has(selected.user_id)) select.value = selected.user_id;
  } catch (error) {
    status(`profiles: ${error.message}`, "error");
  }
}

export function refreshProfiles() {
  return loadProfiles();
}

async function selectUser(userId) {
  delete document.getElementById("map").dataset.user;
  selected = profiles.get(userId) || null;
  track = [];
  redraw();
  const ticket = ++loading;
  document.getElementById("map-result").replaceChildren(h("p", { class: "muted" }, "double-click the map to make a transaction"));
  if (!selected) return;
  const stored = await get(`/v1/decisions?user_id=${encodeURIComponent(userId)}&limit=${TRACK_LIMIT}`);
  if (ticket !== loading) return; // another user was chosen meanwhile
  for (const d of stored) add(d, d.transaction || {});
  redraw();
  // The whole track in view, else the user's home (where a first payment is likely).
  const points = track.map((t) => [t.tx.lat, t.tx.lon]);
  if (selected.home_lat !== null && selected.home_lon !== null) points.push([selected.home_lat, selected.home_lon]);
  if (points.length > 1) map.fitBounds(points, { padding: [40, 40], maxZoom: 9, animate: false });
  else if (points.length === 1) map.setView(points[0], 9, { animate: false });
  document.getElementById("map").dataset.user = userId; // the track is drawn
  const latest = track[track.length - 1];
  if (latest) showResult(latest.decision, latest.tx);
}

function askAmount(latlng) {
  if (!selected) {
    status("choose a user first", "error");
    return;
  }
  pending = { lat: latlng.lat, lon: ((latlng.lng + 540) % 360) - 180 };
  const form = document.getElementById("tx-form");
  form.elements.where.value = `${pending.lat.toFixed(4)}, ${pending.lon.toFixed(4)}`;
  form.elements.when.value = localInput(new Date());
  form.elements.card.value = form.elements.card.value || "";
  form.elements.card.placeholder = `map-${selected.user_id}`;
  document.getElementById("tx-error").textContent = "";
  document.getElementById("tx-dialog").showModal();
  form.elements.amount.focus();
  form.elements.amount.select();
}

function localInput(date) {
  const pad = (n) => String(n).padStart(2, "0");
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}T${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}`;
}

async function submitTransaction() {
  const form = document.getElementById("tx-form");
  const amount = Number(form.elements.amount.value);
  const when = new Date(form.elements.when.value);
  const errorLine = document.getElementById("tx-error");
  if (!(amount >= 0) || form.elements.amount.value === "") {
    errorLine.textContent = "amount: a number >= 0";
    return;
  }
  if (Number.isNaN(when.getTime())) {
    errorLine.textContent = "time: not a date";
    return;
  }
  const record = {
    transaction_id: `map-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`,
    card_id: form.elements.card.value || `map-${selected.user_id}`,
    user_id: selected.user_id,
    timestamp: when.getTime(),
    amount,
    lat: pending.lat,
    lon: pending.lon,
    channel: "pos",
  };
  try {
    const decision = await post("/v1/transactions", record);
    document.getElementById("tx-dialog").close();
    const tx = { amount, lat: record.lat, lon: record.lon, currency: "USD" };
    if (add(decision, tx)) redraw();
    showResult(decision, tx);
    status(`${decision.transaction_id}: ${headline(decision)}`);
  } catch (error) {
    errorLine.textContent = error instanceof ApiError ? error.message : String(error);
  }
}

function fromFeed(decision) {
  if (!selected || decision.user_id !== selected.user_id) return;
  const tx = decision.transaction || {};
  if (tx.lat === undefined) return;
  if (add(decision, tx)) {
    redraw();
    showResult(decision, tx);
  }
}

// Adds a transaction to the track in event-time order; false when it has no place or is known.
function add(decision, tx) {
  if (tx.lat === undefined || tx.lat === null || track.some((t) => t.decision.transaction_id === decision.transaction_id)) return false;
  track.push({ decision, tx });
  track.sort((a, b) => (a.decision.event_time || "").localeCompare(b.decision.event_time || ""));
  return true;
}

function headline(decision) {
  return `${HEADLINES[decision.decision] || decision.decision.toUpperCase()} · score ${fmtNumber(decision.score, 2)}`;
}

function speedText(decision) {
  const f = decision.features || {};
  if (f.speed_kmh === undefined || f.speed_kmh === null) return "first transaction";
  const max = f.max_speed_kmh === undefined ? selected && selected.max_speed_kmh : f.max_speed_kmh;
  return `${fmtNumber(f.speed_kmh, 1)} km/h (max ${fmtNumber(max, 0)} km/h)`;
}

function redraw() {
  layer.clearLayers();
  let alerts = 0;
  if (selected && selected.home_lat !== null && selected.home_lon !== null) {
    L.circleMarker([selected.home_lat, selected.home_lon], { radius: 5, color: "#0969da", fillOpacity: 0.2, className: "home-pin" })
      .bindTooltip(`home of ${selected.first_name || selected.user_id}`)
      .addTo(layer);
  }
  const known = new Set(track.map((t) => t.decision.transaction_id));
  track.forEach(({ decision, tx }, index) => {
    const point = [tx.lat, tx.lon];
    const f = decision.features || {};
    // The transaction this verdict was measured from, when it is not on the track (older
    // than what was read): drawn as a hollow pin, so the jump that decided is visible.
    if (index === 0 && f.previous_lat !== undefined && f.previous_lat !== null && !known.has(f.previous_transaction_id)) {
      L.circleMarker([f.previous_lat, f.previous_lon], { radius: 7, color: "#57606a", weight: 2, fillOpacity: 0, className: "pin-previous" })
        .bindTooltip(`previous: ${f.previous_transaction_id || "?"} ${fmtTime(isoOf(f.previous_timestamp))}`)
        .addTo(layer);
      line([f.previous_lat, f.previous_lon], point, decision.decision);
    }
    if (index > 0) line([track[index - 1].tx.lat, track[index - 1].tx.lon], point, decision.decision);
    if (decision.decision !== "approve") alerts += 1;
  });
  track.forEach(({ decision, tx }, index) => {
    const marker = L.circleMarker([tx.lat, tx.lon], {
      radius: 9, color: "#1f2328", weight: 1, fillColor: COLORS[decision.decision], fillOpacity: 0.9,
      className: `pin pin-${decision.decision}`,
    });
    const label = `${index + 1}. ${headline(decision)} · ${speedText(decision)}`;
    const permanent = index >= track.length - LABELLED;
    marker.bindTooltip(label, {
      permanent, direction: "top", offset: [0, -8], className: `pin-label tier-label-${decision.decision}`,
    });
    marker.bindPopup(popup(decision, tx));
    marker.on("click", () => showResult(decision, tx));
    marker.addTo(layer);
  });
  document.getElementById("count-total").textContent = String(track.length);
  document.getElementById("count-fraud").textContent = String(alerts);
}

function isoOf(time) {
  return typeof time === "number" ? new Date(time).toISOString() : time;
}

function line(from, to, tier) {
  L.polyline([from, to], { color: COLORS[tier], weight: 2, dashArray: "6 6", className: "travel-line" }).addTo(layer);
}

function popup(decision, tx) {
  return h("div", { class: "popup" },
    h("strong", {}, headline(decision)), h("br"),
    `${decision.transaction_id} · ${fmtTime(decision.event_time)}`, h("br"),
    `${fmtAmount(tx.amount)} ${tx.currency || ""} · ${speedText(decision)}`, h("br"),
    ...decision.reasons.map((r) => h("div", { class: "reason" }, `${r.rule}: ${r.message}`)),
  );
}

function showResult(decision, tx) {
  const f = decision.features || {};
  const name = `${f.first_name || (selected && selected.first_name) || ""} ${f.last_name || (selected && selected.last_name) || ""}`.trim();
  document.getElementById("map-result").replaceChildren(
    h("p", { class: `verdict verdict-${decision.decision}`, id: "map-verdict" }, headline(decision)),
    h("dl", {},
      h("dt", {}, "transaction"), h("dd", {}, decision.transaction_id),
      h("dt", {}, "event time"), h("dd", {}, fmtTime(decision.event_time)),
      h("dt", {}, "user"), h("dd", {}, `${name} (${decision.user_id})`),
      h("dt", {}, "amount"), h("dd", {}, `${fmtAmount(tx.amount)} ${tx.currency || "USD"}`),
      h("dt", {}, "speed"), h("dd", { id: "map-speed" }, speedText(decision)),
      h("dt", {}, "distance"), h("dd", {}, f.distance_km === undefined || f.distance_km === null ? "-" : `${fmtNumber(f.distance_km, 1)} km`),
      h("dt", {}, "from"), h("dd", {}, f.previous_transaction_id ? `${f.previous_transaction_id} (${fmtTime(isoOf(f.previous_timestamp))})` : "-"),
    ),
    h("ul", { class: "reasons" }, ...decision.reasons.map((r) => h("li", {}, h("b", {}, r.rule), ` ${r.message}`))),
  );
}
