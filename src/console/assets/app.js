// The back-office console. Plain JavaScript, no build step: this file is
// served as it is, embedded in the binary. It calls the back office's JSON
// API with the session cookie and the session's CSRF token; the server
// decides what each role may do, and the page only hides what it would refuse.
"use strict";

const state = { session: null, operator: null, tenant: null };

// ---------------------------------------------------------------- helpers

/** An element: h("a", {href: "#"}, "text", child, …). Text is always text. */
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (value === true) el.setAttribute(key, "");
    else el.setAttribute(key, String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

function may(permission) {
  return !!state.session && state.session.permissions.includes(permission);
}

/** Minor units as a decimal with two places: 12345 → "123.45". */
function money(minor) {
  if (minor === null || minor === undefined) return "—";
  const negative = Number(minor) < 0;
  const digits = String(minor).replace("-", "").padStart(3, "0");
  const whole = digits.slice(0, -2).replace(/\B(?=(\d{3})+(?!\d))/g, ",");
  return (negative ? "-" : "") + whole + "." + digits.slice(-2);
}

/** "123.45" or "123" → 12345 minor units, exactly (no floating point). */
function parseMoney(text) {
  const match = /^\s*(\d{1,13})(?:\.(\d{1,2}))?\s*$/.exec(text);
  if (!match) return null;
  return Number(match[1]) * 100 + Number((match[2] || "0").padEnd(2, "0"));
}

function rtp(value) {
  return value === null || value === undefined ? "—" : (value * 100).toFixed(2) + "%";
}

function when(iso) {
  if (!iso) return "—";
  return iso.replace("T", " ").replace(/\.\d+/, "").replace("Z", " UTC");
}

function say(message, kind) {
  const status = document.getElementById("status");
  status.textContent = message || "";
  status.className = "status" + (kind ? " " + kind : "");
}

class ApiError extends Error {
  constructor(status, body) {
    super((body && body.message) || `request failed (${status})`);
    this.status = status;
    this.body = body;
  }
}

/** A JSON request to the service as the signed-in staff member. */
async function api(method, path, { body, headers } = {}) {
  const all = { Accept: "application/json", ...(headers || {}) };
  if (state.session) all["X-CSRF-Token"] = state.session.csrf_token;
  if (state.operator && !state.session?.operator) all["X-Operator"] = state.operator;
  if (body !== undefined) all["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(path, {
      method,
      headers: all,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "same-origin",
    });
  } catch (error) {
    throw new ApiError(0, { message: "the service cannot be reached; check the connection and retry" });
  }
  const text = await response.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch (error) {
    data = { message: text };
  }
  if (response.status === 401 && path !== "/console/api/sign-in") {
    state.session = null;
    showSignIn("Your session has ended: sign in again.");
    throw new ApiError(401, data);
  }
  if (!response.ok) throw new ApiError(response.status, data);
  return { status: response.status, data };
}

function errorText(error) {
  if (error instanceof ApiError) {
    if (error.status === 403 && (!error.body || error.body.code === 403))
      return error.body?.message || "your role does not allow this";
    return error.message;
  }
  return String(error.message || error);
}

function qs(params) {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) if (value !== "" && value != null) search.set(key, value);
  return search.toString();
}

function csv(rows, columns) {
  const cell = (v) => {
    const text = v === null || v === undefined ? "" : String(v);
    return /[",\n\r]/.test(text) ? '"' + text.replace(/"/g, '""') + '"' : text;
  };
  return [columns.join(","), ...rows.map((r) => columns.map((c) => cell(r[c])).join(","))].join("\r\n") + "\r\n";
}

function download(name, text) {
  const url = URL.createObjectURL(new Blob([text], { type: "text/csv;charset=utf-8" }));
  const a = h("a", { href: url, download: name });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

function table(columns, rows, { caption, empty } = {}) {
  if (!rows.length) return h("p", { class: "empty" }, empty || "Nothing to show.");
  return h(
    "div",
    { class: "table-wrap", tabindex: "0", role: "region", "aria-label": caption || "table" },
    h(
      "table",
      {},
      caption ? h("caption", {}, caption) : null,
      h("thead", {}, h("tr", {}, columns.map((c) => h("th", { scope: "col", class: c.num ? "num" : null }, c.label)))),
      h(
        "tbody",
        {},
        rows.map((row) =>
          h("tr", {}, columns.map((c) => h("td", { class: c.num ? "num" : null }, c.render ? c.render(row) : row[c.key] ?? "—"))),
        ),
      ),
    ),
  );
}

function field(label, input, hint) {
  return h("label", { class: "field" }, h("span", {}, label), input, hint ? h("small", {}, hint) : null);
}

/** A form whose submit runs `action` once at a time, with a busy state and the outcome shown. */
function actionForm(attrs, children, action) {
  const out = h("p", { class: "outcome", role: "status", "aria-live": "polite" });
  const form = h("form", { ...attrs, novalidate: true }, children, out);
  let busy = false;
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (busy) return;
    busy = true;
    const buttons = form.querySelectorAll("button");
    buttons.forEach((b) => (b.disabled = true));
    form.setAttribute("aria-busy", "true");
    out.className = "outcome";
    out.textContent = "Working…";
    try {
      const message = await action(form, event.submitter);
      out.className = "outcome ok";
      out.textContent = message || "Done.";
    } catch (error) {
      out.className = "outcome error";
      out.textContent = errorText(error);
    } finally {
      busy = false;
      form.removeAttribute("aria-busy");
      buttons.forEach((b) => (b.disabled = false));
    }
  });
  return form;
}

function main() {
  return document.getElementById("main");
}

function render(...children) {
  const m = main();
  m.replaceChildren(...children.flat());
}

function loading(what) {
  render(h("p", { class: "loading", role: "status" }, `Loading ${what}…`));
}

function failed(error) {
  render(h("p", { class: "error", role: "alert" }, errorText(error)));
}

// Shows `what` loading, then answers the data of a GET of each path (null
// for a null path); if one fails, shows why and answers null.
async function load(what, ...paths) {
  loading(what);
  try {
    return await Promise.all(paths.map((path) => (path === null ? null : api("GET", path).then((r) => r.data))));
  } catch (error) {
    failed(error);
    return null;
  }
}

