/* facecurate review UI: home (runs, recognizers), a run's report (Fig. 3, Fig. 4c as inline SVG), the
   review queue (keyset pages, filters, position kept) and the cluster page (selection, keyboard, leases,
   versions, undo). Plain JS over the REST API; nothing from outside this server. */
(function () {
  "use strict";
  const fc = window.facecurate;
  const api = fc.api;
  const cfg = window.FACECURATE || {};

  function el(tag, attrs, children) {
    const node = document.createElement(tag);
    Object.entries(attrs || {}).forEach(([k, v]) => {
      if (v === null || v === undefined) return;
      if (k === "text") node.textContent = v;
      else if (k === "on") Object.entries(v).forEach(([ev, fn]) => node.addEventListener(ev, fn));
      else node.setAttribute(k, v);
    });
    (children || []).forEach((c) => { if (c) node.appendChild(typeof c === "string" ? document.createTextNode(c) : c); });
    return node;
  }
  const post = (url, body) => api(url, {method: "POST", headers: {"Content-Type": "application/json"},
                                        body: JSON.stringify(body || {})});
  const fmt = (x, d) => (x === null || x === undefined) ? "–" : Number(x).toFixed(d === undefined ? 3 : d);
  const fmtP = (p) => (p === null || p === undefined) ? "–" : (p >= 0.01 || p === 0 ? p.toFixed(2) : p.toExponential(0));
  const pct = (x) => (x === null || x === undefined) ? "–" : (100 * x).toFixed(2) + " %";
  function ready(name) {
    performance.mark("fc-interactive");
    document.body.dataset.ready = name || "1";
  }

  // --- home: runs and recognizers ------------------------------------------------------------------------

  function jobState(job) {
    let s = job.state + (job.stage ? " · " + job.stage : "");
    if (job.state === "running" || job.state === "queued") {
      s += " · " + job.progress_current + "/" + job.progress_total;
      if (job.progress_info && job.progress_info.eta_seconds) s += " · ETA " + Math.round(job.progress_info.eta_seconds) + " s";
    }
    return s;
  }

  function recoveryNote(job) {
    if (!job.recoveries) return null;
    const ev = (job.events || []).filter((e) => /requeued/.test(e.what)).pop();
    return el("span", {"class": "note", "data-testid": "recovered",
                       text: "recovered after a worker died" + (job.recoveries > 1 ? " (" + job.recoveries + "×)" : "") +
                             (ev && ev.worker ? " · was on " + ev.worker : "")});
  }

  async function homeRuns() {
    const tbody = document.querySelector("#runs tbody");
    const runsById = {};
    function row(run) {
      const job = run.job;
      const cells = [
        el("td", {}, [el("a", {href: "/runs/" + run.id + "/", text: "run " + run.id})]),
        el("td", {text: run.unlabeled_dataset_name}),
        el("td", {text: (run.labeled_dataset_names || []).join(", ") || "–"}),
        el("td", {text: run.method}),
        el("td", {"class": "state"}, [el("span", {"data-job-state": job.state, text: jobState(job)}),
          (job.state === "running" || job.state === "queued") ?
            el("progress", {max: String(job.progress_total || 1), value: String(job.progress_current)}) : null,
          recoveryNote(job), job.silent_seconds ? el("span", {"class": "note", "data-testid": "silent",
            text: "its worker has not reported for " + Math.round(job.silent_seconds) + " s"}) : null,
          job.error ? el("div", {"class": "error", text: job.error.split("\n")[0]}) : null]),
        el("td", {text: run.counts && run.counts.clusters !== undefined ? String(run.counts.clusters) : "–"}),
        el("td", {text: run.reviewed ? (run.reviewed.confirmed + run.reviewed.dismissed) + " / " +
          (run.reviewed.pending + run.reviewed.confirmed + run.reviewed.dismissed) : "–"}),
      ];
      const actions = el("td", {"class": "actions"});
      if (job.state === "succeeded") {
        actions.appendChild(el("a", {href: "/runs/" + run.id + "/guided/", text: "guided review", title:
          "One decision at a time, the most errors fixed first"}));
        actions.appendChild(document.createTextNode(" · "));
        actions.appendChild(el("a", {href: "/runs/" + run.id + "/review/", text: "queue"}));
      }
      if (cfg.staff && (job.state === "running" || job.state === "queued")) {
        actions.appendChild(el("button", {type: "button", "class": "secondary", "data-cancel": job.id, text: "Cancel",
          on: {click: () => jobAction(job.id, "cancel")}}));
      }
      if (cfg.staff && (job.state === "failed" || job.state === "cancelled")) {
        actions.appendChild(el("button", {type: "button", "data-rerun": job.id, text: "Re-run",
          on: {click: () => jobAction(job.id, "rerun")}}));
      }
      cells.push(actions);
      return el("tr", {"data-run": String(run.id), "data-state": job.state}, cells);
    }
    async function jobAction(id, what) {
      try { await post("/api/jobs/" + id + "/" + what + "/"); } catch (e) { alert(e.message); }
      await load();
    }
    let active = [];
    async function load() {
      const page = await api("/api/runs/?limit=50");
      tbody.replaceChildren();
      if (!page.results.length) tbody.appendChild(el("tr", {}, [el("td", {colspan: "8", text: "No runs yet."})]));
      page.results.forEach((r) => { runsById[r.id] = r; tbody.appendChild(row(r)); });
      active = page.results.filter((r) => r.job.state === "running" || r.job.state === "queued");
    }
    async function poll() {
      // live progress of the running jobs from the jobs API; the whole list again when one finishes
      try {
        if (active.length) {
          let finished = false;
          for (const run of active) {
            const job = await api("/api/jobs/" + run.job.id + "/");
            run.job = job;
            const tr = tbody.querySelector('tr[data-run="' + run.id + '"]');
            if (tr) tr.replaceWith(row(run));
            if (job.state !== "running" && job.state !== "queued") finished = true;
          }
          if (finished) await load();
        } else {
          await load();
        }
      } catch (e) { /* keep polling through a blip */ }
      setTimeout(poll, active.length ? 1000 : 5000);
    }
    const recs = document.querySelector("#recognizers tbody");
    api("/api/recognizers/?limit=50").then((page) => {
      recs.replaceChildren(...page.results.map((v) => el("tr", {"data-recognizer": String(v.id)}, [
        el("td", {text: v.name}), el("td", {text: v.kind}), el("td", {text: v.is_active ? "active" : ""}),
        el("td", {text: new Date(v.created_at).toLocaleString()}),
        el("td", {text: Object.entries(v.metrics || {}).filter(([, x]) => typeof x === "number").slice(0, 4)
          .map(([k, x]) => k + " " + fmt(x, 4)).join(", ")}),
      ])));
      if (!page.results.length) recs.appendChild(el("tr", {}, [el("td", {colspan: "5", text: "None yet."})]));
    });
    const form = document.getElementById("start-run");
    if (form) {
      const ds = (await api("/api/datasets/?limit=500")).results;
      const sel = form.querySelector("select[name=unlabeled_dataset]");
      sel.replaceChildren(...ds.filter((d) => d.kind === "unlabeled").map((d) => el("option", {value: d.id, text: d.name})));
      document.getElementById("labeled-choices").replaceChildren(...ds.filter((d) => d.kind === "labeled").map((d) =>
        el("label", {"class": "check"}, [el("input", {type: "checkbox", name: "labeled", value: d.id}), d.name])));
      form.addEventListener("submit", async (ev) => {
        ev.preventDefault();
        const f = new FormData(form);
        const out = document.getElementById("start-run-error");
        out.textContent = "";
        try {
          await post("/api/runs/", {unlabeled_dataset: Number(f.get("unlabeled_dataset")),
            labeled_datasets: f.getAll("labeled").map(Number), method: f.get("method"),
            truth_from_folders: f.get("truth_from_folders") === "on"});
          await load();
        } catch (e) { out.textContent = e.message; }
      });
    }
    await load();
    setTimeout(poll, 1000);
  }

  // --- the paper's figures as inline SVG -----------------------------------------------------------------

  const COLORS = {disjoint: "#1f77b4", overlap: "#ff7f0e", wrong: "#d62728", mixture: "#222"};
  const LINES = {otsu: ["#000", "6 4", "Otsu"], disjoint_upper: ["#1f77b4", "2 3", "disjoint 95% quantile"],
                 overlap_lower: ["#ff7f0e", "2 3", "overlap 5% quantile"], wrong_upper: ["#d62728", "2 3", "wrong-mode 95% quantile"]};
  const SVG = "http://www.w3.org/2000/svg";
  function s(tag, attrs, text) {
    const n = document.createElementNS(SVG, tag);
    Object.entries(attrs || {}).forEach(([k, v]) => n.setAttribute(k, v));
    if (text !== undefined) n.textContent = text;
    return n;
  }

  function drawReport(box, report, kind, logy) {
    box.replaceChildren();
    const hist = report && report.histogram;
    if (!hist || !hist.edges || !hist.edges.length) {
      box.appendChild(el("p", {"class": "muted", "data-testid": kind + "-empty",
        text: (report && report.message) || "Nothing to draw: this run has no such report."}));
      return;
    }
    const W = 620, H = 300, L = 48, R = 12, T = 12, B = 40;
    const edges = hist.edges, dens = hist.density || hist.counts;
    const curves = report.curves || {};
    const thr = report.thresholds || {};
    let x0 = edges[0], x1 = edges[edges.length - 1];
    Object.values(thr).forEach((v) => { if (v !== null && v !== undefined) { x0 = Math.min(x0, v); x1 = Math.max(x1, v); } });
    let ymax = Math.max(...dens, 1e-9);
    Object.entries(curves).forEach(([k, v]) => { if (k !== "x") ymax = Math.max(ymax, ...v.filter(Number.isFinite)); });
    ymax *= logy ? 2 : 1.08;
    const ymin = logy ? Math.max(ymax * 1e-4, Math.min(...dens.filter((d) => d > 0))) / 2 : 0;
    const X = (x) => L + (x - x0) / ((x1 - x0) || 1) * (W - L - R);
    const Y = logy
      ? (y) => T + (1 - (Math.log(Math.max(y, ymin)) - Math.log(ymin)) / (Math.log(ymax) - Math.log(ymin))) * (H - T - B)
      : (y) => T + (1 - Math.min(y, ymax) / ymax) * (H - T - B);
    const svg = s("svg", {viewBox: `0 0 ${W} ${H}`, role: "img", "class": "plot", "data-kind": kind,
                          "aria-label": (report.labels && report.labels.x) || kind});
    // axes and ticks
    svg.appendChild(s("line", {x1: L, y1: H - B, x2: W - R, y2: H - B, stroke: "#444"}));
    svg.appendChild(s("line", {x1: L, y1: T, x2: L, y2: H - B, stroke: "#444"}));
    for (let i = 0; i <= 5; i++) {
      const xv = x0 + (x1 - x0) * i / 5;
      svg.appendChild(s("text", {x: X(xv), y: H - B + 14, "text-anchor": "middle", "class": "tick"}, xv.toFixed(2)));
    }
    const yticks = logy ? (() => { const t = []; for (let e = Math.ceil(Math.log10(ymin)); e <= Math.floor(Math.log10(ymax)); e++) t.push(Math.pow(10, e)); return t; })()
      : [0, 1, 2, 3, 4, 5].map((i) => ymax * i / 5);
    yticks.forEach((yv) => svg.appendChild(s("text", {x: L - 4, y: Y(yv) + 3, "text-anchor": "end", "class": "tick"},
      logy ? (yv >= 1 ? String(yv) : yv.toExponential(0)) : yv.toFixed(1))));
    svg.appendChild(s("text", {x: (L + W - R) / 2, y: H - 6, "text-anchor": "middle", "class": "axis"},
                      (report.labels && report.labels.x) || "score"));
    svg.appendChild(s("text", {x: 12, y: (T + H - B) / 2, transform: `rotate(-90 12 ${(T + H - B) / 2})`,
                               "text-anchor": "middle", "class": "axis"}, logy ? "density (log)" : "density"));
    // histogram
    const bars = s("g", {"class": "bars", "data-testid": kind + "-bars"});
    for (let i = 0; i < dens.length; i++) {
      if (!dens[i]) continue;
      const base = logy ? H - B : Y(0);
      bars.appendChild(s("rect", {x: X(edges[i]), y: Y(dens[i]), width: Math.max(0.5, X(edges[i + 1]) - X(edges[i]) - 0.3),
                                  height: Math.max(0, base - Y(dens[i])), fill: "#cfd3da", stroke: "#9aa1ab", "stroke-width": 0.4}));
    }
    svg.appendChild(bars);
    const legend = [];
    // Weibull fits
    Object.entries(curves).forEach(([k, v]) => {
      if (k === "x" || !Array.isArray(v)) return;
      const pts = curves.x.map((x, i) => Number.isFinite(v[i]) ? X(x).toFixed(1) + "," + Y(v[i]).toFixed(1) : null).filter(Boolean);
      svg.appendChild(s("polyline", {points: pts.join(" "), fill: "none", stroke: COLORS[k] || "#555",
        "stroke-width": k === "mixture" ? 1 : 2, "stroke-dasharray": k === "mixture" ? "4 3" : "",
        "class": "curve", "data-curve": k}));
      legend.push([k === "mixture" ? "mixture" : "Weibull: " + ((report.labels && report.labels[k]) || k), COLORS[k] || "#555",
                   k === "mixture" ? "4 3" : ""]);
    });
    // thresholds
    Object.entries(thr).forEach(([k, v]) => {
      if (v === null || v === undefined || !LINES[k]) return;  // the decision rules repeat the quantiles
      const [color, dash, name] = LINES[k];
      svg.appendChild(s("line", {x1: X(v), x2: X(v), y1: T, y2: H - B, stroke: color, "stroke-dasharray": dash,
                                 "stroke-width": 1.4, "class": "threshold", "data-threshold": k}));
      legend.push([name + " = " + Number(v).toFixed(3), color, dash]);
    });
    legend.forEach(([text, color, dash], i) => {
      const y = T + 10 + i * 14;
      svg.appendChild(s("line", {x1: W - R - 190, x2: W - R - 170, y1: y, y2: y, stroke: color, "stroke-dasharray": dash, "stroke-width": 2}));
      svg.appendChild(s("text", {x: W - R - 165, y: y + 4, "class": "legend"}, text));
    });
    box.appendChild(svg);
    if (report.message) box.appendChild(el("p", {"class": "muted small", text: report.message}));
  }

  const ORDER_COLORS = {priority: "#1f77b4", paper: "#ff7f0e", size: "#2ca02c", random: "#7f7f7f"};

  function drawCurves(box, sim) {
    const W = 620, H = 280, L = 52, R = 12, T = 12, B = 40;
    const all = Object.values(sim.curves).flat();
    const xmax = Math.max(...all.map((p) => p[0]), 1);
    const ymin = Math.min(...all.map((p) => p[1])), ymax = 1;
    const X = (x) => L + x / xmax * (W - L - R);
    const Y = (y) => T + (1 - (y - ymin) / ((ymax - ymin) || 1)) * (H - T - B);
    const svg = s("svg", {viewBox: `0 0 ${W} ${H}`, role: "img", "class": "plot", "aria-label": "pairwise F per action"});
    svg.appendChild(s("line", {x1: L, y1: H - B, x2: W - R, y2: H - B, stroke: "#444"}));
    svg.appendChild(s("line", {x1: L, y1: T, x2: L, y2: H - B, stroke: "#444"}));
    for (let i = 0; i <= 4; i++) {
      const xv = Math.round(xmax * i / 4), yv = ymin + (ymax - ymin) * i / 4;
      svg.appendChild(s("text", {x: X(xv), y: H - B + 14, "text-anchor": "middle", "class": "tick"}, String(xv)));
      svg.appendChild(s("text", {x: L - 4, y: Y(yv) + 3, "text-anchor": "end", "class": "tick"}, yv.toFixed(3)));
    }
    svg.appendChild(s("text", {x: (L + W - R) / 2, y: H - 6, "text-anchor": "middle", "class": "axis"}, "review actions"));
    Object.entries(sim.curves).forEach(([order, pts], i) => {
      const color = ORDER_COLORS[order] || "#555";
      svg.appendChild(s("polyline", {points: pts.map((p) => X(p[0]).toFixed(1) + "," + Y(p[1]).toFixed(1)).join(" "),
        fill: "none", stroke: color, "stroke-width": 2, "class": "curve", "data-curve": order}));
      const y = T + 10 + i * 14;
      svg.appendChild(s("line", {x1: W - R - 120, x2: W - R - 100, y1: y, y2: y, stroke: color, "stroke-width": 2}));
      svg.appendChild(s("text", {x: W - R - 95, y: y + 4, "class": "legend"}, order));
    });
    box.replaceChildren(svg);
  }

  async function reportPage(runId) {
    const run = await api("/api/runs/" + runId + "/");
    const c = run.counts || {}, rv = run.reviewed || {};
    const items = [["faces", c.faces], ["overlap (known people)", c.overlap], ["disjoint (new people)", c.disjoint],
      ["rejected (uncertain)", c.rejected], ["clusters (all faces)", c.clusters], ["singletons", c.singletons],
      ["largest cluster", c.largest_cluster], ["reviewed clusters", (rv.confirmed || 0) + (rv.dismissed || 0)],
      ["confirmed", rv.confirmed], ["pending", rv.pending]];
    document.getElementById("counts").replaceChildren(...items.map(([k, v]) => el("div", {}, [
      el("dt", {text: k}), el("dd", {"data-count": k.split(" ")[0], text: v === undefined ? "–" : String(v)})])));
    document.getElementById("job-line").textContent = jobState(run.job);
    const rec = recoveryNote(run.job);
    if (rec) document.getElementById("job-line").appendChild(rec);
    [["fig3", run.overlap_report, false], ["fig4c", run.uncertainty_report, true]].forEach(([id, rep, log]) => {
      const box = document.getElementById(id);
      const plot = el("div");
      const tog = el("input", {type: "checkbox", "data-testid": id + "-log"});
      tog.checked = log;
      tog.addEventListener("change", () => drawReport(plot, rep, id, tog.checked));
      box.replaceChildren(plot, el("label", {"class": "check small"}, [tog, "log density (the wrong mode is small)"]));
      drawReport(plot, rep, id, log);
    });
    const m = run.metrics || {};
    const box = document.getElementById("metrics");
    if (!Object.keys(m).length) {
      box.textContent = "No ground truth for this run (start it with “folders name the people” to measure).";
    } else {
      const rows = [];
      const add = (k, v) => rows.push(el("tr", {}, [el("th", {text: k}), el("td", {text: v})]));
      if (m.truth) add("ground truth", m.truth);
      if (m.known_faces !== undefined) add("faces of known / new people", m.known_faces + " / " + m.unknown_faces);
      if (m.overlap_fnr_rejected_as_miss !== undefined) add("overlap: known faces missed (FNR)", pct(m.overlap_fnr_rejected_as_miss));
      if (m.disjoint_fpr !== undefined) add("overlap: new faces taken as known (FPR)", pct(m.disjoint_fpr));
      Object.entries(m.clustering || {}).forEach(([k, v]) => {
        // counts print as integers; these are over the primary faces the folders name (not all faces)
        if (typeof v === "number") add("clustering " + k.replace(/_/g, " ") + (/clusters|singletons/.test(k) ?
          " (primary faces)" : ""), Number.isInteger(v) ? String(v) : fmt(v, 4));
      });
      box.replaceChildren(el("table", {"class": "list metrics"}, rows));
    }
    if (m.simulated_review && m.simulated_review.curves) {
      document.getElementById("simulated-card").hidden = false;
      drawCurves(document.getElementById("simulated"), m.simulated_review);
    }
    ready("report");
  }

  // --- the review queue ------------------------------------------------------------------------------------

  function queueKey(runId) { return "fc-queue-" + runId; }
  function queueFilters(runId) {
    try { return JSON.parse(sessionStorage.getItem(queueKey(runId)) || "{}"); } catch (e) { return {}; }
  }

  async function queuePage(runId) {
    const form = document.getElementById("queue-filters");
    const tbody = document.querySelector("#queue tbody");
    const more = document.getElementById("queue-more");
    const params = new URLSearchParams(location.search);
    const saved = queueFilters(runId);
    // the URL wins, then what this tab had last
    const f = {state: params.get("state") || saved.state || "pending", min_size: params.get("min_size") || saved.min_size || "",
               max_size: params.get("max_size") || saved.max_size || "", ordering: params.get("ordering") || saved.ordering || "priority"};
    form.querySelector(`input[name=state][value="${f.state}"]`).checked = true;
    form.min_size.value = f.min_size; form.max_size.value = f.max_size; form.ordering.value = f.ordering;
    let next = null, rank = 0, cursor = -1;
    const rows = () => [...tbody.querySelectorAll("tr[data-cluster]")];

    function query() {
      const q = new URLSearchParams({state: f.state, ordering: f.ordering, limit: "100"});
      if (f.min_size) q.set("min_size", f.min_size);
      if (f.max_size) q.set("max_size", f.max_size);
      return q;
    }
    function remember(extra) {
      sessionStorage.setItem(queueKey(runId), JSON.stringify(Object.assign({}, queueFilters(runId), f, extra || {})));
    }
    function row(c) {
      rank += 1;
      const held = c.lease_user && c.lease_until && new Date(c.lease_until) > new Date() ? c.lease_user : "";
      return el("tr", {"data-cluster": String(c.id), "data-state": c.review_state, tabindex: "-1"}, [
        el("td", {text: String(rank)}),
        el("td", {}, [el("a", {href: "/clusters/" + c.id + "/", text: "cluster " + c.id + (c.number === null ? " (new)" : "")})]),
        el("td", {"class": "strip", "data-testid": "strip"}, (c.thumbnails || []).map((u) =>
          el("img", {src: u, alt: "", loading: "lazy", width: "40", height: "40"}))),
        el("td", {text: String(c.size)}),
        el("td", {"data-sum": String(c.sum_p_minus), text: fmt(c.sum_p_minus, 2)}), el("td", {text: fmt(c.max_p_minus, 3)}),
        el("td", {text: c.review_state}),
        el("td", {text: c.assigned_identity_name || c.name || ""}), el("td", {text: held}),
      ]);
    }
    let loadSeq = 0;
    async function loadPage(reset) {
      // a newer filter wins: answers to older requests are dropped
      const seq = reset ? ++loadSeq : loadSeq;
      const url = reset ? "/api/runs/" + runId + "/clusters/?" + query() : next;
      if (!url) return;
      const page = await api(url);
      if (seq !== loadSeq) return;
      if (reset) { tbody.replaceChildren(); rank = 0; cursor = -1; tbody.parentNode.dataset.loaded = String(query()); }
      page.results.forEach((c) => tbody.appendChild(row(c)));
      next = page.next;
      more.hidden = !next;
      if (reset && !page.results.length) tbody.appendChild(el("tr", {}, [el("td", {colspan: "9", text: "No clusters here."})]));
      remember({pages: Math.max(1, Math.ceil(rank / 100))});
    }
    function focusRow(i) {
      const all = rows();
      if (!all.length) return;
      cursor = Math.max(0, Math.min(i, all.length - 1));
      all.forEach((r) => r.classList.remove("cursor"));
      all[cursor].classList.add("cursor");
      all[cursor].scrollIntoView({block: "nearest"});
    }
    async function counts() {
      const run = await api("/api/runs/" + runId + "/");
      const r = run.reviewed;
      document.getElementById("queue-counts").textContent = r.pending + " pending · " + r.confirmed + " confirmed · " +
        r.dismissed + " dismissed · " + (run.counts.clusters || 0) + " clusters at the start";
    }
    form.addEventListener("change", async () => {
      const fd = new FormData(form);
      f.state = fd.get("state"); f.min_size = fd.get("min_size"); f.max_size = fd.get("max_size"); f.ordering = fd.get("ordering");
      const q = new URLSearchParams(query()); q.delete("limit");
      history.replaceState(null, "", "?" + q);
      remember({pages: 1, last: null, scroll: 0});
      await loadPage(true);
    });
    more.addEventListener("click", () => loadPage(false));
    tbody.addEventListener("click", (ev) => {
      const tr = ev.target.closest("tr[data-cluster]");
      if (tr) remember({last: tr.dataset.cluster, scroll: window.scrollY});
    });
    document.addEventListener("keydown", (ev) => {
      if (ev.target.matches("input, select, textarea")) return;
      if (ev.key === "j" || ev.key === "ArrowDown") { focusRow(cursor + 1); ev.preventDefault(); }
      else if (ev.key === "k" || ev.key === "ArrowUp") { focusRow(cursor - 1); ev.preventDefault(); }
      else if (ev.key === "Enter" && rows().length) {
        if (cursor < 0) focusRow(0);  // a fresh queue: Enter opens the first row (the cursor starts there)
        const tr = rows()[cursor];
        remember({last: tr.dataset.cluster, scroll: window.scrollY});
        location.href = "/clusters/" + tr.dataset.cluster + "/";
      }
    });
    const q = new URLSearchParams(query()); q.delete("limit");
    if (location.search !== "?" + q) history.replaceState(null, "", "?" + q);
    await loadPage(true);
    // back from a cluster: the same pages, the same place
    const pages = Math.min(saved.pages || 1, 20);
    for (let i = 1; i < pages && next; i++) await loadPage(false);
    ready("queue");
    if (saved.last) {
      const i = rows().findIndex((r) => r.dataset.cluster === String(saved.last));
      if (i >= 0) { focusRow(i); rows()[i].classList.add("last-open"); }
      else if (saved.scroll) window.scrollTo(0, saved.scroll);
    }
    if (cursor < 0 && rows().length) focusRow(0);  // the cursor is visible from the start
    counts();
  }

  // Shared with cluster.js (the cluster page).
  fc.ui = {el, post, fmt, fmtP, pct, ready, queueFilters, queueKey};
  Object.assign(fc, {homeRuns, reportPage, queuePage, drawReport});
})();
