"use strict";
// The service menu: the server says what this login may do (/api/state) and answers each
// action in words from the kiosk's catalogue; this file holds no sentence of its own.
(function () {
  const $ = (id) => document.getElementById(id);
  const meta = (n) => document.querySelector('meta[name="' + n + '"]').content;
  const token = meta("kiosk-token");
  const customerURL = meta("customer-url");
  const POLL_MS = 1000;

  let lang = meta("kiosk-lang");
  let texts = JSON.parse($("texts").textContent).texts;
  let login = ""; // the login's token
  let state = null;
  let pad = null; // {title, secret, max, done(value)}
  let padValue = "";
  let busy = false;

  const t = (k) => texts[k] || "";

  function applyTexts() {
    document.documentElement.lang = lang;
    for (const el of document.querySelectorAll("[data-t]")) el.textContent = t(el.dataset.t);
    document.title = t("svc.title");
    if (state) render(state);
    if (pad) $("pad-title").textContent = t(pad.title);
    // The figures are in the language they were asked in: ask again.
    if (collection && login) collectStep("");
  }

  function post(path, body) {
    const headers = { "Content-Type": "application/json", "X-Kiosk-Token": token };
    if (login) headers["X-Service-Login"] = login;
    return fetch(path + "?lang=" + encodeURIComponent(lang), { method: "POST", headers, body: JSON.stringify(body || {}) })
      .then((r) => r.json().then((j) => ({ status: r.status, body: j })));
  }

  function say(text, error) {
    $("message").textContent = text || "";
    $("message").className = error ? "error" : "";
  }

  function rows(list) {
    const tb = $("rows").tBodies[0];
    tb.replaceChildren();
    for (const [k, v] of list || []) {
      const tr = document.createElement("tr");
      for (const s of [k, v]) {
        const td = document.createElement("td");
        td.textContent = s;
        tr.appendChild(td);
      }
      tb.appendChild(tr);
    }
  }

  function showPad(p) {
    pad = p;
    padValue = "";
    $("pad").hidden = false;
    $("choices").hidden = true;
    $("pad-title").textContent = t(p.title);
    $("pad-display").textContent = "";
  }

  function hidePad() {
    pad = null;
    padValue = "";
    $("pad").hidden = true;
  }

  function choices(title, list) {
    const box = $("choice-buttons");
    box.replaceChildren();
    for (const c of list) {
      const b = document.createElement("button");
      b.type = "button";
      b.textContent = c.label;
      b.id = c.id;
      b.addEventListener("click", c.run);
      box.appendChild(b);
    }
    $("choices-title").textContent = title;
    $("choices").hidden = list.length === 0;
  }

  function render(st) {
    state = st;
    let view = "entry";
    if (st.logged_in) view = "menu";
    else if (st.entry) view = "login";
    const app = $("app");
    if (app.dataset.view !== view) {
      if (view !== "menu") {
        $("choices").hidden = true;
        hideCollection();
        rows([]);
      }
      if (view === "entry") hidePad();
    }
    app.dataset.view = view;
    $("logout").hidden = !st.logged_in;
    $("who").textContent = st.logged_in ? t("svc.logged_in_as").replace("{who}", st.who) : "";
    if (st.logged_in) {
      $("idle").textContent = t("svc.idle_left").replace("{seconds}", String(st.idle_left_s));
      const box = $("actions");
      const want = (st.actions || []).join(",");
      if (box.dataset.actions !== want || box.dataset.lang !== lang) {
        box.replaceChildren();
        for (const a of st.actions || []) {
          const b = document.createElement("button");
          b.type = "button";
          b.id = "a-" + a;
          b.textContent = t("svc." + a);
          b.addEventListener("click", () => start(a));
          box.appendChild(b);
        }
        box.dataset.actions = want;
        box.dataset.lang = lang;
      }
    }
    if (view === "entry" && customerURL && !login) location.href = customerURL;
  }

  function poll() {
    const sent = login;
    const headers = sent ? { "X-Service-Login": sent } : {};
    fetch("/api/state", { headers }).then((r) => r.json()).then((st) => {
      // An answer about another login than the page's now (one sent before a login or a
      // logout) says nothing about the current one.
      if (sent !== login) return;
      if (login && !st.logged_in) {
        // Ended by the server (idle, or another login): back to the roles, say why.
        login = "";
        hidePad();
        say(t("svc.logged_out"), false);
      }
      render(st);
    }).catch(() => {});
  }

  function loginAs(role) {
    say("", false);
    showPad({ title: "svc.enter_pin", secret: true, max: 12, done: (pin) => {
      post("/api/login", { role, pin }).then((r) => {
        if (r.status === 200) {
          login = r.body.login;
          hidePad();
          say("", false);
          rows([]);
          poll();
        } else {
          padValue = "";
          $("pad-display").textContent = "";
          say(r.body.message, true);
        }
      });
    } });
  }

  // act always returns a promise (of undefined when a request is already running), so a
  // caller's .then never meets undefined.
  function act(body) {
    if (busy) return Promise.resolve();
    busy = true;
    say(t("svc.working"), false);
    return post("/api/action", body).then((r) => {
      busy = false;
      if (r.status === 401) {
        login = "";
        hidePad();
        say(r.body.message, true);
        poll();
        return r;
      }
      say(r.body.message, !r.body.ok);
      rows(r.body.rows);
      return r;
    }, () => { busy = false; });
  }

  // The cash collection screen: the server's answer says the step, the figures (rows) and
  // the steps open now; the counts are entered per denomination with steppers, or on the pad
  // by tapping the count.
  let counts = {}; // value_minor -> count entered
  let collection = null;

  function collectStep(step, extra) {
    const body = Object.assign({ action: "collection", step }, extra || {});
    const p = act(body);
    if (!p) return Promise.resolve();
    return p.then((r) => {
      if (!r) return;
      if (r.body.collection) showCollection(r.body.collection);
    });
  }

  function showCollection(c) {
    collection = c;
    $("collect").hidden = false;
    if (!c.can_count) counts = {};
    const tb = $("col-lines").tBodies[0];
    tb.replaceChildren();
    if (c.can_count) {
      for (const l of c.lines || []) {
        if (!(l.value_minor in counts)) counts[l.value_minor] = l.counted || 0;
        const tr = document.createElement("tr");
        const name = document.createElement("td");
        name.textContent = l.label;
        const exp = document.createElement("td");
        exp.textContent = t("svc.col.expected_notes") + " " + l.expected;
        const ctl = document.createElement("td");
        ctl.className = "stepper";
        const less = document.createElement("button");
        less.type = "button";
        less.id = "less-" + l.value_minor;
        less.textContent = "−";
        less.setAttribute("aria-label", t("svc.col.less") + " " + l.label);
        const n = document.createElement("button");
        n.type = "button";
        n.id = "n-" + l.value_minor;
        n.className = "count";
        // The accessible name starts with the number on the button (what a voice user reads).
        const show = () => {
          n.textContent = String(counts[l.value_minor]);
          n.setAttribute("aria-label", n.textContent + " " + t("svc.col.note_count") + " " + l.label);
        };
        show();
        const more = document.createElement("button");
        more.type = "button";
        more.id = "more-" + l.value_minor;
        more.textContent = "+";
        more.setAttribute("aria-label", t("svc.col.more") + " " + l.label);
        const set = (v) => { counts[l.value_minor] = Math.max(0, Math.min(100000, v || 0)); show(); };
        less.addEventListener("click", () => set(counts[l.value_minor] - 1));
        more.addEventListener("click", () => set(counts[l.value_minor] + 1));
        n.addEventListener("click", () => {
          showPad({ title: "svc.col.note_count", secret: false, max: 6, done: (v) => { hidePad(); set(Number(v)); } });
        });
        ctl.append(less, n, more);
        tr.append(name, exp, ctl);
        tb.appendChild(tr);
      }
    }
    const box = $("col-buttons");
    box.replaceChildren();
    for (const step of c.next || []) {
      const b = document.createElement("button");
      b.type = "button";
      b.id = "col-" + step;
      b.textContent = t("svc.col." + step);
      if (step !== "abort") b.className = "primary";
      b.addEventListener("click", () => {
        if (step === "count") {
          collectStep(step, { counts: Object.keys(counts).map((v) => ({ value_minor: Number(v), count: counts[v] })) });
        } else {
          collectStep(step);
        }
      });
      box.appendChild(b);
    }
  }

  function hideCollection() {
    collection = null;
    counts = {};
    $("collect").hidden = true;
  }

  function start(a) {
    hidePad();
    hideCollection();
    $("choices").hidden = true;
    if (a === "collection") {
      collectStep("");
      return;
    }
    if (a === "reprint") {
      showPad({ title: "svc.receipt_prompt", secret: false, max: 10, done: (v) => { hidePad(); act({ action: "reprint", receipt_no: Number(v) }); } });
      return;
    }
    if (a === "signoff") {
      act({ action: "signoff" }).then((r) => {
        if (!r || !r.body.choices) return;
        choices(t("svc.signoff_pick"), r.body.choices.map((c) => ({ id: "c-" + c, label: c, run: () => {
          choices(t("svc.why_prompt"), ["svc.why.inspected", "svc.why.replaced", "svc.why.counted"].map((why) => ({
            id: "w-" + why.split(".").pop(), label: t(why), run: () => {
              $("choices").hidden = true;
              act({ action: "signoff", condition: c, why });
            } })));
        } })));
      });
      return;
    }
    if (a === "set_pin") {
      choices(t("svc.choose_role"), ["collector", "technician", "admin"].map((role) => ({ id: "r-" + role, label: t("svc.role." + role), run: () => {
        choices(t("svc.slot"), [1, 2, 3].map((slot) => ({ id: "s-" + slot, label: t("svc.slot") + " " + slot, run: () => {
          $("choices").hidden = true;
          showPad({ title: "svc.new_pin", secret: true, max: 12, done: (pin) => { hidePad(); act({ action: "set_pin", role, slot, pin }); } });
        } })));
      } })));
      return;
    }
    act({ action: a });
  }

  for (const b of document.querySelectorAll(".role")) b.addEventListener("click", () => loginAs(b.dataset.role));
  for (const b of document.querySelectorAll(".key")) {
    b.addEventListener("click", () => {
      if (!pad || padValue.length >= pad.max) return;
      padValue += b.dataset.k;
      $("pad-display").textContent = pad.secret ? "•".repeat(padValue.length) : padValue;
    });
  }
  $("k-clear").addEventListener("click", () => { padValue = ""; $("pad-display").textContent = ""; });
  $("k-ok").addEventListener("click", () => { if (pad && padValue) pad.done(padValue); });
  $("k-back").addEventListener("click", () => { hidePad(); });
  $("logout").addEventListener("click", () => {
    post("/api/logout").then(() => { login = ""; rows([]); say("", false); poll(); });
  });
  $("lang").addEventListener("click", () => {
    const next = lang === "en" ? "zh-CN" : "en";
    fetch("/api/texts?lang=" + encodeURIComponent(next)).then((r) => r.json()).then((tx) => {
      lang = tx.lang;
      texts = tx.texts;
      applyTexts();
    }).catch(() => {});
  });

  applyTexts();
  poll();
  setInterval(poll, POLL_MS);
})();
