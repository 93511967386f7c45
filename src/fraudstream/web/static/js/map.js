// The map of seed 002: pick a user, double-click to make a transaction, see the verdict.
//
// Works with no internet: a graticule and a few city names are drawn locally, and
// OpenStreetMap tiles are added on top when they load (removed at the first tile error).

import { ApiError, fmtNumber, get, h, onDecision, post, status } from "./api.js";

const L = window.L;
const COLORS = { approve: "#1a7f37", review: "#d97706", decline: "#cf222e" };
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
let grid;
let selected = null; // the selected profile
let profiles = new Map();
const drawn = new Map(); // transaction_id -> true, for the selected user
let layer; // the selected user's pins and lines
let lastPoint = null; // [lat, lon] of the user's latest pin drawn
let counts = { total: 0, fraud: 0 };
let pending = null; // {lat, lon} of the double-click waiting for an amount

export function initMap() {
  map = L.map("map", { doubleClickZoom: false, worldCopyJump: true, preferCanvas: false });
  map.setView([51.507, -0.128], 9);
  map.attributionControl.setPrefix(false);
  grid = L.layerGroup().addTo(map);
  drawGrid();
  map.on("moveend", drawGrid);
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
    note.textContent = "map tiles unreachable: plain map (graticule and cities)";
  });
  note.textContent = "map tiles: loading ...";
  tiles.addTo(map);
  tiles.bringToBack();
}

function drawGrid() {
  grid.clearLayers();
  const bounds = map.getBounds();
  const zoom = map.getZoom();
  const step = zoom >= 9 ? 0.25 : zoom >= 7 ? 1 : zoom >= 5 ? 5 : 10;
  const south = Math.max(-85, Math.floor(bounds.getSouth() / step) * step);
  const north = Math.min(85, Math.ceil(bounds.getNorth() / step) * step);
  const west = Math.floor(bounds.getWest() / step) * step;
  const east = Math.ceil(bounds.getEast() / step) * step;
  const style = { color: "#8aa1b4", weight: 0.6, opacity: 0.7, interactive: false };
  for (let lat = south; lat <= north; lat += step) {
    L.polyline([[lat, west], [lat, east]], style).addTo(grid);
  }
  for (let lon = west; lon <= east; lon += step) {
    L.polyline([[south, lon], [north, lon]], style).addTo(grid);
  }
  for (const [name, lat, lon] of CITIES) {
    if (!bounds.contains([lat, lon])) continue;
    L.circleMarker([lat, lon], { radius: 2, color: "#52606d", weight: 1, interactive: false })
      .bindTooltip(name, { permanent: true, direction: "right", className: "city-label" })
      .addTo(grid);
  }
}

async function loadProfiles() {
  const select = document.getElementById("user-select");
  try {
    const list = await get("/v1/profiles");
    profiles = new Map(list.map((p) => [p.user_id, p]));
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

function selectUser(userId) {
  selected = profiles.get(userId) || null;
  layer.clearLayers();
  drawn.clear();
  lastPoint = null;
  counts = { total: 0, fraud: 0 };
  showCounts();
  document.getElementById("map-result").replaceChildren(h("p", { class: "muted" }, "double-click the map to make a transaction"));
  if (selected && selected.home_lat !== null && selected.home_lon !== null) {
    map.setView([selected.home_lat, selected.home_lon], 9);
    L.circleMarker([selected.home_lat, selected.home_lon], { radius: 5, color: "#0969da", fillOpacity: 0.2 })
      .bindTooltip(h("span", {}, `home of ${selected.first_name || selected.user_id}`))
      .addTo(layer);
  }
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
    draw(decision, { amount, lat: record.lat, lon: record.lon, currency: "USD" });
    status(`${decision.transaction_id}: ${decision.decision}`);
  } catch (error) {
    errorLine.textContent = error instanceof ApiError ? error.message : String(error);
  }
}

function fromFeed(decision) {
  if (!selected || decision.user_id !== selected.user_id || drawn.has(decision.transaction_id)) return;
  const tx = decision.transaction || {};
  if (tx.lat === undefined) return;
  draw(decision, tx);
}

function isFraud(decision) {
  return decision.decision !== "approve";
}

function draw(decision, tx) {
  if (drawn.has(decision.transaction_id)) return;
  drawn.set(decision.transaction_id, true);
  const f = decision.features || {};
  const fraud = isFraud(decision);
  const point = [tx.lat, tx.lon];
  const previous = f.previous_lat !== undefined ? [f.previous_lat, f.previous_lon] : lastPoint;
  if (previous) {
    L.polyline([previous, point], { color: COLORS[decision.decision], weight: 2, dashArray: "6 6", className: "travel-line" }).addTo(layer);
  }
  const speed = f.speed_kmh === undefined ? null : f.speed_kmh;
  const max = f.max_speed_kmh === undefined ? selected && selected.max_speed_kmh : f.max_speed_kmh;
  const verdict = fraud ? "FRAUD DETECTED" : "VALID TRANSACTION";
  const speedText = speed === null ? "first transaction" : `${fmtNumber(speed, 1)} km/h (max ${fmtNumber(max, 0)} km/h)`;
  const marker = L.circleMarker(point, {
    radius: 9, color: "#1f2328", weight: 1, fillColor: COLORS[decision.decision], fillOpacity: 0.9,
    className: `pin pin-${decision.decision}`,
  });
  marker.bindTooltip(`${verdict} · ${speedText}`, {
    permanent: true, direction: "top", offset: [0, -8], className: fraud ? "pin-label fraud" : "pin-label valid",
  });
  marker.bindPopup(popup(decision, tx, verdict, speedText));
  marker.addTo(layer);
  lastPoint = point;
  counts.total += 1;
  if (fraud) counts.fraud += 1;
  showCounts();
  showResult(decision, tx, verdict, speedText, fraud);
}

function popup(decision, tx, verdict, speedText) {
  return h("div", { class: "popup" },
    h("strong", {}, verdict), h("br"),
    `${decision.transaction_id} · ${fmtNumber(tx.amount, 2)} ${tx.currency || ""}`, h("br"),
    speedText, h("br"),
    ...decision.reasons.map((r) => h("div", { class: "reason" }, `${r.rule}: ${r.message}`)),
  );
}

function showCounts() {
  document.getElementById("count-total").textContent = String(counts.total);
  document.getElementById("count-fraud").textContent = String(counts.fraud);
}

function showResult(decision, tx, verdict, speedText, fraud) {
  const f = decision.features || {};
  document.getElementById("map-result").replaceChildren(
    h("p", { class: fraud ? "verdict fraud" : "verdict valid", id: "map-verdict" }, verdict),
    h("dl", {},
      h("dt", {}, "transaction"), h("dd", {}, decision.transaction_id),
      h("dt", {}, "user"), h("dd", {}, `${f.first_name || ""} ${f.last_name || ""} (${decision.user_id})`),
      h("dt", {}, "amount"), h("dd", {}, `${fmtNumber(tx.amount, 2)} ${tx.currency || "USD"}`),
      h("dt", {}, "speed"), h("dd", { id: "map-speed" }, speedText),
      h("dt", {}, "distance"), h("dd", {}, f.distance_km === undefined ? "-" : `${fmtNumber(f.distance_km, 1)} km`),
      h("dt", {}, "decision"), h("dd", {}, `${decision.decision} (score ${fmtNumber(decision.score, 3)})`),
    ),
    h("ul", { class: "reasons" }, ...decision.reasons.map((r) => h("li", {}, h("b", {}, r.rule), ` ${r.message}`))),
  );
}
