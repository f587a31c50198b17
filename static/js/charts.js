// Draw the figures the server built (plotly.py JSON) in the browser's time zone, and keep the
// dashboard's live chart moving from /api/v1/me/gpus.
"use strict";

(function () {
  const pad = (n, w = 2) => String(n).padStart(w, "0");

  // Plotly date axes have no time zones: give them local wall-clock strings.
  function toLocal(value) {
    if (typeof value !== "string" || !/T.*(Z|[+-]\d\d:?\d\d)$/.test(value)) return value;
    const d = new Date(value);
    if (Number.isNaN(d.getTime())) return value;
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
      `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  }

  function localise(figure) {
    for (const trace of figure.data || []) {
      // Times only (RFC 3339 with an offset): day bars and numbers pass through unchanged.
      if (Array.isArray(trace.x)) trace.x = trace.x.map(toLocal);
    }
    for (const shape of (figure.layout && figure.layout.shapes) || []) {
      shape.x0 = toLocal(shape.x0);
      shape.x1 = toLocal(shape.x1);
    }
    for (const note of (figure.layout && figure.layout.annotations) || []) {
      note.x = toLocal(note.x);
    }
    return figure;
  }

  function draw(element) {
    const source = document.getElementById(element.dataset.figure);
    const figure = localise(JSON.parse(source.textContent));
    figure.layout.autosize = true;
    delete figure.layout.width;
    if (element.clientWidth < 600) {
      // Phone width: fewer, unrotated time ticks, kept clear of the legend below them.
      for (const key of Object.keys(figure.layout)) {
        if (/^xaxis\d*$/.test(key)) Object.assign(figure.layout[key], { nticks: 4, automargin: true });
      }
      if (figure.layout.legend) figure.layout.legend.y = -0.32;
    }
    return Plotly.newPlot(element, figure.data, figure.layout, {
      responsive: true,
      displaylogo: false,
      modeBarButtonsToRemove: ["lasso2d", "select2d"],
    });
  }

  function fmt(value, digits = 0, unit = "") {
    return value === null || value === undefined ? "—" : `${Number(value).toFixed(digits)}${unit}`;
  }

  function updateTable(gpus) {
    for (const gpu of gpus) {
      const row = document.querySelector(`tr[data-gpu="${CSS.escape(gpu.uuid)}"]`);
      if (!row) continue;
      const set = (name, text) => {
        const cell = row.querySelector(`[data-field="${name}"]`);
        if (cell) cell.textContent = text;
      };
      set("status", gpu.status);
      const pill = row.querySelector("[data-field=status]");
      if (pill) pill.className = `status-pill status-${gpu.status}`;
      set("utilization", fmt(gpu.utilization_gpu_pct, 0, " %"));
      set("memory", `${fmt(gpu.memory_used_mib)} / ${gpu.memory_total_mib} MiB`);
      set("temperature", fmt(gpu.temperature_c, 0, " °C"));
      set("power", fmt(gpu.power_w, 0, " W"));
      if (gpu.last_seen) {
        const cell = row.querySelector("[data-field=last_seen]");
        if (cell) {
          cell.textContent = toLocal(gpu.last_seen);
          cell.setAttribute("datetime", gpu.last_seen);
        }
      }
    }
    const online = gpus.filter((g) => g.status === "online").length;
    const card = document.getElementById("gpus-online");
    if (card) card.textContent = `${online} / ${gpus.length}`;
  }

  function startLive(element, intervalMs) {
    const lastSeen = new Map();
    element.data.forEach((trace, index) => {
      const xs = trace.x || [];
      lastSeen.set(trace.meta, xs.length ? xs[xs.length - 1] : null);
    });
    async function tick() {
      let gpus;
      try {
        const response = await fetch("/api/v1/me/gpus", { credentials: "same-origin" });
        if (!response.ok) return;
        gpus = await response.json();
      } catch (error) {
        return; // offline for a moment: the next tick catches up
      }
      const xs = [], ys = [], indices = [];
      element.data.forEach((trace, index) => {
        const gpu = gpus.find((g) => g.uuid === trace.meta);
        if (!gpu || !gpu.last_sample_at) return;
        const t = toLocal(gpu.last_sample_at);
        if (lastSeen.get(trace.meta) === t) return;
        lastSeen.set(trace.meta, t);
        xs.push([t]);
        ys.push([gpu.utilization_gpu_pct]);
        indices.push(index);
      });
      if (indices.length) {
        Plotly.extendTraces(element, { x: xs, y: ys }, indices, 720);
        element.dataset.updates = String(Number(element.dataset.updates || 0) + 1);
      }
      updateTable(gpus);
    }
    setInterval(tick, intervalMs);
  }

  document.addEventListener("DOMContentLoaded", async () => {
    for (const time of document.querySelectorAll("time[data-local]")) {
      time.textContent = toLocal(time.getAttribute("datetime"));
    }
    for (const element of document.querySelectorAll("[data-figure]")) {
      await draw(element);
      if (element.dataset.live) startLive(element, Number(element.dataset.live));
    }
  });

  window.omnitensorCharts = { toLocal, localise, draw };
})();
