// Browser end-to-end tests: the whole local stack (`audioflow up`), simulated meetings and the page in
// Debian's Chromium driven by playwright-core.
//
// Run: `make test-e2e` (installs Chromium, the npm packages and the Python workspace, builds the page),
// or `cd tests/e2e && npm ci && npm test` with the page built and /usr/bin/chromium present.
// Environment: CHROMIUM (default /usr/bin/chromium); E2E_SEED (simulator seed, default 11: seq 1 first,
// seq 0 second, a duplicate of seq 2, so the recording grows while it plays); E2E_PAGE=vite serves the
// page with `vite preview` (proxying the API to the stack) instead of the gateway; E2E_KEEP=1 keeps the
// temporary folder (data, browser profile); E2E_LATENCY_S (default 30) is the length of each meeting
// whose live latency is measured (once with 2 s chunks, once with 5 s).

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import crypto from "node:crypto";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { after, before, test } from "node:test";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";
const UV = process.env.UV ?? "uv"; // make test-e2e passes the uv it installed (it may not be on the PATH)
const SEED = process.env.E2E_SEED ?? "11";
const SCREENSHOT = path.join(REPO, "docs", "screenshot.png");
const STATIC_INDEX = path.join(REPO, "api/src/audioflow/api/static/index.html");
const BROWSER_FLAGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--autoplay-policy=no-user-gesture-required",
];

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "audioflow-e2e-"));
const dataDir = path.join(tmp, "data");
const children = []; // every process started here: { name, proc, output, exited }
let port = 0; // the gateway's
let stack = null; // the running `audioflow up`
let context = null; // the browser
let base = ""; // where the page is served
let gateway = ""; // the gateway's origin
let token = "";
let credentials = {};

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const range = (n) => Array.from({ length: n }, (_, i) => i);

function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.on("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port: free } = server.address();
      server.close(() => resolve(free));
    });
  });
}

/** Starts a child process whose output is kept (and shown when it matters). */
function start(name, command, args, options = {}) {
  const proc = spawn(command, args, { cwd: REPO, stdio: ["ignore", "pipe", "pipe"], ...options });
  const output = [];
  const keep = (chunk) => output.push(...chunk.toString().split("\n").filter(Boolean));
  proc.stdout.on("data", keep);
  proc.stderr.on("data", keep);
  const exited = new Promise((resolve) => proc.on("exit", (code, signal) => resolve({ code, signal })));
  const child = { name, proc, output, exited };
  children.push(child);
  return child;
}

function waitForLine(child, pattern, ms) {
  return new Promise((resolve, reject) => {
    const onData = () => {
      const match = child.output.map((line) => pattern.exec(line)).find(Boolean);
      if (match) finish(null, match);
    };
    const onExit = (code) => finish(new Error(`${child.name} exited (${code}) before printing ${pattern}:\n${child.output.join("\n")}`));
    const timer = setTimeout(() => finish(new Error(`${child.name}: nothing matched ${pattern} within ${ms} ms`)), ms);
    function finish(err, value) {
      clearTimeout(timer);
      child.proc.stdout.off("data", onData);
      child.proc.stderr.off("data", onData);
      child.proc.off("exit", onExit);
      if (err) reject(err);
      else resolve(value);
    }
    child.proc.stdout.on("data", onData);
    child.proc.stderr.on("data", onData);
    child.proc.on("exit", onExit);
    onData();
  });
}

/** SIGINT (Ctrl-C; SIGTERM for vite, which ignores SIGINT without a terminal), then wait for the exit;
 * SIGKILL if it does not come in time. */
async function stop(child, ms = 30_000) {
  if (child.proc.exitCode !== null || child.proc.signalCode !== null) return child.exited;
  child.proc.kill(child.name === "vite preview" ? "SIGTERM" : "SIGINT");
  let timer;
  const result = await Promise.race([child.exited, new Promise((resolve) => (timer = setTimeout(resolve, ms, null)))]);
  clearTimeout(timer);
  if (result !== null) return result;
  console.error(`${child.name} did not stop within ${ms} ms: killing it`);
  child.proc.kill("SIGKILL");
  return child.exited;
}

/** The environment of a stack of this test's own: no REDIS_URL, DATABASE_URL or AUDIOFLOW_* from the
 * caller (CI exports the machine's shared servers), so `up` runs its own Redis and SQLite in dataDir. */