// ---------------------------------------------------------------- sign-in

function showSignIn(message) {
  document.getElementById("top").hidden = true;
  applyTheme({});
  const email = h("input", { type: "email", name: "email", autocomplete: "username", required: true, id: "email" });
  const password = h("input", {
    type: "password",
    name: "password",
    autocomplete: "current-password",
    required: true,
    id: "password",
  });
  const form = actionForm(
    { class: "card sign-in", id: "sign-in" },
    [
      h("h1", {}, "Wallet console"),
      message ? h("p", { class: "notice" }, message) : null,
      field("Email", email),
      field("Password", password),
      h("button", { type: "submit", class: "primary" }, "Sign in"),
    ],
    async () => {
      const { data } = await api("POST", "/console/api/sign-in", {
        body: { email: email.value, password: password.value },
      });
      password.value = "";
      await start(data);
      return "Signed in.";
    },
  );
  render(form);
  email.focus();
}

async function signOut() {
  try {
    await api("POST", "/console/api/sign-out", { body: {} });
  } catch (error) {
    // Signed out either way.
  }
  state.session = null;
  location.hash = "";
  showSignIn("You have signed out.");
}

// ---------------------------------------------------------------- theme and frame

/** The operator's theme: each key of its `theme` map becomes the CSS variable `--key`. */
function applyTheme(theme) {
  const root = document.documentElement;
  for (const name of [...root.style]) if (name.startsWith("--")) root.style.removeProperty(name);
  for (const [key, value] of Object.entries(theme || {})) root.style.setProperty("--" + key, value);
}

async function loadTenant() {
  try {
    const response = await fetch("/v1/tenant", { headers: { "X-Operator": state.operator } });
    state.tenant = response.ok ? await response.json() : null;
  } catch (error) {
    state.tenant = null;
  }
  applyTheme(state.tenant?.theme || {});
  document.getElementById("brand").textContent = (state.tenant?.name || state.operator) + " · console";
}

const SECTIONS = [
  { hash: "#/players", label: "Players", permission: "read_players" },
  { hash: "#/reports", label: "RTP reports", permission: "read_reports" },
  { hash: "#/audit", label: "Audit trail", permission: "read_audit" },
  { hash: "#/staff", label: "Staff", permission: "manage_staff" },
  { hash: "#/operators", label: "Operators", permission: "manage_operators" },
];

function frame() {
  document.getElementById("top").hidden = false;
  const nav = document.getElementById("nav");
  nav.replaceChildren(
    ...SECTIONS.filter((s) => may(s.permission)).map((s) => h("a", { href: s.hash, "data-section": s.hash }, s.label)),
  );
  const who = state.session;
  document.getElementById("who").textContent = `${who.email} · ${who.role}${who.operator ? " · " + who.operator : " · platform"}`;
  const switcher = document.getElementById("operator-switch");
  const select = document.getElementById("operator");
  switcher.hidden = who.operators.length < 2;
  select.replaceChildren(...who.operators.map((o) => h("option", { value: o.code }, `${o.name} (${o.code})`)));
  select.value = state.operator;
}

async function start(session) {
  state.session = session;
  const codes = session.operators.map((o) => o.code);
  const remembered = sessionStorage.getItem("console.operator");
  state.operator = session.operator || (codes.includes(remembered) ? remembered : codes.includes("default") ? "default" : codes[0]);
  await loadTenant();
  frame();
  if (!location.hash || location.hash === "#/") {
    const first = SECTIONS.find((s) => may(s.permission));
    location.hash = first ? first.hash : "#/none";
  }
  route();
}

function route() {
  if (!state.session) return;
  const hash = location.hash || "#/";
  document.querySelectorAll("#nav a").forEach((a) => {
    if (hash.startsWith(a.dataset.section)) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  });
  say("");
  const [, section, ...rest] = hash.split("/");
  const arg = rest.length ? decodeURIComponent(rest.join("/")) : null;
  const views = {
    players: arg ? () => playerPage(arg) : playersPage,
    reports: reportsPage,
    audit: auditPage,
    staff: staffPage,
    operators: arg ? () => operatorPage(arg) : operatorsPage,
  };
  const view = views[section];
  const allowed = SECTIONS.find((s) => s.hash === "#/" + section);
  if (!view || !allowed || !may(allowed.permission)) {
    render(h("h1", {}, "Nothing here"), h("p", {}, "Your role has no section by this name. Choose one above."));
    return;
  }
  view();
  main().focus({ preventScroll: true });
}

// ---------------------------------------------------------------- players

function playersPage() {
  const q = h("input", { type: "search", name: "q", id: "player-q", placeholder: "user id or email", required: true });
  const results = h("div", { id: "player-results" });
  const form = actionForm({ class: "search", role: "search" }, [field("Find a player", q), h("button", { type: "submit", class: "primary" }, "Search")], async () => {
    const { data } = await api("GET", "/v1/players?" + qs({ q: q.value }));
    if (data.data.length === 1) {
      location.hash = "#/players/" + encodeURIComponent(data.data[0].user_id);
      return "Found.";
    }
    results.replaceChildren(
      table(
        [
          { label: "User id", render: (r) => h("a", { href: "#/players/" + encodeURIComponent(r.user_id) }, r.user_id) },
          { label: "Email", key: "email" },
          { label: "Currency", key: "currency" },
          { label: "Status", key: "status" },
          { label: "KYC tier", key: "kyc_tier", num: true },
        ],
        data.data,
        { caption: "Players found", empty: "No player has this user id or email." },
      ),
    );
    return `${data.data.length} found.`;
  });
  render(h("h1", {}, "Players"), form, results);
  q.focus();
}

