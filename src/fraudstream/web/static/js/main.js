// The analyst's page: tabs, the token and analyst name, and each tab's module.

import { ApiError, analyst, setAnalyst, setToken, status, takeTokenFromFragment, token } from "./api.js";
import { feedShown, forgetFeed, initFeed, loadRules as loadFeedRules } from "./feed.js";
import { initMap, mapShown, refreshProfiles } from "./map.js";
import { metricsShown } from "./metrics.js";
import { initProfiles, profilesShown } from "./profiles.js";
import { initReview, reviewShown } from "./review.js";
import { initRules, rulesShown } from "./rules.js";

const TABS = {
  map: mapShown,
  feed: feedShown,
  review: reviewShown,
  rules: rulesShown,
  profiles: profilesShown,
  metrics: metricsShown,
};

function showTab(name) {
  if (!(name in TABS)) name = "map";
  for (const tab of Object.keys(TABS)) {
    document.getElementById(`tab-${tab}`).hidden = tab !== name;
    document.querySelector(`nav button[data-tab="${tab}"]`).classList.toggle("active", tab === name);
  }
  if (window.location.hash !== `#${name}`) history.replaceState(null, "", `#${name}`);
  status(""); // what another tab said is not about this one
  Promise.resolve(TABS[name]()).catch((error) => console.error(error));
}

function showToken() {
  const state = document.getElementById("token-state");
  state.textContent = token() ? "token set" : "no token: read-only";
  state.dataset.state = token() ? "set" : "missing";
}

function init() {
  // A refused or failed request that no tab handled (a read without the token the server
  // asks for): say so in the status line. Anything else is a bug and stays an error.
  window.addEventListener("unhandledrejection", (event) => {
    if (event.reason instanceof ApiError) {
      status(event.reason.message, "error");
      event.preventDefault();
    }
  });
  takeTokenFromFragment();
  showToken();
  document.addEventListener("token-changed", () => {
    // Reads may need the token (a server with a read token): load what the page shows again.
    showToken();
    refreshProfiles();
    forgetFeed();
    loadFeedRules().catch((error) => console.error(error));
    showTab(window.location.hash.slice(1));
  });
  document.getElementById("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const input = event.target.elements.token;
    setToken(input.value.trim());
    input.value = "";
  });
  document.getElementById("token-forget").addEventListener("click", () => setToken(""));
  const name = document.getElementById("analyst");
  name.value = analyst();
  name.addEventListener("input", () => setAnalyst(name.value.trim()));
  for (const button of document.querySelectorAll("nav button[data-tab]")) {
    button.addEventListener("click", () => showTab(button.dataset.tab));
  }
  initMap();
  initFeed();
  initReview();
  initRules();
  initProfiles(refreshProfiles);
  showTab(window.location.hash.slice(1));
  document.body.dataset.ready = "true";
}

init();