function ownStackEnv() {
  return Object.fromEntries(
    Object.entries(process.env).filter(([k]) => !k.startsWith("AUDIOFLOW_") && k !== "REDIS_URL" && k !== "DATABASE_URL"),
  );
}

async function startStack() {
  stack = start("audioflow up", UV, ["run", "audioflow", "up", "--port", String(port), "--data-dir", dataDir], {
    env: ownStackEnv(),
  });
  const [, url] = await waitForLine(stack, /ready: (http\S+)/, 90_000);
  return new URL(url);
}

async function stopStack() {
  const { code, signal } = await stop(stack);
  assert.equal(code, 0, `audioflow up should stop cleanly on SIGINT (exit ${code ?? signal}):\n${stack.output.join("\n")}`);
}

function simulate(meeting, args) {
  return start("audioflow simulate", UV, ["run", "audioflow", "simulate", "--url", gateway, "--meeting", meeting, ...args], {
    env: { ...ownStackEnv(), AUDIOFLOW_WEBHOOK_SECRET: credentials.webhook_secret, AUDIOFLOW_ADMIN_TOKEN: credentials.admin_token },
  });
}

before(async () => {
  assert.ok(fs.existsSync(CHROMIUM), `${CHROMIUM} is missing: apt-get install -y chromium (make test-e2e does)`);
  if (process.env.E2E_PAGE !== "vite") {
    assert.ok(fs.existsSync(STATIC_INDEX), `the page is not built (${STATIC_INDEX}): run make frontend`);
  }
  port = await freePort();
  const ready = await startStack();
  token = ready.searchParams.get("token");
  credentials = JSON.parse(fs.readFileSync(path.join(dataDir, "local-credentials.json"), "utf8"));
  gateway = base = ready.origin;
  if (process.env.E2E_PAGE === "vite") {
    const previewPort = await freePort();
    const vite = path.join(REPO, "frontend/node_modules/.bin/vite");
    const preview = start("vite preview", vite, ["preview", "--port", String(previewPort), "--strictPort"], {
      cwd: path.join(REPO, "frontend"),
      env: { ...process.env, AUDIOFLOW_API: gateway },
    });
    await waitForLine(preview, /Local:/, 30_000);
    base = `http://127.0.0.1:${previewPort}`;
  }
  const index = await fetch(`${base}/`);
  assert.equal(index.status, 200, `GET ${base}/ should serve the built page, got HTTP ${index.status}: ${await index.text()}`);
  assert.match(index.headers.get("content-type") ?? "", /text\/html/);
  context = await chromium.launchPersistentContext(path.join(tmp, "profile"), {
    executablePath: CHROMIUM,
    acceptDownloads: true,
    headless: true,
    viewport: { width: 1400, height: 640 },
    args: BROWSER_FLAGS,
  });
});

after(async () => {
  await context?.close().catch(() => {});
  for (const child of [...children].reverse()) await stop(child);
  if (process.env.E2E_KEEP) console.error(`kept ${tmp}`);
  else fs.rmSync(tmp, { recursive: true, force: true });
});

/** What the page shows, read from the DOM. */
function snapshot(page) {
  return page.evaluate(() => {
    const player = document.querySelector(".player");
    return {
      // The player's clock on the meeting's timeline (live or replay), in seconds.
      position: player?.hasAttribute("data-position") ? Number(player.getAttribute("data-position")) : null,
      behind: player?.getAttribute("data-behind") || null,
      badge: document.querySelector(".player .mode")?.textContent ?? null,
      mode: player?.getAttribute("data-mode") ?? null,
      recording: Number(player?.getAttribute("data-recording-duration") ?? 0),
      seqs: [...document.querySelectorAll(".transcript li.segment")].map((li) => Number(li.dataset.seq)),
      texts: [...document.querySelectorAll(".transcript li.segment .text")].map((el) => el.textContent ?? ""),
      connection: document.querySelector("[data-connection]")?.getAttribute("data-connection") ?? null,
      phase: document.querySelector(".meeting-head .phase")?.textContent ?? null,
      cells: [...document.querySelectorAll(".chunks .grid .cell")].map((c) => c.getAttribute("data-status")),
      heard: Number(document.querySelector(".transcript li.segment.heard")?.getAttribute("data-seq") ?? -1),
      listPhase: document.querySelector(".meetings li.selected .phase")?.textContent ?? null,
    };
  });
}

