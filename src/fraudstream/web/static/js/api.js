// The page's access to the API: the bearer token, JSON requests, the live feed, DOM helpers.
//
// The token is never served by the server. It arrives once in the URL fragment
// (/#token=..., printed by `fraudstream serve` / `demo`; a fragment is not sent to servers)
// or is pasted in the header, and is kept in this browser's localStorage. Every request
// sends it when the page has it: changes need it, and so do reads when the server has a read
// token (FRAUDSTREAM_READ_TOKEN; the page's token may be either). EventSource cannot send a
// header, so the live feed passes it as ?access_token= (RFC 6750).

const TOKEN_KEY = "fraudstream.token";
const ANALYST_KEY = "fraudstream.analyst";

export function takeTokenFromFragment() {
  const match = /^#token=([^&]+)/.exec(window.location.hash);
  if (match) {
    setToken(decodeURIComponent(match[1]));
    history.replaceState(null, "", window.location.pathname + window.location.search + "#map");
  }
}

export function token() {
  return localStorage.getItem(TOKEN_KEY) || "";
}

export function setToken(value) {
  if (value) localStorage.setItem(TOKEN_KEY, value);
  else localStorage.removeItem(TOKEN_KEY);
  document.dispatchEvent(new CustomEvent("token-changed"));
}

export function analyst() {
  return localStorage.getItem(ANALYST_KEY) || "";
}

export function setAnalyst(value) {
  localStorage.setItem(ANALYST_KEY, value);
}

export class ApiError extends Error {
  constructor(status, detail) {
    const text = Array.isArray(detail)
      ? detail.map((d) => (d.field ? `${d.field}: ${d.message}` : d.message || String(d))).join("; ")
      : String(detail);
    super(`${status}: ${text}`);
    this.status = status;
    this.detail = detail;
  }
}

async function request(method, path, body) {
  const headers = { Accept: "application/json" };
  if (method !== "GET") {
    if (!token()) throw new ApiError(401, "paste the API token (top right) first");
    headers["Content-Type"] = "application/json";
  }
  if (token()) headers.Authorization = `Bearer ${token()}`;
  const response = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = text;
  }
  if (!response.ok) throw new ApiError(response.status, data && data.detail ? data.detail : text);
  return data;
}

export const get = (path) => request("GET", path);
export const post = (path, body) => request("POST", path, body);
export const patch = (path, body) => request("PATCH", path, body);
export const put = (path, body) => request("PUT", path, body);
export const del = (path) => request("DELETE", path);

// One EventSource for the whole page; tabs subscribe to decisions (with their transaction).
const listeners = new Set();
let source = null;

export function onDecision(listener) {
  listeners.add(listener);
  if (!source) openFeed();
}

function openFeed() {
  const query = token() ? `&access_token=${encodeURIComponent(token())}` : "";
  source = new EventSource(`/v1/decisions/stream?transaction=true${query}`);
  source.onmessage = (event) => {
    const decision = JSON.parse(event.data);
    for (const fn of listeners) fn(decision);
  };
  source.onopen = () => setLive(true);
  source.onerror = () => setLive(false);
}

// A new token may open reads the old one could not: reconnect the feed with it.
document.addEventListener("token-changed", () => {
  if (!source) return;
  source.close();
  openFeed();
});

function setLive(on) {
  const dot = document.getElementById("live-status");
  if (dot) {
    dot.textContent = on ? "live" : "reconnecting";
    dot.dataset.state = on ? "on" : "off";
  }
}

// h("td", {class: "x", dataset: {id: 1}}, "text", child) -- text only, never HTML.
export function h(tag, attrs = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "dataset") Object.assign(element.dataset, value);
    else if (name.startsWith("on")) element.addEventListener(name.slice(2), value);
    else if (name in element && name !== "list" && name !== "type") element[name] = value;
    else element.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return element;
}

export function status(message, kind = "info") {
  const line = document.getElementById("status");
  line.textContent = message;
  line.dataset.kind = kind;
}

export function fmtTime(iso) {
  return iso ? iso.replace("T", " ").replace(/\.\d+Z$/, "Z") : "";
}

export function fmtNumber(value, digits = 1) {
  if (value === null || value === undefined || value === "Infinity") return value === "Infinity" ? "inf" : "-";
  return Number(value).toLocaleString("en-US", { maximumFractionDigits: digits });
}

// Users' names from the profiles (the map loads them): every tab shows names, not ids.
const names = new Map();

export function setUserNames(profiles) {
  names.clear();
  for (const p of profiles) {
    const name = `${p.first_name || ""} ${p.last_name || ""}`.trim();
    if (name) names.set(p.user_id, name);
  }
  document.dispatchEvent(new CustomEvent("profiles-loaded"));
}

export function userName(userId) {
  return names.get(userId) || userId || "";
}

// An amount: always two decimals (732.90, not 732.9).
export function fmtAmount(value) {
  if (value === null || value === undefined) return "-";
  return Number(value).toLocaleString("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 });
}

export function tierBadge(tier) {
  return h("span", { class: `tier tier-${tier}` }, tier);
}
