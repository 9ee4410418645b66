/* The merge queue page: one "same person?" item at a time; y = yes, n = no, u = undo the last answer. */
function facecurateMerges(runId) {
  "use strict";
  const csrf = (window.FACECURATE || {}).csrfToken;
  const box = document.getElementById("merge-item");
  const pair = box.querySelector(".pair");
  const status = document.getElementById("merge-status");
  const error = document.getElementById("merge-error");
  let item = null, busy = false, answered = 0, lastAction = null;

  async function api(url, options) {
    options = options || {};
    const headers = {"Accept": "application/json"};
    if (options.body) { headers["Content-Type"] = "application/json"; headers["X-CSRFToken"] = csrf; }
    const resp = await fetch(url, Object.assign({credentials: "same-origin"}, options, {headers}));
    const body = await resp.json().catch(() => null);
    if (!resp.ok) throw new Error((body && body.detail) || resp.statusText);
    return body;
  }

  function side(node, title, thumbs) {
    node.querySelector("h2").textContent = title;
    const strip = node.querySelector(".strip");
    strip.replaceChildren();
    thumbs.filter(Boolean).forEach((src) => {
      const img = document.createElement("img");
      img.src = src; img.alt = ""; img.width = 72; img.height = 72; img.loading = "lazy";
      strip.appendChild(img);
    });
  }

  function label(c, id) {
    return (c.name ? c.name + " · " : "") + "cluster " + id + " · " + c.size + (c.size === 1 ? " face" : " faces");
  }

  function show() {
    box.dataset.state = item ? "item" : "empty";
    document.getElementById("merge-empty").hidden = !!item;
    pair.hidden = !item;
    if (!item) return;
    const a = item.clusters[String(item.cluster)];
    if (item.kind === "place") {
      side(pair.querySelector("[data-side=a]"), "A face you rejected", [item.face_thumbnail]);
    } else {
      const b = item.clusters[String(item.other)];
      side(pair.querySelector("[data-side=a]"), label(b, item.other), b.thumbnails);
    }
    side(pair.querySelector("[data-side=b]"), label(a, item.cluster), a.thumbnails);
    pair.querySelector(".why").textContent = "Chance they are one person: " + Math.round(100 * item.probability) +
      " % · fixes about " + item.gain.toFixed(1) + " pairs if yes";
    box.dataset.item = item.kind + ":" + item.cluster + ":" + (item.other || item.face);
  }

  async function load() {
    const items = await api("/api/runs/" + runId + "/merge-queue/?limit=1");
    item = items[0] || null;
    show();
  }

  async function answer(same) {
    if (!item || busy) return;
    busy = true; error.textContent = "";
    const a = item.clusters[String(item.cluster)];
    const body = {cluster: item.cluster, version: a.version, same: same};
    if (item.kind === "place") body.face = item.face;
    else { body.other = item.other; body.other_version = item.clusters[String(item.other)].version; }
    try {
      const out = await api("/api/runs/" + runId + "/merge-answer/", {method: "POST", body: JSON.stringify(body)});
      lastAction = out.action && out.action.id;
      answered += 1;
      await load();  // the next item first, then the status: "N answered" means the page shows what comes next
      status.textContent = (same ? "Merged" : "Noted: not the same person") + " · " + answered + " answered";
    } catch (e) { error.textContent = e.message; await load(); }
    busy = false;
  }

  async function undo() {
    if (!lastAction || busy) return;
    busy = true;
    try {
      await api("/api/review-actions/" + lastAction + "/undo/", {method: "POST", body: "{}"});
      status.textContent = "Undone"; lastAction = null; await load();
    } catch (e) { error.textContent = e.message; }
    busy = false;
  }

  document.getElementById("merge-yes").addEventListener("click", () => answer(true));
  document.getElementById("merge-no").addEventListener("click", () => answer(false));
  document.addEventListener("keydown", (ev) => {
    if (ev.ctrlKey || ev.metaKey || ev.altKey || /INPUT|TEXTAREA|SELECT/.test(ev.target.tagName)) return;
    if (ev.key === "y") { ev.preventDefault(); answer(true); }
    else if (ev.key === "n") { ev.preventDefault(); answer(false); }
    else if (ev.key === "u") { ev.preventDefault(); undo(); }
  });
  load().then(() => { document.body.dataset.ready = "merges"; })
    .catch((e) => { error.textContent = e.message; document.body.dataset.ready = "merges"; });
}