async function until(page, predicate, ms, what) {
  const start = Date.now();
  const deadline = start + ms;
  let last;
  const trail = []; // how the player moved while waiting, for a failure's message
  while (Date.now() < deadline) {
    last = await snapshot(page);
    if (predicate(last)) return last;
    trail.push(`${((Date.now() - start) / 1000).toFixed(1)}s: ${last.mode} ${last.position} (${last.badge})`);
    await sleep(250);
  }
  assert.fail(
    `timed out after ${ms} ms waiting for ${what}; the page showed ${JSON.stringify(last)}; ` +
      `the player meanwhile: ${trail.join(", ")}`,
  );
}

/** A page that records console errors, page errors and the events WebSockets it opens. */
async function watchedPage() {
  const page = await context.newPage();
  const watch = { page, problems: [], sockets: [] };
  page.on("console", (message) => {
    if (message.type() === "error") watch.problems.push(`console.error: ${message.text()}`);
  });
  page.on("pageerror", (error) => watch.problems.push(`page error: ${error.message}`));
  page.on("websocket", (ws) => {
    if (ws.url().includes("/events")) watch.sockets.push(new URL(ws.url()));
  });
  return watch;
}

async function openMeeting(page, meeting) {
  const row = page.locator(`button.meeting-row[data-meeting="${meeting}"]`);
  await row.waitFor({ timeout: 30_000 }); // the list is pushed; the meeting appears with its first chunk
  await row.click();
  await page.waitForURL((url) => url.hash === `#/meeting/${meeting}`);
}

async function transcriptOf(meeting) {
  const response = await fetch(`${gateway}/v1/meetings/${meeting}/transcript`, { headers: { Authorization: `Bearer ${token}` } });
  assert.equal(response.status, 200);
  return response.json();
}

