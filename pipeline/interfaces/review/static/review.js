// gemcurate review: keyboard-first actions. No framework, no build step.
(function () {
  "use strict";
  const page = document.body.dataset.page;
  const csrf = document.querySelector('meta[name="csrf-token"]')?.content;
  const dataEl = document.getElementById("page-data");
  const data = dataEl ? JSON.parse(dataEl.textContent) : {};
  const flash = document.getElementById("flash");
  const help = document.getElementById("help");
  const UNDO_KEY = "gemcurate-last-decision";

  function say(text, bad) {
    flash.textContent = text;
    flash.className = bad ? "bad" : "ok";
  }

  async function post(url, body) {
    const r = await fetch(url, {
      method: "POST", credentials: "same-origin",
      headers: {"Content-Type": "application/json", "X-CSRFToken": csrf},
      body: JSON.stringify(body),
    });
    let out = {};
    try { out = await r.json(); } catch (e) { out = {error: "HTTP " + r.status}; }
    return [r.status, out];
  }

  function toggleHelp(show) {
    if (!help) return;
    help.hidden = show === undefined ? !help.hidden : !show;
  }
  document.getElementById("help-button")?.addEventListener("click", () => toggleHelp());

  function typing(e) {
    const t = e.target;
    return t && (t.tagName === "INPUT" || t.tagName === "TEXTAREA" || t.tagName === "SELECT");
  }

  // ------------------------------------------------------------------ image page
  if (page === "image") {
    const box = document.querySelector(".box");
    if (box) {
      for (const k of ["left", "top", "width", "height"]) box.style[k] = box.dataset[k] + "%";
    }
    const menu = document.getElementById("reject-menu");
    const note = document.getElementById("note");
    const relabel = document.getElementById("relabel-input");
    let busy = false;

    async function decide(action, extra) {
      if (busy) return;
      busy = true;
      const body = Object.assign({image_id: data.image_id, action: action, expect: data.expect,
                                  filter_reason: data.filter_reason, filter_label: data.filter_label}, extra || {});
      const [status, out] = await post("/api/decide", body);
      busy = false;
      if (status === 200) {
        if (out.decision_id) {
          sessionStorage.setItem(UNDO_KEY, JSON.stringify({image_id: data.image_id, decision_id: out.decision_id}));
        } else if (out.state === "voted" || out.state === "disputed") {
          sessionStorage.setItem(UNDO_KEY, JSON.stringify({image_id: data.image_id, vote: true}));
        }
        say(action + (extra && extra.label ? " → " + extra.label : "") + (out.message ? ": " + out.message : ""));
        window.location.assign(out.next);
      } else if (status === 409) {
        const c = out.current || {};
        say("Someone decided first: " + (c.decision || "?") + (c.label ? " → " + c.label : "") +
            " by " + (c.reviewer || "?") + ". Reload to see it (press . to reload).", true);
        document.body.classList.add("conflict");
      } else {
        say(out.error || ("HTTP " + status), true);
      }
    }

    async function undo() {
      const last = JSON.parse(sessionStorage.getItem(UNDO_KEY) || "null");
      if (!last) { say("nothing to undo", true); return; }
      const [status, out] = await post("/api/undo", last);
      if (status === 200) {
        sessionStorage.removeItem(UNDO_KEY);
        say("undone");
        window.location.assign("/image/" + last.image_id + window.location.search);
      } else {
        say(out.error || ("HTTP " + status), true);
      }
    }

    function rejectWith(reason) {
      if (reason === "other" && !note.value.trim()) {
        say("reject as other: write a note first, then press Enter", true);
        note.dataset.pending = "other";
        note.focus();
        return;
      }
      menu.hidden = true;
      decide("reject", {reason: reason, note: note.value.trim() || null});
    }

    document.querySelectorAll("button.act").forEach((b) => b.addEventListener("click", () => {
      const a = b.dataset.action;
      if (a === "reject-menu") { menu.hidden = !menu.hidden; }
      else if (a === "relabel-focus") { relabel.focus(); }
      else if (a === "reject") { rejectWith(b.dataset.reason); }
      else if (a === "relabel") { decide("relabel", {label: b.dataset.label}); }
      else if (a === "undo") { undo(); }
      else { decide(a); }
    }));

    document.getElementById("relabel-form").addEventListener("submit", (e) => {
      e.preventDefault();
      const v = relabel.value.trim();
      if (!data.labels.includes(v)) { say("'" + v + "' is not a class of this project", true); return; }
      decide("relabel", {label: v});
    });
    note.addEventListener("keydown", (e) => {
      if (e.key === "Enter" && note.dataset.pending) { e.preventDefault(); rejectWith(note.dataset.pending); }
      if (e.key === "Escape") { note.blur(); }
    });
    relabel.addEventListener("keydown", (e) => { if (e.key === "Escape") relabel.blur(); });

    const rejectKeys = {c: "certificate", h: "hand", d: "duplicate", b: "blurry", w: "wrong_product", o: "other"};
    document.addEventListener("keydown", (e) => {
      if (typing(e) || e.ctrlKey || e.metaKey || e.altKey) return;
      const k = e.key;
      if (!menu.hidden && rejectKeys[k]) { e.preventDefault(); rejectWith(rejectKeys[k]); return; }
      if (k === "Escape") { menu.hidden = true; toggleHelp(false); return; }
      if (k === "?") { toggleHelp(); return; }
      if (k === "a") decide("accept");
      else if (k === "r") menu.hidden = !menu.hidden;
      else if (k === "s") decide("revisit");
      else if (k === "u") undo();
      else if (k === "l") { e.preventDefault(); relabel.focus(); }
      else if (k === ".") window.location.reload();
      else if (/^[1-9]$/.test(k) && data.suggestions[Number(k) - 1]) decide("relabel", {label: data.suggestions[Number(k) - 1]});
      else if (k === "j" || k === "ArrowRight") document.getElementById("next")?.click();
      else if (k === "k" || k === "ArrowLeft") document.getElementById("prev")?.click();
      else return;
      e.preventDefault();
    });
    // the next photo is already requested (link rel=prefetch); warm the decoder too
    const nextLink = document.getElementById("next");
    if (nextLink) { const im = new Image(); im.src = nextLink.href.replace("/image/", "/img/").split("?")[0]; }
  }

  // ------------------------------------------------------------------ queue page
  if (page === "queue") {
    const items = Array.from(document.querySelectorAll("#grid .item"));
    let sel = 0;
    function select(i) {
      if (!items.length) return;
      items[sel].classList.remove("selected");
      sel = Math.max(0, Math.min(items.length - 1, i));
      items[sel].classList.add("selected");
      items[sel].scrollIntoView({block: "nearest"});
    }
    document.addEventListener("keydown", (e) => {
      if (typing(e) || e.ctrlKey || e.metaKey || e.altKey) return;
      if (e.key === "?") toggleHelp();
      else if (e.key === "Escape") toggleHelp(false);
      else if (e.key === "j" || e.key === "ArrowRight") select(sel + 1);
      else if (e.key === "k" || e.key === "ArrowLeft") select(sel - 1);
      else if (e.key === "Enter" && items.length) items[sel].querySelector("a").click();
      else return;
      e.preventDefault();
    });
    document.querySelectorAll("button.bulk-action").forEach((b) => b.addEventListener("click", async () => {
      const action = b.dataset.action;
      const reason = document.getElementById("bulk-reason").value;
      const what = action === "accept" ? "accept" : "reject as " + reason;
      if (!window.confirm(what + " all " + items.length + " images on this page?")) return;
      const body = {action: action, confirm: true,
                    items: items.map((li) => ({image_id: li.dataset.imageId, expect: Number(li.dataset.expect)}))};
      if (action === "reject") body.reason = reason;
      const [status, out] = await post("/api/bulk", body);
      if (status === 200 || status === 207) {
        say(out.done + " decided" + (out.failed.length ? ", " + out.failed.length + " not (someone decided first)" : ""),
            out.failed.length > 0);
        setTimeout(() => window.location.reload(), 600);
      } else {
        say(out.error || ("HTTP " + status), true);
      }
    }));
  }
})();