async function playerPage(userId) {
  const path = "/v1/players/" + encodeURIComponent(userId);
  const loaded = await load("the player", path + "/account", may("lower_limits") ? path + "/limits" : null);
  if (!loaded) return;
  const [account, limits] = loaded;
  const reload = () => playerPage(userId);
  const b = account.balance;
  const summary = h(
    "section",
    { class: "card", "aria-labelledby": "player-h" },
    h("h1", { id: "player-h" }, account.user_id),
    h(
      "dl",
      { class: "facts" },
      h("div", {}, h("dt", {}, "Cash"), h("dd", { id: "balance-cash" }, money(b.cash) + " " + account.currency)),
      h("div", {}, h("dt", {}, "Bonus"), h("dd", { id: "balance-bonus" }, money(b.bonus))),
      h("div", {}, h("dt", {}, "Total"), h("dd", { id: "balance-total" }, money(b.total))),
      h("div", {}, h("dt", {}, "Status"), h("dd", { id: "player-status", class: "badge " + account.status }, account.status + (account.status_until ? " until " + when(account.status_until) : ""))),
      h("div", {}, h("dt", {}, "KYC tier"), h("dd", { id: "player-kyc" }, String(account.kyc_tier))),
      h("div", {}, h("dt", {}, "Email"), h("dd", {}, account.email || "— (created by the back office)")),
      h("div", {}, h("dt", {}, "Country"), h("dd", {}, account.country || "—")),
      h("div", {}, h("dt", {}, "Since"), h("dd", {}, when(account.created_at))),
    ),
  );
  const actions = [];
  if (may("change_status")) actions.push(statusForm(path, account, reload));
  if (may("move_money")) actions.push(moneyForm(path, account, reload));
  if (may("change_kyc")) actions.push(kycForm(path, account, reload));
  if (may("lower_limits")) actions.push(limitsCard(path, limits, reload));
  const sessions = h(
    "section",
    { class: "card" },
    h("h2", {}, "Sessions"),
    table(
      [
        { label: "Started", render: (r) => when(r.created_at) },
        { label: "Last seen", render: (r) => when(r.last_seen_at) },
        { label: "Ends", render: (r) => when(r.expires_at) },
      ],
      account.sessions,
      { caption: "Live sessions", empty: "No live session." },
    ),
  );
  const history = h("section", { class: "card wide", id: "history" }, h("h2", {}, "Transactions"));
  render(h("p", {}, h("a", { href: "#/players" }, "← Players")), summary, h("div", { class: "grid" }, actions, sessions), history);
  loadHistory(path, history, null, []);
}

async function loadHistory(path, section, cursor, previous) {
  const body = h("div", { class: "loading", role: "status" }, "Loading transactions…");
  section.replaceChildren(h("h2", {}, "Transactions"), body);
  try {
    const { data } = await api("GET", path + "/transactions?" + qs({ limit: 20, cursor }));
    const nav = h(
      "div",
      { class: "pager" },
      h("button", { type: "button", disabled: !previous.length, onclick: () => loadHistory(path, section, previous[previous.length - 1], previous.slice(0, -1)) }, "← Newer"),
      h("button", { type: "button", disabled: !data.next_cursor, onclick: () => loadHistory(path, section, data.next_cursor, [...previous, cursor]) }, "Older →"),
    );
    body.replaceWith(
      table(
        [
          { label: "When", render: (r) => when(r.created_at) },
          { label: "Kind", key: "kind" },
          { label: "Amount", num: true, render: (r) => money(r.amount) },
          { label: "Change", num: true, render: (r) => money(r.balance_change) },
          { label: "Balance after", num: true, render: (r) => money(r.balance_after) },
          { label: "Round", key: "game_id" },
          { label: "Rolled back", render: (r) => (r.rolled_back ? "yes" : "") },
        ],
        data.data,
        { caption: "Transactions, newest first", empty: "No transaction yet." },
      ),
      nav,
    );
  } catch (error) {
    body.className = "error";
    body.textContent = errorText(error);
  }
}

function statusForm(path, account, reload) {
  const blocked = account.status === "blocked";
  const target = blocked ? "active" : "blocked";
  return h(
    "section",
    { class: "card" },
    h("h2", {}, "Status"),
    actionForm({ id: "status-form" }, [h("button", { type: "submit", class: blocked ? "primary" : "danger", id: blocked ? "unblock" : "block" }, blocked ? "Unblock" : "Block")], async () => {
      if (!blocked && !confirm(`Block ${account.user_id}? Bets and deposits will be refused.`)) return "Not changed.";
      const { data } = await api("PATCH", path, { body: { status: target } });
      const message = `Status is now ${data.status}.`;
      await reload();
      say(message, "ok");
      return message;
    }),
  );
}

function moneyForm(path, account, reload) {
  const amount = h("input", { type: "text", inputmode: "decimal", name: "amount", id: "money-amount", required: true, placeholder: "0.00", autocomplete: "off" });
  // One key per rendering of the form: a double click, or a retry after a
  // timeout, repeats the same request, and the service moves money once.
  const key = crypto.randomUUID();
  const form = actionForm(
    { id: "money-form", dataset: { idempotencyKey: key } },
    [
      field(`Amount (${account.currency})`, amount, "Staff adjustment: audited, not gated by KYC or limits."),
      h("div", { class: "buttons" }, h("button", { type: "submit", class: "primary", value: "deposits", id: "deposit" }, "Deposit"), h("button", { type: "submit", value: "withdrawals", id: "withdraw" }, "Withdraw")),
    ],
    async (_, submitter) => {
      const minor = parseMoney(amount.value);
      if (!minor) throw new Error("amount: enter a positive amount such as 12.50");
      const kind = submitter && submitter.value === "withdrawals" ? "withdrawals" : "deposits";
      const { status, data } = await api("POST", `${path}/${kind}`, { body: { amount: minor }, headers: { "Idempotency-Key": key } });
      const what = kind === "deposits" ? "Deposit" : "Withdrawal";
      const message = `${what} of ${money(minor)} ${status === 201 ? "made" : "was already made"}: transaction ${data.tx_id}, balance ${money(data.balance)}.`;
      await reload();
      say(message, "ok");
      return message;
    },
  );
  return h("section", { class: "card" }, h("h2", {}, "Deposit or withdraw"), form);
}