test("a shuffled meeting with a duplicate plays live, transcribes completely and survives a reload", { timeout: 120_000 }, async () => {
  const MEETING = "e2e";
  const CHUNKS = 8;
  const { page, problems, sockets } = await watchedPage();
  const served = await page.goto(`${base}/?token=${encodeURIComponent(token)}`);
  // The page runs under the gateway's strict policy; a violation would be a console error below.
  const headers = served.headers();
  assert.match(headers["content-security-policy"], /default-src 'self'; script-src 'self'/);
  assert.equal(headers["x-frame-options"], "DENY");
  await page.waitForURL((url) => !url.searchParams.has("token"), { timeout: 5000 }); // out of the address bar

  const simulator = simulate(MEETING, [
    "--chunks", String(CHUNKS), "--chunk-seconds", "2", "--shuffle", "--duplicates", "1", "--realtime", "--end", "--seed", SEED,
  ]);
  await openMeeting(page, MEETING);

  // Sample while the meeting runs: the audio must advance while the recording grows.
  const samples = [];
  const deadline = Date.now() + 90_000;
  for (;;) {
    const s = await snapshot(page);
    samples.push(s);
    if ((s.seqs.length === CHUNKS && s.phase === "completed") || Date.now() > deadline) break;
    await sleep(400);
  }
  const sim = await simulator.exited;
  assert.equal(sim.code, 0, `the simulator failed:\n${simulator.output.join("\n")}`);
  const grewWhilePlaying = samples.some((a, i) =>
    samples.slice(i + 1).some((b) => b.position > a.position + 0.5 && b.recording > a.recording),
  );
  const trace = samples.map((s) => `${s.position?.toFixed(2)}@${s.recording}`).join(" ");
  assert.ok(grewWhilePlaying, `the player's clock should advance while the recording grows; position@recording: ${trace}`);

  // A row for every seq, seq 0 included, in order; every chunk received, transcribed and recorded.
  const done = await until(
    page,
    (s) => s.seqs.length === CHUNKS && s.cells.every((c) => c === "done") && s.listPhase === "completed",
    30_000,
    "the complete transcript (and the pushed list catching up)",
  );
  assert.deepEqual(done.seqs, range(CHUNKS));
  assert.deepEqual(done.cells, range(CHUNKS).map(() => "done"));
  assert.equal(done.connection, "open");
  const api = await transcriptOf(MEETING);
  assert.deepEqual(api.segments.map((s) => s.seq), range(CHUNKS));
  assert.deepEqual(done.texts, api.segments.map((s) => s.text || "(no speech)"), "the page shows the API's transcript");
  assert.ok(done.texts.filter((t) => t !== "(no speech)").length >= CHUNKS - 1, `rows carry text: ${JSON.stringify(done.texts)}`);

  fs.mkdirSync(path.dirname(SCREENSHOT), { recursive: true });
  await page.screenshot({ path: SCREENSHOT, fullPage: true });
  assert.equal(sockets.length, 1, "one events WebSocket for the open meeting");
  assert.equal(sockets[0].searchParams.get("since"), null, "a fresh page replays from the start");

  // Clicking a row plays the recording from that segment's start, and highlights it.
  await page.locator('.transcript li.segment[data-seq="3"]').click();
  await until(page, (s) => s.mode === "replay" && s.position >= 6 && s.position < 8 && s.heard === 3, 10_000, "playing seq 3 from 0:06");

  // Downloads: the transcript in three formats (fetched with the bearer header) and the recording.
  const saved = async (locator) => {
    const [download] = await Promise.all([page.waitForEvent("download"), locator.click()]);
    const file = await download.path();
    return { name: download.suggestedFilename(), body: fs.readFileSync(file) };
  };
  const vtt = await saved(page.getByRole("button", { name: "vtt", exact: true }));
  assert.equal(vtt.name, `${MEETING}.vtt`);
  assert.match(vtt.body.toString(), /^WEBVTT\n\n00:00:0\d\.\d{3} --> \d\d:\d\d:\d\d\.\d{3}\n\S/);
  const srt = await saved(page.getByRole("button", { name: "srt", exact: true }));
  assert.match(srt.body.toString(), /^1\n00:00:0\d,\d{3} --> \d\d:\d\d:\d\d,\d{3}\n\S/);
  const txt = await saved(page.getByRole("button", { name: "txt", exact: true }));
  assert.equal(txt.body.toString().trim().split("\n").length, done.texts.filter((t) => t !== "(no speech)").length);
  const wav = await saved(page.getByRole("link", { name: "recording.wav" }));
  assert.equal(wav.name, `${MEETING}.wav`);
  assert.equal(wav.body.subarray(0, 4).toString(), "RIFF");
  assert.equal(wav.body.length, 44 + CHUNKS * 2 * 16000 * 2, "the whole recording: 8 chunks of 2 s, 16 kHz mono s16");

  // Reload: the token (sessionStorage) and the meeting (hash) are kept; the replay rebuilds everything.
  await page.reload();
  const again = await until(page, (s) => s.seqs.length === CHUNKS && s.connection === "open", 30_000, "the transcript after reload");
  assert.deepEqual(again.seqs, range(CHUNKS));
  assert.deepEqual(again.texts, done.texts);
  assert.equal(sockets.length, 2, "exactly one more WebSocket after the reload");
  const cursor = await page.evaluate((m) => sessionStorage.getItem(`audioflow.cursor.${m}`), MEETING);
  assert.match(cursor ?? "", /^\d+-\d+$/, "the last event id is kept per meeting in sessionStorage");

  assert.deepEqual(problems, [], "no console errors");
  await page.close();
});

