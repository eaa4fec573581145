// A pygents client in Node.js: ioredis, a msgpack encoder and the Redis functions the workers
// install (docs/wire.md is the contract). Sends are signed when given the workers' secret.
import { createHmac, randomBytes } from "node:crypto";
import { decode, encode } from "@msgpack/msgpack";
import Redis from "ioredis";

export class RemoteError extends Error {
  // The turn raised (type, message, traceback), was cancelled (type "TurnCancelledError")
  // or was dead-lettered (reason: "unknown_tool", "bad_arguments", ...).
  constructor(turnId, { type, message, traceback, reason }) {
    super(`${type}: ${message} (turn ${turnId})`);
    Object.assign(this, { turnId, type, remoteMessage: message, traceback, reason });
  }
}

export class Client {
  constructor(url, { namespace = "", secret = null } = {}) {
    this.redis = new Redis(url);
    this.base = namespace ? `${namespace}:pyg1` : "pyg1";
    this.secret = secret;
  }

  key(agent, name) {
    return `${this.base}:{${agent}}:${name}`;
  }

  // Queue a turn and return its id. With reply: true its values, result or error go to its
  // reply stream (see results).
  async send(agent, tool, { args = [], kwargs = {}, timeout = 60, reply = false } = {}) {
    const id = randomBytes(16).toString("hex");
    const envelope = encode({
      v: 1, id, agent, tool, args, kwargs, timeout, tags: [], reply, ts: Date.now() / 1000,
    });
    const signature = this.secret
      ? createHmac("sha256", this.secret).update(envelope).digest("hex")
      : "";
    const keys = [this.key(agent, "turns"), this.key(agent, "owner"),
      `${this.base}:ready`, `${this.base}:agents`];
    await this.redis.call("FCALL", "pyg1_send", keys.length, ...keys,
      agent, id, Buffer.from(envelope), signature);
    return id;
  }

  // Run a coroutine tool and return its result.
  async call(agent, tool, options = {}) {
    const id = await this.send(agent, tool, { ...options, reply: true });
    let result = null;
    for await (const [kind, , data] of this.replies(agent, id)) if (kind === "e") result = data;
    return result;
  }

  // Run a generator tool, yielding its values as they come.
  async *stream(agent, tool, options = {}) {
    const id = await this.send(agent, tool, { ...options, reply: true });
    yield* this.results(agent, id);
  }

  // The values of a turn sent with reply: true, from value number after + 1 (values are
  // numbered from 0): a caller that lost its connection resumes here.
  async *results(agent, turnId, after = -1) {
    for await (const [kind, , data] of this.replies(agent, turnId, after)) {
      if (kind === "v") yield data;
    }
  }

  // [kind, seq, data] per entry of the turn's reply stream up to its end ("e"); throws
  // RemoteError for an error entry ("x"). Values numbered up to after are skipped (a turn
  // run again after a worker died repeats them).
  async *replies(agent, turnId, after = -1) {
    const reader = this.redis.duplicate(); // a blocking read holds its connection
    try {
      let last = "0-0";
      for (;;) {
        const got = await reader.xreadBuffer("COUNT", 500, "BLOCK", 2000,
          "STREAMS", this.key(agent, `reply:${turnId}`), last);
        for (const [entryId, flat] of got ? got[0][1] : []) {
          last = entryId.toString();
          const fields = {};
          for (let i = 0; i < flat.length; i += 2) fields[flat[i].toString()] = flat[i + 1];
          const kind = fields.k.toString();
          const seq = Number(fields.q ?? 0);
          const data = decode(fields.d);
          if (kind === "x") throw new RemoteError(turnId, data);
          if (kind === "v" && seq <= after) continue;
          if (kind === "v") after = seq;
          yield [kind, seq, data];
          if (kind === "e") return;
        }
      }
    } finally {
      reader.disconnect();
    }
  }

  // Cancel a turn (it will not start, or is cancelled where it runs); false when it had
  // already finished.
  async cancel(agent, turnId) {
    const keys = [this.key(agent, "cancel"), this.key(agent, "done")];
    return (await this.redis.call("FCALL", "pyg1_cancel", 2, ...keys, agent, turnId)) === 1;
  }

  // Hold an agent for every worker, and let it run again.
  async pause(agent) {
    await this.redis.call("FCALL", "pyg1_pause", 2, this.key(agent, "state"),
      `${this.base}:agents`, agent);
  }

  async resume(agent) {
    await this.redis.call("FCALL", "pyg1_resume", 3, this.key(agent, "state"),
      `${this.base}:ready`, `${this.base}:agents`, agent);
  }

  async close() {
    await this.redis.quit();
  }
}
