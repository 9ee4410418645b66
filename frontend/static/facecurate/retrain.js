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

  const VERDICT = {better: "better than its parent", not_better: "NOT better than its parent", unknown: "not measured on the new domain"};

  function verdictLine(v) {
    const d = v.verdict_detail || {};
    const dom = d.domain ? ` (${d.domain.benchmark} ${d.domain.metric}: ${fmt(d.domain.parent)} → ${fmt(d.domain.new)})` : "";
    const why = (d.reasons || []).length ? " — " + d.reasons.join("; ") : "";
    return `${v.state === "ready" ? "" : v.state + ", "}${VERDICT[v.verdict] || "no verdict"}${dom}${why}`;
  }

  /* Promote: a version not better (or unknown) needs the override box ticked and a reason, kept with the version. */
  function promoteControls(v) {
    const box = el("div", {"data-testid": "promote"});
    if (!cfg.canRetrain || v.is_active || v.state !== "ready") return box;
    const needs = v.verdict === "not_better" || v.verdict === "unknown";
    const reason = el("input", {type: "text", name: "reason", placeholder: "reason (required to override)", size: "40"});
    const override = el("input", {type: "checkbox", name: "override"});
    const msg = el("span", {class: "error", role: "alert"});
    const b = el("button", {type: "button", text: needs ? "Promote anyway" : "Promote to active"});
    b.addEventListener("click", async () => {
      msg.textContent = "";
      const body = needs ? {override: override.checked, reason: reason.value} : {};
      try {
        await api(`/api/recognizers/${v.id}/promote/`, {method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(body)});
        box.replaceChildren(el("span", {text: "active"}));
        loadVersions();
      } catch (e) { msg.textContent = e.message; }
    });
    if (needs) box.append(el("label", {}, [override, document.createTextNode(" override the verdict")]), reason);
    box.append(b, msg);
    return box;
  }

  async function showComparison(versionId) {
    const box = document.getElementById("comparison");
    const v = await api(`/api/recognizers/${versionId}/`);
    let cmp;
    try { cmp = await api(`/api/recognizers/${versionId}/compare/`); } catch (e) { box.hidden = false; document.getElementById("cmp-title").textContent = e.message; return; }
    box.hidden = false;
    document.getElementById("cmp-title").textContent = `${v.name} (new) vs version ${cmp.a} (parent)`;
    const verdict = document.getElementById("cmp-verdict");
    verdict.textContent = "Verdict: " + verdictLine(v);
    verdict.className = v.verdict === "better" ? "" : "error";
    verdict.dataset.verdict = v.verdict;
    const ck = v.checkpoint;
    document.getElementById("cmp-checkpoint").textContent = ck ? `Checkpoint: ${ck.path}` + (ck.recorded ? ` (${ck.size_bytes} bytes, sha256 ${ck.sha256.slice(0, 16)}…)` : " (not recorded)") : "";
    (v.promotions || []).forEach((p) => document.getElementById("cmp-checkpoint").appendChild(el("div", {text:
      `promoted ${p.at} by ${p.by || "?"}${p.override ? ` overriding "${p.verdict}": ${p.reason}` : ""}`})));
    const actions = document.getElementById("cmp-actions");
    actions.replaceChildren(promoteControls(v));
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
      const live = j.state === "queued" || j.state === "running";
      const prog = j.stage === "train" && info.epoch ? `epoch ${info.epoch}/${info.epochs}, loss ${fmt(info.loss)}, ${info.faces_per_s} faces/s, ETA ${info.eta_seconds ?? "?"} s`
        : (j.progress === null ? "" : `${j.progress_current}/${j.progress_total} (${Math.round(j.progress * 100)} %)` +
           (live && info.eta_seconds != null ? `, ETA ${Math.round(info.eta_seconds)} s` : ""));
      const verdict = j.result && j.result.verdict ? " " + (VERDICT[j.result.verdict] || j.result.verdict) : "";
      const vcell = el("td", {text: j.version ? String(j.version) + (j.result && j.result.unchanged ? " (unchanged)" : verdict) : ""});
      const btn = el("td");
      if (j.version) { const b = el("button", {type: "button", text: "Compare"}); b.addEventListener("click", () => showComparison(j.version)); btn.appendChild(b); }
      if (cfg.canRetrain && live) {
        const c = el("button", {type: "button", text: j.cancel_requested ? "Cancelling…" : "Cancel", "data-testid": "cancel"});
        if (j.cancel_requested) c.setAttribute("disabled", "");
        c.addEventListener("click", async () => {
          c.setAttribute("disabled", ""); c.textContent = "Cancelling…";
          try { await api(`/api/jobs/${j.id}/cancel/`, {method: "POST"}); } catch (e) { c.textContent = e.message; }
          loadJobs();
        });
        btn.appendChild(c);
      }
      tbody.appendChild(el("tr", {"data-job": j.id}, [el("td", {text: new Date(j.created_at).toLocaleString()}),
        el("td", {text: j.state + (j.error ? ": " + j.error.split("\n")[0] : "")}), el("td", {text: j.stage}), el("td", {text: prog}), vcell, btn]));
    });
  }

  function emptyHint(select, text) {
    // an empty multi-select is a blank box: say why it is empty and what to do
    if (select.options.length === 0) select.after(el("span", {class: "muted empty-hint", text, "data-testid": `${select.id}-empty`}));
  }

  async function fillForm() {
    const [versions, datasets, runs] = await Promise.all([api("/api/recognizers/?limit=500"), api("/api/datasets/?limit=1000"), api("/api/runs/?limit=500")]);
    const parent = document.getElementById("rt-parent");
    versions.results.forEach((v) => parent.appendChild(el("option", Object.assign({value: v.id, text: `${v.name}${v.is_active ? " (active)" : ""}`}, v.is_active ? {selected: ""} : {}))));
    const labeled = document.getElementById("rt-labeled");
    datasets.results.filter((d) => d.kind === "labeled").forEach((d) => labeled.appendChild(el("option", {value: d.id, text: d.name})));
    const evalSets = document.getElementById("rt-eval");
    datasets.results.filter((d) => d.kind === "labeled").forEach((d) => evalSets.appendChild(el("option", {value: d.id, text: d.name})));
    const rs = document.getElementById("rt-runs");
    runs.results.filter((r) => r.stages && r.stages.store && r.stages.store.state === "done").forEach((r) =>
      rs.appendChild(el("option", {value: r.id, text: `run ${r.id} of ${r.unlabeled_dataset_name}`})));
    emptyHint(labeled, "No labeled dataset yet: on the home page, create one of kind \u201clabeled (identities)\u201d and import its identity folders.");
    emptyHint(rs, "No finished pipeline run yet: without one, the retraining trains on the labeled faces only.");
    emptyHint(evalSets, "None to choose: the runs' held-out clusters score the new domain.");
    document.getElementById("retrain-form").addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const f = ev.target, err = document.getElementById("retrain-error");
      err.textContent = "";
      const multi = (s) => Array.from(s.selectedOptions).map((o) => Number(o.value));
      const num = (n) => (f[n].value === "" ? null : Number(f[n].value));
      const body = {parent: Number(parent.value), labeled_datasets: multi(labeled), runs: multi(rs), weighting: f.weighting.value,
        gamma: num("gamma"), overlap: f.overlap.value, min_cluster_size: num("min_cluster_size"), max_faces_per_cluster: num("max_faces_per_cluster"),
        holdout_fraction: num("holdout_fraction"), pseudo_holdout_fraction: num("pseudo_holdout_fraction"),
        eval_datasets: multi(evalSets), backbone: f.backbone.value, trainable_blocks: f.backbone.value === "sface" ? num("trainable_blocks") : null,
        epochs: num("epochs"), lr: num("lr"), batch_size: num("batch_size"), lowres_copies: f.lowres_copies.checked,
        lfw_pairs: f.lfw_pairs.checked};
      try {
        await api("/api/retrainings/", {method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(body)});
        loadJobs();
      } catch (e) { err.textContent = e.message; }
    });
  }

  async function loadVersions() {
    const tbody = document.querySelector("#versions tbody");
    const page = await api("/api/recognizers/?limit=100");
    tbody.replaceChildren();
    page.results.forEach((v) => {
      const b = el("td");
      if (v.parent) { const c = el("button", {type: "button", text: "Compare"}); c.addEventListener("click", () => showComparison(v.id)); b.appendChild(c); }
      tbody.appendChild(el("tr", {"data-version": v.id, "data-verdict": v.verdict}, [el("td", {text: String(v.id)}),
        el("td", {text: v.name + (v.is_active ? " (active)" : "")}), el("td", {text: v.parent ? String(v.parent) : ""}),
        el("td", {text: v.state}), el("td", {text: v.verdict ? VERDICT[v.verdict] : ""}),
        el("td", {text: v.checkpoint ? v.checkpoint.path : ""}), b]));
    });
  }

  window.facecurateRetrain = {showComparison, loadJobs, loadVersions, rocChart};
  if (cfg.canRetrain) fillForm().catch((e) => { document.getElementById("retrain-error").textContent = e.message; });
  loadJobs();
  loadVersions();
  setInterval(loadJobs, 3000);
})();
