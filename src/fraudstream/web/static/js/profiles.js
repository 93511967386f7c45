// Profiles: view and edit users (max speed, thresholds, home); a change applies to the next
// transaction of that user.

import { analyst, fmtNumber, get, h, put, status } from "./api.js";

const EDITABLE = ["first_name", "last_name", "max_speed_kmh", "home_lat", "home_lon", "home_country", "review_threshold", "decline_threshold"];
const NUMBERS = new Set(["max_speed_kmh", "home_lat", "home_lon", "review_threshold", "decline_threshold"]);
let all = [];
let onChange = () => {};

export function initProfiles(changed) {
  onChange = changed;
  document.getElementById("profile-filter").addEventListener("input", render);
  document.getElementById("profile-new").addEventListener("submit", async (event) => {
    event.preventDefault();
    const userId = event.target.elements.user_id.value.trim();
    if (!userId) return;
    if (await save(userId, {})) event.target.reset();
  });
}

export async function profilesShown() {
  all = await get("/v1/profiles");
  render();
}

function render() {
  const needle = document.getElementById("profile-filter").value.toLowerCase();
  const shown = all.filter((p) => !needle || JSON.stringify(p).toLowerCase().includes(needle)).slice(0, 300);
  document.getElementById("profile-count").textContent = `${shown.length} of ${all.length} profiles`;
  document.getElementById("profiles-body").replaceChildren(...shown.map(row));
}

function row(profile) {
  const inputs = {};
  const cells = EDITABLE.map((name) => {
    const value = profile[name];
    inputs[name] = NUMBERS.has(name)
      ? h("input", { type: "number", step: "any", value: value === null ? "" : value, class: "small", name })
      : h("input", { type: "text", value: value === null ? "" : value, class: "small", name });
    return h("td", {}, inputs[name]);
  });
  const saveButton = h("button", { type: "button" }, "save");
  const tr = h("tr", { dataset: { user: profile.user_id } }, h("td", { class: "mono" }, profile.user_id), ...cells, h("td", {}, saveButton));
  saveButton.addEventListener("click", async () => {
    const fields = {};
    for (const name of EDITABLE) {
      const raw = inputs[name].value.trim();
      fields[name] = raw === "" ? null : NUMBERS.has(name) ? Number(raw) : raw;
    }
    await save(profile.user_id, fields);
  });
  return tr;
}

async function save(userId, fields) {
  const who = analyst();
  if (!who) {
    status("enter your analyst name (top right) first", "error");
    return false;
  }
  try {
    const saved = await put(`/v1/profiles/${encodeURIComponent(userId)}`, { ...fields, who });
    status(`${userId}: saved, max speed ${fmtNumber(saved.max_speed_kmh, 0)} km/h, applies to the next transaction`);
    await profilesShown();
    onChange();
    return true;
  } catch (error) {
    status(`${userId}: ${error.message}`, "error");
    return false;
  }
}