function kycForm(path, account, reload) {
  const tier = h("select", { name: "tier", id: "kyc-tier" }, [0, 1, 2].map((t) => h("option", { value: t, selected: t === account.kyc_tier }, "Tier " + t)));
  const note = h("textarea", { name: "note", id: "kyc-note", rows: 2, required: true, maxlength: 1000 });
  return h(
    "section",
    { class: "card" },
    h("h2", {}, "KYC tier"),
    actionForm({ id: "kyc-form" }, [field("Tier", tier), field("Note (required)", note), h("button", { type: "submit", class: "primary" }, "Change tier")], async () => {
      const { data } = await api("PUT", path + "/kyc", { body: { tier: Number(tier.value), note: note.value } });
      const message = `KYC tier is now ${data.kyc_tier}.`;
      await reload();
      say(message, "ok");
      return message;
    }),
  );
}

const KINDS = ["deposit", "loss", "wager"];
const PERIODS = ["day", "week", "month"];

function limitsCard(path, limits, reload) {
  const rows = [];
  for (const kind of KINDS)
    for (const period of PERIODS) {
      const limit = limits?.[kind]?.[period];
      if (limit) rows.push({ kind, period, ...limit });
    }
  const kind = h("select", { name: "kind", id: "limit-kind" }, KINDS.map((k) => h("option", { value: k }, k)));
  const period = h("select", { name: "period", id: "limit-period" }, PERIODS.map((p) => h("option", { value: p }, p)));
  const amount = h("input", { type: "text", inputmode: "decimal", name: "amount", id: "limit-amount", required: true, placeholder: "0.00", autocomplete: "off" });
  return h(
    "section",
    { class: "card" },
    h("h2", {}, "Limits"),
    table(
      [
        { label: "Limit", render: (r) => `${r.kind} / ${r.period}` },
        { label: "Amount", num: true, render: (r) => money(r.amount) },
        { label: "Used", num: true, render: (r) => money(r.used) },
        { label: "Pending", render: (r) => (r.pending ? `${r.pending.amount === null ? "removal" : money(r.pending.amount)} at ${when(r.pending.effective_at)}` : "—") },
      ],
      rows,
      { caption: "Limits in force", empty: "No limit set." },
    ),
    actionForm(
      { id: "limit-form", class: "inline" },
      [field("Kind", kind), field("Period", period), field("New amount", amount, "Staff may set or lower a limit, never raise it."), h("button", { type: "submit", class: "primary" }, "Lower limit")],
      async () => {
        const minor = parseMoney(amount.value);
        if (minor === null) throw new Error("amount: enter an amount such as 50.00");
        await api("PUT", path + "/limits", { body: { [kind.value]: { [period.value]: minor } } });
        const message = `The ${period.value}'s ${kind.value} limit is now ${money(minor)}.`;
        await reload();
        say(message, "ok");
        return message;
      },
    ),
  );
}

// ---------------------------------------------------------------- reports

function isoHour(date) {
  return date.toISOString().slice(0, 13) + ":00";
}

function reportsPage() {
  const now = new Date();
  const to = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate(), now.getUTCHours() + 1));
  const from = new Date(to.getTime() - 24 * 3600 * 1000);
  const fromInput = h("input", { type: "datetime-local", id: "report-from", value: isoHour(from), step: 3600 });
  const toInput = h("input", { type: "datetime-local", id: "report-to", value: isoHour(to), step: 3600 });
  const bucket = h("select", { id: "report-bucket" }, h("option", { value: "hour" }, "hour"), h("option", { value: "day" }, "day"));
  const currency = h("input", { type: "text", id: "report-currency", placeholder: "all", size: 6, autocomplete: "off" });
  const results = h("div", { id: "report-results" });
  const preset = (hours, unit) =>
    h("button", { type: "button", onclick: () => {
      const end = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate(), now.getUTCHours() + 1));
      fromInput.value = isoHour(new Date(end.getTime() - hours * 3600 * 1000));
      toInput.value = isoHour(end);
      bucket.value = unit;
      form.requestSubmit();
    } }, hours >= 48 ? `${hours / 24} days` : `${hours} hours`);
  const form = actionForm(
    { class: "inline", id: "report-form" },
    [
      field("From (UTC)", fromInput),
      field("To (UTC)", toInput),
      field("Bucket", bucket),
      field("Currency", currency),
      h("button", { type: "submit", class: "primary" }, "Show"),
      h("span", { class: "presets" }, preset(24, "hour"), preset(168, "day"), preset(720, "day")),
    ],
    async () => {
      const window = {
        from: new Date(fromInput.value + ":00Z").toISOString(),
        to: new Date(toInput.value + ":00Z").toISOString(),
        currency: currency.value.trim().toUpperCase(),
      };
      results.replaceChildren(h("p", { class: "loading", role: "status" }, "Loading reports…"));
      await showReports(results, window, bucket.value);
      return "Reports for " + when(window.from) + " to " + when(window.to) + ".";
    },
  );
  render(h("h1", {}, "Return to player"), form, results);
  form.requestSubmit();
}

async function allPages(path, params, max) {
  const rows = [];
  let cursor = null;
  for (let page = 0; page < max; page++) {
    const { data } = await api("GET", path + "?" + qs({ ...params, limit: 1000, cursor }));
    rows.push(...data.data);
    cursor = data.next_cursor;
    if (!cursor) return { rows, complete: true };
  }
  return { rows, complete: false };
}

