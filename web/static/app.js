// tokenbank purchase page: Firebase Auth over its REST API, then tokenbank's own API.
// No framework, no inline script (the Content-Security-Policy allows only this file).
"use strict";

const cfg = document.body.dataset;
const STORE = "tokenbank.auth";

function $(id) { return document.getElementById(id); }
function show(el, on = true) { if (el) el.hidden = !on; }
function say(el, text) { if (el) { el.textContent = text; show(el, !!text); } }

function session() {
  try { return JSON.parse(localStorage.getItem(STORE)) || null; } catch { return null; }
}
function saveSession(s) { localStorage.setItem(STORE, JSON.stringify(s)); }
function signOut() { localStorage.removeItem(STORE); location.assign("/buy-tokens"); }

async function authCall(path, body) {
  const base = path.startsWith("token") ? cfg.tokenBase : cfg.authBase;
  const res = await fetch(`${base}/${path}?key=${encodeURIComponent(cfg.apiKey)}`, {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
  });
  const data = await res.json().catch(() => ({}));
  if (!res.ok) {
    const code = (data.error && data.error.message) || `HTTP ${res.status}`;
    throw new Error(friendlyAuthError(code));
  }
  return data;
}

function friendlyAuthError(code) {
  if (code.startsWith("EMAIL_EXISTS")) return "An account with this email already exists. Sign in instead.";
  if (code.startsWith("EMAIL_NOT_FOUND") || code.startsWith("INVALID_PASSWORD") ||
      code.startsWith("INVALID_LOGIN_CREDENTIALS")) return "Wrong email or password.";
  if (code.startsWith("WEAK_PASSWORD")) return "Choose a password of at least 6 characters.";
  if (code.startsWith("INVALID_EMAIL")) return "That email address does not look right.";
  return `Sign-in failed (${code}).`;
}

async function signIn(email, password, create) {
  const data = await authCall(create ? "accounts:signUp" : "accounts:signInWithPassword",
                              { email, password, returnSecureToken: true });
  saveSession({ idToken: data.idToken, refreshToken: data.refreshToken, uid: data.localId, email: data.email,
                expiresAt: Date.now() + Number(data.expiresIn || 3600) * 1000 });
}

async function refresh() {
  const s = session();
  if (!s || !s.refreshToken) return false;
  try {
    const data = await authCall("token", { grant_type: "refresh_token", refresh_token: s.refreshToken });
    saveSession({ ...s, idToken: data.id_token, refreshToken: data.refresh_token,
                  expiresAt: Date.now() + Number(data.expires_in || 3600) * 1000 });
    return true;
  } catch { return false; }
}

async function api(path, options = {}, retried = false) {
  const s = session();
  if (s && s.expiresAt - Date.now() < 60000 && !retried) await refresh();
  const headers = { ...(options.headers || {}), Authorization: `Bearer ${(session() || {}).idToken || ""}` };
  const res = await fetch(path, { ...options, headers });
  if (res.status === 401 && !retried && await refresh()) return api(path, options, true);
  if (res.status === 401) { localStorage.removeItem(STORE); }
  return res;
}

function count(n) { return Number(n).toLocaleString(); }

function tokens(n) { return `${count(n)} ${Math.abs(n) === 1 ? "token" : "tokens"}`; }

function when(seconds) {
  return new Date(seconds * 1000).toLocaleString(undefined, { dateStyle: "long", timeStyle: "short" });
}

function expiringItem(lot) {
  const li = document.createElement("li");
  const amount = document.createElement("strong");
  amount.textContent = tokens(lot.amount);
  const at = document.createElement("time");
  at.dateTime = new Date(lot.expiresAt * 1000).toISOString();
  at.textContent = when(lot.expiresAt);
  li.dataset.amount = String(lot.amount);
  li.dataset.expiresAt = String(lot.expiresAt);
  li.append(amount, document.createTextNode(Math.abs(lot.amount) === 1 ? " expires on " : " expire on "), at);
  return li;
}

// The wallet panel (purchase page only): balance, available, reserved by open holds, expiring lots.
function showWallet(data) {
  if (!$("wallet")) return;
  $("wallet-balance").textContent = count(data.tokenBalance);
  $("available").textContent = count(data.available ?? data.tokenBalance);
  const held = Number(data.held) || 0;
  $("held").textContent = count(held);
  show($("figure-held"), held > 0);
  const soon = [...(data.expiring || [])].sort((a, b) => a.expiresAt - b.expiresAt);
  $("expiring").replaceChildren(...soon.map(expiringItem));
  show($("expiring-box"), soon.length > 0);
  showNotices(data);
  say($("wallet-error"), "");
  $("wallet").removeAttribute("aria-busy");
}

let balanceAsked = 0; // the latest request wins: an older answer arriving late is dropped

