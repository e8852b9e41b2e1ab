// End-to-end test of flamingo-server's OpenAI-compatible HTTP API, driven by the official
// `openai` JavaScript SDK (pinned in package.json; see run_test.sh).
//
// The bundled tiny model is random, so its answers are noise: these tests check response
// shapes, determinism and equalities between requests, never specific words.
//
// Environment:
//   FLAMINGO_SERVER     the server binary (default /work/main/build/bin/flamingo-server)
//   FLAMINGO_IMAGE_DIR  folder with the test images (default ../../golden/idefics-tiny/images,
//                       relative to this file)
//
// Run: ./run_test.sh, or node --test openai_sdk_test.mjs after `npm ci` (Node 18.19+ or 20+).

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { fileURLToPath } from 'node:url';

import OpenAI from 'openai';

const SERVER = process.env.FLAMINGO_SERVER || '/work/main/build/bin/flamingo-server';
// The model served: the tiny random test model (FLAMINGO_MODEL; ctest sets it), not the
// programs' default demo model, whose answers these tests do not expect.
const MODEL_DIR = process.env.FLAMINGO_MODEL || '/work/main/build/models/idefics-tiny-random';
const IMAGE_DIR =
  process.env.FLAMINGO_IMAGE_DIR ||
  fileURLToPath(new URL('../../golden/idefics-tiny/images/', import.meta.url));
const MODEL = 'idefics-tiny-random';
const HOST = '127.0.0.1';

// ---------------------------------------------------------------------------------------------
// Server processes

const children = new Set();
process.on('exit', () => {
  // Never leave a server behind, whatever happened to the tests.
  for (const child of children) {
    try {
      child.kill('SIGKILL');
    } catch {
      // already gone
    }
  }
});

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

