// tests/console/console.test.js - the web console in a real browser (run by run.sh).
//
// Starts <build>/convoyd on a free loopback port with a temporary model directory holding
// models/fashion-mnist.cvy, drives Debian's headless Chromium with playwright-core, and checks:
// GET / (headers, no request leaves the daemon, no script error), the model list, uploads of
// tests/data/fashion_00..02.png through the file input with the labels and scores shown equal
// to the API's own answer for each image, one image dropped and one pasted, plain error
// messages for a non-image file (the server's 415 message) and for an unknown model, and the
// live figures from GET /stats.
// Saves a screenshot (to $CONVOY_BUILD/console.png; CONSOLE_SHOT=docs/console.png refreshes the
// README's picture) and stops the daemon (SIGTERM, exit 0).
// Prints one line per check and a last line "N passed, N failed".
'use strict';

const { chromium } = require('playwright-core');
const { spawn } = require('child_process');
const fs = require('fs');
const os = require('os');
const path = require('path');

const ROOT = path.resolve(__dirname, '..', '..');
const BUILD = path.resolve(ROOT, process.argv[2] || process.env.CONVOY_BUILD || 'build');
const CHROMIUM = '/usr/bin/chromium';
const SHOT = process.env.CONSOLE_SHOT ? path.resolve(ROOT, process.env.CONSOLE_SHOT)
  : path.join(BUILD, 'console.png');
const IMAGES = ['fashion_00.png', 'fashion_01.png', 'fashion_02.png'];
const STEP_MS = 15000; // any single wait
const TOTAL_MS = 120000; // the whole test

let passed = 0, failed = 0;
function ok(name) { passed++; console.log(`  ok   ${name}`); }
function fail(name, why) { failed++; console.log(`  FAIL ${name}: ${why}`); }
function check(name, cond, why) { if (cond) ok(name); else fail(name, why || 'condition false'); }

let daemon = null, browser = null, tmp = null;

async function cleanup() {
  if (browser) { try { await browser.close(); } catch (e) { /* gone */ } browser = null; }
  if (daemon && daemon.exitCode === null) { try { daemon.kill('SIGKILL'); } catch (e) { /* gone */ } }
  if (tmp) { fs.rmSync(tmp, { recursive: true, force: true }); tmp = null; }
}

let finished = false;
function finish(code) {
  finished = true;
  console.log(`${passed} passed, ${failed} failed`);
  process.exit(code !== undefined ? code : (failed ? 1 : 0));
}

// A promise nobody resolves would otherwise end the process quietly with status 0.
process.on('exit', (code) => {
  if (finished) return;
  fail('test', 'ended before it finished');
  console.log(`${passed} passed, ${failed} failed`);
  process.exitCode = 1;
});
for (const sig of ['SIGTERM', 'SIGINT']) {
  process.on(sig, async () => { fail('test', `stopped by ${sig}`); await cleanup(); finish(1); });
}
setTimeout(async () => {
  fail('test', `not finished after ${TOTAL_MS} ms`);
  await cleanup();
  finish(1);
}, TOTAL_MS).unref();

/* Starts convoyd on 127.0.0.1:0 and resolves with its port once it logs it. */
function startDaemon() {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'convoy-console-'));
  const models = path.join(tmp, 'models');
  fs.mkdirSync(models);
  fs.copyFileSync(path.join(ROOT, 'models', 'fashion-mnist.cvy'), path.join(models, 'fashion-mnist.cvy'));
  const bin = path.join(BUILD, 'convoyd');
  daemon = spawn(bin, ['--models', models, '--listen', '127.0.0.1:0', '--watch', '0'], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let log = '', found = false;
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('no "listening on" line within 15 s:\n' + log)), STEP_MS);
    daemon.on('error', (e) => { clearTimeout(timer); reject(e); });
    daemon.on('exit', (code) => { clearTimeout(timer); reject(new Error(`convoyd exited (${code}):\n${log}`)); });
    daemon.stderr.on('data', (d) => {
      log += d.toString();
      const m = found ? null : /listening on http:\/\/127\.0\.0\.1:(\d+)/.exec(log);
      if (m) {
        found = true;
        clearTimeout(timer);
        daemon.removeAllListeners('exit');
        resolve(Number(m[1]));
      }
    });
  });
}

async function stopDaemon() {
  if (!daemon || daemon.exitCode !== null) return null;
  const exited = new Promise((resolve) => daemon.on('exit', (code, sig) => resolve(sig ? sig : code)));
  daemon.kill('SIGTERM');
  const t = setTimeout(() => daemon.kill('SIGKILL'), STEP_MS);
  const rc = await exited;
  clearTimeout(t);
  return rc;
}

