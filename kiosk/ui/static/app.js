"use strict";
// The customer screen follows the kiosk's view (GET /api/events, server-sent events) and
// sends the two buttons. It holds no state of its own: a reload shows exactly the same.
(function () {
  const exponents = { JPY: 0, KRW: 0, VND: 0, CLP: 0, ISK: 0, UGX: 0, BHD: 3, KWD: 3, OMR: 3, TND: 3, JOD: 3 };
  const $ = (id) => document.getElementById(id);

  function money(minor, currency) {
    const exp = currency in exponents ? exponents[currency] : 2;
    const neg = minor < 0 ? "-" : "";
    let s = String(Math.abs(minor));
    if (exp > 0) {
      s = s.padStart(exp + 1, "0");
      s = s.slice(0, s.length - exp) + "." + s.slice(s.length - exp);
    }
    return neg + s + " " + currency;
  }

  function render(v) {
    const app = $("app");
    app.dataset.state = v.state;
    app.dataset.seq = v.seq;
    const cur = v.currency;
    $("account").textContent = v.account_masked || "";
    $("offline").hidden = !v.offline;
    $("total").textContent = money(v.total_minor || 0, cur);
    $("remaining").textContent = money(v.remaining_minor || 0, cur);
    const tbody = $("notes").querySelector("tbody");
    tbody.replaceChildren();
    for (const n of v.notes || []) {
      const tr = document.createElement("tr");
      for (const cell of [money(n.value_minor, cur), "× " + n.count, money(n.value_minor * n.count, cur)]) {
        const td = document.createElement("td");
        td.textContent = cell;
        tr.appendChild(td);
      }
      tbody.appendChild(tr);
    }
    $("allowed").textContent = (v.allowed_minor || []).map((m) => money(m, cur)).join(", ") || "none";
    const r = v.result;
    if (r) {
      const credited = r.status === "credited";
      $("result-title").textContent = credited ? "Credited to your wallet" : "Received: pending, will be credited";
      $("result-amount").textContent = money(r.amount_minor, r.currency);
      $("result-status").textContent = credited
        ? "The money is in your wallet."
        : "Your wallet will be credited as soon as the kiosk reaches the wallet service. Keep your receipt.";
      $("result-status").dataset.status = r.status;
      $("result-receipt").textContent = String(r.receipt_no).padStart(6, "0");
      $("result-ref").textContent = r.topup_id;
      $("result-uncertain").hidden = !r.uncertain;
      $("result-uncertain").textContent = r.uncertain
        ? r.uncertain + " note(s) are under review and will be settled by staff."
        : "";
    }
    $("oos-reasons").textContent = (v.reasons || []).join(", ");
    const m = $("message");
    m.textContent = v.message || "";
    m.className = v.message_kind === "error" ? "error" : "";
  }

  async function press(path) {
    try {
      const res = await fetch(path, { method: "POST" });
      if (!res.ok) {
        const body = await res.json().catch(() => ({}));
        console.warn(path, res.status, body.error);
      }
    } catch (e) {
      console.warn(path, e);
    }
  }
  $("finish").addEventListener("click", () => press("/api/finish"));
  $("cancel").addEventListener("click", () => press("/api/cancel"));
  $("done").addEventListener("click", () => press("/api/cancel"));

  function connect() {
    const es = new EventSource("/api/events");
    es.addEventListener("view", (ev) => {
      $("conn").hidden = true;
      render(JSON.parse(ev.data));
    });
    es.onerror = () => { $("conn").hidden = false; };
  }
  fetch("/api/state").then((r) => r.json()).then(render).catch(() => {});
  connect();
})();
