// Drives client.mjs against real workers for tests/dist/test_node_client.py: runs each
// scenario and prints one JSON line of what it saw; the Python test judges the lines.
// Environment: PYGENTS_REDIS_URL, PYGENTS_NAMESPACE, PYGENTS_SECRET.
import { Client, RemoteError } from "./client.mjs";

const url = process.env.PYGENTS_REDIS_URL;
const options = { namespace: process.env.PYGENTS_NAMESPACE, secret: process.env.PYGENTS_SECRET };

function plain(value) {
  // JSON for what msgpack decoded: bytes as {hex}.
  if (value instanceof Uint8Array) return { hex: Buffer.from(value).toString("hex") };
  if (Array.isArray(value)) return value.map(plain);
  if (value && typeof value === "object") {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, plain(v)]));
  }
  return value;
}

function failure(error) {
  if (error instanceof RemoteError) {
    return { type: error.type, message: error.remoteMessage, reason: error.reason ?? null,
      traceback: error.traceback ?? "" };
  }
  return { thrown: String(error.message ?? error) };
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

const scenarios = {
  async call(client) {
    return { result: await client.call("alpha", "add", { kwargs: { a: 2, b: 3 } }) };
  },

  async types(client) {
    const value = { s: "h\u00e9llo \u2713", n: 3, f: 2.5, neg: -7, big: 2 ** 40, t: true,
      nil: null, list: [1, [2, "x"]], bin: new Uint8Array([0, 255]) };
    return { result: plain(await client.call("alpha", "mirror", { kwargs: { value } })) };
  },

  async send(client) {
    const id = await client.send("alpha", "add", { kwargs: { a: 1, b: 1 } });
    return { id };
  },

  async stream(client) {
    const values = [];
    for await (const value of client.stream("alpha", "count", { kwargs: { n: 4 } })) {
      values.push(value);
    }
    return { values };
  },

  async resume() {
    // Read two values, lose the connection, and resume from another client.
    const first = new Client(url, options);
    const id = await first.send("alpha", "count", {
      kwargs: { n: 6, delay: 0.05 }, reply: true,
    });
    const before = [];
    for await (const value of first.results("alpha", id)) {
      before.push(value);
      if (before.length === 2) break;
    }
    first.redis.disconnect();
    const again = new Client(url, options);
    const after = [];
    try {
      for await (const value of again.results("alpha", id, 1)) after.push(value);
    } finally {
      await again.close();
    }
    return { before, after };
  },

  async error(client) {
    try {
      await client.call("alpha", "boom", { kwargs: { message: "from node" } });
      return { error: null };
    } catch (error) {
      return { error: failure(error) };
    }
  },

  async deadLetter(client) {
    try {
      await client.call("alpha", "nope");
      return { error: null };
    } catch (error) {
      return { error: failure(error) };
    }
  },

  async unknownAgent(client) {
    try {
      await client.send("nobody", "add", { kwargs: { a: 1, b: 1 } });
      return { error: null };
    } catch (error) {
      return { error: failure(error) };
    }
  },

  async cancel(client) {
    const id = await client.send("alpha", "slow", { kwargs: { seconds: 30 }, reply: true });
    await sleep(300);
    const requested = await client.cancel("alpha", id);
    let error = null;
    try {
      for await (const _ of client.results("alpha", id));
    } catch (caught) {
      error = failure(caught);
    }
    return { requested, error, again: await client.cancel("alpha", id) };
  },

  async pause(client) {
    await client.pause("alpha");
    let done = false;
    const call = client.call("alpha", "add", { kwargs: { a: 4, b: 4 } }).then((result) => {
      done = true;
      return result;
    });
    await sleep(500);
    const heldWhilePaused = !done;
    await client.resume("alpha");
    return { heldWhilePaused, result: await call };
  },
};

const client = new Client(url, options);
try {
  for (const [name, run] of Object.entries(scenarios)) {
    const started = performance.now();
    let seen;
    try {
      seen = await run(client);
    } catch (error) {
      seen = { unexpected: String(error.stack ?? error) };
    }
    const ms = Math.round(performance.now() - started);
    console.log(JSON.stringify({ scenario: name, ms, ...seen }));
  }
} finally {
  await client.close();
}
