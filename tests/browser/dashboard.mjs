// The dashboard in a real browser: Debian's Chromium, driven by playwright-core, against a
// real `wasm-orch serve`. Usage: node dashboard.mjs URL TOKEN SCREENSHOT.png
// Starts calc from the page, waits for its cards to succeed and its output 21, then starts a
// long run and cancels it from the page, then runs the planner example and sees its DAG grow, then a negotiation whose cards count messages. Exits non-zero, with a screenshot beside the given
// path, on any failure.
import { chromium } from "playwright-core";

const [url, token, shot] = process.argv.slice(2);
if (!url || !token || !shot) {
  console.error("usage: node dashboard.mjs URL TOKEN SCREENSHOT.png");
  process.exit(2);
}
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-quic", "--no-first-run", "--disable-component-update", "--disable-sync"],
});
const page = await browser.newPage({ viewport: { width: 1440, height: 1000 } });
const problems = [];
page.on("pageerror", (e) => problems.push("page error: " + e.message));
page.on("console", (m) => { if (m.type() === "error") problems.push("console: " + m.text()); });
const step = async (what, f) => {
  try { await f(); console.log("ok   " + what); }
  catch (e) { console.error("FAIL " + what + ": " + e.message); await page.screenshot({ path: shot.replace(/\.png$/, "-failed.png"), fullPage: true }); await browser.close(); process.exit(1); }
};
const timeout = 60_000;

await step("the page loads and connects with the token", async () => {
  await page.goto(url + "/#token=" + encodeURIComponent(token));
  await page.locator("#conn.live").waitFor({ timeout });
  await page.locator("#tenant", { hasText: "tenant acme" }).waitFor({ timeout });
});
await step("calc is started from its DAG's Run button", async () => {
  await page.locator('button[data-dag="calc"]').click();
  await page.locator("#run-status").waitFor({ timeout });
});
await step("the DAG is drawn from the plan", async () => {
  for (const node of ["left", "right", "product"]) await page.locator(`#graph g[data-node="${node}"]`).waitFor({ timeout });
});
await step("every card goes to succeeded", async () => {
  for (const node of ["left", "right", "product"]) await page.locator(`.card[data-node="${node}"][data-state="succeeded"]`).waitFor({ timeout });
  await page.locator("#run-status", { hasText: "succeeded" }).waitFor({ timeout });
});
await step("the output is 21", async () => {
  const out = page.locator('pre[data-output="product"]');
  await out.waitFor({ timeout });
  const text = (await out.textContent()).trim();
  if (text !== "21") throw new Error("product shows " + JSON.stringify(text));
});
await step("the activity log shows the run", async () => {
  await page.locator("#log", { hasText: "succeeded in" }).waitFor({ timeout });
});
await page.screenshot({ path: shot, fullPage: false });
console.log("saved " + shot);
await step("a long run is cancelled from the page", async () => {
  await page.locator('button[data-dag="slow"]').click();
  await page.locator('.card[data-node="wait"][data-state="running"]').waitFor({ timeout });
  await page.locator("#cancel:not([disabled])").click();
  await page.locator("#run-status", { hasText: "cancelled" }).waitFor({ timeout });
  await page.locator('.card[data-node="wait"][data-state="cancelled"]').waitFor({ timeout });
});
await step("a planner's run grows its DAG on the page, to 21", async () => {
  await page.locator('button[data-dag="planner"]').click();
  for (const node of ["plan", "plan.sum-1", "plan.sum-2", "plan.product"]) await page.locator(`#graph g[data-node="${node}"]`).waitFor({ timeout });
  await page.locator('.card[data-node="plan.product"][data-state="succeeded"]').waitFor({ timeout });
  const text = (await page.locator('pre[data-output="plan.product"]').textContent()).trim();
  if (text !== "21") throw new Error("plan.product shows " + JSON.stringify(text));
});
await step("a negotiation's cards count the messages each agent sent and received", async () => {
  await page.locator('button[data-dag="negotiation"]').click();
  await page.locator('.card[data-node="gamma"][data-state="succeeded"]').waitFor({ timeout });
  await page.locator('.card[data-node="beta"][data-state="succeeded"]').waitFor({ timeout });
  const alpha = await page.locator('.card[data-node="alpha"] .stats').textContent();
  if (!alpha.includes("messages 5 sent, 5 received")) throw new Error("alpha's card says " + JSON.stringify(alpha));
  const gamma = await page.locator('.card[data-node="gamma"] .stats').textContent();
  if (!gamma.includes("messages 2 sent, 1 received")) throw new Error("gamma's card says " + JSON.stringify(gamma));
});
await step("the page showed no error", async () => {
  if (problems.length) throw new Error(problems.join("\n"));
});
await browser.close();
