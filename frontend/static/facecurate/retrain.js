/* The retraining page: start (staff), follow jobs, compare a version with its parent (ROC as inline SVG). */
(function () {
  "use strict";
  const cfg = window.FACECURATE || {};
  const SVG = "http://www.w3.org/2000/svg";

  const api = window.facecurate.api;  // app.js: JSON, session auth and CSRF

  function el(tag, attrs, children) {
    const node = document.createElement(tag);
    Object.entries(attrs || {}).forEach(([k, v]) => { if (k === "text") node.textContent = v; else node.setAttribute(k, v); });
    (children || []).forEach((c) => node.appendChild(c));
    return node;
  }

  function svg(tag, attrs) {
    const node = document.createElementNS(SVG, tag);
    Object.entries(attrs || {}).forEach(([k, v]) => node.setAttribute(k, v));
    return node;
  }

  function fmt(x) { return x === null || x === undefined ? "–" : (typeof x === "number" ? x.toFixed(4) : String(x)); }

  /* ROC curves (FAR on a log axis from 1e-5 to 1, TAR linear) from stored points. */
  function rocChart(title, curves) {
    const w = 420, h = 300, m = 40, lo = -5;
    const root = svg("svg", {width: w, height: h, viewBox: `0 0 ${w} ${h}`, role: "img", "aria-label": title});
    const x = (far) => m + (Math.max(Math.log10(Math.max(far, 1e-12)), lo) - lo) / -lo * (w - 2 * m);
    const y = (tar) => h - m - tar * (h - 2 * m);
    root.appendChild(svg("rect", {x: m, y: m, width: w - 2 * m, height: h - 2 * m, fill: "none", stroke: "#999"}));
    for (let e = lo; e <= 0; e++) {
      const t = svg("text", {x: x(10 ** e), y: h - m + 14, "font-size": 10, "text-anchor": "middle"});
      t.textContent = "1e" + e; root.appendChild(t);
    }
    [0, 0.5, 1].forEach((v) => { const t = svg("text", {x: m - 4, y: y(v) + 3, "font-size": 10, "text-anchor": "end"}); t.textContent = v; root.appendChild(t); });
    const head = svg("text", {x: w / 2, y: m - 10, "font-size": 12, "text-anchor": "middle"}); head.textContent = title; root.appendChild(head);
    const colors = ["#888", "#c0392b"];
    curves.forEach((c, i) => {
      if (!c.roc || !c.roc.far.length) return;
      const pts = c.roc.far.map((f, j) => `${x(f).toFixed(1)},${y(c.roc.tar[j]).toFixed(1)}`).join(" ");
      root.appendChild(svg("polyline", {points: pts, fill: "none", stroke: colors[i % 2], "stroke-width": 2, "data-version": c.id}));
      const t = svg("text", {x: w - m - 4, y: h - m - 8 - 14 * i, "font-size": 11, "text-anchor": "end", fill: colors[i % 2]});
      t.textContent = c.label; root.appendChild(t);
    });
    return root;
  }

  async function showComparison(versionId) {
    const box = document.getElementById("comparison");
    const v = await api(`/api/recognizers/${versionId}/`);
    let cmp;
    try { cmp = await api(`/api/recognizers/${versionId}/compare/`); } catch (e) { box.hidden = false; document.getElementById("cmp-title").textContent = e.message; return; }
    box.hidden = false;
    document.getElementById("cmp-title").textContent = `${v.name} (new) vs version ${cmp.a} (parent)`;
    const actions = document.getElementById("cmp-actions");
    actions.replaceChildren();
    if (cfg.canRetrain && !v.is_active) {
      const b = el("button", {type: "button", text: "Promote to active"});
      b.addEventListener("click", async () => { await api(`/api/recognizers/${versionId}/promote/`, {method: "POST"}); b.replaceWith(el("span", {text: "active"})); });
      actions.appendChild(b);
    }
    const tbody = document.querySelector("#cmp-table tbody");
    tbody.replaceChildren();
    cmp.rows.forEach((r) => tbody.appendChild(el("tr", {}, [el("td", {text: r.benchmark}), el("td", {text: r.metric}),
      el("td", {text: fmt(r.a)}), el("td", {text: fmt(r.b)}), el("td", {text: fmt(r.delta)})])));
    const rocs = document.getElementById("cmp-roc");
    rocs.replaceChildren();
    Object.entries(cmp.benchmarks).forEach(([name, b]) => {
      if (b.skipped) { rocs.appendChild(el("p", {text: `${name}: skipped (${b.skipped})`})); return; }
      if (!b.versions) return;
      const curves = [cmp.a, cmp.b].map((id, i) => ({id, roc: (b.versions[String(id)] || {}).roc, label: (i ? "new " : "parent ") + id}));
      if (curves.some((c) => c.roc)) rocs.appendChild(rocChart(name + " ROC", curves));
    });
  }

  async function loadJobs() {
    const tbody = document.querySelector("#retrainings tbody");
    const page = await api("/api/retrainings/?limit=50");
    tbody.replaceChildren();
    if (!page.results.length) tbody.appendChild(el("tr", {}, [el("td", {colspan: "6", text: "No retraining yet."})]));
    page.results.forEach((j) => {
      const info = j.progress_info || {};
      const prog = j.stage === "train" && info.epoch ? `epoch ${info.epoch}/${info.epochs}, loss ${fmt(info.loss)}, ${info.faces_per_s} faces/s, ETA ${info.eta_seconds ?? "?"} s`
        : (j.progress === null ? "" : Math.round(j.progress * 100) + " %");
      const vcell = el("td", {text: j.version ? String(j.version) + (j.result && j.result.unchanged ? " (unchanged)" : "") : ""});
      const btn = el("td");
      if (j.version) { const b = el("button", {type: "button", text: "Compare"}); b.addEventListener("click", () => showComparison(j.version)); btn.appendChild(b); }
      tbody.appendChild(el("tr", {"data-job": j.id}, [el("td", {text: new Date(j.created_at).toLocaleString()}),
        el("td", {text: j.state + (j.error ? ": " + j.error.split("\n")[0] : "")}), el("td", {text: j.stage}), el("td", {text: prog}), vcell, btn]));
    });
  }

  async function fillForm() {
    const [versions, datasets, runs] = await Promise.all([api("/api/recognizers/?limit=500"), api("/api/datasets/?limit=1000"), api("/api/runs/?limit=500")]);
    const parent = document.getElementById("rt-parent");
    versions.results.forEach((v) => parent.appendChild(el("option", Object.assign({value: v.id, text: `${v.name}${v.is_active ? " (active)" : ""}`}, v.is_active ? {selected: ""} : {}))));
    const labeled = document.getElementById("rt-labeled");
    datasets.results.filter((d) => d.kind === "labeled").forEach((d) => labeled.appendChild(el("option", {value: d.id, text: d.name})));
    const rs = document.getElementById("rt-runs");
    runs.results.filter((r) => r.stages && r.stages.store && r.stages.store.state === "done").forEach((r) =>
      rs.appendChild(el("option", {value: r.id, text: `run ${r.id} of ${r.unlabeled_dataset_name}`})));
    document.getElementById("retrain-form").addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const f = ev.target, err = document.getElementById("retrain-error");
      err.textContent = "";
      const multi = (s) => Array.from(s.selectedOptions).map((o) => Number(o.value));
      const num = (n) => (f[n].value === "" ? null : Number(f[n].value));
      const body = {parent: Number(parent.value), labeled_datasets: multi(labeled), runs: multi(rs), weighting: f.weighting.value,
        gamma: num("gamma"), overlap: f.overlap.value, min_cluster_size: num("min_cluster_size"), max_faces_per_cluster: num("max_faces_per_cluster"),
        holdout_fraction: num("holdout_fraction"), backbone: f.backbone.value, trainable_blocks: f.backbone.value === "sface" ? num("trainable_blocks") : null,
        epochs: num("epochs"), lr: num("lr"), batch_size: num("batch_size"), lfw_pairs: f.lfw_pairs.checked};
      try {
        await api("/api/retrainings/", {method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(body)});
        loadJobs();
      } catch (e) { err.textContent = e.message; }
    });
  }

  window.facecurateRetrain = {showComparison, loadJobs, rocChart};
  if (cfg.canRetrain) fillForm().catch((e) => { document.getElementById("retrain-error").textContent = e.message; });
  loadJobs();
  setInterval(loadJobs, 3000);
})();
