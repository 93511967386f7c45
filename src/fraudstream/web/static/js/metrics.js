// The metrics panel: throughput, latency p50/p99, decisions by tier per second (last 5 min).

import { fmtNumber, get, h } from "./api.js";

const TIERS = ["approve", "review", "decline"];
const COLORS = { approve: "#1a7f37", review: "#d97706", decline: "#cf222e" };
let timer = null;

export function metricsShown() {
  refresh();
  if (!timer) timer = setInterval(() => {
    if (!document.getElementById("tab-metrics").hidden) refresh();
  }, 2000);
}

async function refresh() {
  const m = await get("/v1/metrics");
  const cards = [
    ["throughput", `${fmtNumber(m.throughput_per_s, 1)} /s`],
    ["latency p50", m.latency_ms.p50 === null ? "-" : `${fmtNumber(m.latency_ms.p50, 2)} ms`],
    ["latency p99", m.latency_ms.p99 === null ? "-" : `${fmtNumber(m.latency_ms.p99, 2)} ms`],
    ...TIERS.map((t) => [t, fmtNumber(m.totals[t], 0)]),
  ];
  document.getElementById("metric-cards").replaceChildren(
    ...cards.map(([name, value]) => h("div", { class: "card", dataset: { metric: name } }, h("div", { class: "muted" }, name), h("div", { class: "big" }, value))),
  );
  chart(m.series);
}

function chart(series) {
  const svgNS = "http://www.w3.org/2000/svg";
  const svg = document.getElementById("tier-chart");
  const width = 900;
  const height = 220;
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.replaceChildren();
  const now = Math.floor(Date.now() / 1000);
  const seconds = 300;
  const max = Math.max(1, ...series.map((s) => s.approve + s.review + s.decline));
  const bar = width / seconds;
  for (const s of series) {
    const x = width - (now - s.t + 1) * bar;
    if (x < 0) continue;
    let y = height - 20;
    for (const tier of TIERS) {
      const hgt = (s[tier] / max) * (height - 40);
      if (hgt <= 0) continue;
      const rect = document.createElementNS(svgNS, "rect");
      rect.setAttribute("x", x.toFixed(1));
      rect.setAttribute("y", (y - hgt).toFixed(1));
      rect.setAttribute("width", Math.max(1, bar - 0.5).toFixed(1));
      rect.setAttribute("height", hgt.toFixed(1));
      rect.setAttribute("fill", COLORS[tier]);
      svg.append(rect);
      y -= hgt;
    }
  }
  const label = document.createElementNS(svgNS, "text");
  label.setAttribute("x", "4");
  label.setAttribute("y", "14");
  label.setAttribute("class", "axis");
  label.textContent = `decisions per second by tier, last 5 minutes (max ${max}/s)`;
  svg.append(label);
}
