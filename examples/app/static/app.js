// justpg notes: search-as-you-type and live updates. No build step, no
// framework: the server renders every piece of HTML (escaped by
// html/template); this script only fetches and places it.
(() => {
  "use strict";
  const ws = document.body.dataset.ws;
  if (!ws) return; // not signed in to a workspace
  const base = `/w/${ws}`;

  // fragment fetches a server-rendered fragment and returns its element.
  async function fragment(url) {
    const r = await fetch(url, {headers: {Accept: "text/html"}});
    if (!r.ok) return null;
    const t = document.createElement("template");
    t.innerHTML = (await r.text()).trim();
    return t.content.firstElementChild;
  }

  function toast(text, href) {
    const box = document.getElementById("toasts");
    const el = document.createElement(href ? "a" : "div");
    el.className = "toast";
    el.textContent = text;
    if (href) el.href = href;
    box.append(el);
    setTimeout(() => el.remove(), 15000);
  }

  // ---- search as you type ----
  const q = document.getElementById("q");
  const results = document.getElementById("results");
  let timer, seq = 0;
  q.addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(async () => {
      const text = q.value.trim();
      const mine = ++seq;
      if (!text) { results.hidden = true; results.replaceChildren(); return; }
      const r = await fetch(`${base}/search?q=${encodeURIComponent(text)}`);
      if (mine !== seq) return; // a newer query is on its way
      const t = document.createElement("template");
      t.innerHTML = r.ok ? await r.text() : "";
      results.replaceChildren(t.content);
      results.dataset.q = text;
      results.hidden = false;
    }, 120);
  });
  q.addEventListener("keydown", e => {
    if (e.key === "Escape") { q.value = ""; results.hidden = true; }
  });

  // ---- live updates ----
  async function onNote(m) {
    const list = document.getElementById("notes");
    const page = document.querySelector(`[data-note="${m.id}"]`);
    if (!list && !page) return;
    const card = await fragment(`${base}/notes/${m.id}/card`);
    if (!card) return;
    if (list) {
      document.getElementById(`note-${m.id}`)?.remove();
      document.getElementById("no-notes")?.remove();
      card.classList.add("fresh");
      list.prepend(card);
    }
    if (page) {
      document.getElementById("note-title").textContent = card.querySelector(".title").textContent;
      document.getElementById("note-body").textContent = card.querySelector(".excerpt").textContent;
    }
  }

  async function onAttachment(m) {
    const list = document.getElementById("attachments");
    if (!list || !document.querySelector(`[data-note="${m.note_id}"]`)) return;
    const el = await fragment(`${base}/attachments/${m.id}/card`);
    if (!el) return;
    const old = document.getElementById(`att-${m.id}`);
    if (old) old.replaceWith(el); else list.append(el);
  }

  function onJob(m) {
    document.querySelectorAll(`[data-job="${m.id}"] [data-job-state]`).forEach(el => {
      el.textContent = el.closest(".attachment") ? `preview job ${m.state}…` : m.state;
    });
  }

  const live = document.getElementById("live");
  let backoff = 500;
  function connect() {
    const sock = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}${base}/live`);
    sock.onopen = () => {
      backoff = 500;
      // The answer to this join arrives once the server listens on every
      // channel of this page: from then on no update is missed.
      sock.send(JSON.stringify({type: "join", channel: document.body.dataset.channel}));
    };
    sock.onclose = () => {
      live.className = "live off";
      document.body.dataset.live = "0";
      setTimeout(connect, backoff);
      backoff = Math.min(backoff * 2, 10000);
    };
    sock.onmessage = e => {
      const m = JSON.parse(e.data);
      if (m.type === "joined") {
        live.className = "live on";
        document.body.dataset.live = "1";
        return;
      }
      if (m.type === "gap") { toast("Connection hiccup: reload to be sure you see everything."); return; }
      if (m.type !== "message") return;
      const d = m.data;
      switch (d.type) {
        case "note": onNote(d); break;
        case "attachment": onAttachment(d); break;
        case "job": onJob(d); break;
        case "mention": toast(`@${d.by} mentioned you in “${d.title}”`, `${base}/notes/${d.id}`); break;
        case "digest": toast("Today's digest is ready."); break;
      }
    };
  }
  connect();
})();
