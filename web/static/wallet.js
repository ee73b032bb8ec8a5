// tokenbank wallet: the history with its running balance (paged), the CSV export, purchase receipts,
// and the frozen / debt notices. Loaded before app.js, whose helpers ($, say, show, api, count, tokens)
// these functions call when they run.
"use strict";

const HISTORY_PAGE = 10;
let historyCursor = null;

function shortWhen(iso) {
  const at = new Date(iso);
  return Number.isNaN(at.getTime()) ? "" :
    at.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
}

function signed(n) { return n > 0 ? `+${count(n)}` : `\u2212${count(Math.abs(n))}`; }

function historyRow(e) {
  const tr = document.createElement("tr");
  tr.id = `entry-${e.id}`;
  tr.tabIndex = -1;
  tr.dataset.type = e.type;
  tr.dataset.amount = String(e.amount);
  tr.dataset.balanceAfter = String(e.balanceAfter);
  const date = document.createElement("td");
  if (e.createdAt) {
    const t = document.createElement("time");
    t.dateTime = e.createdAt;
    t.textContent = shortWhen(e.createdAt);
    date.append(t);
  }
  const what = document.createElement("td");
  what.className = "what";
  const label = document.createElement("span");
  label.className = "label";
  label.textContent = e.label || e.type;
  what.append(label);
  if (e.reason) {
    const reason = document.createElement("span");
    reason.className = "reason";
    reason.textContent = e.reason;
    what.append(reason);
  }
  if (e.receiptFor) {
    const button = document.createElement("button");
    button.type = "button";
    button.className = "link receipt";
    button.dataset.payment = e.receiptFor;
    button.textContent = "Receipt";
    button.setAttribute("aria-label", `Receipt for ${e.label || "this purchase"}`);
    what.append(button);
  }
  const change = document.createElement("td");
  change.className = `num ${e.amount > 0 ? "credit" : "debit"}`;
  change.textContent = signed(e.amount);
  const after = document.createElement("td");
  after.className = "num balance-after";
  after.textContent = count(e.balanceAfter);
  tr.setAttribute("role", "row"); // the phone layout restyles the table; the roles keep it one for screen readers
  for (const cell of [date, what, change, after]) cell.setAttribute("role", "cell");
  tr.append(date, what, change, after);
  return tr;
}

async function showHistory(more = false) {
  const box = $("history");
  if (!box) return;
  const button = $("history-more");
  button.disabled = true;
  say($("history-error"), "");
  const query = new URLSearchParams({ limit: String(HISTORY_PAGE) });
  if (more && historyCursor) query.set("cursor", historyCursor);
  let res;
  try { res = await api(`/api/tokens/transactions?${query}`); } catch { res = null; }
  button.disabled = false;
  box.removeAttribute("aria-busy");
  if (!res || !res.ok) {
    say($("history-error"), "Your history could not be loaded. Please try again.");
    return;
  }
  const data = await res.json();
  const rows = data.entries.map(historyRow);
  const body = $("history-rows");
  if (more) body.append(...rows); else body.replaceChildren(...rows);
  historyCursor = data.nextCursor || null;
  show(button, !!historyCursor);
  show($("history-empty"), body.children.length === 0);
  show($("history-table"), body.children.length > 0);
  if (more && rows.length) rows[0].focus(); // the keyboard carries on from the first new entry
}

function filename(res) {
  const match = /filename="([^"]+)"/.exec(res.headers.get("Content-Disposition") || "");
  return match ? match[1] : "tokenbank-history.csv";
}

async function downloadCsv(button) {
  say($("history-error"), "");
  button.disabled = true;
  try {
    const res = await api("/api/tokens/transactions.csv");
    if (!res.ok) {
      const data = await res.json().catch(() => ({}));
      say($("history-error"), data.message || `The download failed (HTTP ${res.status}). Please try again.`);
      return;
    }
    const blob = await res.blob(); // the whole file, or an error if the stream broke off
    const link = document.createElement("a");
    link.href = URL.createObjectURL(blob);
    link.download = filename(res);
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(link.href), 10000);
  } catch {
    say($("history-error"), "The download was interrupted. Please try again.");
  } finally {
    button.disabled = false;
  }
}

async function openReceipt(button) {
  say($("history-error"), "");
  button.disabled = true;
  try {
    const res = await api(`/api/purchases/${encodeURIComponent(button.dataset.payment)}/receipt`);
    const data = await res.json().catch(() => ({}));
    if (!res.ok || !data.receiptUrl) {
      say($("history-error"), data.message || `The receipt could not be opened (HTTP ${res.status}).`);
      return;
    }
    // From now on a plain link: it opens the receipt again (and works if a popup blocker stopped this one).
    const link = document.createElement("a");
    link.className = "receipt";
    link.href = data.receiptUrl;
    link.target = "_blank";
    link.rel = "noopener noreferrer";
    link.textContent = "Receipt";
    link.setAttribute("aria-label", button.getAttribute("aria-label"));
    button.replaceWith(link);
    link.focus();
    window.open(data.receiptUrl, "_blank", "noopener,noreferrer");
  } catch {
    say($("history-error"), "Network error; please try again.");
  } finally {
    button.disabled = false;
  }
}

function showNotices(data) {
  if (!$("frozen-notice")) return;
  show($("frozen-notice"), !!data.frozen);
  if (data.frozen && data.frozenSince) {
    $("frozen-title").textContent = "Spending is paused while a payment dispute is reviewed " +
      `(since ${new Date(data.frozenSince * 1000).toLocaleDateString(undefined, { dateStyle: "long" })})`;
  }
  const debt = Number(data.debt) || 0;
  $("debt-notice").dataset.debt = String(debt);
  $("debt-title").textContent = `You owe ${tokens(debt)}`;
  show($("debt-notice"), debt > 0);
}

function historyButtons() {
  if (!$("history")) return;
  $("history-more").addEventListener("click", () => showHistory(true));
  $("download-csv").addEventListener("click", (ev) => downloadCsv(ev.currentTarget));
  $("history-rows").addEventListener("click", (ev) => {
    const button = ev.target.closest("button.receipt");
    if (button) openReceipt(button);
  });
}
