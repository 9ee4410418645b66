/* Guided review: the run's one review queue (merge groups, rejected faces to place, clusters to clean), one
   decision at a time. 1-9 tick candidates, Enter = done (the ticked), y = only the most likely one,
   a = all the same, n = none, s = skip, u = undo. */
function facecurateGuided(runId) {
  "use strict";
  const fc = window.facecurate;
  const api = fc.api;
  const {el, post} = fc.ui;
  const box = document.getElementById("guided-item");
  const anchor = box.querySelector(".anchor");
  const why = box.querySelector(".why");
  const list = box.querySelector(".candidates");
  const buttons = box.querySelector(".buttons");
  const clean = box.querySelector(".clean");
  const status = document.getElementById("guided-status");
  const error = document.getElementById("guided-error");
  const skipped = new Set();
  let item = null, busy = false, decided = 0, lastActions = [];

  function strip(thumbs) {
    return el("div", {"class": "strip"}, thumbs.filter(Boolean).map((src) => el("img", {src: src, alt: "", loading: "lazy"})));
  }

  function label(c, id) {
    return (c.name ? c.name + " · " : "") + "cluster " + id + " · " + c.size + (c.size === 1 ? " face" : " faces");
  }

  const STAGES = {  // what the queue is doing once the likely decisions are done (the item's stage)
    lone: "The likely merges are done. Each face still alone is shown with its next nearest clusters, past the ones " +
          "you answered: most are someone the clustering split off. ",
    unlikely: "The likely decisions are done: these are unlikely merges and small clean-ups. ",
    last: "Every suggestion has been answered: the queue now looks past your answers. ",
  };

  function key(it) { return it.kind + ":" + it.cluster + ":" + (it.face || ""); }

  function candidate(o, i, single) {
    const c = item.clusters[String(o.id)] || {size: 0, thumbnails: []};
    const input = el("input", {type: single ? "radio" : "checkbox", name: "candidate", value: String(o.id),
                               "data-testid": "candidate-" + (i + 1)});
    input.addEventListener("change", () => paint());
    const pct = 100 * o.probability;
    const text = label(c, o.id) + " · " + (pct > 0 && pct < 0.5 ? "< 1" : String(Math.round(pct))) + " % likely";
    return el("li", {"data-id": String(o.id)}, [el("label", {}, [input, " ", el("kbd", {}, [String(i + 1)]), " " + text]),
                                               strip(c.thumbnails)]);
  }

  function paint() {
    list.querySelectorAll("li").forEach((li) => li.classList.toggle("ticked", li.querySelector("input").checked));
  }

  function show() {
    box.dataset.state = item ? item.kind : "empty";
    box.dataset.item = item ? key(item) : "";
    document.getElementById("guided-empty").hidden = !!item;
    [anchor, buttons, clean].forEach((n) => { n.hidden = true; });
    list.replaceChildren(); why.textContent = "";
    if (!item) return;
    const a = item.clusters[String(item.cluster)];
    anchor.hidden = false;
    if (item.kind === "clean") {
      anchor.querySelector("h2").textContent = label(a, item.cluster);
      anchor.querySelector(".strip").replaceWith(strip(a.thumbnails));
      why.textContent = (STAGES[item.stage] || "") + "This cluster may hold faces of other people: about " + item.gain.toFixed(1) +
        " wrong pairs. Open it, reject or move the faces that do not belong, and confirm it.";
      const open = document.getElementById("guided-open");
      open.href = "/clusters/" + item.cluster + "/";
      clean.hidden = false;
      return;
    }
    const place = item.kind === "place";
    anchor.querySelector("h2").textContent = place ? "A rejected face: whose is it?" : label(a, item.cluster);
    anchor.querySelector(".strip").replaceWith(strip(place ? [item.face_thumbnail] : a.thumbnails));
    why.textContent = place ? "Tick the cluster of this person (one), or n if none of them."
      : "Tick the clusters that are the same person as this one; the others are recorded as other people. " +
        "Fixes about " + item.gain.toFixed(1) + " pairs.";
    if (!place && item.stage === "lone" && a.size === 1) {
      anchor.querySelector("h2").textContent = "A face alone (" + label(a, item.cluster) + "): is it one of these people?";
    }
    why.textContent = (STAGES[item.stage] || "") + why.textContent;
    item.others.forEach((o, i) => list.append(candidate(o, i, place)));
    document.getElementById("guided-all").hidden = place;  // a face has one person
    buttons.hidden = false;
  }

  async function load() {
    const items = await api("/api/runs/" + runId + "/review-queue/?limit=50");
    item = items.find((it) => !skipped.has(key(it))) || null;
    show();
  }

  function ticked() { return [...list.querySelectorAll("input:checked")].map((i) => Number(i.value)); }

  async function decide(mode) {
    if (!item || busy || item.kind === "clean") return;
    const others = item.others.map((o) => ({id: o.id, version: item.clusters[String(o.id)].version}));
    const ids = others.map((o) => o.id);
    const chosen = {all: ids, first: ids.slice(0, 1), none: []}[mode] || ticked();
    let body;
    if (item.kind === "place") body = {face: item.face, others: others, chosen: chosen[0] || null};
    else body = {cluster: item.cluster, version: item.clusters[String(item.cluster)].version, others: others, same: chosen};
    busy = true; error.textContent = "";
    try {
      const outs = await post("/api/runs/" + runId + "/review-answer/", body);
      lastActions = outs.map((o) => o.action && o.action.id).filter(Boolean);
      decided += 1;
      const joined = item.kind === "place" ? (body.chosen ? "placed" : "left out") : body.same.length + " merged";
      await load();
      status.textContent = "Done: " + joined + " · " + decided + " decided";
    } catch (e) { error.textContent = e.message; await load(); }
    busy = false;
  }

  async function undo() {
    if (!lastActions.length || busy) return;
    busy = true; error.textContent = "";
    try {
      for (const id of lastActions.slice().reverse()) await post("/api/review-actions/" + id + "/undo/", {});
      status.textContent = "Undone"; lastActions = []; await load();
    } catch (e) { error.textContent = e.message; }
    busy = false;
  }

  function skip() { if (item) { skipped.add(key(item)); status.textContent = "Skipped"; show(); load(); } }

  function toggle(n) {
    const input = list.querySelectorAll("input")[n - 1];
    if (!input) return;
    input.checked = !input.checked;  // a radio ticked unticks the others of its group
    paint();
  }

  function openClean() {
    sessionStorage.setItem("fc-return-" + runId, location.pathname);
    location.href = "/clusters/" + item.cluster + "/";
  }

  document.getElementById("guided-done").addEventListener("click", () => decide("ticked"));
  document.getElementById("guided-first").addEventListener("click", () => decide("first"));
  document.getElementById("guided-all").addEventListener("click", () => decide("all"));
  document.getElementById("guided-none").addEventListener("click", () => decide("none"));
  document.getElementById("guided-skip").addEventListener("click", skip);
  document.getElementById("guided-skip-clean").addEventListener("click", skip);
  document.getElementById("guided-open").addEventListener("click", (ev) => { ev.preventDefault(); openClean(); });
  document.addEventListener("keydown", (ev) => {
    if (ev.ctrlKey || ev.metaKey || ev.altKey || /INPUT|TEXTAREA|SELECT/.test(ev.target.tagName) && ev.target.type !== "checkbox" && ev.target.type !== "radio") return;
    const digit = /^[1-9]$/.test(ev.key) ? Number(ev.key) : 0;
    if (digit) { ev.preventDefault(); toggle(digit); }
    else if (ev.key === "Enter") { ev.preventDefault(); if (item && item.kind === "clean") openClean(); else decide("ticked"); }
    else if (ev.key === "y") { ev.preventDefault(); decide("first"); }
    else if (ev.key === "a") { ev.preventDefault(); if (item && item.kind === "merge") decide("all"); }
    else if (ev.key === "n") { ev.preventDefault(); decide("none"); }
    else if (ev.key === "s") { ev.preventDefault(); skip(); }
    else if (ev.key === "u") { ev.preventDefault(); undo(); }
  });
  load().then(() => { document.body.dataset.ready = "guided"; })
    .catch((e) => { error.textContent = e.message; document.body.dataset.ready = "guided"; });
}