// A port that was free a moment ago (the server may still lose a race for it: startServer retries).
function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.once('error', reject);
    srv.listen(0, HOST, () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

// Starts flamingo-server with an HTTP port of our choosing. Resolves once the stderr line
// "http listening on http://127.0.0.1:PORT" appeared and, when waitReady, the " ready" line.
async function startServer(extraArgs = [], { waitReady = true, timeoutMs = 30000 } = {}) {
  assert.ok(existsSync(SERVER), `server binary not found: ${SERVER} (set FLAMINGO_SERVER)`);
  let lastError;
  for (let attempt = 0; attempt < 5; ++attempt) {
    const port = await freePort();
    const args = ['--host', HOST, '--port', '0', '--metrics-port', '0', '--http-port', String(port),
      '--dtype', 'float32', '--model', MODEL_DIR, ...extraArgs];
    const child = spawn(SERVER, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    children.add(child);
    const server = {
      child,
      port,
      log: '',
      exited: new Promise((resolve) => {
        child.once('exit', (code, signal) => {
          children.delete(child);
          resolve({ code, signal });
        });
      }),
    };
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (text) => {
      server.log = (server.log + text).slice(-65536);
    });
    const listening = `http listening on http://${HOST}:${port}`;
    const deadline = Date.now() + timeoutMs;
    let outcome = 'timeout';
    let exit;
    server.exited.then((e) => {
      exit = e;
    });
    while (Date.now() < deadline) {
      if (exit) {
        outcome = 'exited';
        break;
      }
      if (server.log.includes(listening) && (!waitReady || server.log.includes(' ready'))) {
        outcome = 'up';
        break;
      }
      await sleep(20);
    }
    if (outcome === 'up') return server;
    if (outcome === 'timeout') {
      child.kill('SIGKILL');
      await server.exited;
      throw new Error(`flamingo-server did not come up in ${timeoutMs} ms; log:\n${server.log}`);
    }
    // Exited early: most likely lost the race for the port; try another one.
    lastError = new Error(
      `flamingo-server exited (${JSON.stringify(exit)}) before listening; log:\n${server.log}`);
    if (!server.log.includes('cannot bind')) throw lastError;
  }
  throw lastError;
}

// SIGTERM, then the exit status (code, signal); fails the calling test after timeoutMs.
async function stopServer(server, timeoutMs = 20000) {
  if (server.child.exitCode === null && server.child.signalCode === null) {
    server.child.kill('SIGTERM');
  }
  let timer;
  const timeout = new Promise((resolve) => {
    timer = setTimeout(() => resolve(null), timeoutMs);
  });
  const exit = await Promise.race([server.exited, timeout]);
  clearTimeout(timer);
  if (exit === null) {
    server.child.kill('SIGKILL');
    await server.exited;
    throw new Error(`flamingo-server did not exit within ${timeoutMs} ms of SIGTERM; log:\n` +
      server.log.slice(-4000));
  }
  return exit;
}

// openai 4.x sends requests with node-fetch 2.7 over a keep-alive agent. On Node 18 (Debian 12's
// 18.20.4 included) node-fetch's check for badly ended chunked responses misfires on sockets
// that stay open, and every streamed response fails with "Premature close"
// (ERR_STREAM_PREMATURE_CLOSE) after it was received in full: node-fetch issue #1767. A plain
// Node http server shows the same, so this is not the server's fault; on Node 18 the tests use
// one connection per request. Node 20+ keeps the SDK's default keep-alive agent.
const NODE_MAJOR = Number(process.versions.node.split('.')[0]);
const CLIENT_AGENT = NODE_MAJOR < 20 ? new http.Agent({ keepAlive: false }) : undefined;

function clientFor(server, options = {}) {
  return new OpenAI({
    apiKey: 'sk-unused', // the server does not check it; the SDK insists on one
    baseURL: `http://${HOST}:${server.port}/v1`,
    maxRetries: 0, // see every 429/503 as it is
    timeout: 30000,
    ...(CLIENT_AGENT ? { httpAgent: CLIENT_AGENT } : {}),
    ...options,
  });
}

// Prometheus text of GET /metrics at the HTTP port (through the SDK's raw request helper).
// A labelled series that was never touched may be absent: `fallback` then (undefined: fail).
async function metricValue(client, server, name, fallback = undefined) {
  const text = await client.get(`http://${HOST}:${server.port}/metrics`);
  assert.equal(typeof text, 'string');
  const line = text.split('\n').find((l) => l.startsWith(`${name} `) || l.startsWith(`${name}{`));
  if (line === undefined && fallback !== undefined) return fallback;
  assert.ok(line !== undefined, `metric ${name} missing from /metrics`);
  return Number(line.slice(line.lastIndexOf(' ') + 1));
}

// ---------------------------------------------------------------------------------------------
// Request helpers

function dataUrl(file, mime) {
  return `data:${mime};base64,${readFileSync(`${IMAGE_DIR}/${file}`).toString('base64')}`;
}

function userText(text) {
  return [{ role: 'user', content: text }];
}

// Runs a streaming request to the end; returns the chunks.
async function collect(stream) {
  const chunks = [];
  for await (const chunk of stream) chunks.push(chunk);
  return chunks;
}

// Checks the chunk sequence of one streamed chat choice (n = 1) and returns
// { content, finishReason, usage }.
function checkChatChunks(chunks, { includeUsage }) {
  assert.ok(chunks.length >= 2, `too few chunks: ${JSON.stringify(chunks)}`);
  const id = chunks[0].id;
  assert.match(id, /\S/);
  for (const c of chunks) {
    assert.equal(c.object, 'chat.completion.chunk');
    assert.equal(c.id, id, 'every chunk carries the same id');
    assert.equal(c.model, MODEL);
    assert.equal(typeof c.created, 'number');
  }
  const withChoices = chunks.filter((c) => c.choices.length > 0);
  assert.equal(withChoices[0].choices[0].delta.role, 'assistant', 'role in the first chunk');
  let content = '';
  for (const [i, c] of withChoices.entries()) {
    assert.equal(c.choices.length, 1);
    assert.equal(c.choices[0].index, 0);
    const last = i === withChoices.length - 1;
    if (!last) assert.equal(c.choices[0].finish_reason, null, `chunk ${i} has no finish_reason`);
    if (typeof c.choices[0].delta.content === 'string') content += c.choices[0].delta.content;
    if (includeUsage) assert.equal(c.usage, null, 'usage is null on the choice chunks');
  }
  const finishReason = withChoices.at(-1).choices[0].finish_reason;
  assert.ok(['stop', 'length'].includes(finishReason), `finish_reason ${finishReason}`);
  let usage;
  if (includeUsage) {
    const final = chunks.at(-1);
    assert.deepEqual(final.choices, [], 'the usage chunk comes last, with no choices');
    usage = final.usage;
    checkUsage(usage);
    assert.equal(chunks.filter((c) => c.choices.length === 0).length, 1, 'one usage chunk');
  } else {
    assert.ok(chunks.every((c) => c.choices.length > 0));
  }
  return { content, finishReason, usage };
}

// The token counts of two usages (cached_tokens may differ: the prefix cache).
function sameCounts(a, b) {
  for (const key of ['prompt_tokens', 'completion_tokens', 'total_tokens']) {
    assert.equal(a[key], b[key], `usage.${key}`);
  }
}

function checkUsage(usage) {
  assert.ok(usage, 'usage present');
  for (const key of ['prompt_tokens', 'completion_tokens', 'total_tokens']) {
    assert.ok(Number.isInteger(usage[key]) && usage[key] >= 0, `usage.${key} = ${usage[key]}`);
  }
  assert.ok(usage.prompt_tokens > 0);
  assert.equal(usage.total_tokens, usage.prompt_tokens + usage.completion_tokens);
}

function checkChatCompletion(r, { n = 1 } = {}) {
  assert.match(r.id, /\S/);
  assert.equal(r.object, 'chat.completion');
  assert.equal(r.model, MODEL);
  assert.equal(typeof r.created, 'number');
  assert.equal(r.choices.length, n);
  r.choices.forEach((c, i) => {
    assert.equal(c.index, i);
    assert.equal(c.message.role, 'assistant');
    assert.equal(typeof c.message.content, 'string');
    assert.ok(['stop', 'length'].includes(c.finish_reason), `finish_reason ${c.finish_reason}`);
  });
  checkUsage(r.usage);
  return r;
}

// Expects `promise` to reject with the SDK error class `ErrorClass` and the HTTP status; returns it.
async function expectApiError(promise, ErrorClass, status) {
  let error;
  try {
    await promise;
  } catch (e) {
    error = e;
  }
  assert.ok(error, `expected ${ErrorClass.name} (${status}), the request succeeded`);
  assert.ok(error instanceof ErrorClass,
    `expected ${ErrorClass.name}, got ${error?.constructor?.name}: ${error?.message}`);
  assert.equal(error.status, status);
  assert.ok(error.error && typeof error.error.message === 'string', 'OpenAI-shaped error body');
  assert.equal(typeof error.error.type, 'string');
  return error;
}

// A 400 whose param is `param` and whose message names it.
async function expectBadRequest(promise, param) {
  const e = await expectApiError(promise, OpenAI.BadRequestError, 400);
  assert.equal(e.param, param, `param of: ${e.message}`);
  assert.equal(e.error.type, 'invalid_request_error');
  assert.ok(e.error.message.includes(param), `the message names ${param}: ${e.error.message}`);
  return e;
}

const GREEDY = { temperature: 0 };
const PNG = 'cat_face_28x28.png';
const JPEG = 'chair_baseline_100x80.jpg';

// ---------------------------------------------------------------------------------------------

describe('flamingo-server OpenAI API through the openai SDK', { timeout: 120000 }, () => {
  let server;
  let client;

  before(async () => {
    // A long request must outlast a few round trips: the tiny model decodes 1000 tokens in well
    // under a second, so requests may run to 8000.
    server = await startServer(['--context-length', '8192', '--max-new-tokens', '8000']);
    client = clientFor(server);
  });

  after(async () => {
    // Normally already stopped by the last test; this only cleans up after a failure.
    if (server && server.child.exitCode === null && server.child.signalCode === null) {
      await stopServer(server).catch(() => {});
    }
  });

  test('models.list() lists the served model', { timeout: 10000 }, async () => {
    const page = await client.models.list();
    const models = [];
    for await (const m of page) models.push(m);
    assert.equal(models.length, 1);
    assert.equal(models[0].id, MODEL);
    assert.equal(models[0].object, 'model');
    assert.equal(typeof models[0].created, 'number');
    assert.equal(typeof models[0].owned_by, 'string');
    const one = page.data[0];
    assert.equal(one.id, MODEL);
    const retrieved = await client.models.retrieve(MODEL);
    assert.equal(retrieved.id, MODEL);
    await expectApiError(client.models.retrieve('gpt-4o'), OpenAI.NotFoundError, 404);
  });

  test('text chat (non-streaming) has the OpenAI response shape', { timeout: 15000 }, async () => {
    const r = await client.chat.completions.create({
      model: MODEL,
      messages: [
        { role: 'system', content: 'You are a helpful assistant.' },
        { role: 'user', content: 'Describe a sunny day.' },
        { role: 'assistant', content: 'It is bright.' },
        { role: 'user', content: [{ type: 'text', text: 'Tell me more.' }] },
      ],
      max_tokens: 16,
      seed: 7,
    });
    checkChatCompletion(r);
    assert.ok(r.usage.completion_tokens >= 1 && r.usage.completion_tokens <= 16);
    if (r.choices[0].finish_reason === 'length') assert.equal(r.usage.completion_tokens, 16);

    // max_completion_tokens is the newer spelling of max_tokens.
    const r2 = await client.chat.completions.create({
      model: MODEL, messages: userText('Hello'), max_completion_tokens: 3, ignore_eos: true,
    });
    checkChatCompletion(r2);
    assert.equal(r2.choices[0].finish_reason, 'length');
    assert.equal(r2.usage.completion_tokens, 3);
  });

  for (const [label, file, mime] of [['PNG', PNG, 'image/png'], ['JPEG', JPEG, 'image/jpeg']]) {
    test(`image chat with a ${label} data: URL`, { timeout: 15000 }, async () => {
      const question = 'What is in this image?';
      const textOnly = await client.chat.completions.create({
        model: MODEL, messages: userText(question), max_tokens: 8, ...GREEDY,
      });
      checkChatCompletion(textOnly);
      const request = {
        model: MODEL,
        messages: [{
          role: 'user',
          content: [
            { type: 'image_url', image_url: { url: dataUrl(file, mime) } },
            { type: 'text', text: question },
          ],
        }],
        max_tokens: 8,
        ...GREEDY,
      };
      const r = await client.chat.completions.create(request);
      checkChatCompletion(r);
      assert.ok(r.usage.prompt_tokens > textOnly.usage.prompt_tokens,
        `the image adds prompt tokens (${r.usage.prompt_tokens} vs ${textOnly.usage.prompt_tokens})`);
      const again = await client.chat.completions.create(request);
      assert.equal(again.choices[0].message.content, r.choices[0].message.content);
    });
  }

  test('greedy decoding (temperature 0) is deterministic', { timeout: 15000 }, async () => {
    const request = { model: MODEL, messages: userText('Count to ten.'), max_tokens: 24, ...GREEDY };
    const a = checkChatCompletion(await client.chat.completions.create(request));
    const b = checkChatCompletion(await client.chat.completions.create(request));
    assert.ok(a.usage.completion_tokens > 0);
    assert.equal(b.choices[0].message.content, a.choices[0].message.content);
    assert.equal(b.choices[0].finish_reason, a.choices[0].finish_reason);
    sameCounts(b.usage, a.usage);
    assert.notEqual(b.id, a.id, 'every response has its own id');
  });

  test('seeded sampling is deterministic', { timeout: 15000 }, async () => {
    const request = {
      model: MODEL, messages: userText('Write a poem.'), max_tokens: 24, temperature: 1, top_p: 0.95,
      seed: 1234,
    };
    const a = checkChatCompletion(await client.chat.completions.create(request));
    const b = checkChatCompletion(await client.chat.completions.create(request));
    assert.equal(b.choices[0].message.content, a.choices[0].message.content);
    sameCounts(b.usage, a.usage);
  });

  for (const [label, sampling] of [
    ['greedy', GREEDY],
    ['seeded', { temperature: 0.9, top_k: 50, seed: 99 }],
  ]) {
    test(`streaming (${label}) with include_usage equals the non-streamed answer`,
      { timeout: 20000 }, async () => {
        const request = {
          model: MODEL, messages: userText('Tell me a story.'), max_tokens: 32, ...sampling,
        };
        const whole = checkChatCompletion(await client.chat.completions.create(request));
        const chunks = await collect(await client.chat.completions.create({
          ...request, stream: true, stream_options: { include_usage: true },
        }));
        const streamed = checkChatChunks(chunks, { includeUsage: true });
        assert.equal(streamed.content, whole.choices[0].message.content);
        assert.equal(streamed.finishReason, whole.choices[0].finish_reason);
        assert.equal(streamed.usage.prompt_tokens, whole.usage.prompt_tokens);
        assert.equal(streamed.usage.completion_tokens, whole.usage.completion_tokens);
        assert.equal(streamed.usage.total_tokens, whole.usage.total_tokens);

        // Without include_usage: no usage chunk, the same text.
        const plain = checkChatChunks(await collect(await client.chat.completions.create({
          ...request, stream: true,
        })), { includeUsage: false });
        assert.equal(plain.content, whole.choices[0].message.content);
      });
  }

  test('n=3 returns three choices indexed 0..2', { timeout: 20000 }, async () => {
    const request = {
      model: MODEL, messages: userText('Name a colour.'), max_tokens: 6, n: 3, seed: 5,
      ignore_eos: true,
    };
    const r = checkChatCompletion(await client.chat.completions.create(request), { n: 3 });
    assert.deepEqual(r.choices.map((c) => c.index), [0, 1, 2]);
    assert.ok(r.usage.completion_tokens >= 3 && r.usage.completion_tokens <= 18);
    if (r.choices.every((c) => c.finish_reason === 'length')) {
      assert.equal(r.usage.completion_tokens, 18, 'usage counts the tokens of all choices');
    }
    const again = await client.chat.completions.create(request);
    assert.deepEqual(again.choices.map((c) => c.message.content),
      r.choices.map((c) => c.message.content), 'seeded n=3 is deterministic');

    // Streamed, every choice index 0..2 shows up with its role and its own finish_reason.
    const chunks = await collect(await client.chat.completions.create({
      ...request, stream: true, stream_options: { include_usage: true },
    }));
    const texts = ['', '', ''];
    const finish = [null, null, null];
    const roles = [null, null, null];
    for (const c of chunks) {
      for (const choice of c.choices) {
        assert.ok([0, 1, 2].includes(choice.index), `index ${choice.index}`);
        assert.equal(finish[choice.index], null, 'nothing after a choice finished');
        if (choice.delta.role) roles[choice.index] = choice.delta.role;
        if (typeof choice.delta.content === 'string') texts[choice.index] += choice.delta.content;
        if (choice.finish_reason) finish[choice.index] = choice.finish_reason;
      }
    }
    assert.deepEqual(roles, ['assistant', 'assistant', 'assistant']);
    assert.deepEqual(finish, r.choices.map((c) => c.finish_reason));
    assert.deepEqual(texts, r.choices.map((c) => c.message.content));
    assert.deepEqual(chunks.at(-1).choices, []);
    assert.equal(chunks.at(-1).usage.completion_tokens, r.usage.completion_tokens);
  });

  test('stop strings end the answer before them (non-streaming and streaming)',
    { timeout: 20000 }, async () => {
      const base = { model: MODEL, messages: userText('Say something long.'), max_tokens: 48, ...GREEDY };
      const full = checkChatCompletion(await client.chat.completions.create({ ...base, logprobs: true }));
      const text = full.choices[0].message.content;
      const tokens = full.choices[0].logprobs.content.map((e) => e.token);
      // A stop string that straddles two tokens of the greedy answer (the last letter of one,
      // the first letters of the next), so that streaming has to hold back a partial match;
      // else 3 letters from the middle of the answer.
      let stop;
      for (let i = 1; i + 1 < tokens.length && !stop; ++i) {
        const s = tokens[i].slice(-1) + tokens[i + 1].slice(0, 2);
        if (/^[A-Za-z]{3}$/.test(s) && text.includes(s)) stop = s;
      }
      for (let i = Math.floor(text.length / 3); i + 3 <= text.length && !stop; ++i) {
        if (/^[A-Za-z]{3}$/.test(text.slice(i, i + 3))) stop = text.slice(i, i + 3);
      }
      assert.ok(stop, `no usable stop string in the greedy answer ${JSON.stringify(text)}`);
      const expected = text.slice(0, text.indexOf(stop));

      const r = checkChatCompletion(await client.chat.completions.create({ ...base, stop: [stop] }));
      assert.equal(r.choices[0].finish_reason, 'stop', `stop ${JSON.stringify(stop)}`);
      assert.ok(!r.choices[0].message.content.includes(stop), 'the stop string is not returned');
      assert.equal(r.choices[0].message.content, expected, `stop ${JSON.stringify(stop)}`);
      assert.ok(r.usage.completion_tokens < full.usage.completion_tokens);

      // A single string works like a one-element list.
      const single = await client.chat.completions.create({ ...base, stop });
      assert.equal(single.choices[0].message.content, expected);
      assert.equal(single.choices[0].finish_reason, 'stop');

      const chunks = await collect(await client.chat.completions.create({
        ...base, stop: ['never-produced-zzz', stop], stream: true, stream_options: { include_usage: true },
      }));
      const streamed = checkChatChunks(chunks, { includeUsage: true });
      assert.equal(streamed.finishReason, 'stop');
      assert.ok(!streamed.content.includes(stop), 'the stop string is not streamed');
      assert.equal(streamed.content, expected);
      assert.equal(streamed.usage.completion_tokens, r.usage.completion_tokens);
    });

  test('logprobs with top_logprobs=2', { timeout: 15000 }, async () => {
    const r = checkChatCompletion(await client.chat.completions.create({
      model: MODEL, messages: userText('Hello!'), max_tokens: 12, logprobs: true, top_logprobs: 2,
      ...GREEDY,
    }));
    const content = r.choices[0].logprobs?.content;
    assert.ok(Array.isArray(content), 'choices[0].logprobs.content is a list');
    assert.equal(content.length, r.usage.completion_tokens, 'one entry per completion token');
    const checkEntry = (e, where) => {
      assert.equal(typeof e.token, 'string', `${where}.token`);
      assert.equal(typeof e.logprob, 'number', `${where}.logprob`);
      assert.ok(Number.isFinite(e.logprob) && e.logprob <= 0, `${where}.logprob = ${e.logprob}`);
      assert.ok(Array.isArray(e.bytes) && e.bytes.length > 0, `${where}.bytes`);
      assert.ok(e.bytes.every((b) => Number.isInteger(b) && b >= 0 && b <= 255), `${where}.bytes`);
      // For ASCII tokens the bytes spell the token.
      if (e.bytes.every((b) => b < 128)) {
        assert.equal(String.fromCharCode(...e.bytes), e.token, `${where}: bytes spell the token`);
      }
    };
    content.forEach((e, i) => {
      checkEntry(e, `content[${i}]`);
      assert.equal(e.top_logprobs.length, 2, `content[${i}] has 2 top_logprobs`);
      e.top_logprobs.forEach((t, j) => checkEntry(t, `content[${i}].top_logprobs[${j}]`));
      assert.ok(e.top_logprobs[0].logprob >= e.top_logprobs[1].logprob, 'sorted descending');
      // Greedy: the chosen token is the most likely one.
      assert.equal(e.token, e.top_logprobs[0].token, `content[${i}]: greedy picks the top token`);
      assert.ok(Math.abs(e.logprob - e.top_logprobs[0].logprob) < 1e-4,
        `content[${i}]: its logprob equals its top entry's`);
    });

    // Streamed: the same entries, split over the chunks.
    const chunks = await collect(await client.chat.completions.create({
      model: MODEL, messages: userText('Hello!'), max_tokens: 12, logprobs: true, top_logprobs: 2,
      ...GREEDY, stream: true,
    }));
    const streamed = chunks.flatMap((c) => c.choices.flatMap((ch) => ch.logprobs?.content ?? []));
    assert.deepEqual(streamed.map((e) => e.token), content.map((e) => e.token));

    // logprobs without top_logprobs: entries with empty top_logprobs.
    const plain = await client.chat.completions.create({
      model: MODEL, messages: userText('Hello!'), max_tokens: 4, logprobs: true, ...GREEDY,
    });
    for (const e of plain.choices[0].logprobs.content) assert.deepEqual(e.top_logprobs, []);
    // No logprobs asked: null.
    const none = await client.chat.completions.create({
      model: MODEL, messages: userText('Hello!'), max_tokens: 4, ...GREEDY,
    });
    assert.equal(none.choices[0].logprobs, null);
  });

  test('/v1/completions via client.completions.create', { timeout: 15000 }, async () => {
    const request = { model: MODEL, prompt: 'Once upon a time', max_tokens: 10, ...GREEDY };
    const r = await client.completions.create(request);
    assert.match(r.id, /\S/);
    assert.equal(r.object, 'text_completion');
    assert.equal(r.model, MODEL);
    assert.equal(r.choices.length, 1);
    assert.equal(r.choices[0].index, 0);
    assert.equal(typeof r.choices[0].text, 'string');
    assert.ok(['stop', 'length'].includes(r.choices[0].finish_reason));
    checkUsage(r.usage);
    assert.ok(r.usage.completion_tokens >= 1 && r.usage.completion_tokens <= 10);

    const again = await client.completions.create(request);
    assert.equal(again.choices[0].text, r.choices[0].text, 'greedy completions are deterministic');

    const chunks = await collect(await client.completions.create({
      ...request, stream: true, stream_options: { include_usage: true },
    }));
    let text = '';
    for (const c of chunks) {
      assert.equal(c.object, 'text_completion');
      for (const choice of c.choices) text += choice.text;
    }
    assert.equal(text, r.choices[0].text, 'streamed text equals the non-streamed one');
    assert.deepEqual(chunks.at(-1).choices, []);
    assert.equal(chunks.at(-1).usage.completion_tokens, r.usage.completion_tokens);
  });

  test('a client abort mid-stream frees the KV cache', { timeout: 20000 }, async () => {
    // The engine must free the blocks and the HTTP side count the request as cancelled (499).
    const cancelledMetric = 'flamingo_requests_total{rpc="chat.completions",outcome="cancelled",api="openai"}';
    const cancelledBefore = await metricValue(client, server, cancelledMetric, 0);
    const controller = new AbortController();
    const stream = await client.chat.completions.create({
      model: MODEL, messages: userText('Talk forever.'), max_tokens: 8000, ignore_eos: true,
      stream: true,
    }, { signal: controller.signal });
    let contentChunks = 0;
    let blocksWhileRunning;
    try {
      for await (const chunk of stream) {
        if (chunk.choices[0]?.delta?.content) {
          ++contentChunks;
          blocksWhileRunning = await metricValue(client, server, 'flamingo_kv_blocks_used');
          controller.abort();
          break; // (the SDK may still hand out chunks that arrived before the abort)
        }
      }
    } catch (e) {
      assert.ok(e instanceof OpenAI.APIUserAbortError || e.name === 'AbortError',
        `the abort ends the stream (got ${e?.constructor?.name}: ${e?.message})`);
    }
    assert.equal(contentChunks, 1);
    assert.ok(blocksWhileRunning > 0, 'the running request holds KV blocks');

    let used = -1;
    let cancelledAfter = cancelledBefore;
    const deadline = Date.now() + 10000;
    while (Date.now() < deadline) {
      used = await metricValue(client, server, 'flamingo_kv_blocks_used');
      cancelledAfter = await metricValue(client, server, cancelledMetric, 0);
      if (used === 0 && cancelledAfter > cancelledBefore) break;
      await sleep(100);
    }
    assert.equal(used, 0, 'flamingo_kv_blocks_used returns to 0 within 10 s of the abort');
    assert.equal(cancelledAfter, cancelledBefore + 1, 'the server counted the request as cancelled');

    const r = await client.chat.completions.create({ model: MODEL, messages: userText('Still there?'), max_tokens: 4 });
    checkChatCompletion(r);
  });

  test('400 BadRequestError: temperature -1', { timeout: 10000 }, async () => {
    await expectBadRequest(client.chat.completions.create({
      model: MODEL, messages: userText('hi'), temperature: -1,
    }), 'temperature');
  });

  test('400 BadRequestError: an empty content list', { timeout: 10000 }, async () => {
    await expectBadRequest(client.chat.completions.create({
      model: MODEL, messages: [{ role: 'user', content: [] }],
    }), 'messages[0].content');
  });

  test('400 BadRequestError: a data: URL that is neither PNG nor JPEG', { timeout: 10000 }, async () => {
    const gif = 'data:image/gif;base64,R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7';
    const e = await expectBadRequest(client.chat.completions.create({
      model: MODEL,
      messages: [{
        role: 'user',
        content: [{ type: 'text', text: 'look' }, { type: 'image_url', image_url: { url: gif } }],
      }],
    }), 'messages[0].content[1].image_url');
    assert.match(e.error.message, /PNG|JPEG/);
  });

  test('400 BadRequestError: a malformed base64 data: URL', { timeout: 10000 }, async () => {
    const e = await expectBadRequest(client.chat.completions.create({
      model: MODEL,
      messages: [{
        role: 'user',
        content: [
          { type: 'image_url', image_url: { url: 'data:image/png;base64,iVBO!!not*base64' } },
          { type: 'text', text: 'look' },
        ],
      }],
    }), 'messages[0].content[0].image_url');
    assert.match(e.error.message, /base64/);
  });

  test('400 BadRequestError: max_tokens above --max-new-tokens (8000 here)', { timeout: 10000 }, async () => {
    const e = await expectBadRequest(client.chat.completions.create({
      model: MODEL, messages: userText('hi'), max_tokens: 8001,
    }), 'max_tokens');
    assert.match(e.error.message, /8000/);
    await expectBadRequest(client.chat.completions.create({
      model: MODEL, messages: userText('hi'), max_completion_tokens: 9000,
    }), 'max_completion_tokens');
  });

  test('404 NotFoundError: an unknown model id', { timeout: 10000 }, async () => {
    const e = await expectApiError(client.chat.completions.create({
      model: 'gpt-4o', messages: userText('hi'),
    }), OpenAI.NotFoundError, 404);
    assert.equal(e.param, 'model');
    assert.equal(e.code, 'model_not_found');
    assert.equal(e.type, 'invalid_request_error');  // as OpenAI's own 404 for a model
    assert.ok(e.error.message.includes('gpt-4o'));
    await expectApiError(client.completions.create({ model: 'nope', prompt: 'x' }),
      OpenAI.NotFoundError, 404);
    // An unknown endpoint is an OpenAI-shaped 404 too.
    await expectApiError(client.get('/no-such-endpoint'), OpenAI.NotFoundError, 404);
  });

  test('429 RateLimitError when --max-running 1 --max-queued 0 is full', { timeout: 30000 }, async () => {
    // The long request must outlast the checks: the tiny model decodes 1000 tokens in well
    // under a second, so it may run to 8000.
    const busy = await startServer(['--max-running', '1', '--max-queued', '0',
      '--context-length', '8192', '--max-new-tokens', '8000']);
    try {
      const busyClient = clientFor(busy);
      const controller = new AbortController();
      const stream = await busyClient.chat.completions.create({
        model: MODEL, messages: userText('Go on and on.'), max_tokens: 8000, ignore_eos: true,
        stream: true,
      }, { signal: controller.signal });
      const iterator = stream[Symbol.asyncIterator]();
      // Wait for the first content: the long request now holds the only slot.
      for (;;) {
        const { value, done } = await iterator.next();
        assert.ok(!done, 'the long stream ended before producing content');
        if (value.choices[0]?.delta?.content) break;
      }
      const e = await expectApiError(busyClient.chat.completions.create({
        model: MODEL, messages: userText('Me too?'), max_tokens: 4,
      }), OpenAI.RateLimitError, 429);
      assert.equal(e.error.type, 'rate_limit_error');
      await expectApiError(busyClient.completions.create({ model: MODEL, prompt: 'x', max_tokens: 2 }),
        OpenAI.RateLimitError, 429);
      controller.abort();
      await iterator.return?.().catch(() => {});
    } finally {
      // With the SDK's keep-alive agent (Node 20+) the 429 answers leave an idle keep-alive
      // connection open; SIGTERM waits for it to close (--http-keep-alive, default 2 s).
      const exit = await stopServer(busy);
      assert.deepEqual(exit, { code: 0, signal: null }, `the busy server exits 0:\n${busy.log.slice(-2000)}`);
    }
  });

  test('503 (InternalServerError) while the model is loading', { timeout: 40000 }, async () => {
    const loading = await startServer(['--load-delay-ms', '8000'], { waitReady: false });
    try {
      const loadingClient = clientFor(loading);
      const e = await expectApiError(loadingClient.chat.completions.create({
        model: MODEL, messages: userText('hi'), max_tokens: 4,
      }), OpenAI.InternalServerError, 503);
      assert.match(e.error.message, /load/);
      await expectApiError(loadingClient.completions.create({ model: MODEL, prompt: 'x', max_tokens: 2 }),
        OpenAI.InternalServerError, 503);
      await expectApiError(loadingClient.get(`http://${HOST}:${loading.port}/health`),
        OpenAI.InternalServerError, 503);
      assert.ok(!loading.log.includes(' ready'), 'still loading during the checks');
    } finally {
      // A stop while loading exits at once (nothing was accepted, nothing to drain).
      const stopped = Date.now();
      const exit = await stopServer(loading, 30000);
      assert.ok(Date.now() - stopped < 5000, 'SIGTERM while loading should exit at once');
      assert.ok(!loading.log.includes(' ready'), 'a server stopped while loading never gets ready');
      assert.deepEqual(exit, { code: 0, signal: null }, `the loading server exits 0:\n${loading.log.slice(-2000)}`);
    }
  });

  test('SIGTERM drains the main server and it exits 0', { timeout: 30000 }, async () => {
    const exit = await stopServer(server);
    assert.deepEqual(exit, { code: 0, signal: null }, `exit status; log:\n${server.log.slice(-2000)}`);
  });
});
