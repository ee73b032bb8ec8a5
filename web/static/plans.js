// tokenbank token plans: the user's subscription (the mirror Stripe's webhooks keep), Subscribe,
// Cancel (confirmed in the page), and a plan checkout's success page. Loaded before app.js, whose
// helpers ($, say, show, api, startCheckout, signOut) these functions call when they run.
"use strict";

let plan = null; // the last subscription the API answered

function day(seconds) {
  return new Date(seconds * 1000).toLocaleDateString(undefined, { year: "numeric", month: "long", day: "numeric" });
}

function money(cents, currency) {
  const amount = (cents / 100).toFixed(2);
  return currency === "usd" ? `$${amount}` : `${amount} ${String(currency || "").toUpperCase()}`;
}

function planText(s) {
  const end = s.currentPeriodEnd ? day(s.currentPeriodEnd) : null;
  const more = s.tokensPerPeriod ? `${s.tokensPerPeriod} more tokens` : "more tokens";
  if (!s.live) return "Your previous plan has ended. You can subscribe again at any time.";
  if (s.cancelAtPeriodEnd) {
    return `Canceled: your plan ends on ${end || "the last day of this period"}. ` +
           "You will not be charged again, and you keep all your tokens.";
  }
  switch (s.status) {
    case "active":
      return `Your plan is active. It renews on ${end || "the next billing date"}` +
             (s.priceCents ? ` for ${money(s.priceCents, s.currency)}, with ${more}.` : ".");
    case "trialing": return `Your plan is in its trial. The first payment is on ${end || "the end of the trial"}.`;
    case "past_due":
      return "Your last plan payment did not go through. Stripe will try your card again; " +
             "new tokens arrive once it is paid.";
    case "incomplete": return "Your plan is waiting for its first payment to go through.";
    case "unpaid": return "Your plan's payments failed, so it gives no new tokens. You can cancel it.";
    case "paused": return "Your plan is paused: no charges and no new tokens for now.";
    default: return `Your plan's status is ${s.status}.`;
  }
}

function renderPlans(sub) {
  plan = sub || null;
  const live = plan && plan.live ? plan : null;
  const cards = [...document.querySelectorAll("li.plan")];
  const mine = live ? (cards.find((c) => c.dataset.plan === live.plan) || cards[0]) : null;
  for (const card of cards) {
    const id = card.dataset.plan;
    const status = $(`plan-status-${id}`);
    const subscribe = $(`subscribe-${id}`);
    show($(`confirm-${id}`), false);
    card.classList.toggle("current", card === mine);
    const managed = card === mine || (!live && !!plan && plan.plan === id); // Stripe's portal knows this plan
    show($(`portal-${id}`), managed);
    show($(`portal-note-${id}`), managed);
    if (card === mine) {
      status.dataset.status = live.cancelAtPeriodEnd ? "canceling" : live.status;
      say(status, planText(live));
      show(subscribe, false);
      show($(`cancel-${id}`), !live.cancelAtPeriodEnd);
    } else {
      status.dataset.status = live ? "other" : (plan ? "ended" : "none");
      say(status, live ? "You already have a plan; cancel it before choosing another."
                       : (plan && plan.plan === id ? planText(plan) : ""));
      show(subscribe, !live);
      subscribe.disabled = false;
      show($(`cancel-${id}`), false);
    }
  }
}

async function loadPlans() {
  const cards = document.querySelectorAll("li.plan");
  if (!cards.length) return;
  const res = await api("/api/subscription").catch(() => null);
  if (res && res.ok) { renderPlans((await res.json()).subscription); return; }
  for (const card of cards) {
    const status = $(`plan-status-${card.dataset.plan}`);
    status.dataset.status = "unknown";
    say(status, "Your plan could not be loaded. Please reload the page.");
  }
}

function askCancel(id) {
  say($(`plan-error-${id}`), "");
  const end = plan && plan.currentPeriodEnd ? day(plan.currentPeriodEnd) : "the end of this period";
  const name = $(`plan-${id}`).dataset.planName;
  say($(`confirm-text-${id}`), `Cancel your ${name} plan? It stays active until ${end}, then ends: ` +
      "you will not be charged again, and you keep all your tokens.");
  show($(`cancel-${id}`), false);
  show($(`confirm-${id}`));
  $(`confirm-text-${id}`).focus();
}

