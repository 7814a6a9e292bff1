"use strict";
// The customer screen follows the kiosk's view (GET /api/events, server-sent events) and
// sends the customer's buttons. Every text comes from the kiosk's catalogue, rendered by the
// server in the page's language: this file holds no sentence of its own.
(function () {
  const $ = (id) => document.getElementById(id);
  const meta = (n) => document.querySelector('meta[name="' + n + '"]').content;
  const token = meta("kiosk-token");
  const defLang = meta("kiosk-lang");
  // Timings: the server pings every 2 s, so three missed pings mean the daemon is gone.
  const DOWN_AFTER_MS = 6000;
  const FIRST_VIEW_MS = 5000;
  const IDLE_MESSAGE_MS = 15000;
  const LANG_IDLE_RESET_MS = 60000;

  let lang = defLang;
  let texts = JSON.parse($("texts").textContent).texts;
  let es = null;
  const loadedAt = performance.now();
  let lastHeard = 0;
  let last = null;
  let prevState = "";
  let msg = { id: "", since: 0, state: "" };
  let deadline = 0; // performance.now() time of the idle close, 0 when none
  let countdownFrom = 0;
  let printerAck = false;
  let langSince = 0;

  function applyTexts() {
    document.documentElement.lang = lang;
    for (const el of document.querySelectorAll("[data-t]")) {
      el.textContent = texts[el.dataset.t] || "";
    }
    document.title = texts["ui.title"] || "";
  }

  function setLang(l) {
    if (l === lang && es) return;
    fetch("/api/texts?lang=" + encodeURIComponent(l)).then((r) => r.json()).then((t) => {
      lang = t.lang;
      texts = t.texts;
      langSince = performance.now();
      applyTexts();
      connect();
    }).catch(() => {});
  }

  function list(el, items) {
    el.replaceChildren();
    for (const s of items || []) {
      const li = document.createElement("li");
      li.textContent = s;
      el.appendChild(li);
    }
  }

  function render(p) {
    const v = p, sc = p.screen;
    if (sc.lang !== lang) return; // an event of the stream in the previous language
    last = p;
    const app = $("app");
    const now = performance.now();
    // A session ended: the next customer starts in the kiosk's language, with no leftovers.
    if (v.state === "idle" && prevState && prevState !== "idle") {
      printerAck = false;
      if (lang !== defLang) { setLang(defLang); }
    }
    prevState = v.state;
    app.dataset.state = v.state;
    app.dataset.seq = v.seq;
    $("account").textContent = v.account_masked || "";
    $("offline").hidden = !v.offline;
    $("total").textContent = sc.total;
    $("remaining").textContent = sc.remaining;
    const tbody = $("notes").querySelector("tbody");
    tbody.replaceChildren();
    for (const n of sc.notes || []) {
      const tr = document.createElement("tr");
      for (const cell of [n.value, n.count, n.amount]) {
        const td = document.createElement("td");
        td.textContent = cell;
        tr.appendChild(td);
      }
      tbody.appendChild(tr);
    }
    $("allowed").textContent = sc.allowed;
    $("cancel").textContent = sc.cancel_label;
    $("cancel").dataset.credits = v.total_minor > 0 ? "1" : "";
    $("cancel-hint").textContent = sc.cancel_hint;
    const r = sc.result;
    if (r) {
      $("result-title").textContent = r.title;
      $("result-amount").textContent = r.amount;
      $("result-status").textContent = r.sentence;
      list($("result-review"), r.under_review || []);
      $("screen-done").dataset.status = r.status;
      $("result-receipt").textContent = r.receipt_no || "";
      $("result-receipt-line").hidden = !r.receipt_no;
      $("result-ref").textContent = r.reference;
    }
    list($("oos-reasons"), sc.reasons);
    $("oos-help").hidden = !!sc.hotline_shown;
    list($("warnings"), sc.warnings);
    app.dataset.printer = sc.printer_down ? "down" : "";
    const id = (v.message_key || "") + JSON.stringify(v.message_params || []) + (v.message_kind || "");
    if (id !== msg.id) msg = { id: id, since: now, state: v.state };
    $("message").dataset.text = sc.message || "";
    $("message").className = sc.message_error ? "error" : "";
    if (v.state === "accepting" && v.idle_deadline_unix_ms) {
      deadline = now + (v.idle_deadline_unix_ms - p.now_unix_ms);
      countdownFrom = Math.min(30000, (v.idle_timeout_ms || 60000) / 2);
    } else {
      deadline = 0;
    }
    tick();
  }

  // tick updates what depends on time: the countdown, stale messages, a silent daemon.
  function tick() {
    const now = performance.now();
    const app = $("app");
    const down = lastHeard === 0 ? now - loadedAt > FIRST_VIEW_MS : now - lastHeard > DOWN_AFTER_MS;
    app.dataset.down = down ? "1" : "";
    for (const b of document.querySelectorAll("button:not(#lang)")) b.disabled = down;
    const st = last ? last.state : "starting";
    // A message said in an earlier state, or long ago, is not for whoever stands here now.
    const m = $("message");
    const stale = st === "idle" && (msg.state !== "idle" || now - msg.since > IDLE_MESSAGE_MS);
    m.textContent = down || stale ? "" : (m.dataset.text || "");
    const left = deadline ? deadline - now : -1;
    const show = !down && st === "accepting" && deadline > 0 && left <= countdownFrom;
    $("countdown").hidden = !show;
    if (show) {
      const secs = Math.max(0, Math.ceil(left / 1000));
      $("countdown-text").textContent = (texts["ui.countdown"] || "").replace("{seconds}", String(secs));
    }
    const pw = $("printer-warn");
    pw.hidden = down || app.dataset.printer !== "down" || !(st === "idle" || (st === "accepting" && !printerAck));
    $("printer-continue").hidden = st !== "accepting";
    if (st === "idle" && lang !== defLang && now - langSince > LANG_IDLE_RESET_MS) setLang(defLang);
  }

  async function press(path, btn) {
    if (btn) btn.disabled = true;
    try {
      const res = await fetch(path, { method: "POST", headers: { "X-Kiosk-Token": token } });
      if (!res.ok) {
        const body = await res.json().catch(() => ({}));
        console.warn(path, res.status, body.error);
      }
    } catch (e) {
      console.warn(path, e);
    } finally {
      if (btn) btn.disabled = false;
      tick();
    }
  }
  $("finish").addEventListener("click", (e) => press("/api/finish", e.currentTarget));
  $("cancel").addEventListener("click", (e) => press("/api/cancel", e.currentTarget));
  $("done").addEventListener("click", (e) => press("/api/cancel", e.currentTarget));
  $("more-time").addEventListener("click", (e) => press("/api/more-time", e.currentTarget));
  $("printer-continue").addEventListener("click", () => { printerAck = true; tick(); });
  $("lang").addEventListener("click", () => {
    const other = lang.startsWith("zh") ? "en" : "zh-CN";
    langSince = performance.now();
    setLang(other);
  });

  // The technicians' service menu: the page goes there when the kiosk says it is open (the
  // cabinet door) or on a three-second press on the title, never while a customer is served.
  const serviceURL = meta("service-url");
  const FREE_STATES = ["idle", "out_of_service", "maintenance", "starting"];
  function toService(open) {
    const state = $("app").dataset.state;
    if (serviceURL && open && FREE_STATES.includes(state)) location.href = serviceURL;
  }
  if (serviceURL && meta("service-gesture") === "1") {
    let press = 0;
    const title = document.querySelector("header h1");
    title.addEventListener("pointerdown", () => { press = setTimeout(() => toService(true), 3000); });
    for (const ev of ["pointerup", "pointerleave", "pointercancel"]) title.addEventListener(ev, () => clearTimeout(press));
  }

  function connect() {
    if (es) es.close();
    es = new EventSource("/api/events?lang=" + encodeURIComponent(lang));
    es.addEventListener("view", (ev) => {
      lastHeard = performance.now();
      $("conn").hidden = true;
      const p = JSON.parse(ev.data);
      render(p);
      toService(p.service);
    });
    es.addEventListener("ping", (ev) => {
      lastHeard = performance.now();
      $("conn").hidden = true;
      try { toService(JSON.parse(ev.data).service); } catch (e) { /* a ping without a body */ }
    });
    es.onerror = () => { $("conn").hidden = false; };
  }
  applyTexts();
  connect();
  setInterval(tick, 500);
})();
