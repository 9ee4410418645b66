/* The cluster page: a grid of faces (most doubtful first), selection, keyboard, review actions with
   versions and a lease, suggestions, identity type-ahead, undo. Loads after app.js and review.js. */
(function () {
  "use strict";
  const fc = window.facecurate;
  const api = fc.api;
  const cfg = window.FACECURATE || {};
  const {el, post, fmt, ready, queueFilters, queueKey} = fc.ui;
  // p- for people: a percentage, never a raw float ("<1 %" below one percent)
  const pctP = (p) => (p === null || p === undefined) ? "–" : (p < 0.01 ? "<1 %" : Math.round(100 * p) + " %");

  // --- a cluster ---------------------------------------------------------------------------------------------

  async function clusterPage(clusterId, runId) {
    const grid = document.getElementById("faces");
    const msg = document.getElementById("msg");
    const leaseMsg = document.getElementById("lease-msg");
    const selCount = document.getElementById("sel-count");
    const target = document.getElementById("target-input");
    const nameInput = document.getElementById("name-input");
    const search = document.getElementById("identity-search");
    const matches = document.getElementById("identity-matches");
    const moreBtn = document.getElementById("faces-more");
    let cluster = null, faces = [], nextFaces = null, focus = 0, anchor = null, readOnly = false;
    let suggestions = {merges: [], identities: []}, searched = false;
    // the run's labeled sets are rendered into the page (a new identity is created in one of them)
    const labeledSets = [...document.getElementById("identity-dataset").options].map((o) => ({id: Number(o.value), name: o.text}));
    const selected = new Set();
    const opened = performance.now();

    function say(text, kind) {
      msg.hidden = !text;
      msg.className = "banner " + (kind || "ok");
      msg.textContent = text || "";
    }
    function info() {
      const c = cluster;
      document.getElementById("c-info").textContent = c.size + " faces · " + c.review_state +
        (c.name ? " · " + c.name : "") + (c.assigned_identity_name && c.assigned_identity_name !== c.name ? " · " + c.assigned_identity_name : "") +
        (c.size ? " · expected wrong (Σ p-) " + fmt(c.sum_p_minus, 2) + " · max p- " + fmt(c.max_p_minus, 2) : "") +
        " · v" + c.version + (c.number === null ? " · made in review" : "");
      emptyState(c.size === 0);
      document.getElementById("faces-count").textContent = faces.length + " of " + c.size + " faces shown";
      document.title = "Cluster " + c.id + " (" + c.size + ") · facecurate";
    }
    // an emptied cluster (its faces moved, merged or rejected): only undo and navigation make sense
    const KEEP = new Set(["undo", "prev", "next", "skip"]);
    function emptyState(empty) {
      document.body.classList.toggle("empty-cluster", empty);
      document.querySelectorAll("#toolbar button[data-act]").forEach((b) => { if (!KEEP.has(b.dataset.act)) b.disabled = empty; });
      nameInput.disabled = empty; search.disabled = empty;
      const note = document.getElementById("empty-note");
      if (note) note.hidden = !empty;
    }
    function updateSel() {
      grid.querySelectorAll(".face").forEach((t) => {
        const on = selected.has(Number(t.dataset.rf));
        t.classList.toggle("selected", on);
        t.setAttribute("aria-selected", on ? "true" : "false");
      });
      selCount.textContent = selected.size + " selected";
    }
    function tile(f, i) {
      const p = f.p_minus === null ? null : f.p_minus;
      const t = el("figure", {"class": "face tile" + (p !== null && p >= 0.5 ? " doubtful" : ""), "data-rf": String(f.id),
                              "data-index": String(i), role: "option", "aria-selected": "false",
                              title: (f.image_name || "face") + " · chance it does not belong " + pctP(p) +
                                (f.predicted_identity_name ? " · looks like " + f.predicted_identity_name : "")}, [
        f.thumbnail_url || f.crop_url ? el("img", {src: f.thumbnail_url || f.crop_url, alt: "face " + f.id, loading: "lazy",
                                                    decoding: "async", width: "112", height: "112"}) : el("div", {"class": "noimg", text: "no image"}),
        el("figcaption", {}, [el("span", {"class": "pm", "data-p": String(p), title: "p-: chance this face does not belong",
                                          text: "p- " + pctP(p)}),
          el("button", {type: "button", "class": "link photo-btn", title: "source photo (o)", text: "photo"})]),
      ]);
      return t;
    }
    function render() {
      grid.replaceChildren(...faces.map(tile));
      focus = Math.min(focus, Math.max(0, faces.length - 1));
      setFocus(focus, false);
      updateSel();
      info();
    }
    function setFocus(i, scroll) {
      const tiles = grid.children;
      if (!tiles.length) return;
      focus = Math.max(0, Math.min(i, tiles.length - 1));
      [...tiles].forEach((t) => t.classList.remove("focus"));
      tiles[focus].classList.add("focus");
      if (scroll !== false) tiles[focus].scrollIntoView({block: "nearest"});
    }
    async function loadFaces(reset) {
      const url = reset ? "/api/clusters/" + clusterId + "/faces/?limit=200" : nextFaces;
      if (!url) return;
      const page = await api(url);
      if (reset) { faces = []; grid.replaceChildren(); }
      const start = faces.length;
      faces = faces.concat(page.results);
      const frag = document.createDocumentFragment();
      page.results.forEach((f, k) => frag.appendChild(tile(f, start + k)));
      grid.appendChild(frag);
      nextFaces = page.next;
      moreBtn.hidden = !nextFaces;
      if (reset) setFocus(0, false);
      updateSel();
      info();
    }
    async function loadCluster() {
      cluster = await api("/api/clusters/" + clusterId + "/");
      info();
    }
    function setCluster(list) {
      (list || []).forEach((c) => { if (c.id === clusterId) cluster = c; });
      info();
    }

    // leases: hold the cluster while it is open; someone else's -> read-only with their name
    async function lease(op) {
      try {
        const c = await post("/api/clusters/" + clusterId + "/lease/", {op: op, seconds: 120});
        if (op === "acquire") cluster = c;  // the lease's answer is the cluster as it is now
        if (op !== "release") {
          cluster.lease_user = c.lease_user; cluster.lease_until = c.lease_until;
          if (readOnly) { readOnly = false; leaseMsg.hidden = true; document.body.classList.remove("read-only"); }
        }
      } catch (e) {
        if (e.status === 409) {
          readOnly = true;
          document.body.classList.add("read-only");
          leaseMsg.hidden = false;
          leaseMsg.textContent = e.message;
        }
      }
    }
    window.addEventListener("pagehide", () => {
      if (readOnly) return;
      fetch("/api/clusters/" + clusterId + "/lease/", {method: "POST", keepalive: true, credentials: "same-origin",
        headers: {"Content-Type": "application/json", "X-CSRFToken": cfg.csrfToken}, body: JSON.stringify({op: "release"})});
    });

    // navigation: next in the queue after this one (keyset cursor of the queue's order), previous from a trail
    const trailKey = "fc-trail-" + runId;
    const trail = JSON.parse(sessionStorage.getItem(trailKey) || "[]");
    if (trail[trail.length - 1] !== clusterId) { trail.push(clusterId); sessionStorage.setItem(trailKey, JSON.stringify(trail.slice(-200))); }
    if (sessionStorage.getItem("fc-return-" + runId)) {
      say("Opened from the guided review: take out the faces that do not belong, confirm, then n goes back to it.", "ok");
    }
    let openPriority = null, openSize = null;
    async function goNext() {
      const back = sessionStorage.getItem("fc-return-" + runId);  // opened from the guided review: back to it
      if (back) { sessionStorage.removeItem("fc-return-" + runId); location.href = back; return; }
      const f = queueFilters(runId);
      const ordering = f.ordering || "priority";
      const value = ordering === "size" ? openSize : openPriority;
      const cur = btoa(JSON.stringify([value, clusterId])).replace(/\+/g, "-").replace(/\//g, "_");
      const q = new URLSearchParams({state: f.state || "pending", ordering: ordering, limit: "1", cursor: cur});
      if (f.min_size) q.set("min_size", f.min_size);
      if (f.max_size) q.set("max_size", f.max_size);
      const page = await api("/api/runs/" + runId + "/clusters/?" + q);
      if (page.results.length) {
        sessionStorage.setItem(queueKey(runId), JSON.stringify(Object.assign({}, f, {last: String(page.results[0].id)})));
        location.href = "/clusters/" + page.results[0].id + "/";
      } else { say("That was the last cluster of the queue.", "ok"); }
    }
    function goPrev() {
      const t = JSON.parse(sessionStorage.getItem(trailKey) || "[]");
      while (t.length && t[t.length - 1] === clusterId) t.pop();
      const prev = t.pop();
      sessionStorage.setItem(trailKey, JSON.stringify(t));
      if (prev) location.href = "/clusters/" + prev + "/"; else location.href = "/runs/" + runId + "/review/";
    }

    // actions
    function selectedIds() { return [...selected]; }
    function needSel() {
      if (!selected.size) { say("Select faces first (click, Shift+click, x, or a for all).", "warn"); return false; }
      return true;
    }
    function targetId() {
      const v = Number(target.value);
      if (!v) { say("Choose a target cluster: keys 1–5 pick a suggestion, or type its id.", "warn"); return null; }
      return v;
    }
    async function act(kind, body, after) {
      if (readOnly) { say(leaseMsg.textContent || "Someone else has this cluster open.", "warn"); return null; }
      const path = kind === "not_a_face" ? "not-a-face" : kind;
      try {
        const out = await post("/api/clusters/" + clusterId + "/" + path + "/", Object.assign({version: cluster.version}, body || {}));
        setCluster(out.clusters);
        if (after) await after(out);
        loadHistory();
        return out;
      } catch (e) {
        if (e.status === 409 && e.body && e.body.code === "stale_version") {
          say(e.message, "bad");
          const reload = el("button", {type: "button", text: "Reload", on: {click: () => refresh()}});
          msg.appendChild(document.createTextNode(" ")); msg.appendChild(reload);
        } else {
          say(e.message, "bad");
        }
        return null;
      }
    }
    function dropFaces(ids) {
      const gone = new Set(ids);
      faces = faces.filter((f) => !gone.has(f.id));
      ids.forEach((i) => selected.delete(i));
      render();
    }
    async function refresh() {
      selected.clear();
      await loadCluster();
      await loadFaces(true);
      loadSuggestions();
    }
    const actions = {
      confirm: async (name) => {
        const body = name !== undefined ? {name: name} : {};
        const out = await act("confirm", body);
        if (out) { say("Confirmed cluster " + clusterId + (out.clusters[0].name ? " as " + out.clusters[0].name : "") + ". u undoes; n goes on.", "ok"); }
      },
      reject: async () => {
        if (!needSel()) return;
        const ids = selectedIds();
        const out = await act("reject", {faces: ids});
        if (out) { dropFaces(ids); say("Rejected " + ids.length + " face(s): they left the cluster.", "ok"); }
      },
      reject_confirm: async () => {
        if (!needSel()) return;
        const ids = selectedIds();
        const out = await act("reject", {faces: ids, confirm: true});
        if (out) { dropFaces(ids); say("Rejected " + ids.length + " face(s) and confirmed the rest as one person. u undoes both; n goes on.", "ok"); }
      },
      split: async () => {
        if (!needSel()) return;
        const ids = selectedIds();
        const out = await act("split", {faces: ids});
        if (out) { dropFaces(ids); say("Split " + ids.length + " face(s) into new cluster " + out.created_cluster + ".", "ok"); target.value = out.created_cluster; }
      },
      move: async () => {
        if (!needSel()) return;
        const t = targetId();
        if (!t) return;
        const ids = selectedIds();
        const out = await act("move", {faces: ids, target: t});
        if (out) { dropFaces(ids); say("Moved " + ids.length + " face(s) to cluster " + t + ".", "ok"); loadSuggestions(); }
      },
      merge: async () => {
        const t = targetId();
        if (!t) return;
        let other = null;
        try { other = await api("/api/clusters/" + t + "/"); } catch (e) { say(e.message, "bad"); return; }
        if (other.review_state === "confirmed" && cluster.review_state !== "confirmed") {
          const who = other.assigned_identity_name || other.name;
          if (!window.confirm("Cluster " + t + (who ? " (" + who + ")" : "") + " is confirmed, this one is still pending. " +
                              "Merging moves its " + other.size + " confirmed faces here and dismisses it, dropping that confirmation. Merge anyway?")) {
            say("Not merged: cluster " + t + " is confirmed. Open it and merge this one into it instead, or confirm this one first.", "warn");
            return;
          }
        }
        const out = await act("merge", {other: t});
        if (out) { say("Merged cluster " + t + " into this one (" + out.results.length + " faces).", "ok"); await loadFaces(true); loadSuggestions(); }
      },
      not_a_face: async () => {
        const ids = selectedIds();
        if (!ids.length && !window.confirm("No faces are selected. Mark ALL " + cluster.size + " faces of cluster " + clusterId +
                                           " as not a face? (Select faces first to mark only those; u undoes.)")) {
          say("Nothing marked. Select the faces that are not faces, then press f.", "warn");
          return;
        }
        const out = await act("not_a_face", ids.length ? {faces: ids} : {});
        if (out) {
          if (ids.length) { dropFaces(ids); say(ids.length + " face(s) marked not a face.", "ok"); }
          else { await loadFaces(true); say("The whole cluster is marked not a face.", "ok"); }
        }
      },
      skip: async () => { const out = await act("skip", {}); if (out) await goNext(); },
      assign: async (identity, name) => {
        const out = await act("assign", {identity: identity});
        if (out) say("Assigned to " + name + ".", "ok");
      },
      undo: async () => {
        const page = await api("/api/review-actions/?run=" + runId + "&user=me&undone=false&limit=20");
        const last = page.results.find((a) => a.kind !== "skip");
        if (!last) { say("Nothing of yours to undo in this run.", "warn"); return; }
        await undo(last);
      },
      next: goNext, prev: async () => goPrev(),
    };
    async function undo(a) {
      try {
        await post("/api/review-actions/" + a.id + "/undo/");
        say("Undone: " + a.summary + ".", "ok");
        await refresh();
        loadHistory();
      } catch (e) { say(e.message, "bad"); }
    }

    // history (from the server: survives reloads)
    async function loadHistory() {
      const page = await api("/api/review-actions/?run=" + runId + "&user=me&limit=8");
      document.getElementById("history").replaceChildren(...page.results.map((a) => el("li", {"data-action": String(a.id), "data-kind": a.kind}, [
        el("span", {"class": a.undone_at ? "undone" : "", text: a.summary}),
        a.undone_at || a.kind === "skip" ? el("span", {"class": "muted", text: a.undone_at ? " (undone)" : ""}) :
          el("button", {type: "button", "class": "link", text: "undo", on: {click: () => undo(a)}}),
      ])));
    }

    // suggestions: clusters to merge and identities, a few faces each
    async function loadSuggestions() {
      try { suggestions = await api("/api/clusters/" + clusterId + "/suggestions/"); } catch (e) { return; }
      document.getElementById("merges").replaceChildren(...suggestions.merges.map((m, i) => el("li", {"data-cluster": String(m.id)}, [
        el("button", {type: "button", "class": "pick", text: (i + 1) + " · " + (m.assigned_identity_name || m.name || "cluster " + m.id) + " · " + m.size + " faces · " +
            Math.round(100 * m.similarity) + " % similar" + (m.review_state === "confirmed" ? " · confirmed" : ""),
          on: {click: () => { target.value = m.id; }}}),
        el("div", {"class": "thumbs"}, m.thumbnails.filter(Boolean).map((u) => el("img", {src: u, alt: "", loading: "lazy"}))),
      ])));
      if (!suggestions.merges.length) document.getElementById("merges").appendChild(el("li", {"class": "muted", text: "none"}));
      document.getElementById("identities").replaceChildren(...suggestions.identities.map((s) => el("li", {"data-identity": String(s.identity)}, [
        el("button", {type: "button", "class": "pick", text: s.name + " · " + Math.round(100 * s.score) + " % match",
          on: {click: () => actions.assign(s.identity, s.name)}}),
        el("div", {"class": "thumbs"}, s.thumbnails.filter(Boolean).map((u) => el("img", {src: u, alt: "", loading: "lazy"}))),
      ])));
      if (!suggestions.identities.length) {
        const why = cluster && cluster.size === 0 ? "none (the cluster is empty)" : labeledSets.length ? "none" : "none (no labeled set)";
        document.getElementById("identities").appendChild(el("li", {"class": "muted", text: why}));
      }
    }

    // identity type-ahead: finds only; creating is its own, explicit button
    let searchSeq = 0, found = [], chosen = -1;
    function choose(i) {
      chosen = found.length ? Math.max(0, Math.min(i, found.length - 1)) : -1;
      [...matches.children].forEach((li, k) => { li.classList.toggle("chosen", k === chosen); li.setAttribute("aria-selected", k === chosen ? "true" : "false"); });
      if (chosen >= 0) matches.children[chosen].scrollIntoView({block: "nearest"});
    }
    function assignChosen() {
      const m = found[chosen];
      if (!m) return;
      if (!window.confirm("Assign cluster " + clusterId + " (" + cluster.size + " faces) to " + m.name + " (" + m.dataset_name + ")?")) return;
      actions.assign(m.id, m.name);
    }
    async function runSearch() {
      const q = search.value.trim();
      const seq = ++searchSeq;
      searched = true;
      const got = await api("/api/runs/" + runId + "/identities/?limit=8&q=" + encodeURIComponent(q));
      if (seq !== searchSeq) return;
      const keep = chosen >= 0 && found[chosen] ? found[chosen].id : null;  // a re-render keeps the choice
      found = got;
      matches.replaceChildren(...found.map((m, i) => el("li", {"data-identity": String(m.id), role: "option", "aria-selected": "false"}, [
        el("button", {type: "button", "class": "pick", text: m.name + " · " + m.dataset_name, on: {click: () => { choose(i); assignChosen(); }}})])));
      chosen = -1;
      if (keep !== null && found.some((m) => m.id === keep)) choose(found.findIndex((m) => m.id === keep));
      const exact = found.some((m) => m.name.toLowerCase() === q.toLowerCase());
      const box = document.getElementById("identity-create");
      box.hidden = !q || exact || !labeledSets.length;
      document.getElementById("identity-create-btn").textContent = "Create new identity “" + q + "” and assign";
    }
    search.addEventListener("input", runSearch);
    search.addEventListener("keydown", (ev) => {
      // Enter never assigns the first match by itself: ↓/↑ choose a match, Enter then asks to confirm it
      if (ev.key === "ArrowDown") { ev.preventDefault(); choose(chosen + 1); }
      else if (ev.key === "ArrowUp") { ev.preventDefault(); choose(chosen - 1); }
      else if (ev.key === "Enter") {
        ev.preventDefault();
        if (chosen >= 0) assignChosen();
        else if (found.length) { choose(0); say("Enter again assigns " + found[0].name + " after you confirm; ↓/↑ choose another match.", "warn"); }
        else say("No identity matches “" + search.value.trim() + "”.", "warn");
      }
      if (ev.key === "Escape") { search.blur(); }
    });
    document.getElementById("identity-create-btn").addEventListener("click", async () => {
      const name = search.value.trim();
      const ds = Number(document.getElementById("identity-dataset").value);
      if (!name || !ds) return;
      if (!window.confirm("Create a new identity “" + name + "”? (Use a match above if it is someone known.)")) return;
      const out = await act("assign", {new_identity: {dataset: ds, name: name}});
      if (out) say("Created identity " + name + " and assigned this cluster to it.", "ok");
    });

    // selection with the mouse
    grid.addEventListener("click", (ev) => {
      const t = ev.target.closest(".face");
      if (!t) return;
      const i = Number(t.dataset.index);
      if (ev.target.closest(".photo-btn")) { showPhoto(faces[i]); return; }
      if (ev.shiftKey && anchor !== null) {
        const [a, b] = anchor < i ? [anchor, i] : [i, anchor];
        for (let k = a; k <= b; k++) selected.add(faces[k].id);
      } else {
        const id = faces[i].id;
        if (selected.has(id)) selected.delete(id); else selected.add(id);
        anchor = i;
      }
      setFocus(i, false);
      updateSel();
    });
    moreBtn.addEventListener("click", () => loadFaces(false));
    if ("IntersectionObserver" in window) {
      new IntersectionObserver((entries) => { if (entries.some((e) => e.isIntersecting) && nextFaces) loadFaces(false); })
        .observe(moreBtn);
    }

    // the source photo with the face's box
    const photo = document.getElementById("photo");
    function showPhoto(f) {
      if (!f || !f.image_url) { say("No source photo for this face.", "warn"); return; }
      const img = document.getElementById("photo-img"), rect = document.getElementById("photo-rect");
      rect.hidden = true;
      img.onload = () => {
        if (f.box) {
          const [x, y, w, h] = f.box, W = img.naturalWidth, H = img.naturalHeight;
          Object.assign(rect.style, {left: (100 * x / W) + "%", top: (100 * y / H) + "%", width: (100 * w / W) + "%", height: (100 * h / H) + "%"});
          rect.hidden = false;
        }
      };
      img.src = f.image_url;
      document.getElementById("photo-cap").textContent = (f.image_name || "source photo") + " · chance it does not belong " + pctP(f.p_minus) +
        (f.predicted_identity_name ? " · looks like " + f.predicted_identity_name : "");
      photo.hidden = false;
    }
    document.getElementById("photo-close").addEventListener("click", () => { photo.hidden = true; });
    const help = document.getElementById("help");
    document.getElementById("help-btn").addEventListener("click", () => { help.hidden = false; });
    document.getElementById("help-close").addEventListener("click", () => { help.hidden = true; });
    document.getElementById("toolbar").addEventListener("click", (ev) => {
      const b = ev.target.closest("button[data-act]");
      if (!b) return;
      if (b.dataset.act === "confirm") actions.confirm(nameInput.value.trim() || undefined);
      else actions[b.dataset.act]();
    });
    nameInput.addEventListener("keydown", (ev) => {
      if (ev.key === "Enter") { ev.preventDefault(); actions.confirm(nameInput.value.trim()); nameInput.blur(); }
      if (ev.key === "Escape") nameInput.blur();
    });

    // the keyboard
    function columns() {
      const tiles = grid.children;
      if (tiles.length < 2) return 1;
      const top = tiles[0].offsetTop;
      let n = 0;
      while (n < tiles.length && tiles[n].offsetTop === top) n++;
      return Math.max(1, n);
    }
    document.addEventListener("keydown", (ev) => {
      if (ev.target.matches("input, select, textarea") || ev.ctrlKey || ev.metaKey || ev.altKey) return;
      const k = ev.key;
      if (k === "Escape") { help.hidden = true; photo.hidden = true; selected.clear(); updateSel(); return; }
      if (k === "?") { help.hidden = !help.hidden; ev.preventDefault(); return; }
      const keys = {
        ArrowRight: () => setFocus(focus + 1), ArrowLeft: () => setFocus(focus - 1), l: () => setFocus(focus + 1), h: () => setFocus(focus - 1),
        ArrowDown: () => setFocus(focus + columns()), ArrowUp: () => setFocus(focus - columns()),
        j: () => setFocus(focus + columns()), k: () => setFocus(focus - columns()),  // as in the queue: k is up
        x: () => toggle(), " ": () => toggle(),
        a: () => { faces.forEach((f) => selected.add(f.id)); updateSel(); },
        o: () => showPhoto(faces[focus]),
        c: () => actions.confirm(), C: () => nameInput.focus(),
        r: () => actions.reject(), Delete: () => actions.reject(), R: () => actions.reject_confirm(), s: () => actions.split(),
        m: () => actions.move(), g: () => actions.merge(), f: () => actions.not_a_face(), z: () => actions.skip(),
        n: () => actions.next(), p: () => actions.prev(), u: () => actions.undo(), i: () => search.focus(),
      };
      if (/^[1-5]$/.test(k)) {
        const m = suggestions.merges[Number(k) - 1];
        if (m) { target.value = m.id; say("Target: cluster " + m.id + " (m moves the selection there, g merges it in).", "ok"); }
        ev.preventDefault();
        return;
      }
      if (keys[k]) { ev.preventDefault(); keys[k](); }
    });
    function toggle() {
      const f = faces[focus];
      if (!f) return;
      if (selected.has(f.id)) selected.delete(f.id); else selected.add(f.id);
      anchor = focus;
      updateSel();
    }

    // open: the cluster (in the page's HTML), its lease, its first page of faces; then the rest
    cluster = JSON.parse(document.getElementById("cluster-data").textContent);
    info();
    openPriority = cluster.priority; openSize = cluster.size;
    await Promise.all([lease("acquire"), loadFaces(true)]);
    ready("cluster");
    document.body.dataset.openMs = String(Math.round(performance.now() - opened));
    setInterval(() => { if (!document.hidden) lease(readOnly ? "acquire" : "renew"); }, readOnly ? 15000 : 45000);
    loadSuggestions();
    loadHistory();
    // the identity list is fetched when the search box is first used (i, a click, typing), not on every page
    search.addEventListener("focus", () => { if (!searched) runSearch().catch(() => {}); });
  }

  fc.clusterPage = clusterPage;
})();