test("a gateway restart mid-meeting: the page reconnects with since and loses nothing", { timeout: 120_000 }, async () => {
  const MEETING = "e2e-restart";
  const CHUNKS = 10;
  const { page, problems, sockets } = await watchedPage();
  const tap = tapSockets(page, MEETING);
  await page.goto(`${base}/?token=${encodeURIComponent(token)}`); // a new tab: its own sessionStorage
  const first = simulate(MEETING, ["--chunks", String(CHUNKS), "--chunk-seconds", "2", "--realtime"]);
  await openMeeting(page, MEETING);
  await until(page, (s) => s.seqs.length >= 3 && s.connection === "open", 40_000, "the first rows");

  await stop(first);
  const outageFrom = problems.length;
  await stopStack();
  await until(page, (s) => s.connection !== "open", 15_000, "the page to notice the gateway left");
  await startStack(); // same data folder and port: the meetings and their events are still there
  await until(page, (s) => s.connection === "open", 30_000, "the page to reconnect");
  const outage = problems.splice(outageFrom); // the browser logs the refused requests itself meanwhile
  const second = simulate(MEETING, ["--chunks", String(CHUNKS), "--chunk-seconds", "2", "--rate", "4", "--end"]);
  assert.equal((await second.exited).code, 0, `the second simulator failed:\n${second.output.join("\n")}`);

  const done = await until(
    page,
    (s) => s.seqs.length === CHUNKS && s.phase === "completed" && s.connection === "open",
    60_000,
    "the complete transcript after the restart",
  );
  assert.deepEqual(done.seqs, range(CHUNKS));
  const api = await transcriptOf(MEETING);
  assert.deepEqual(done.texts, api.segments.map((s) => s.text || "(no speech)"));
  assert.equal(sockets[0].searchParams.get("since"), null);
  const resumed = sockets.slice(1);
  assert.ok(resumed.length >= 1, "the page reconnected");
  assert.ok(resumed.every((url) => /^\d+-\d+$/.test(url.searchParams.get("since") ?? "")), "every reconnect resumes with since");
  assert.ok(outage.every((p) => /Failed to load resource|WebSocket connection/.test(p)), `only network errors while the gateway was away: ${outage}`);
  // Live audio came back after the restart from the byte where it had stopped: no gap, no repeat.
  await until(page, (s) => s.mode === "replay", 30_000, "the live player to play out the meeting's end");
  await checkDelivered(MEETING, tap);
  assert.ok(tap.audio.filter((s) => s.start && s.from !== "live").length >= 1, "live audio resumed from an offset");
  assert.deepEqual(problems, [], "no console errors before the restart or after the reconnect");
  await page.close();
});

// ---- live latency: measured in the browser (the numbers go to bench/RESULTS.md; bounds here are generous) ----

const SPEECH = path.join(REPO, "workers/src/audioflow/workers/fixtures/speech.wav");
const BYTES_PER_S = 16000 * 2; // the fixture: 16 kHz mono 16-bit

/** `count` WAV chunks of `seconds` each, cut from the speech fixture (looped), with canonical headers. */
function speechChunks(seconds, count) {
  const wav = fs.readFileSync(SPEECH);
  assert.equal(wav.subarray(36, 40).toString(), "data", "the fixture has a canonical 44-byte header");
  const pcm = wav.subarray(44);
  const size = seconds * BYTES_PER_S;
  return range(count).map((i) => {
    const piece = Buffer.alloc(size);
    for (let at = 0; at < size; ) at += pcm.copy(piece, at, (i * size + at) % pcm.length);
    const header = Buffer.from(wav.subarray(0, 44));
    header.writeUInt32LE(36 + size, 4);
    header.writeUInt32LE(size, 40);
    return Buffer.concat([header, piece]);
  });
}

/** PUT a chunk signed as Standard Webhooks over `{id}.{ts}.PUT {path}.{body}` (the path is signed too);
 * resolves with the status and when the answer came. */
async function upload(meeting, seq, body) {
  const id = `msg_${crypto.randomBytes(12).toString("hex")}`;
  const ts = Math.floor(Date.now() / 1000);
  const key = Buffer.from(credentials.webhook_secret.slice("whsec_".length), "base64");
  const path = `/v1/meetings/${meeting}/chunks/${seq}`;
  const mac = crypto.createHmac("sha256", key).update(`${id}.${ts}.PUT ${path}.`).update(body).digest("base64");
  const response = await fetch(`${gateway}${path}`, {
    method: "PUT",
    body,
    headers: { "content-type": "audio/wav", "webhook-id": id, "webhook-timestamp": String(ts), "webhook-signature": `v1,${mac}` },
  });
  return { status: response.status, at: Date.now() };
}

const percentile = (values, p) => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))];
};
const stats = (values) => ({ n: values.length, p50: percentile(values, 50), p95: percentile(values, 95), max: Math.max(...values) });

/** Follows what a page receives on a meeting's sockets: its events and its live-audio PCM (per socket). */
function tapSockets(page, meeting) {
  const tap = { events: [], audio: [] };
  page.on("websocket", (ws) => {
    const url = new URL(ws.url());
    if (url.pathname === `/v1/meetings/${meeting}/events`) {
      ws.on("framereceived", ({ payload }) => tap.events.push({ ...JSON.parse(String(payload)), seenAt: Date.now() }));
    } else if (url.pathname === `/v1/meetings/${meeting}/live-audio`) {
      const socket = { from: url.searchParams.get("from"), start: null, frames: [] };
      tap.audio.push(socket);
      ws.on("framereceived", ({ payload }) => {
        if (typeof payload === "string") socket.start ??= JSON.parse(payload);
        else socket.frames.push({ offset: Number(payload.readBigUInt64LE(0)), pcm: payload.subarray(8) });
      });
    }
  });
  return tap;
}

