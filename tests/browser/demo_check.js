// The demo page end to end in headless Chromium: a teacher and a student in two pages of one
// browser; what one sends appears in the other; the admin view lists the node and the group and
// pushes as the system. Prints one JSON line per step; exits non-zero on the first failure.
//
// Usage: node tests/browser/demo_check.js BASE_URL API_KEY SCREENSHOT.png
"use strict";
const fs = require("fs");
const os = require("os");
const path = require("path");
const { chromium } = require("playwright-core");

const [baseUrl, apiKey, screenshot] = process.argv.slice(2);
const CHROMIUM = process.env.CHROMIUM_PATH || "/usr/bin/chromium";
const STEP_TIMEOUT = 15000;
const group = `demo-${Date.now().toString(36)}`;

function step(name, extra = {}) {
  console.log(JSON.stringify({ step: name, ...extra }));
}

async function login(page, { role, id, name }) {
  await page.goto(`${baseUrl}/demo`);
  await page.selectOption("#userType", role);
  await page.fill("#userId", id);
  await page.fill("#userName", name);
  await page.fill("#groupId", group);
  await page.click("#connect");
  await page.waitForSelector("#room-panel:not([hidden])");
  step("logged in", { id, status: await page.textContent("#status") });
}

async function send(page, content, target) {
  await page.fill("#content", content);
  if (target) {
    await page.check("input[name=mode][value='0']");
    await page.fill("#targetId", target.id);
    await page.selectOption("#targetType", target.type);
  } else {
    await page.check("input[name=mode][value='1']");
  }
  await page.click("#send-button");
}

async function arrives(page, content) {
  await page.waitForFunction((c) => [...document.querySelectorAll("#messages li:not(.mine) .content")]
    .some((el) => el.textContent === c), content);
}

async function main() {
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), "gru-chromium-"));
  // a fresh profile directory per run (Playwright passes it to Chromium as --user-data-dir)
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync"],
    viewport: { width: 1100, height: 900 },
  });
  try {
    context.setDefaultTimeout(STEP_TIMEOUT);
    const teacher = await context.newPage();
    const student = await context.newPage();
    const errors = [];
    for (const page of [teacher, student]) page.on("pageerror", (err) => errors.push(String(err)));

    await login(teacher, { role: "0", id: "t-li", name: "Ms Li" });
    await login(student, { role: "1", id: "s-tom", name: "Tom" });
    await teacher.waitForFunction(() => document.querySelectorAll("#online li").length === 2);
    step("online list updated", { online: await teacher.$$eval("#online li", (els) => els.map((e) => e.textContent)) });

    await send(teacher, "Open your books at page 3");
    await arrives(student, "Open your books at page 3");
    step("broadcast arrived");
    await send(student, "May I ask a question?", { id: "t-li", type: "0" });
    await arrives(teacher, "May I ask a question?");
    step("unicast arrived");

    await teacher.fill("#apiKey", apiKey);
    await teacher.fill("#adminGroup", group);
    await teacher.click("#admin-load");
    await teacher.waitForFunction(() => document.querySelectorAll("#nodes tbody tr").length > 0 &&
                                        document.querySelectorAll("#admin-online li").length === 2);
    const nodes = await teacher.$$eval("#nodes tbody tr", (rows) => rows.map((r) => r.textContent));
    step("admin view", { nodes });
    await teacher.fill("#pushContent", "The bell rings in 5 minutes");
    await teacher.click("#push-button");
    await arrives(student, "The bell rings in 5 minutes");
    await arrives(teacher, "The bell rings in 5 minutes");
    step("system push arrived");

    await teacher.screenshot({ path: screenshot, fullPage: true });
    step("screenshot", { path: screenshot });
    await student.close();  // the teacher's online list shrinks
    await teacher.waitForFunction(() => document.querySelectorAll("#online li").length === 1);
    step("online list shrank");
    if (errors.length) throw new Error(`page errors: ${errors.join("; ")}`);
  } finally {
    await context.close();
    fs.rmSync(profile, { recursive: true, force: true });
  }
}

main().then(() => step("ok")).catch((err) => {
  step("failed", { error: String(err && err.stack || err) });
  process.exit(1);
});