async function showReports(results, window, bucket) {
  const [casino, series, games, users] = await Promise.all([
    api("GET", "/v1/reports/rtp/casino?" + qs(window)).then((r) => r.data.data),
    api("GET", "/v1/reports/rtp/series?" + qs({ ...window, bucket })).then((r) => r.data),
    allPages("/v1/reports/rtp/games", window, 5),
    allPages("/v1/reports/rtp/users", window, 20),
  ]);
  const figures = [
    { label: "Bet", num: true, render: (r) => money(r.total_bet) },
    { label: "Won", num: true, render: (r) => money(r.total_win) },
    { label: "RTP", num: true, render: (r) => rtp(r.rtp) },
    { label: "Rounds", num: true, key: "rounds" },
    { label: "Rolled back bet", num: true, render: (r) => money(r.rolled_back_bet) },
    { label: "Rolled back win", num: true, render: (r) => money(r.rolled_back_win) },
  ];
  const money_columns = ["rounds", "total_bet", "total_win", "rolled_back_bet", "rolled_back_win", "rtp"];
  const exportButton = (name, rows, columns) =>
    h("button", { type: "button", class: "link", id: "export-" + name.replace(".csv", ""), onclick: () => download(name, csv(rows, columns)) }, "Export CSV");
  const net = (r) => Number(r.total_bet) - Number(r.total_win);
  const losers = users.rows.filter((r) => net(r) > 0).sort((a, b) => net(b) - net(a)).slice(0, 10);
  const winners = users.rows.filter((r) => net(r) < 0).sort((a, b) => net(a) - net(b)).slice(0, 10);
  const playerColumns = [
    { label: "Player", render: (r) => (may("read_players") ? h("a", { href: "#/players/" + encodeURIComponent(r.user_id) }, r.user_id) : r.user_id) },
    { label: "Currency", key: "currency" },
    { label: "Net for the casino", num: true, render: (r) => money(net(r)) },
    ...figures.slice(0, 3),
  ];
  const partial = users.complete ? null : h("p", { class: "notice" }, "Over 20,000 players were active: the top lists below count the first 20,000 by user id. The CSV export has the same rows.");
  results.replaceChildren(
    h("section", { class: "card wide" }, h("h2", {}, "Casino"), table([{ label: "Currency", key: "currency" }, { label: "Players", num: true, key: "users" }, ...figures], casino, { caption: "Casino totals per currency", empty: "No bets or wins in this window." }), casino.length ? exportButton("rtp-casino.csv", casino, ["currency", "users", ...money_columns]) : null),
    seriesCard(window, bucket, series.data, games.rows),
    games.rows.length ? h("section", { class: "card wide" }, h("h2", {}, "RTP per game"), rtpBars(games.rows)) : null,
    h("div", { class: "grid" },
      h("section", { class: "card" }, h("h2", {}, "Top players by loss"), partial, table(playerColumns, losers, { caption: "Players the casino won most from", empty: "No player lost in this window." })),
      h("section", { class: "card" }, h("h2", {}, "Top players by win"), table(playerColumns, winners, { caption: "Players who won most", empty: "No player won in this window." })),
    ),
    h("section", { class: "card wide" }, h("h2", {}, "Players"), users.rows.length ? exportButton("rtp-players.csv", users.rows, ["user_id", "currency", ...money_columns]) : null, table([{ label: "Player", key: "user_id" }, { label: "Currency", key: "currency" }, ...figures], users.rows.slice(0, 50), { caption: "Players (first 50; all in the CSV)", empty: "No player played in this window." })),
    h("section", { class: "card wide" }, h("h2", {}, "Games"), games.rows.length ? exportButton("rtp-games.csv", games.rows, ["game", "currency", ...money_columns]) : null, table([{ label: "Game", render: (r) => r.game ?? "(none)" }, { label: "Currency", key: "currency" }, ...figures], games.rows, { caption: "Games", empty: "No game was played in this window." })),
  );
}

/** The series chart, with a choice of game and its own CSV export. */
function seriesCard(window, bucket, rows, games) {
  const holder = h("div", { id: "series-chart" }, chart(rows));
  let shown = rows;
  const names = [...new Set(games.map((g) => g.game ?? ""))];
  const game = h(
    "select",
    { id: "series-game", onchange: async () => {
      holder.replaceChildren(h("p", { class: "loading", role: "status" }, "Loading the series…"));
      try {
        const params = { ...window, bucket, game: game.value === "*" ? null : game.value };
        shown = (await api("GET", "/v1/reports/rtp/series?" + qs(params))).data.data;
        holder.replaceChildren(chart(shown));
      } catch (error) {
        holder.replaceChildren(h("p", { class: "error", role: "alert" }, errorText(error)));
      }
    } },
    h("option", { value: "*" }, "every game"),
    names.map((name) => h("option", { value: name }, name || "(no game)")),
  );
  return h(
    "section",
    { class: "card wide" },
    h("h2", {}, `Bets and wins per ${bucket}`),
    h("div", { class: "inline" }, field("Game", game)),
    holder,
    h("button", { type: "button", class: "link", id: "export-rtp-series", onclick: () =>
      download("rtp-series.csv", csv(shown, ["start", "currency", "total_bet", "total_win", "rolled_back_bet", "rolled_back_win", "rtp"])) }, "Export CSV"),
  );
}

/** RTP of each game as a horizontal bar, with 100% marked. */
function rtpBars(rows) {
  const svgNS = "http://www.w3.org/2000/svg";
  const s = (tag, attrs, ...kids) => {
    const el = document.createElementNS(svgNS, tag);
    for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
    for (const kid of kids) el.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
    return el;
  };
  const shown = rows.filter((r) => r.rtp !== null).slice(0, 30);
  if (!shown.length) return h("p", { class: "empty" }, "Nothing was bet in this window.");
  const row = 22, left = 170, width = 720, right = 60;
  const height = shown.length * row + 22;
  const max = Math.max(1.2, ...shown.map((r) => r.rtp));
  const x = (v) => left + ((width - left - right) * v) / max;
  const svg = s("svg", { viewBox: `0 0 ${width} ${height}`, class: "chart", role: "img", "aria-labelledby": "rtp-bars-title", id: "rtp-bars" });
  svg.append(s("title", { id: "rtp-bars-title" }, `RTP of ${shown.length} games`));
  shown.forEach((r, i) => {
    const y = i * row + 20;
    const name = `${r.game ?? "(no game)"} · ${r.currency}`;
    svg.append(s("text", { x: left - 6, y: y + 14, class: "axis", "text-anchor": "end" }, name.length > 26 ? name.slice(0, 25) + "…" : name));
    svg.append(s("rect", { x: left, y, width: Math.max(1, x(r.rtp) - left), height: row - 6, class: "bar bet", "data-rtp": r.rtp }, s("title", {}, `${name}: RTP ${rtp(r.rtp)}, bet ${money(r.total_bet)}, won ${money(r.total_win)}`)));
    svg.append(s("text", { x: x(r.rtp) + 4, y: y + 14, class: "axis" }, rtp(r.rtp)));
  });
  svg.append(s("line", { x1: x(1), x2: x(1), y1: 16, y2: height, class: "par" }));
  svg.append(s("text", { x: x(1), y: 12, class: "axis", "text-anchor": "middle" }, "100%"));
  return h("figure", { class: "chart-wrap" }, svg);
}