/* Waits (bounded) until /readyz answers 200: the port opens before the models are loaded. */
async function waitReady(base) {
  const end = Date.now() + STEP_MS;
  for (;;) {
    try {
      if ((await fetch(`${base}/readyz`)).status === 200) return;
    } catch (e) { /* not accepting yet */ }
    if (Date.now() > end) throw new Error('/readyz not 200 within 15 s');
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function apiClassify(base, bytes) {
  const r = await fetch(`${base}/models/fashion-mnist/classify?top_k=5`, {
    method: 'POST', headers: { 'Content-Type': 'application/octet-stream' }, body: bytes,
  });
  return { status: r.status, body: await r.json() };
}

async function main() {
  const port = await startDaemon();
  const base = `http://127.0.0.1:${port}`;
  await waitReady(base);
  ok(`convoyd started on port ${port} and ready`);

  // What the API itself answers, for comparison.
  const expected = {};
  for (const name of IMAGES) {
    const a = await apiClassify(base, fs.readFileSync(path.join(ROOT, 'tests', 'data', name)));
    if (a.status !== 200) throw new Error(`API answered ${a.status} for ${name}`);
    expected[name] = a.body.results[0].predictions;
  }
  const junk = Buffer.from('this is a text file, not an image\n');
  const junkAnswer = await apiClassify(base, junk);
  check('API answers 415 for a text file', junkAnswer.status === 415, `got ${junkAnswer.status}`);

  const stats = await (await fetch(`${base}/stats`)).json();
  const keys = ['uptime_s', 'requests_total', 'requests_per_s', 'mean_batch_size', 'latency_ms',
                'queue_depth', 'models'];
  check('GET /stats has every field', keys.every((k) => k in stats) && 'p50' in stats.latency_ms &&
        'p99' in stats.latency_ms, JSON.stringify(stats));
  check('GET /stats counts the API requests', stats.requests_total >= 4, `requests_total ${stats.requests_total}`);

  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    timeout: STEP_MS,
    // playwright gives every launch a fresh temporary --user-data-dir.
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
           '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  const page = await browser.newPage({ viewport: { width: 1100, height: 820 } });
  page.setDefaultTimeout(STEP_MS);
  const pageErrors = [], foreign = [];
  page.on('pageerror', (e) => pageErrors.push(String(e)));
  page.on('request', (req) => {
    const u = req.url();
    if (!u.startsWith(base + '/') && !u.startsWith('blob:') && !u.startsWith('data:')) foreign.push(u);
  });

  const resp = await page.goto(base + '/');
  check('GET / is 200 text/html; charset=utf-8', resp.status() === 200 &&
        resp.headers()['content-type'] === 'text/html; charset=utf-8',
        `${resp.status()} ${resp.headers()['content-type']}`);
  check('GET / has Cache-Control: no-cache', resp.headers()['cache-control'] === 'no-cache',
        resp.headers()['cache-control']);
  check('page title', (await page.title()) === 'convoy console', await page.title());

  await page.waitForSelector('#model option[value="fashion-mnist"]', { state: 'attached' });
  check('model selector offers fashion-mnist', (await page.inputValue('#model')) === 'fashion-mnist',
        await page.inputValue('#model'));
  await page.waitForSelector('#models td.state-ready');
  const row = await page.textContent('#models tr');
  check('model list shows name, version and state', row.includes('fashion-mnist') &&
        row.includes(stats.models[0].version) && row.includes('ready'), row);

  // Errors first, so the images end up at the top of the screenshot.
  await page.setInputFiles('#file', { name: 'notes.txt', mimeType: 'text/plain', buffer: junk });
  const junkMsg = page.locator('.result', { hasText: 'notes.txt' }).locator('.msg');
  await junkMsg.waitFor();
  const junkText = await junkMsg.textContent();
  check('non-image file: the server\'s message is shown', junkText.includes('Not a supported image') &&
        junkText.includes(junkAnswer.body.error.message), junkText);

  // A model that is not (or no longer) served: pick one the server does not know, in one step
  // so the periodic refresh of the selector cannot interfere.
  const png = fs.readFileSync(path.join(ROOT, 'tests', 'data', IMAGES[0])).toString('base64');
  await page.evaluate((b64) => {
    const sel = document.getElementById('model');
    sel.append(new Option('gone', 'gone'));
    sel.value = 'gone';
    const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
    const dt = new DataTransfer();
    dt.items.add(new File([bytes], 'other-model.png', { type: 'image/png' }));
    const input = document.getElementById('file');
    input.files = dt.files;
    input.dispatchEvent(new Event('change', { bubbles: true }));
  }, png);
  const goneMsg = page.locator('.result', { hasText: 'other-model.png' }).locator('.msg');
  await goneMsg.waitFor();
  const goneText = await goneMsg.textContent();
  check('unknown model: a plain message is shown', goneText.includes("Model 'gone' is not available") &&
        goneText.includes("unknown model 'gone'"), goneText);
  await page.selectOption('#model', 'fashion-mnist');

  await page.setInputFiles('#file', IMAGES.map((n) => path.join(ROOT, 'tests', 'data', n)));
  for (const name of IMAGES) {
    const card = page.locator('.result', { has: page.locator('h3', { hasText: name }) });
    await card.locator('.timing').waitFor();
    const labels = await card.locator('.pred .label').allTextContents();
    const scores = await card.locator('.pred .score').allTextContents();
    const want = expected[name].map((p) => p.label);
    const wantScores = expected[name].map((p) => (p.score * 100).toFixed(1) + '%');
    check(`${name}: the 5 labels shown equal the API's`, JSON.stringify(labels) === JSON.stringify(want),
          `page ${JSON.stringify(labels)} api ${JSON.stringify(want)}`);
    check(`${name}: the scores shown equal the API's`, JSON.stringify(scores) === JSON.stringify(wantScores),
          `page ${JSON.stringify(scores)} api ${JSON.stringify(wantScores)}`);
    const timing = await card.locator('.timing').textContent();
    check(`${name}: timing shown`, /total [0-9.]+ ms/.test(timing) && /inference [0-9.]+/.test(timing), timing);
  }
  const order = await page.locator('.result h3').allTextContents();
  check('newest result first', order[0] === IMAGES[IMAGES.length - 1], JSON.stringify(order));

  // Dropping a file on the page and pasting one classify them the same way.
  for (const [how, name] of [['drop', 'fashion_03.png'], ['paste', 'fashion_04.png']]) {
    const bytes = fs.readFileSync(path.join(ROOT, 'tests', 'data', name));
    const want = (await apiClassify(base, bytes)).body.results[0].predictions.map((p) => p.label);
    await page.evaluate(([kind, fname, b64]) => {
      const data = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
      const dt = new DataTransfer();
      dt.items.add(new File([data], fname, { type: 'image/png' }));
      if (kind === 'drop')
        document.getElementById('drop').dispatchEvent(
          new DragEvent('drop', { dataTransfer: dt, bubbles: true, cancelable: true }));
      else
        document.dispatchEvent(new ClipboardEvent('paste', { clipboardData: dt, bubbles: true,
                                                             cancelable: true }));
    }, [how, name, bytes.toString('base64')]);
    const card = page.locator('.result', { has: page.locator('h3', { hasText: name }) });
    await card.locator('.timing').waitFor();
    const labels = await card.locator('.pred .label').allTextContents();
    check(`${how}: ${name} classified, labels equal the API's`,
          JSON.stringify(labels) === JSON.stringify(want), `page ${JSON.stringify(labels)}`);
  }

  // The live figures refresh by themselves and count what the page sent.
  const minTotal = stats.requests_total + IMAGES.length + 6;
  await page.waitForFunction((n) => Number(document.getElementById('s-total').textContent) >= n,
                             minTotal);
  ok(`live request count reached ${minTotal}`);
  await page.waitForFunction(() => document.getElementById('s-p50').textContent.endsWith(' ms') &&
                                   document.getElementById('s-rps').textContent !== '–');
  const live = await page.textContent('dl.stats');
  check('live figures shown', /requests\/s\d/.test(live.replace(/\s+/g, '')) && live.includes('ms'), live);
  check('status line says connected', (await page.textContent('#status')).startsWith('connected'),
        await page.textContent('#status'));

  check('no script errors', pageErrors.length === 0, pageErrors.join('; '));
  check('no request left the daemon', foreign.length === 0, foreign.join(', '));

  // Wait for one more refresh so the figures include the page's requests, then the picture.
  await page.waitForTimeout(1600);
  await page.screenshot({ path: SHOT, fullPage: false });
  const size = fs.statSync(SHOT).size;
  check(`screenshot saved to ${path.relative(ROOT, SHOT)} (${size} bytes)`, size > 5000 && size < 400000, `${size} bytes`);

  await browser.close();
  browser = null;
  const rc = await stopDaemon();
  check('convoyd stopped cleanly (exit 0)', rc === 0, `exit ${rc}`);
}

main()
  .catch((e) => fail('test', e && e.stack ? e.stack : String(e)))
  .then(async () => { await cleanup(); finish(); });
