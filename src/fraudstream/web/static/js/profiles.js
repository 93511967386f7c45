// Profiles: a searchable, paged table of the users (name, max speed, home, thresholds); a
// row opens its profile in the form beside the table; a change applies to the user's next
// transaction and is audited (who, note).

import { analyst, fmtNumber, get, h, put, status } from "./api.js";

const PER_PAGE = 25;
const FIELDS = ["first_name", "last_name", "max_speed_kmh", "home_lat", "home_lon", "home_country", "review_threshold", "decline_threshold"];
const NUMBERS = new Set(["max_speed_kmh", "home_lat", "home_lon", "review_threshold", "decline_threshold"]);
let all = [];
let page = 1;
let editing = null; // the user id in the form, or "" for a new profile
let onChange = () => {};

export function initProfiles(changed) {
  onChange = changed;
  document.getElementById("profile-filter").addEventListener("input", () => {
    page = 1;
    render();
  });
  document.getElementById("profile-prev").addEventListener("click", () => turn(-1));
  document.getElementById("profile-next").addEventListener("click", () => turn(1));
  document.getElementById("profile-add").addEventListener("click", () => edit(null));
  document.getElementById("profile-cancel").addEventListener("click", () => {
    editing = null;
    document.getElementById("profile-edit").hidden = true;
    render();
  });
  document.getElementById("profile-form").addEventListener("submit", (event) => {
    event.preventDefault();
    save();
  });
}

export async function profilesShown() {
  all = await get("/v1/profiles");
  render();
}

function matching() {
  const needle = document.getElementById("profile-filter").value.trim().toLowerCase();
  if (!needle) return all;
  return all.filter((p) =>
    [p.user_id, p.first_name, p.last_name, `${p.first_name || ""} ${p.last_name || ""}`, p.home_country]
      .some((text) => text && String(text).toLowerCase().includes(needle)));
}

function turn(step) {
  const pages = Math.max(1, Math.ceil(matching().length / PER_PAGE));
  page = Math.min(pages, Math.max(1, page + step));
  render();
}

function render() {
  const found = matching();
  const pages = Math.max(1, Math.ceil(found.length / PER_PAGE));
  page = Math.min(page, pages);
  const shown = found.slice((page - 1) * PER_PAGE, page * PER_PAGE);
  document.getElementById("profile-count").textContent = `${found.length} of ${all.length} profiles`;
  document.getElementById("profile-page").textContent = `page ${page} of ${pages}`;
  document.getElementById("profile-prev").disabled = page <= 1;
  document.getElementById("profile-next").disabled = page >= pages;
  const empty = document.getElementById("profiles-empty");
  empty.hidden = shown.length > 0;
  empty.textContent = all.length ? `no profile matches "${document.getElementById("profile-filter").value.trim()}"` : "no profiles: add one with \"new profile\"";
  document.getElementById("profiles-body").replaceChildren(
    ...shown.map((p) =>
      h("tr", { dataset: { user: p.user_id }, class: p.user_id === editing ? "selected" : "", onclick: () => edit(p) },
        h("td", { class: "mono" }, p.user_id),
        h("td", {}, `${p.first_name || ""} ${p.last_name || ""}`.trim() || "-"),
        h("td", { class: "num" }, fmtNumber(p.max_speed_kmh, 0)),
        h("td", { class: "num" }, p.home_lat === null || p.home_lon === null ? "-" : `${fmtNumber(p.home_lat, 3)}, ${fmtNumber(p.home_lon, 3)}`),
        h("td", {}, p.home_country || "-"),
        h("td", { class: "num" }, p.review_threshold === null ? "default" : fmtNumber(p.review_threshold, 2)),
        h("td", { class: "num" }, p.decline_threshold === null ? "default" : fmtNumber(p.decline_threshold, 2)),
      ),
    ),
  );
}

function edit(profile) {
  editing = profile ? profile.user_id : "";
  const form = document.getElementById("profile-form");
  form.reset();
  document.getElementById("profile-title").textContent = profile ? `edit ${profile.user_id}` : "new profile";
  form.elements.user_id.readOnly = Boolean(profile);
  form.elements.user_id.value = profile ? profile.user_id : "";
  for (const name of FIELDS) {
    const value = profile ? profile[name] : null;
    form.elements[name].value = value === null || value === undefined ? "" : value;
  }
  document.getElementById("profile-edit").hidden = false;
  (profile ? form.elements.first_name : form.elements.user_id).focus();
  render();
}

async function save() {
  const form = document.getElementById("profile-form");
  const userId = form.elements.user_id.value.trim();
  const who = analyst();
  if (!userId) {
    status("a profile needs a user id", "error");
    return;
  }
  if (!who) {
    status("enter your analyst name (top right) first", "error");
    document.getElementById("analyst").focus();
    return;
  }
  const fields = {};
  for (const name of FIELDS) {
    const raw = form.elements[name].value.trim();
    fields[name] = raw === "" ? null : NUMBERS.has(name) ? Number(raw) : raw;
  }
  try {
    const saved = await put(`/v1/profiles/${encodeURIComponent(userId)}`, { ...fields, who, note: form.elements.note.value });
    status(`${userId}: saved, max speed ${fmtNumber(saved.max_speed_kmh, 0)} km/h, applies to the next transaction`);
    editing = userId;
    await profilesShown();
    onChange();
  } catch (error) {
    status(`${userId}: ${error.message}`, "error");
  }
}