/** An SVG chart of bets and wins per bucket (one currency: the first), with RTP per bucket on hover. */
function chart(rows) {
  if (!rows.length) return h("p", { class: "empty" }, "No bets or wins in this window.");
  const currency = rows[0].currency;
  const points = rows.filter((r) => r.currency === currency);
  const svgNS = "http://www.w3.org/2000/svg";
  const s = (tag, attrs, ...kids) => {
    const el = document.createElementNS(svgNS, tag);
    for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
    for (const kid of kids) el.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
    return el;
  };
  const width = 720, height = 260, left = 70, bottom = 40, top = 14, right = 12;
  const max = Math.max(1, ...points.map((p) => Math.max(Number(p.total_bet), Number(p.total_win))));
  const step = (width - left - right) / points.length;
  const y = (v) => top + (height - top - bottom) * (1 - Number(v) / max);
  const svg = s("svg", { viewBox: `0 0 ${width} ${height}`, class: "chart", role: "img", "aria-labelledby": "chart-title", id: "rtp-chart" });
  svg.append(s("title", { id: "chart-title" }, `Bets and wins in ${currency}, ${points.length} buckets, the most ${money(max)}`));
  for (let i = 0; i <= 4; i++) {
    const value = (max * i) / 4;
    svg.append(s("line", { x1: left, x2: width - right, y1: y(value), y2: y(value), class: "grid-line" }));
    svg.append(s("text", { x: left - 6, y: y(value) + 4, class: "axis", "text-anchor": "end" }, money(Math.round(value))));
  }
  const barWidth = Math.min(36, Math.max(1, step / 2 - 1));
  points.forEach((p, i) => {
    const x = left + i * step;
    const label = `${when(p.start)}: bet ${money(p.total_bet)}, won ${money(p.total_win)}, RTP ${rtp(p.rtp)}`;
    svg.append(s("rect", { x, y: y(p.total_bet), width: barWidth, height: height - bottom - y(p.total_bet), class: "bar bet", "data-value": p.total_bet }, s("title", {}, label)));
    svg.append(s("rect", { x: x + barWidth, y: y(p.total_win), width: barWidth, height: height - bottom - y(p.total_win), class: "bar win", "data-value": p.total_win }, s("title", {}, label)));
  });
  const labels = Math.min(points.length, 6);
  for (let i = 0; i < labels; i++) {
    const index = Math.floor((i * points.length) / labels);
    const text = when(points[index].start).slice(5, 16);
    svg.append(s("text", { x: left + index * step, y: height - bottom + 16, class: "axis" }, text));
  }
  const legend = h("p", { class: "legend" }, h("span", { class: "swatch bet" }), " bet  ", h("span", { class: "swatch win" }), " won", rows.some((r) => r.currency !== currency) ? ` (${currency} only; choose a currency to see another)` : "");
  return h("figure", { class: "chart-wrap" }, svg, legend);
}

// ---------------------------------------------------------------- audit

const ACTIONS = ["player.create", "player.status", "player.deposit", "player.withdrawal", "player.kyc", "player.limits", "player.exclusion", "operator.create", "operator.update", "provider_key.create", "provider_key.revoke", "staff.create", "staff.delete", "staff.password", "auth.login", "auth.login_failed", "game.category", "campaign.create", "campaign.update"];

function auditPage() {
  const verify = h("section", { class: "card wide", id: "audit-verify" }, h("p", { class: "loading", role: "status" }, "Verifying the chain…"));
  const target = h("input", { type: "text", id: "audit-target", placeholder: "player:alice" });
  const action = h("select", { id: "audit-action" }, h("option", { value: "" }, "any"), ACTIONS.map((a) => h("option", { value: a }, a)));
  const from = h("input", { type: "datetime-local", id: "audit-from" });
  const to = h("input", { type: "datetime-local", id: "audit-to" });
  const results = h("div", { id: "audit-results" });
  const filters = () => ({
    target: target.value.trim(),
    action: action.value,
    from: from.value ? new Date(from.value + ":00Z").toISOString() : "",
    to: to.value ? new Date(to.value + ":00Z").toISOString() : "",
  });
  const form = actionForm({ class: "inline" }, [field("Target", target), field("Action", action), field("From (UTC)", from), field("To (UTC)", to), h("button", { type: "submit", class: "primary" }, "Filter")], async () => {
    await auditEntries(results, filters(), null, []);
    return "";
  });
  render(h("h1", {}, "Audit trail"), verify, form, results);
  form.requestSubmit();
  api("GET", "/v1/audit/verify")
    .then(({ data }) =>
      verify.replaceChildren(
        data.ok
          ? h("p", { class: "ok" }, `✔ Chain verified: ${data.entries} entries, head ${data.head.slice(0, 16)}…`)
          : h("p", { class: "error", role: "alert" }, `✘ The chain is broken at entry ${data.first_bad_seq}: an entry was altered, inserted or removed.`),
      ),
    )
    .catch((error) => verify.replaceChildren(h("p", { class: "error" }, errorText(error))));
}

