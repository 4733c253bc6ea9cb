// End-to-end tests of the back-office console in Debian's Chromium, driven
// by playwright-core. scripts/check-console starts the service on a fresh,
// seeded database, creates the staff below, and runs these tests with:
//   CONSOLE_URL       the service, e.g. http://127.0.0.1:40123
//   CONSOLE_PASSWORD  every staff member's password
//   ADMIN_TOKEN       the back-office bearer token, to check what the page did
//   SCREENSHOTS       a folder for screenshots of the main pages
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import { chromium } from "playwright-core";

const BASE = process.env.CONSOLE_URL;
const PASSWORD = process.env.CONSOLE_PASSWORD;
const ADMIN_TOKEN = process.env.ADMIN_TOKEN || "admin";
const SHOTS = process.env.SCREENSHOTS || "results";
const PLAYER = process.env.CONSOLE_PLAYER || "e2e-1";
assert.ok(BASE && PASSWORD, "CONSOLE_URL and CONSOLE_PASSWORD must be set (scripts/check-console sets them)");
mkdirSync(SHOTS, { recursive: true });

let browser;

before(async () => {
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--headless", "--no-sandbox"],
  });
});

after(async () => {
  await browser?.close();
});

/** The back office as the bootstrap admin sees it, to check what the page did. */
async function admin(method, path, body, headers = {}) {
  const response = await fetch(BASE + path, {
    method,
    headers: { Authorization: `Bearer ${ADMIN_TOKEN}`, "Content-Type": "application/json", ...headers },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  return { status: response.status, body: text ? JSON.parse(text) : null };
}

async function page({ width = 1280, height = 900 } = {}) {
  const context = await browser.newContext({ viewport: { width, height } });
  const p = await context.newPage();
  const errors = [];
  p.on("pageerror", (error) => errors.push(error.message));
  p.errors = errors;
  return p;
}

async function signIn(p, email) {
  await p.goto(BASE + "/console/");
  await p.fill("#email", email);
  await p.fill("#password", PASSWORD);
  await p.press("#password", "Enter");
  await p.waitForSelector("#nav a");
}

async function shot(p, name) {
  await p.screenshot({ path: `${SHOTS}/${name}.png`, fullPage: true });
}

async function deposits(userId) {
  const { body } = await admin("GET", `/v1/players/${encodeURIComponent(userId)}/transactions?limit=1000`);
  return body.data.filter((row) => row.kind === "deposit");
}

test("a wrong password is refused with a clear message, the right one signs in", async () => {
  const p = await page();
  await p.goto(BASE + "/console/");
  await shot(p, "sign-in");
  await p.fill("#email", "admin@console.test");
  await p.fill("#password", "not the password");
  await p.press("#password", "Enter");
  await p.waitForSelector("#sign-in .outcome.error");
  assert.match(await p.textContent("#sign-in .outcome"), /unknown email or wrong password/);
  await p.fill("#password", PASSWORD);
  await p.press("#password", "Enter");
  await p.waitForSelector("#nav a");
  const sections = await p.$$eval("#nav a", (links) => links.map((a) => a.textContent));
  assert.deepEqual(sections, ["Players", "RTP reports", "Audit trail", "Staff", "Operators"]);
  const cookies = await p.context().cookies();
  const session = cookies.find((c) => c.name === "wallet_console");
  assert.ok(session.httpOnly, "the session cookie is HttpOnly");
  assert.equal(session.sameSite, "Strict");
  assert.equal(await p.evaluate(() => document.cookie), "", "scripts cannot read the session");
  assert.deepEqual(p.errors, []);
  await p.context().close();
});

test("a role that may not act sees no button, and the server refuses it anyway", async () => {
  const p = await page();
  await signIn(p, "finance@console.test");
  const sections = await p.$$eval("#nav a", (links) => links.map((a) => a.textContent));
  assert.deepEqual(sections, ["Players", "RTP reports"]);
  await p.goto(BASE + `/console/#/players/${PLAYER}`);
  await p.waitForSelector("#balance-cash");
  assert.ok(await p.$("#deposit"), "finance moves money");
  assert.equal(await p.$("#block"), null, "finance cannot block: no button");
  assert.equal(await p.$("#kyc-form"), null, "finance cannot change KYC: no form");
  assert.equal(await p.$("#limit-form"), null, "finance cannot lower limits: no form");
  // The request the button would have sent, sent anyway with a valid session and CSRF token.
  const refused = await p.evaluate(async (userId) => {
    const session = await (await fetch("/console/api/session")).json();
    const response = await fetch(`/v1/players/${userId}`, {
      method: "PATCH",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": session.csrf_token },
      body: JSON.stringify({ status: "blocked" }),
    });
    return { status: response.status, body: await response.json() };
  }, PLAYER);
  assert.equal(refused.status, 403);
  assert.equal(refused.body.code, 403);
  assert.equal((await admin("GET", `/v1/players/${PLAYER}`)).body.status, "active");
  await p.context().close();
});

test("a double-clicked deposit moves money once", async () => {
  const p = await page();
  await signIn(p, "admin@console.test");
  await p.fill("#player-q", PLAYER);
  await p.press("#player-q", "Enter");
  await p.waitForSelector("#money-form");
  const before = await deposits(PLAYER);
  const balanceBefore = (await admin("GET", `/v1/players/${PLAYER}`)).body.balance;
  const key = await p.$eval("#money-form", (form) => form.dataset.idempotencyKey);
  await p.fill("#money-amount", "12.34");
  await p.dblclick("#deposit");
  await p.waitForSelector("#status.ok");
  assert.match(await p.textContent("#status"), /Deposit of 12\.34 made/);
  // Each rendering of the form has its own Idempotency-Key: two more requests
  // sent at once with the one it had, as a double submit would, move nothing more.
  const replays = await p.evaluate(
    async ({ userId, key }) => {
      const session = await (await fetch("/console/api/session")).json();
      const send = () =>
        fetch(`/v1/players/${userId}/deposits`, {
          method: "POST",
          headers: { "Content-Type": "application/json", "X-CSRF-Token": session.csrf_token, "Idempotency-Key": key },
          body: JSON.stringify({ amount: 1234 }),
        }).then(async (r) => ({ status: r.status, body: await r.json() }));
      return Promise.all([send(), send()]);
    },
    { userId: PLAYER, key },
  );
  const after = await deposits(PLAYER);
  assert.equal(after.length, before.length + 1, "exactly one ledger movement");
  assert.equal(after[0].amount, 1234);
  assert.deepEqual(replays.map((r) => r.body.tx_id), [after[0].tx_id, after[0].tx_id]);
  assert.equal((await admin("GET", `/v1/players/${PLAYER}`)).body.balance, balanceBefore + 1234);
  // The page shows the new balance; the form has a new key for the next deposit.
  const shown = ((balanceBefore + 1234) / 100).toLocaleString("en-US", { minimumFractionDigits: 2 });
  assert.equal(await p.textContent("#balance-cash"), `${shown} EUR`);
  assert.notEqual(await p.$eval("#money-form", (form) => form.dataset.idempotencyKey), key);
  await shot(p, "player");
  await p.context().close();
});

test("support lowers a limit and the page shows it", async () => {
  const p = await page();
  await signIn(p, "support@console.test");
  await p.goto(BASE + `/console/#/players/${PLAYER}`);
  await p.waitForSelector("#limit-form");
  assert.equal(await p.$("#deposit"), null, "support moves no money");
  await p.selectOption("#limit-kind", "loss");
  await p.selectOption("#limit-period", "day");
  await p.fill("#limit-amount", "50");
  await p.click("#limit-form button[type=submit]");
  await p.waitForSelector("#status.ok");
  assert.match(await p.textContent("#status"), /day's loss limit is now 50\.00/);
  const limits = (await admin("GET", `/v1/players/${PLAYER}/limits`)).body;
  assert.equal(limits.loss.day.amount, 5000);
  // Raising it is not staff's to do: the server says so, and nothing changes.
  assert.match(await p.textContent("#limit-form"), /./);
  assert.match(await p.textContent("main"), /loss \/ day/);
  await p.selectOption("#limit-kind", "loss");
  await p.selectOption("#limit-period", "day");
  await p.fill("#limit-amount", "80");
  await p.click("#limit-form button[type=submit]");
  await p.waitForSelector("#limit-form .outcome.error");
  assert.match(await p.textContent("#limit-form .outcome"), /raise|lower|role/i);
  assert.equal((await admin("GET", `/v1/players/${PLAYER}/limits`)).body.loss.day.amount, 5000);
  await p.context().close();
});

test("the RTP chart draws the series of the real report data", async () => {
  const p = await page();
  await signIn(p, "analyst@console.test");
  await p.goto(BASE + "/console/#/reports");
  await p.waitForSelector("#rtp-chart rect.bar.bet");
  const from = await p.$eval("#report-from", (i) => new Date(i.value + ":00Z").toISOString());
  const to = await p.$eval("#report-to", (i) => new Date(i.value + ":00Z").toISOString());
  const bars = await p.$$eval("#rtp-chart rect.bar.bet", (rects) => rects.map((r) => Number(r.dataset.value)));
  const wins = await p.$$eval("#rtp-chart rect.bar.win", (rects) => rects.map((r) => Number(r.dataset.value)));
  const casino = (await admin("GET", `/v1/reports/rtp/casino?from=${from}&to=${to}`)).body.data;
  const played = casino.filter((row) => row.total_bet > 0);
  assert.ok(played.length >= 1, "the simulation played in this window");
  const charted = played.find((row) => row.currency === casino.find((c) => c.total_bet > 0).currency);
  assert.equal(bars.reduce((a, b) => a + b, 0), charted.total_bet, "the bars add up to the casino report");
  assert.equal(wins.reduce((a, b) => a + b, 0), charted.total_win);
  // One game's series adds up to that game's row of the games report.
  const games = (await admin("GET", `/v1/reports/rtp/games?from=${from}&to=${to}&currency=${charted.currency}`)).body.data;
  const game = games.find((g) => g.total_bet > 0);
  await p.selectOption("#series-game", game.game ?? "");
  // (The change replaces the chart with a loading line at once, then draws the game's.)
  await p.waitForSelector("#series-chart #rtp-chart");
  const gameBars = await p.$$eval("#rtp-chart rect.bar.bet", (rects) => rects.map((r) => Number(r.dataset.value)));
  assert.equal(gameBars.reduce((a, b) => a + b, 0), game.total_bet, `the ${game.game} series adds up to its report`);
  assert.ok((await p.$$("#rtp-bars rect")).length >= 1, "RTP per game is drawn");
  const tableText = await p.textContent("#report-results");
  assert.match(tableText, /Top players by loss/);
  assert.match(tableText, /Top players by win/);
  // CSV export of the players' report.
  const [download] = await Promise.all([
    p.waitForEvent("download"),
    p.click("#export-rtp-players"),
  ]);
  assert.equal(download.suggestedFilename(), "rtp-players.csv");
  await shot(p, "reports");
  assert.deepEqual(p.errors, []);
  await p.context().close();
});

test("a request without the session's CSRF token is refused", async () => {
  const p = await page();
  await signIn(p, "admin@console.test");
  const before = await deposits(PLAYER);
  const answers = await p.evaluate(async (userId) => {
    const attempt = async (headers) => {
      const response = await fetch(`/v1/players/${userId}/deposits`, {
        method: "POST",
        headers: { "Content-Type": "application/json", "Idempotency-Key": crypto.randomUUID(), ...headers },
        body: JSON.stringify({ amount: 500 }),
      });
      return { status: response.status, body: await response.json() };
    };
    return [await attempt({}), await attempt({ "X-CSRF-Token": "0".repeat(64) })];
  }, PLAYER);
  for (const answer of answers) {
    assert.equal(answer.status, 403);
    assert.match(answer.body.message, /CSRF/);
  }
  assert.equal((await deposits(PLAYER)).length, before.length, "nothing moved");
  await p.context().close();
});

test("platform staff switch operators and the console wears the operator's theme", async () => {
  const p = await page();
  await signIn(p, "admin@console.test");
  assert.ok(await p.isVisible("#operator"));
  await p.selectOption("#operator", "bluestar");
  // (Locators, not waitForFunction: the page's CSP forbids the eval that polling needs.)
  await p.locator("#brand", { hasText: "Bluestar Casino" }).waitFor();
  const background = await p.$eval("#top", (el) => getComputedStyle(el).backgroundColor);
  assert.equal(background, "rgb(26, 60, 143)", "the theme's --primary");
  await p.goto(BASE + "/console/#/operators/bluestar");
  await p.waitForSelector("#operator-form");
  await shot(p, "operator");
  // The theme editor previews as one types, and saving re-themes the console.
  await p.fill("#theme-rows .theme-row:first-child .theme-value", "#7a1f5c");
  const preview = await p.$eval("#theme-preview button.primary", (b) => getComputedStyle(b).backgroundColor);
  assert.equal(preview, "rgb(122, 31, 92)");
  assert.equal(await p.$eval("#top", (el) => getComputedStyle(el).backgroundColor), "rgb(26, 60, 143)", "not saved yet");
  await p.click("#operator-form button[type=submit]");
  await p.waitForSelector("#operator-form .outcome.ok");
  assert.match(await p.textContent("#operator-form .outcome"), /Saved: version 2/);
  assert.equal((await admin("GET", "/v1/operators/bluestar")).body.theme.primary, "#7a1f5c");
  assert.equal(await p.$eval("#top", (el) => getComputedStyle(el).backgroundColor), "rgb(122, 31, 92)");
  await p.goto(BASE + "/console/#/audit");
  await p.waitForSelector("#audit-verify .ok");
  assert.match(await p.textContent("#audit-verify"), /Chain verified/);
  await p.waitForSelector("#audit-results table");
  await shot(p, "audit");
  await p.context().close();
});

test("an admin creates a staff member who then signs in with the password given", async () => {
  const p = await page();
  await signIn(p, "admin@console.test");
  await p.goto(BASE + "/console/#/staff");
  await p.waitForSelector("#staff-form");
  await p.fill("#staff-email", "new.clerk@console.test");
  await p.selectOption("#staff-role", "compliance");
  await p.selectOption("#staff-operator", "default");
  await p.fill("#staff-password", PASSWORD);
  await p.click("#staff-form button[type=submit]");
  await p.waitForSelector("#status.ok");
  assert.match(await p.textContent("#status"), /stf_[0-9a-f]{64}/);
  assert.match(await p.textContent("main table"), /new\.clerk@console\.test/);
  await shot(p, "staff");
  const other = await page();
  await signIn(other, "new.clerk@console.test");
  const sections = await other.$$eval("#nav a", (links) => links.map((a) => a.textContent));
  assert.deepEqual(sections, ["Players", "Audit trail"]);
  await other.context().close();
  await p.context().close();
});

test("the player page reads on a phone", async () => {
  const p = await page({ width: 390, height: 844 });
  await signIn(p, "admin@console.test");
  await p.goto(BASE + `/console/#/players/${PLAYER}`);
  await p.waitForSelector("#history table");
  const overflow = await p.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 1, `no sideways scrolling of the page (${overflow}px)`);
  await p.screenshot({ path: `${SHOTS}/player-phone.png` });
  // Keyboard and screen readers: every control has a name, none is taken out of the tab order.
  const unnamed = await p.$$eval("main input, main select, main textarea, main button", (controls) =>
    controls
      .filter((c) => !(c.closest("label") || c.getAttribute("aria-label") || (c.tagName === "BUTTON" && c.textContent.trim())))
      .map((c) => c.outerHTML),
  );
  assert.deepEqual(unnamed, []);
  assert.equal(await p.$$eval("[tabindex]", (els) => els.filter((e) => e.tabIndex > 0).length), 0);
  // The skip link shows when focused and takes focus to the content; Tab from it reaches the sections.
  await p.focus(".skip");
  assert.ok((await p.$eval(".skip", (a) => a.getBoundingClientRect().left)) >= 0, "visible when focused");
  await p.keyboard.press("Tab");
  assert.equal(await p.evaluate(() => document.activeElement.textContent), "Players");
  await p.focus(".skip");
  await p.keyboard.press("Enter");
  assert.equal(await p.evaluate(() => document.activeElement.id), "main");
  await p.context().close();
});