function keepPlan(id) {
  show($(`confirm-${id}`), false);
  show($(`cancel-${id}`));
  $(`cancel-${id}`).focus();
}

async function cancelPlan(id, button) {
  const error = $(`plan-error-${id}`);
  say(error, "");
  button.disabled = true;
  try {
    const res = await api("/api/subscription/cancel", {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ atPeriodEnd: true }),
    });
    const data = await res.json().catch(() => ({}));
    if (res.status === 401) { say(error, "Please sign in again."); setTimeout(signOut, 1500); return; }
    if (res.ok || res.status === 409 || res.status === 404) {
      if (res.ok || res.status === 409) renderPlans(data.subscription); else await loadPlans();
      if (!res.ok) say(error, data.message || "Nothing changed.");
      $(`plan-status-${id}`).focus();
      return;
    }
    say(error, data.message || `Cancelling failed (HTTP ${res.status}); nothing changed. Please try again.`);
  } catch (err) {
    say(error, "Network error; nothing changed. Please try again.");
  } finally {
    button.disabled = false;
  }
}

async function openPortal(id, button) {
  // Stripe's customer portal for this account's plan: invoices, and cancelling or renewing it there.
  const error = $(`plan-error-${id}`);
  say(error, "");
  button.disabled = true;
  try {
    const res = await api("/api/billing-portal", { method: "POST" });
    const data = await res.json().catch(() => ({}));
    if (res.ok && data.url) { location.assign(data.url); return; }
    if (res.status === 401) { say(error, "Please sign in again."); setTimeout(signOut, 1500); return; }
    say(error, data.message || `The billing portal could not be opened (HTTP ${res.status}). Please try again.`);
  } catch (err) {
    say(error, "Network error; please try again.");
  } finally {
    button.disabled = false;
  }
}

async function afterPortal() {
  // Back from Stripe's portal: a change made there reaches the plan through Stripe's webhook within
  // moments, so look again a few times (and drop the marker from the address).
  const params = new URLSearchParams(location.search);
  if (params.get("from") !== "billing-portal") return;
  history.replaceState(null, "", location.pathname);
  const seen = JSON.stringify(plan);
  for (let i = 0; i < 10; i++) {
    await new Promise((r) => setTimeout(r, 1500));
    const res = await api("/api/subscription").catch(() => null);
    if (!res || !res.ok) continue;
    const sub = (await res.json()).subscription;
    if (JSON.stringify(sub) !== seen) { renderPlans(sub); return; }
  }
}

function planButtons() {
  for (const card of document.querySelectorAll("li.plan")) {
    const id = card.dataset.plan;
    $(`subscribe-${id}`).addEventListener("click", (ev) =>
      startCheckout({ planId: id }, ev.currentTarget, $(`plan-error-${id}`)));
    $(`cancel-${id}`).addEventListener("click", () => askCancel(id));
    $(`keep-${id}`).addEventListener("click", () => keepPlan(id));
    $(`confirm-cancel-${id}`).addEventListener("click", (ev) => cancelPlan(id, ev.currentTarget));
    $(`portal-${id}`).addEventListener("click", (ev) => openPortal(id, ev.currentTarget));
    $(`confirm-${id}`).addEventListener("keydown", (ev) => { if (ev.key === "Escape") keepPlan(id); });
  }
}

async function planSuccess(sid, p) {
  // A plan's tokens come with its first paid invoice (invoice.paid), not with the session.
  const status = $("status");
  const name = p.planName ? `${p.planName} plan` : "plan";
  const started = Date.now();
  while (Date.now() - started < 120000) {
    if (p.credited) {
      status.dataset.status = "fulfilled";
      say(status, `Your ${name} is active: ${p.tokens} tokens added. Your balance is ${p.balance} tokens.`);
      say($("balance"), count(p.balance));
      show($("balance-box"));
      return;
    }
    say(status, `Setting up your ${name}. Your tokens arrive as soon as Stripe confirms the first payment.`);
    await new Promise((r) => setTimeout(r, 1000));
    const res = await api(`/api/plan-checkouts/${encodeURIComponent(sid)}`);
    if (res.status === 401) { say(status, "Please sign in again to see your plan."); return; }
    if (res.ok) p = await res.json();
  }
  say(status, "Still confirming. Your plan's tokens will appear shortly; you can leave this page.");
}