async function auditEntries(results, filters, cursor, previous) {
  const { data } = await api("GET", "/v1/audit?" + qs({ ...filters, limit: 50, cursor }));
  const json = (v) => (v ? h("code", { class: "json" }, JSON.stringify(v)) : "—");
  results.replaceChildren(
    table(
      [
        { label: "#", key: "seq", num: true },
        { label: "At", render: (r) => when(r.at) },
        { label: "Operator", render: (r) => r.operator ?? "platform" },
        { label: "Actor", render: (r) => r.actor.type + (r.actor.id ? ":" + r.actor.id : "") },
        { label: "Action", key: "action" },
        { label: "Target", key: "target" },
        { label: "Before", render: (r) => json(r.before) },
        { label: "After", render: (r) => json(r.after) },
      ],
      data.data,
      { caption: "Audit entries, newest first", empty: "No entry matches." },
    ),
    h(
      "div",
      { class: "pager" },
      h("button", { type: "button", disabled: !previous.length, onclick: () => auditEntries(results, filters, previous[previous.length - 1], previous.slice(0, -1)).catch((e) => say(errorText(e), "error")) }, "← Newer"),
      h("button", { type: "button", disabled: !data.next_cursor, onclick: () => auditEntries(results, filters, data.next_cursor, [...previous, cursor]).catch((e) => say(errorText(e), "error")) }, "Older →"),
    ),
  );
}

// ---------------------------------------------------------------- staff

const ROLES = ["admin", "finance", "support", "compliance", "analyst"];

async function staffPage() {
  const loaded = await load("staff", "/v1/staff");
  if (!loaded) return;
  const [list] = loaded;
  const platform = !state.session.operator;
  const email = h("input", { type: "email", id: "staff-email", required: true, autocomplete: "off" });
  const role = h("select", { id: "staff-role" }, ROLES.map((r) => h("option", { value: r }, r)));
  const scope = h(
    "select",
    { id: "staff-operator" },
    platform ? h("option", { value: "" }, "platform (every operator)") : null,
    state.session.operators.map((o) => h("option", { value: o.code, selected: o.code === state.operator }, o.code)),
  );
  const password = h("input", { type: "password", id: "staff-password", autocomplete: "new-password", minlength: 10 });
  const setPassword = (row) =>
    h("button", { type: "button", class: "link", onclick: async () => {
      const value = prompt(`New console password for ${row.email} (10 to 128 characters):`);
      if (!value) return;
      try {
        await api("PUT", `/v1/staff/${row.staff_id}/password`, { body: { password: value } });
        say(`${row.email} has a new password; their console sessions have ended.`, "ok");
      } catch (error) {
        say(errorText(error), "error");
      }
    } }, "Set password");
  const remove = (row) =>
    row.staff_id === state.session.staff_id
      ? ""
      : h("button", { type: "button", class: "link", onclick: async () => {
          if (!confirm(`Delete ${row.email}? Their token and sessions stop working at once.`)) return;
          try {
            await api("DELETE", `/v1/staff/${row.staff_id}`);
            say(`${row.email} deleted.`, "ok");
            staffPage();
          } catch (error) {
            say(errorText(error), "error");
          }
        } }, "Delete");
  render(
    h("h1", {}, "Staff"),
    table(
      [
        { label: "Email", key: "email" },
        { label: "Role", key: "role" },
        { label: "Operator", render: (r) => r.operator ?? "platform" },
        { label: "Since", render: (r) => when(r.created_at) },
        { label: "", render: (r) => h("span", { class: "buttons" }, setPassword(r), remove(r)) },
      ],
      list,
      { caption: "Live staff" },
    ),
    h(
      "section",
      { class: "card" },
      h("h2", {}, "New staff member"),
      actionForm(
        { class: "inline", id: "staff-form" },
        [
          field("Email", email),
          field("Role", role),
          field("Operator", scope),
          field("Console password", password, "Optional: without one, only the token works."),
          h("button", { type: "submit", class: "primary" }, "Create"),
        ],
        async () => {
          const body = { email: email.value.trim(), role: role.value, operator: scope.value || null };
          if (password.value) body.password = password.value;
          const { data } = await api("POST", "/v1/staff", { body });
          password.value = "";
          await staffPage();
          say(`${data.email} created. Their API token, shown only now: ${data.token}`, "ok");
          return `${data.email} created.`;
        },
      ),
    ),
  );
}

// ---------------------------------------------------------------- operators

async function operatorsPage() {
  const loaded = await load("operators", "/v1/operators");
  if (!loaded) return;
  const [list] = loaded;
  const code = h("input", { type: "text", id: "new-code", pattern: "[a-z0-9_-]{1,64}", required: true });
  const name = h("input", { type: "text", id: "new-name", required: true });
  const currencies = h("input", { type: "text", id: "new-currencies", placeholder: "EUR, GBP", required: true });
  render(
    h("h1", {}, "Operators"),
    table(
      [
        { label: "Code", render: (r) => h("a", { href: "#/operators/" + encodeURIComponent(r.code) }, r.code) },
        { label: "Name", key: "name" },
        { label: "Currencies", render: (r) => (r.currencies || []).join(", ") || "any" },
        { label: "Domains", render: (r) => (r.domains || []).join(", ") },
        { label: "Version", key: "version", num: true },
      ],
      list,
      { caption: "Operators" },
    ),
    h(
      "section",
      { class: "card" },
      h("h2", {}, "New operator"),
      actionForm({ class: "inline" }, [field("Code", code), field("Name", name), field("Currencies", currencies), h("button", { type: "submit", class: "primary" }, "Create")], async () => {
        const body = { code: code.value.trim(), name: name.value.trim(), currencies: currencies.value.split(",").map((c) => c.trim().toUpperCase()).filter(Boolean) };
        await api("POST", "/v1/operators", { body });
        location.hash = "#/operators/" + encodeURIComponent(body.code);
        return "Created.";
      }),
    ),
  );
}

