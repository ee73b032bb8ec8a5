// tokenbank support console. The pages are rendered on the server; this file only signs in
// (Firebase Auth's REST API, as the purchase page does, then one POST that turns the fresh ID
// token into the console's session cookie) and keeps confirmation forms from being sent twice.
// No inline script anywhere: the Content-Security-Policy allows only files of this site.
"use strict";

(function () {
  const cfg = document.body.dataset;
  const $ = (id) => document.getElementById(id);

  function say(el, text) { if (el) { el.textContent = text; el.hidden = !text; } }

  function friendly(code) {
    if (/^(EMAIL_NOT_FOUND|INVALID_PASSWORD|INVALID_LOGIN_CREDENTIALS)/.test(code)) return "Wrong email or password.";
    if (/^USER_DISABLED/.test(code)) return "This account is disabled.";
    if (/^TOO_MANY_ATTEMPTS/.test(code)) return "Too many attempts. Wait a moment and try again.";
    if (/^INVALID_EMAIL/.test(code)) return "That email address does not look right.";
    return `Sign-in failed (${code}).`;
  }

  async function firebaseSignIn(email, password) {
    const res = await fetch(`${cfg.authBase}/accounts:signInWithPassword?key=${encodeURIComponent(cfg.apiKey)}`, {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ email, password, returnSecureToken: true }),
    });
    const data = await res.json().catch(() => ({}));
    if (!res.ok) throw new Error(friendly((data.error && data.error.message) || `HTTP ${res.status}`));
    return data.idToken;
  }

  async function openSession(idToken) {
    const res = await fetch("/admin/session", {
      method: "POST", credentials: "same-origin", headers: { Authorization: `Bearer ${idToken}` },
    });
    const data = await res.json().catch(() => ({}));
    if (!res.ok) throw new Error(data.message || `Sign-in failed (HTTP ${res.status}).`);
    return data;
  }

  const form = $("signin-form");
  if (form) {
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      say($("signin-error"), "");
      const button = $("signin-button");
      button.disabled = true;
      try {
        const session = await openSession(await firebaseSignIn($("email").value.trim(), $("password").value));
        if (!session.support) {
          say($("signin-error"), `${session.email || "This account"} has no support access.`);
          return;
        }
        if (location.pathname === "/admin/signin") location.assign("/admin");
        else location.reload();
      } catch (err) {
        say($("signin-error"), err.message || "Sign-in failed.");
      } finally {
        button.disabled = false;
      }
    });
  }

  // A confirmation is sent once: the button is disabled as the form goes (the server would
  // answer a second one from the operations log anyway).
  const confirmForm = $("confirm-form");
  if (confirmForm) {
    $("confirm-title").focus();
    confirmForm.addEventListener("submit", () => { $("confirm-button").disabled = true; });
  }
  const done = $("done-title");
  if (done) done.focus();
}());