async function showBalance() {
  const asked = ++balanceAsked;
  let res;
  try { res = await api("/api/tokens/balance"); } catch { res = null; }
  if (asked !== balanceAsked) return null;
  if (!res || !res.ok) {
    if ($("wallet") && $("wallet").hasAttribute("aria-busy")) {
      say($("wallet-error"), "Your balance could not be loaded. Please reload the page.");
      $("wallet").removeAttribute("aria-busy");
    }
    return null;
  }
  const data = await res.json();
  if (asked !== balanceAsked) return null;
  say($("balance"), count(data.tokenBalance));
  show($("balance-box"));
  showWallet(data);
  return data.tokenBalance;
}

const WALLET_EVERY_MS = 30000;

function keepWalletFresh() {
  // Holds end and tokens expire while the page is open: refresh the figures every 30 s while the
  // page is visible, and at once when the person comes back to it.
  setInterval(() => { if (document.visibilityState === "visible") showBalance(); }, WALLET_EVERY_MS);
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible") showBalance();
  });
}

function showIdentity() {
  const s = session();
  if (!s) return false;
  say($("who"), s.email || s.uid);
  show($("sign-out"));
  return true;
}

async function startCheckout(item, button, errorBox) {
  say(errorBox, "");
  button.disabled = true;
  try {
    const res = await api("/api/checkout", {
      method: "POST",
      headers: { "Content-Type": "application/json", "Idempotency-Key": crypto.randomUUID() },
      body: JSON.stringify(item),
    });
    const data = await res.json().catch(() => ({}));
    if (res.ok && data.url) { location.assign(data.url); return; }
    if (res.status === 401) { say(errorBox, "Please sign in again."); setTimeout(signOut, 1500); return; }
    say(errorBox, data.message || `Checkout failed (HTTP ${res.status}).`);
  } catch (err) {
    say(errorBox, "Network error; nothing was charged. Please try again.");
  } finally {
    button.disabled = false;
  }
}

function buy(packageId, button) { return startCheckout({ packageId }, button, $("buy-error")); }

async function buyPage() {
  if (!showIdentity()) {
    show($("signin"));
    const form = $("signin-form");
    const submit = async (create) => {
      say($("signin-error"), "");
      if (!form.reportValidity()) return;
      try { await signIn($("email").value.trim(), $("password").value, create); location.reload(); }
      catch (err) { say($("signin-error"), err.message); }
    };
    form.addEventListener("submit", (ev) => { ev.preventDefault(); submit(false); });
    $("signup-button").addEventListener("click", () => submit(true));
    return;
  }
  for (const button of document.querySelectorAll("button.buy")) {
    button.addEventListener("click", () => buy(button.dataset.package, button));
  }
  planButtons();
  historyButtons();
  const figures = showBalance();
  showHistory();
  loadPlans().then(afterPortal);
  keepWalletFresh();
  // The shop appears with its figures in place (no jump when they land), or after 1.5 s regardless.
  await Promise.race([figures.catch(() => null), new Promise((r) => setTimeout(r, 1500))]);
  show($("shop"));
}

const STATUS_TEXT = {
  pending: "Your payment is processing. Tokens arrive as soon as the bank confirms it.",
  rejected: "This purchase could not be matched to a package. Nothing was credited; support has been alerted.",
  failed: "The payment failed. Nothing was charged.",
  expired: "This checkout expired. Nothing was charged.",
};

async function successPage() {
  const sid = cfg.sessionId;
  const status = $("status");
  if (!showIdentity()) { say(status, "Payment received."); show($("signin-hint")); return; }
  const planCheckout = await api(`/api/plan-checkouts/${encodeURIComponent(sid)}`);
  if (planCheckout.ok) { await planSuccess(sid, await planCheckout.json()); return; }
  await api(`/api/purchases/${encodeURIComponent(sid)}/confirm`, { method: "POST" });
  const started = Date.now();
  let lastConfirm = started;
  while (Date.now() - started < 120000) {
    const res = await api(`/api/purchases/${encodeURIComponent(sid)}`);
    if (res.ok) {
      const p = await res.json();
      status.dataset.status = p.status;
      if (p.status === "fulfilled") {
        say(status, `${p.tokens} tokens added. Your balance is ${p.balance} tokens.`);
        say($("balance"), count(p.balance));
        show($("balance-box"));
        return;
      }
      if (STATUS_TEXT[p.status]) say(status, STATUS_TEXT[p.status]);
      if (p.status !== "pending") return;
    } else if (res.status === 401) {
      say(status, "Please sign in again to see this purchase."); return;
    }
    if (Date.now() - lastConfirm > 5000) {
      lastConfirm = Date.now();
      await api(`/api/purchases/${encodeURIComponent(sid)}/confirm`, { method: "POST" });
    }
    await new Promise((r) => setTimeout(r, 500));
  }
  say(status, "Still confirming. Your tokens will appear shortly; you can leave this page.");
}

$("sign-out") && $("sign-out").addEventListener("click", signOut);
if (cfg.page === "buy") buyPage();
else if (cfg.page === "success") successPage();
else showIdentity() && showBalance();