/** Records in the page, with Date.now(), every position of the player's clock and when each transcript row
 * first appears. */
function recordPlayer(page) {
  return page.evaluate(() => {
    const log = { positions: [], rows: {}, heard: new Set() };
    window.__playerLog = log;
    const look = () => {
      const now = Date.now();
      const player = document.querySelector(".player[data-position]");
      if (player) log.positions.push([now, Number(player.getAttribute("data-position")), player.getAttribute("data-mode")]);
      for (const li of document.querySelectorAll(".transcript li.segment")) log.rows[li.dataset.seq] ??= now;
      const heard = document.querySelector(".transcript li.segment.heard");
      if (heard) log.heard.add(Number(heard.dataset.seq));
    };
    new MutationObserver(look).observe(document.body, { subtree: true, childList: true, attributes: true, attributeFilter: ["data-position", "class"] });
    look();
  });
}

const playerLog = (page) =>
  page.evaluate(() => ({ ...window.__playerLog, heard: [...window.__playerLog.heard] }));

/** The live-audio bytes each socket delivered are the recording's, contiguous from where it started, and
 * each later socket starts where the previous one ended or at a fresh live edge. */
async function checkDelivered(meeting, tap) {
  const response = await fetch(`${gateway}/v1/meetings/${meeting}/recording.wav`, { headers: { Authorization: `Bearer ${token}` } });
  const recording = Buffer.from(await response.arrayBuffer()).subarray(44);
  let delivered = 0;
  let previousEnd = null;
  for (const socket of tap.audio) {
    if (!socket.start) continue;
    if (socket.from !== "live") {
      assert.equal(socket.from, String(previousEnd), "a reconnect asks for the end of what was received");
      assert.equal(socket.start.offset, previousEnd, "and the server starts there");
    }
    let next = socket.start.offset;
    for (const { offset, pcm } of socket.frames) {
      assert.equal(offset, next, `live audio from ${socket.from}: a frame at ${offset}, expected ${next} (gap or repeat)`);
      assert.ok(pcm.equals(recording.subarray(offset, offset + pcm.length)), `live audio bytes ${offset}+${pcm.length} differ from the recording`);
      next += pcm.length;
      delivered += pcm.length;
    }
    previousEnd = next;
  }
  return delivered;
}

async function newMeeting(meeting) {
  // Creating takes the admin token; the page itself only ever has the read token.
  const created = await fetch(`${gateway}/v1/meetings`, {
    method: "POST",
    headers: { Authorization: `Bearer ${credentials.admin_token}`, "content-type": "application/json" },
    body: JSON.stringify({ id: meeting }),
  });
  assert.equal(created.status, 201, await created.text());
}

const latency = {}; // chunk seconds -> { audio, captions }

const LATENCY_S = Number(process.env.E2E_LATENCY_S ?? 30); // meeting length per chunk size

