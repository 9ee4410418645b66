/* facecurate browser UI: plain JS over the REST API (session auth + CSRF). */
(function () {
  "use strict";
  const cfg = window.FACECURATE || {};

  async function api(url, options) {
    options = options || {};
    const headers = Object.assign({"Accept": "application/json"}, options.headers || {});
    if (options.method && options.method !== "GET") headers["X-CSRFToken"] = cfg.csrfToken;
    const resp = await fetch(url, Object.assign({credentials: "same-origin"}, options, {headers}));
    let body = null;
    try { body = await resp.json(); } catch (e) { body = null; }
    if (!resp.ok) {
      const err = new Error((body && (body.detail || JSON.stringify(body))) || resp.statusText);
      err.status = resp.status; err.body = body;
      throw err;
    }
    return body;
  }

  function el(tag, attrs, children) {
    const node = document.createElement(tag);
    Object.entries(attrs || {}).forEach(([k, v]) => {
      if (k === "text") node.textContent = v; else node.setAttribute(k, v);
    });
    (children || []).forEach((c) => node.appendChild(c));
    return node;
  }

  async function datasetsPage() {
    const tbody = document.querySelector("#datasets tbody");
    async function load() {
      const page = await api("/api/datasets/?limit=1000");
      tbody.replaceChildren();
      if (!page.results.length) {
        tbody.appendChild(el("tr", {}, [el("td", {colspan: "6", "data-testid": "first-steps", text: "No datasets yet. " +
          (cfg.staff ? "First steps: create a dataset below (labeled if its photos come in one folder per person), "
            + "upload photos or import a folder on its page, then start a run here; its clusters are reviewed next."
            : "A staff member creates the datasets and starts runs; clusters to review show here once a run is done.")})]));
      }
      page.results.forEach((d) => {
        const c = d.image_counts || d.face_counts;
        tbody.appendChild(el("tr", {"data-dataset": String(d.id)}, [
          el("td", {}, [el("a", {href: "/datasets/" + d.id + "/", text: d.name})]),
          el("td", {text: d.kind + (d.aligned ? " (aligned)" : "")}),
          el("td", {text: String(d.face_count !== undefined ? d.face_count : c.ok)}), el("td", {text: String(c.no_face)}),
          el("td", {text: String(c.error)}), el("td", {text: String(c.pending)}),
        ]));
      });
    }
    const form = document.getElementById("new-dataset");
    if (form) {
      form.addEventListener("submit", async (ev) => {
        ev.preventDefault();
        const f = new FormData(form);
        const out = document.getElementById("new-dataset-error");
        out.textContent = "";
        try {
          const d = await api("/api/datasets/", {
            method: "POST", headers: {"Content-Type": "application/json"},
            body: JSON.stringify({name: f.get("name"), kind: f.get("kind"), aligned: f.get("aligned") === "on",
                                  description: f.get("description") || ""}),
          });
          window.location.href = "/datasets/" + d.id + "/";
        } catch (e) { out.textContent = e.message; }
      });
    }
    await load();
  }

  function jobLine(job) {
    const pct = job.progress === null ? "" : " " + Math.round(job.progress * 100) + "%";
    const rejected = (job.result && job.result.rejected) || [];
    const refused = rejected.length ? rejected.length + " file(s) refused: " +
      rejected.slice(0, 20).map((r) => r.name + " (" + r.reason + ")").join(", ") +
      (rejected.length > 20 ? ", …" : "") : "";
    const text = job.kind + " · " + job.state + (job.stage ? " · " + job.stage : "") +
      " · " + job.progress_current + "/" + job.progress_total + pct +
      (refused ? " · " + refused : "") + (job.error ? " · " + job.error.split("\n")[0] : "") +
      (job.silent_seconds ? " · its worker has not reported for " + Math.round(job.silent_seconds) +
       " s (stopped? it is requeued after a while)" : "");
    const li = el("li", {"data-job": job.id, "data-state": job.state, "class": "job " + job.state}, [
      el("span", {text: text}),
      el("progress", {max: String(job.progress_total || 1), value: String(job.progress_current)}),
    ]);
    return li;
  }

  async function datasetPage(id) {
    const grid = document.getElementById("grid");
    const jobsList = document.getElementById("jobs");
    const statusFilter = document.getElementById("status-filter");
    const more = document.getElementById("more");
    let next = null;

    async function counts() {
      const d = await api("/api/datasets/" + id + "/");
      const c = d.image_counts || d.face_counts;
      document.getElementById("counts").textContent =
        c.total + " images (" + c.ok + " with faces, " + c.no_face + " without a face, " + c.error + " errors, " +
        c.pending + " pending), " + d.face_count + " faces" +
        (d.kind === "labeled" ? ", " + d.identity_count + " identities" : "");
    }

    function faceTile(f) {
      const label = (f.identity ? f.identity + " · " : "") + f.source_name.split("/").pop();
      const tile = el("figure", {"class": "tile " + f.status, "data-face": String(f.id), "data-status": f.status,
                                 title: f.source_name + (f.error ? "\n" + f.error : "")});
      if (f.thumbnail_url) tile.appendChild(el("img", {src: f.thumbnail_url, alt: label, loading: "lazy"}));
      else tile.appendChild(el("div", {"class": "noimg", text: f.status}));
      tile.appendChild(el("figcaption", {text: label}));
      return tile;
    }

    let loads = 0;  // two loads at once (the poll's and an upload's refresh) must not both fill the grid
    async function loadFaces(reset) {
      const mine = ++loads;
      let url = next;
      const fresh = reset || !url;
      if (fresh) {
        url = "/api/images/?dataset=" + id + "&limit=200" + (statusFilter.value ? "&status=" + statusFilter.value : "");
      }
      const page = await api(url);
      if (mine !== loads) return;  // a later load replaces this one
      if (fresh) grid.replaceChildren();
      page.results.forEach((f) => grid.appendChild(faceTile(f)));
      next = page.next;
      more.hidden = !next;
    }

    let active = false;
    let running = false;
    async function refresh() {
      const page = await api("/api/jobs/?dataset=" + id + "&limit=10");
      jobsList.replaceChildren(...page.results.map(jobLine));
      running = page.results.some((j) => j.state === "queued" || j.state === "running");
      if (running || active) { await counts(); }
      if (active && !running) { await loadFaces(true); }
      active = running;
    }
    async function poll() {
      try { await refresh(); } catch (e) { /* keep polling through a blip */ }
      setTimeout(poll, running ? 1000 : 4000);
    }

    function showRejected(body) {
      const box = document.getElementById("rejected");
      box.replaceChildren();
      (body.rejected || []).forEach((r) => box.appendChild(el("div", {"class": "rejected", text: r.name + ": " + r.reason})));
    }

    const upload = document.getElementById("upload");
    if (upload) {
      upload.addEventListener("submit", async (ev) => {
        ev.preventDefault();
        try {
          const body = await api("/api/datasets/" + id + "/upload/", {method: "POST", body: new FormData(upload)});
          showRejected(body);
          upload.reset();
          active = true;
          await refresh();
        } catch (e) { showRejected({rejected: [{name: "upload", reason: e.message}]}); }
      });
    }
    const imp = document.getElementById("import");
    if (imp) {
      imp.addEventListener("submit", async (ev) => {
        ev.preventDefault();
        try {
          await api("/api/datasets/" + id + "/import/", {
            method: "POST", headers: {"Content-Type": "application/json"},
            body: JSON.stringify({path: new FormData(imp).get("path")}),
          });
          active = true;
          await refresh();
        } catch (e) { showRejected({rejected: [{name: "import", reason: e.message}]}); }
      });
    }
    statusFilter.addEventListener("change", () => loadFaces(true));
    more.addEventListener("click", () => loadFaces(false));
    await counts();
    await loadFaces(true);
    poll();
  }

  window.facecurate = {api, datasetsPage, datasetPage};
})();