async function operatorPage(code) {
  const path = "/v1/operators/" + encodeURIComponent(code);
  const loaded = await load("the operator", path, path + "/provider-keys");
  if (!loaded) return;
  let [doc, keys] = loaded; // doc: the version saved last
  const name = h("input", { type: "text", id: "op-name", value: doc.name });
  const currencies = h("input", { type: "text", id: "op-currencies", value: (doc.currencies || []).join(", ") });
  const timezone = h("input", { type: "text", id: "op-timezone", value: doc.timezone || "UTC" });
  const domains = h("input", { type: "text", id: "op-domains", value: (doc.domains || []).join(", ") });
  const features = h("textarea", { id: "op-features", rows: 6, spellcheck: "false" }, JSON.stringify(doc.features || {}, null, 2));
  const rules = h("textarea", { id: "op-rules", rows: 10, spellcheck: "false" }, JSON.stringify(doc.rules || {}, null, 2));
  const preview = h("div", { class: "preview", id: "theme-preview", "aria-label": "Theme preview" }, h("p", {}, "Preview: ", h("button", { type: "button", class: "primary" }, "Primary button"), " ", h("a", { href: "#" + location.hash.slice(1) }, "a link")));
  const themeRows = h("div", { id: "theme-rows" });
  const applyPreview = () => {
    for (const name of [...preview.style]) preview.style.removeProperty(name);
    for (const [k, v] of Object.entries(readTheme())) if (k) preview.style.setProperty("--" + k, v);
  };
  const addRow = (key, value) => {
    const k = h("input", { type: "text", class: "theme-key", value: key, "aria-label": "Variable", placeholder: "primary", oninput: applyPreview });
    const v = h("input", { type: "text", class: "theme-value", value, "aria-label": "Value", placeholder: "#1a3c8f", oninput: applyPreview });
    const colour = h("input", { type: "color", "aria-label": "Pick a colour", value: /^#[0-9a-f]{6}$/i.test(value) ? value : "#000000", oninput: (e) => { v.value = e.target.value; applyPreview(); } });
    const row = h("div", { class: "theme-row" }, k, v, colour, h("button", { type: "button", class: "link", onclick: () => { row.remove(); applyPreview(); } }, "Remove"));
    themeRows.append(row);
  };
  const readTheme = () => Object.fromEntries([...themeRows.querySelectorAll(".theme-row")].map((r) => [r.querySelector(".theme-key").value.trim(), r.querySelector(".theme-value").value.trim()]).filter(([k]) => k));
  for (const [k, v] of Object.entries(doc.theme || {})) addRow(k, v);
  applyPreview();
  const list = (text) => text.split(",").map((s) => s.trim()).filter(Boolean);
  const editor = actionForm(
    { id: "operator-form" },
    [
      field("Name", name),
      field("Currencies", currencies, "Comma-separated"),
      field("Time zone", timezone),
      field("Domains", domains, "Comma-separated host names"),
      h("fieldset", {}, h("legend", {}, "Theme (CSS variables)"), themeRows, h("button", { type: "button", onclick: () => { addRow("", ""); applyPreview(); } }, "Add variable"), preview),
      field("Flags (per country)", features, 'e.g. {"casino": {"default": true, "countries": {"US": false}}}'),
      field("Rules", rules),
      h("button", { type: "submit", class: "primary" }, "Save"),
    ],
    async () => {
      let parsedFeatures, parsedRules;
      try {
        parsedFeatures = JSON.parse(features.value || "{}");
        parsedRules = JSON.parse(rules.value || "{}");
      } catch (error) {
        throw new Error("flags and rules must be JSON: " + error.message);
      }
      // A merge patch: keys taken out of the theme are removed with null.
      const theme = readTheme();
      for (const key of Object.keys(doc.theme || {})) if (!(key in theme)) theme[key] = null;
      const body = { name: name.value.trim(), currencies: list(currencies.value), timezone: timezone.value.trim(), domains: list(domains.value), theme, features: parsedFeatures, rules: parsedRules };
      const { data } = await api("PATCH", path, { body, headers: { "If-Match": `"${doc.version}"` } });
      doc = data;
      // The saved document, not /v1/tenant: every instance serves the change within a second, not at once.
      if (code === state.operator) applyTheme(data.theme || {});
      return `Saved: version ${data.version}.`;
    },
  );
  const keyList = h("div", { id: "keys" });
  const showKeys = (rows) =>
    keyList.replaceChildren(
      table(
        [
          { label: "Key", key: "key_id" },
          { label: "Created", render: (r) => when(r.created_at) },
          { label: "Revoked", render: (r) => when(r.revoked_at) },
          { label: "", render: (r) => (r.revoked_at ? "" : h("button", { type: "button", class: "danger", onclick: async () => {
            if (!confirm("Revoke this key? Its signatures are refused within a second.")) return;
            try { await api("DELETE", `${path}/provider-keys/${r.key_id}`); say("Key revoked.", "ok"); showKeys((await api("GET", path + "/provider-keys")).data); } catch (e) { say(errorText(e), "error"); }
          } }, "Revoke")) },
        ],
        rows,
        { caption: "Provider keys", empty: "No provider key." },
      ),
    );
  showKeys(keys);
  const secret = h("p", { class: "secret", role: "status" });
  render(
    h("p", {}, h("a", { href: "#/operators" }, "← Operators")),
    h("h1", {}, `${doc.name} (${doc.code})`),
    h("div", { class: "grid" },
      h("section", { class: "card" }, h("h2", {}, "Document"), editor),
      h("section", { class: "card" }, h("h2", {}, "Provider keys"), keyList, h("button", { type: "button", onclick: async () => {
        try {
          const { data } = await api("POST", path + "/provider-keys", { body: {} });
          secret.textContent = `New key ${data.key_id}; its secret, shown only now: ${data.secret}`;
          showKeys((await api("GET", path + "/provider-keys")).data);
        } catch (e) { secret.textContent = errorText(e); }
      } }, "Create a key"), secret),
    ),
  );
}

// ---------------------------------------------------------------- boot

document.addEventListener("DOMContentLoaded", async () => {
  document.getElementById("sign-out").addEventListener("click", signOut);
  document.getElementById("operator").addEventListener("change", async (event) => {
    state.operator = event.target.value;
    sessionStorage.setItem("console.operator", state.operator);
    await loadTenant();
    say(`Now acting on ${state.operator}.`, "ok");
    route();
  });
  window.addEventListener("hashchange", route);
  try {
    const response = await fetch("/console/api/session", { credentials: "same-origin" });
    if (response.ok) await start(await response.json());
    else showSignIn();
  } catch (error) {
    showSignIn("The service cannot be reached: " + error.message);
  }
});