for (const seconds of [2, 5]) {
  const count = Math.round(LATENCY_S / seconds);
  test(`live audio and captions keep up with ${seconds} s chunks (measured)`, { timeout: 150_000 + 1000 * LATENCY_S }, async () => {
    const MEETING = `e2e-latency-${seconds}s`;
    const chunks = speechChunks(seconds, count);
    await newMeeting(MEETING);
    const { page, problems } = await watchedPage();
    const tap = tapSockets(page, MEETING);
    await page.goto(`${base}/?token=${encodeURIComponent(token)}`);
    await openMeeting(page, MEETING);
    await recordPlayer(page);

    const uploads = [];
    const t0 = Date.now() + 500;
    for (const [seq, body] of chunks.entries()) {
      await sleep(Math.max(0, t0 + seq * seconds * 1000 - Date.now())); // real time: one chunk per chunk length
      uploads.push(upload(MEETING, seq, body));
    }
    const answers = await Promise.all(uploads);
    assert.deepEqual(answers.map((a) => a.status), chunks.map(() => 201));
    const end = count * seconds;
    await until(page, (s) => s.seqs.length === count && s.position >= end - 0.3, 60_000, "every row, and the last chunk heard");
    const log = await playerLog(page);

    // Audio: from recording.extended (the concat worker's event time) to the player's clock passing the
    // start of each chunk it appended.
    const audio = [];
    for (const event of tap.events.filter((e) => e.type === "recording.extended")) {
      for (const seq of event.data.appended) {
        const heard = log.positions.find(([, position, mode]) => mode === "live" && position > seq * seconds);
        assert.ok(heard, `seq ${seq} was never heard live`);
        audio.push((heard[0] - event.ts * 1000) / 1000);
      }
    }
    assert.equal(audio.length, count, "every chunk entered the recording once");
    // Captions: from the upload's 201 to the row on screen.
    const captions = answers.map((a, seq) => (log.rows[seq] - a.at) / 1000);
    assert.ok(captions.every(Number.isFinite), `a row per chunk: ${JSON.stringify(log.rows)}`);
    latency[seconds] = { audio: stats(audio), captions: stats(captions) };
    console.log(`latency ${seconds} s chunks: ${JSON.stringify(latency[seconds])}`);
    assert.ok(latency[seconds].audio.p95 < 5, `audio p95 ${latency[seconds].audio.p95} s (goal 1.5 s)`);
    assert.ok(latency[seconds].captions.p95 < 15, `captions p95 ${latency[seconds].captions.p95} s (goal 1 s)`);
    // A row on screen before its audio was over is highlighted while it is heard (rows are never held
    // back for the audio, so the first ones may come after their audio was heard).
    for (let seq = 0; seq < count; seq++) {
      const over = log.positions.find(([, position]) => position >= (seq + 1) * seconds - 0.1);
      if (over && log.rows[seq] < over[0] - 300) assert.ok(log.heard.includes(seq), `row ${seq} was never highlighted: ${log.heard}`);
    }

    const delivered = await checkDelivered(MEETING, tap);
    assert.ok(delivered >= (count - 1) * seconds * BYTES_PER_S, `live audio delivered ${delivered} bytes`);
    assert.equal(tap.audio.length, 1, "one live-audio socket");
    assert.deepEqual(problems, [], "no console errors");
    await page.close();
  });
}

test("seeking back and going live again while the meeting grows", { timeout: 120_000 }, async () => {
  const MEETING = "e2e-go-live";
  const SECONDS = 2;
  const chunks = speechChunks(SECONDS, 14);
  await newMeeting(MEETING);
  const { page, problems } = await watchedPage();
  const tap = tapSockets(page, MEETING);
  await page.goto(`${base}/?token=${encodeURIComponent(token)}`);
  await openMeeting(page, MEETING);
  let stopped = false;
  const sending = (async () => {
    const t0 = Date.now();
    for (const [seq, body] of chunks.entries()) {
      await sleep(Math.max(0, t0 + seq * SECONDS * 1000 - Date.now()));
      if (stopped) return;
      assert.equal((await upload(MEETING, seq, body)).status, 201);
    }
  })();

  await until(page, (s) => s.mode === "live" && s.seqs.length >= 3 && s.badge === "● LIVE", 30_000, "live, and saying so");
  const goLive = [];
  for (const row of [1, 3]) {
    await page.locator(`.transcript li.segment[data-seq="${row}"]`).click(); // back into the recording
    const back = await until(page, (s) => s.mode === "replay" && s.position >= row * SECONDS && /behind live/.test(s.badge ?? ""), 10_000, `replaying seq ${row}, behind live`);
    assert.ok(Number(back.behind) > 1.5, `the badge says how far behind: ${back.badge} (${back.behind} s)`);
    await sleep(1500);
    const pressed = Date.now();
    await page.getByRole("button", { name: "Go live" }).click();
    const live = await until(page, (s) => s.mode === "live" && s.badge === "● LIVE" && Number(s.behind) <= 1.5, 10_000, "live again");
    goLive.push((Date.now() - pressed) / 1000);
    const later = await until(page, (s) => s.position > live.position + 0.5, 10_000, "the live clock moving");
    assert.equal(later.mode, "live");
  }
  stopped = true;
  await sending;
  latency.goLive = stats(goLive);
  console.log(`go live -> LIVE: ${JSON.stringify(latency.goLive)}`);
  assert.ok(latency.goLive.max < 5, `Go live took ${latency.goLive.max} s (goal 2 s)`);
  await checkDelivered(MEETING, tap);
  assert.equal(tap.audio.filter((s) => s.start).length, 3, "a live-audio socket at the start and after each Go live");
  assert.deepEqual(problems, [], "no console errors");
  await page.close();
});
