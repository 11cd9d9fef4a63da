// The API-keys page (keyward::axum::admin::page_router). Plain JavaScript, no build step.
//
// Rules this file keeps (core/tests/admin_page.rs checks some of them):
// - data from the API reaches the document through textContent and DOM nodes only;
// - a new key lives in one place: the value of the read-only #secret-value input, which is
//   emptied and removed when its dialog closes; it is never stored, logged, put in the URL
//   or in any attribute;
// - the CSRF token from /session lives in a variable and goes out as X-CSRF-Token on every
//   POST, PATCH and DELETE;
// - the Activity section shows GET /audit (the tenant's audit trail), newest first, as text.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);

  const api = (document.body.dataset.api || "").replace(/\/+$/, "");
  const loginUrl = document.body.dataset.login || "";

  const el = {
    status: $("status"),
    whoami: $("whoami"),
    signin: $("signin"),
    signinText: $("signin-text"),
    signinLink: $("signin-link"),
    section: $("keys-section"),
    body: $("keys-body"),
    empty: $("keys-empty"),
    loadMore: $("load-more"),
    filterStatus: $("filter-status"),
    filterEnvironment: $("filter-environment"),
    createKey: $("create-key"),
    createDialog: $("create-dialog"),
    createForm: $("create-form"),
    keyName: $("key-name"),
    scopeList: $("scope-list"),
    environmentField: $("environment-field"),
    keyEnvironment: $("key-environment"),
    keyExpiry: $("key-expiry"),
    createError: $("create-error"),
    createConfirm: $("create-confirm"),
    secretDialog: $("secret-dialog"),
    secretField: $("secret-field"),
    secretReplaces: $("secret-replaces"),
    copySecret: $("copy-secret"),
    copyStatus: $("copy-status"),
    closeSecret: $("close-secret"),
    confirmDialog: $("confirm-dialog"),
    confirmText: $("confirm-text"),
    confirmError: $("confirm-error"),
    confirmYes: $("confirm-yes"),
    rotateDialog: $("rotate-dialog"),
    rotateForm: $("rotate-form"),
    rotateText: $("rotate-text"),
    rotateGrace: $("rotate-grace"),
    rotateError: $("rotate-error"),
    rotateConfirm: $("rotate-confirm"),
    activity: $("activity-section"),
    activityBody: $("activity-body"),
    activityEmpty: $("activity-empty"),
    activityMore: $("activity-more"),
    activityRefresh: $("activity-refresh"),
  };

  let csrfToken = null; // from GET /session; only ever sent as a header
  let nextCursor = null; // X-Next-Cursor of the last page loaded
  let listGeneration = 0; // answers to an older list request are dropped
  let target = null; // the KeyInfo the confirm or rotate dialog acts on
  const rows = new Map(); // key id -> <tr>
  const environments = new Set();
  const returnFocus = new Map(); // dialog -> the element to focus when it closes
  let activityBefore = null; // the "next" of the last activity page loaded
  let activityGeneration = 0; // answers to an older activity request are dropped

  // ---- talking to the API ----------------------------------------------------------------

  class ApiError extends Error {
    constructor(status, code, message) {
      super(message);
      this.status = status;
      this.code = code;
    }
  }

  async function call(method, path, body) {
    const headers = { Accept: "application/json" };
    const init = { method, headers, credentials: "same-origin", cache: "no-store" };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    if (method !== "GET" && method !== "HEAD" && csrfToken !== null) {
      headers["X-CSRF-Token"] = csrfToken;
    }
    let response;
    try {
      response = await fetch(api + path, init);
    } catch (_) {
      throw new ApiError(0, "network", "The server could not be reached. Check your connection and try again.");
    }
    let data = null;
    if ((response.headers.get("Content-Type") || "").includes("json")) {
      try {
        data = await response.json();
      } catch (_) {
        data = null;
      }
    }
    if (!response.ok) {
      const code = data && typeof data.error === "string" ? data.error : "http_" + response.status;
      const message = data && typeof data.message === "string" && data.message
        ? data.message
        : "The server answered " + response.status + ". Try again later.";
      if (response.status === 401) {
        showSignIn(message);
      }
      throw new ApiError(response.status, code, message);
    }
    return { data, response };
  }

  const keyPath = (id) => "/" + encodeURIComponent(id) + "/";

  // ---- small DOM helpers -----------------------------------------------------------------

  function say(text) {
    el.status.textContent = text;
  }

  function node(tag, className, text) {
    const n = document.createElement(tag);
    if (className) n.className = className;
    if (text !== undefined) n.textContent = text;
    return n;
  }

  function formatTime(text) {
    const d = new Date(text);
    if (Number.isNaN(d.getTime())) return String(text);
    return d.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
  }

  function timeNode(text, none) {
    if (typeof text !== "string" || !text) return document.createTextNode(none);
    const t = node("time", "", formatTime(text));
    t.dateTime = text;
    return t;
  }

  function errorMessage(e) {
    return e instanceof ApiError ? e.message : "Something went wrong. Try again.";
  }

  // ---- dialogs ---------------------------------------------------------------------------

  // Opens `dialog` modally, focuses `focus` in it; `back` gets the focus when it closes.
  function openDialog(dialog, focus, back) {
    returnFocus.set(dialog, back || document.activeElement);
    if (!dialog.open) dialog.showModal();
    if (focus) focus.focus();
  }

  function closeDialog(dialog) {
    if (dialog.open) dialog.close();
  }

  for (const dialog of [el.createDialog, el.confirmDialog, el.rotateDialog, el.secretDialog]) {
    dialog.addEventListener("close", () => {
      const back = returnFocus.get(dialog);
      returnFocus.delete(dialog);
      if (dialog === el.secretDialog) forgetSecret();
      // Another dialog opened meanwhile (create, then the new key): it keeps the focus.
      if (document.querySelector("dialog[open]")) return;
      if (back && back.isConnected && typeof back.focus === "function") {
        back.focus();
      } else {
        el.createKey.focus();
      }
    });
    for (const cancel of dialog.querySelectorAll("button.cancel")) {
      cancel.addEventListener("click", () => closeDialog(dialog));
    }
  }

  // ---- signing in ------------------------------------------------------------------------

  function safeLogin(url) {
    if (!url) return null;
    try {
      const u = new URL(url, document.baseURI);
      return u.protocol === "https:" || u.protocol === "http:" ? u.href : null;
    } catch (_) {
      return null;
    }
  }

  function showSignIn(message) {
    for (const dialog of [el.createDialog, el.confirmDialog, el.rotateDialog]) closeDialog(dialog);
    el.section.hidden = true;
    el.activity.hidden = true;
    el.activityBody.replaceChildren();
    el.signin.hidden = false;
    el.signinText.textContent = message || "You are not signed in, or your session has ended.";
    const href = safeLogin(loginUrl);
    if (href) {
      el.signinLink.href = href;
      el.signinLink.hidden = false;
    }
    say("Sign in to manage API keys.");
  }

  // ---- the table -------------------------------------------------------------------------

  function statusText(info) {
    if (info.status === "revoked") return "Revoked";
    if (info.status === "expired") return "Expired";
    if (info.rotated_to) {
      return info.expires_at ? "Rotated (grace until " + formatTime(info.expires_at) + ")" : "Rotated";
    }
    if (info.status === "active") return "Active";
    return String(info.status);
  }

  function renderRow(info) {
    const tr = document.createElement("tr");
    tr.dataset.keyId = info.id;
    tr.dataset.status = info.rotated_to && info.status === "active" ? "rotated" : info.status;

    const masked = node("td", "masked");
    masked.append(node("code", "", info.masked));
    tr.append(masked);
    tr.append(node("td", "name", info.name || "(no name)"));
    const scopes = Array.isArray(info.scopes) ? info.scopes : [];
    tr.append(node("td", "scopes", scopes.length ? scopes.join(", ") : "none"));
    tr.append(node("td", "environment", info.environment));
    const created = node("td", "created");
    created.append(timeNode(info.created_at, "—"));
    tr.append(created);
    const lastUsed = node("td", "last-used");
    lastUsed.append(timeNode(info.last_used_at, "Never"));
    tr.append(lastUsed);
    const expires = node("td", "expires");
    expires.append(timeNode(info.expires_at, "Never"));
    tr.append(expires);
    tr.append(node("td", "status", statusText(info)));

    const actions = node("td", "row-actions");
    const usable = info.status === "active";
    const rotate = node("button", "rotate", "Rotate");
    rotate.type = "button";
    rotate.setAttribute("aria-label", "Rotate key " + (info.name || info.masked));
    rotate.disabled = !usable || Boolean(info.rotated_to);
    rotate.addEventListener("click", () => askRotate(info, rotate));
    const revoke = node("button", "revoke", "Revoke");
    revoke.type = "button";
    revoke.setAttribute("aria-label", "Revoke key " + (info.name || info.masked));
    revoke.disabled = info.status === "revoked";
    revoke.addEventListener("click", () => askRevoke(info, revoke));
    actions.append(rotate, " ", revoke);
    tr.append(actions);
    return tr;
  }

  function showRow(info, atTop) {
    const tr = renderRow(info);
    const old = rows.get(info.id);
    if (old) {
      old.replaceWith(tr);
    } else if (atTop) {
      el.body.prepend(tr);
    } else {
      el.body.append(tr);
    }
    rows.set(info.id, tr);
    noteEnvironment(info.environment);
    el.empty.hidden = rows.size > 0;
    return tr;
  }

  function noteEnvironment(env) {
    if (typeof env !== "string" || !env || environments.has(env)) return;
    environments.add(env);
    const option = node("option", "", env);
    option.value = env;
    el.filterEnvironment.append(option);
  }

  async function loadKeys(reset) {
    const generation = reset ? ++listGeneration : listGeneration;
    const query = new URLSearchParams();
    if (el.filterStatus.value) query.set("status", el.filterStatus.value);
    if (el.filterEnvironment.value) query.set("environment", el.filterEnvironment.value);
    if (!reset && nextCursor) query.set("after", nextCursor);
    const qs = query.toString();
    el.loadMore.disabled = true;
    say(reset ? "Loading keys…" : "Loading more keys…");
    try {
      const { data, response } = await call("GET", "/" + (qs ? "?" + qs : ""));
      if (generation !== listGeneration) return;
      if (reset) {
        el.body.replaceChildren();
        rows.clear();
      }
      const list = Array.isArray(data) ? data : [];
      for (const info of list) showRow(info, false);
      nextCursor = response.headers.get("X-Next-Cursor") || null;
      el.loadMore.hidden = nextCursor === null;
      el.empty.hidden = rows.size > 0;
      say(rows.size === 1 ? "1 key shown." : rows.size + " keys shown.");
    } catch (e) {
      if (generation === listGeneration) say("Could not load the keys: " + errorMessage(e));
    } finally {
      el.loadMore.disabled = false;
    }
  }

  // ---- the one-time key ------------------------------------------------------------------

  // Shows a new key once. The key is passed in and kept only as the input's value.
  function showSecret(key, replacesText, back) {
    forgetSecret();
    const input = document.createElement("input");
    input.id = "secret-value";
    input.type = "text";
    input.readOnly = true;
    input.autocomplete = "off";
    input.spellcheck = false;
    input.setAttribute("autocapitalize", "off");
    input.setAttribute("aria-describedby", "secret-warning");
    input.value = key;
    el.secretField.append(input);
    el.copyStatus.textContent = "";
    el.secretReplaces.textContent = replacesText || "";
    el.secretReplaces.hidden = !replacesText;
    openDialog(el.secretDialog, input, back);
    input.select();
  }

  // Empties and removes the key's input: after this no element holds the key.
  function forgetSecret() {
    const input = $("secret-value");
    if (input) {
      input.value = "";
      input.remove();
    }
    el.copyStatus.textContent = "";
  }

  async function copySecret() {
    const input = $("secret-value");
    if (!input) return;
    let copied = false;
    if (navigator.clipboard && window.isSecureContext) {
      try {
        await navigator.clipboard.writeText(input.value);
        copied = true;
      } catch (_) {
        copied = false;
      }
    }
    if (!copied) {
      input.focus();
      input.select();
      try {
        copied = document.execCommand("copy");
      } catch (_) {
        copied = false;
      }
    }
    el.copyStatus.textContent = "";
    el.copyStatus.textContent = copied ? "Copied" : "Could not copy: select the key and copy it yourself.";
  }

  el.copySecret.addEventListener("click", copySecret);
  el.closeSecret.addEventListener("click", () => closeDialog(el.secretDialog));

  // ---- create ----------------------------------------------------------------------------

  function buildScopeChoices(scopes) {
    for (const old of el.scopeList.querySelectorAll(".choice, .muted")) old.remove();
    if (!scopes.length) {
      el.scopeList.append(node("p", "muted", "No scopes are offered: the key will have none."));
      return;
    }
    scopes.forEach((scope, i) => {
      const id = "scope-" + i;
      const wrap = node("p", "choice");
      const box = document.createElement("input");
      box.type = "checkbox";
      box.name = "scope";
      box.value = scope;
      box.id = id;
      const label = node("label", "", scope);
      label.htmlFor = id;
      wrap.append(box, " ", label);
      el.scopeList.append(wrap);
    });
  }

  function buildEnvironmentChoice(envs) {
    el.keyEnvironment.replaceChildren();
    for (const env of envs) {
      const option = node("option", "", env);
      option.value = env;
      el.keyEnvironment.append(option);
    }
    el.environmentField.hidden = envs.length < 2;
  }

  el.createKey.addEventListener("click", () => {
    el.createForm.reset();
    el.createError.textContent = "";
    el.keyName.removeAttribute("aria-invalid");
    openDialog(el.createDialog, el.keyName, el.createKey);
  });

  el.createForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    el.createError.textContent = "";
    const name = el.keyName.value.trim();
    if (!name) {
      el.keyName.setAttribute("aria-invalid", "true");
      el.createError.textContent = "Enter a name, so that you can tell this key from the others.";
      el.keyName.focus();
      return;
    }
    el.keyName.removeAttribute("aria-invalid");
    const request = {
      name,
      scopes: Array.from(el.scopeList.querySelectorAll("input[name=scope]:checked"), (b) => b.value),
    };
    if (!el.environmentField.hidden && el.keyEnvironment.value) request.environment = el.keyEnvironment.value;
    if (el.keyExpiry.value) request.expires_in = el.keyExpiry.value;
    el.createConfirm.disabled = true;
    try {
      const { data } = await call("POST", "/", request);
      closeDialog(el.createDialog);
      // The key first: whatever fails after, it has been shown.
      showSecret(data.key, "", el.createKey);
      data.key = null;
      say("Key “" + data.info.name + "” created.");
      showRow(data.info, true);
      loadActivity(true);
    } catch (e) {
      el.createError.textContent = errorMessage(e);
      if (!el.createDialog.open) say("Creating the key: " + errorMessage(e));
      if (e instanceof ApiError && e.code === "invalid_request") el.keyName.focus();
    } finally {
      el.createConfirm.disabled = false;
    }
  });

  // ---- revoke ----------------------------------------------------------------------------

  function askRevoke(info, button) {
    target = info;
    el.confirmError.textContent = "";
    el.confirmText.textContent = "Revoke “" + (info.name || "(no name)") + "” (" + info.masked +
      ")? Requests with this key are refused from now on. This cannot be undone.";
    openDialog(el.confirmDialog, el.confirmDialog.querySelector("button.cancel"), button);
  }

  el.confirmYes.addEventListener("click", async () => {
    if (!target) return;
    const info = target;
    el.confirmYes.disabled = true;
    try {
      const { data } = await call("POST", keyPath(info.id) + "revoke/");
      target = null;
      const tr = showRow(data, false);
      // The row's buttons are disabled now: the row itself takes the focus back.
      tr.tabIndex = -1;
      returnFocus.set(el.confirmDialog, tr);
      closeDialog(el.confirmDialog);
      say("Key “" + data.name + "” revoked.");
      loadActivity(true);
    } catch (e) {
      el.confirmError.textContent = errorMessage(e);
    } finally {
      el.confirmYes.disabled = false;
    }
  });

  // ---- rotate ----------------------------------------------------------------------------

  function askRotate(info, button) {
    target = info;
    el.rotateError.textContent = "";
    el.rotateText.textContent = "Rotate “" + (info.name || "(no name)") + "” (" + info.masked +
      ")? A new key with the same name and scopes replaces it.";
    openDialog(el.rotateDialog, el.rotateGrace, button);
  }

  el.rotateForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!target) return;
    const info = target;
    el.rotateConfirm.disabled = true;
    try {
      const { data } = await call("POST", keyPath(info.id) + "rotate/", { grace: el.rotateGrace.value });
      target = null;
      closeDialog(el.rotateDialog);
      const until = data.replaces && data.replaces.expires_at;
      const replaces = until && new Date(until).getTime() > Date.now()
        ? "The old key " + info.masked + " keeps working until " + formatTime(until) + "."
        : "The old key " + info.masked + " no longer works.";
      showSecret(data.key, replaces, el.createKey);
      data.key = null;
      say("Key “" + info.name + "” rotated.");
      loadActivity(true);
      // The new key on top, the old one as it stands now; the pages loaded so far stay.
      showRow(data.info, true);
      try {
        showRow((await call("GET", keyPath(info.id))).data, false);
      } catch (_) {
        await loadKeys(true);
      }
    } catch (e) {
      el.rotateError.textContent = errorMessage(e);
      if (!el.rotateDialog.open) say("Rotating the key: " + errorMessage(e));
    } finally {
      el.rotateConfirm.disabled = false;
    }
  });

  // ---- activity (the audit trail) ---------------------------------------------------------

  const ACTIONS = {
    issued: "Created",
    updated: "Changed",
    rotated: "Rotated",
    revoked: "Revoked",
    quota_changed: "Quota changed",
    leak_reported: "Leak reported",
  };

  // What changed, as text: "name: ci; scopes: read, write". Values are shown as text only.
  function detailsText(summary) {
    if (!summary || typeof summary !== "object" || Array.isArray(summary)) return "";
    const parts = [];
    for (const [field, value] of Object.entries(summary)) {
      let shown;
      if (value === null) shown = "none";
      else if (Array.isArray(value)) shown = value.map(String).join(", ");
      else if (typeof value === "object") shown = JSON.stringify(value);
      else shown = String(value);
      parts.push(field.replace(/_/g, " ") + ": " + shown);
    }
    return parts.join("; ");
  }

  function renderActivity(entry) {
    const tr = document.createElement("tr");
    const when = node("td", "activity-at");
    when.append(timeNode(entry.at, "—"));
    tr.append(when);
    tr.append(node("td", "activity-actor", String(entry.actor || "")));
    const action = typeof entry.action === "string" ? entry.action : "";
    tr.append(node("td", "activity-action", ACTIONS[action] || action));
    tr.append(node("td", "activity-key", entry.key_id ? String(entry.key_id) : "—"));
    tr.append(node("td", "activity-details", detailsText(entry.summary)));
    return tr;
  }

  async function loadActivity(reset) {
    const generation = reset ? ++activityGeneration : activityGeneration;
    const query = new URLSearchParams({ limit: "20" });
    if (!reset && activityBefore !== null) query.set("before", String(activityBefore));
    try {
      const { data } = await call("GET", "/audit?" + query.toString());
      if (generation !== activityGeneration) return;
      if (reset) el.activityBody.replaceChildren();
      const items = data && Array.isArray(data.items) ? data.items : [];
      for (const entry of items) el.activityBody.append(renderActivity(entry));
      activityBefore = data && Number.isInteger(data.next) ? data.next : null;
      el.activityMore.hidden = activityBefore === null;
      el.activityEmpty.hidden = el.activityBody.children.length > 0;
      el.activity.hidden = false;
    } catch (e) {
      if (!(e instanceof ApiError) || e.status !== 401) say("Loading the activity: " + errorMessage(e));
    }
  }

  // ---- start -----------------------------------------------------------------------------

  el.loadMore.addEventListener("click", () => loadKeys(false));
  el.activityMore.addEventListener("click", () => loadActivity(false));
  el.activityRefresh.addEventListener("click", () => loadActivity(true));
  el.filterStatus.addEventListener("change", () => loadKeys(true));
  el.filterEnvironment.addEventListener("change", () => loadKeys(true));

  async function start() {
    say("Loading…");
    let session;
    try {
      session = (await call("GET", "/session")).data;
      if (!session || typeof session.actor !== "string") {
        throw new ApiError(0, "unexpected", "the answer of " + api + "/session is not a session (is data-api right?)");
      }
    } catch (e) {
      if (!(e instanceof ApiError) || e.status !== 401) {
        say(e instanceof ApiError && e.status === 403
          ? "You may not manage API keys here: " + e.message
          : "Could not start: " + errorMessage(e));
      }
      return;
    }
    csrfToken = typeof session.csrf_token === "string" ? session.csrf_token : null;
    const envs = Array.isArray(session.environments) ? session.environments : [];
    el.whoami.textContent = "Signed in as " + session.actor + ", project " + session.project +
      (envs.length ? " (" + envs.join(", ") + ")" : "");
    buildScopeChoices(Array.isArray(session.scopes) ? session.scopes : []);
    buildEnvironmentChoice(envs);
    for (const env of envs) noteEnvironment(env);
    el.signin.hidden = true;
    el.section.hidden = false;
    await loadKeys(true);
    await loadActivity(true);
  }

  start();
})();
