'use strict';
// A voltorch remote worker in Node.js: says hello with its capabilities on CoordinationService/Connect,
// heartbeats, runs the tasks it is assigned and sends their results, and reconnects with exponential
// backoff (and jitter) whenever the stream breaks.
//
//   node worker.js [--target 127.0.0.1:50051] [--token <bearer token>] [--agent-id node-stats]
//
// Environment: VOLTORCH_TARGET, VOLTORCH_TOKEN. One JSON line per lifecycle step goes to stdout.

const { parseArgs } = require('node:util');
const api = require('./api');
const { toValue, fromStruct } = require('./json');

const { values: opts } = parseArgs({
  options: {
    target: { type: 'string', default: process.env.VOLTORCH_TARGET || '127.0.0.1:50051' },
    token: { type: 'string', default: process.env.VOLTORCH_TOKEN || '' },
    'agent-id': { type: 'string', default: 'node-stats' },
    capabilities: { type: 'string', default: 'text-stats' },
    'max-concurrency': { type: 'string', default: '4' },
  },
});

const log = (event, fields = {}) => console.log(JSON.stringify({ event, ...fields }));

// The work itself: word and character statistics of the task text (and of the previous step's output).
async function handle(assignment) {
  const context = fromStruct(assignment.context);
  const text = [assignment.task, typeof context.previous_output === 'string' ? context.previous_output : '']
    .join(' ')
    .trim();
  const words = text.split(/\s+/).filter(Boolean);
  const longest = words.reduce((a, w) => (w.length > a.length ? w : a), '');
  const stats = { words: words.length, characters: text.length, longest_word: longest, handled_by: 'node' };
  return { output: `${stats.words} words, ${stats.characters} characters; longest word: ${longest}`, structured: stats };
}

class Worker {
  constructor({ target, token, agentId, capabilities, maxConcurrency }) {
    this.coordination = api.client('CoordinationService', target, { token });
    this.hello = {
      agent_id: agentId,
      name: `Node.js worker (${agentId})`,
      capabilities,
      max_concurrency: maxConcurrency,
      labels: { language: 'node', runtime: process.version },
      sdk_version: 'voltorch-node-example/0.1.0',
    };
    this.running = new Map(); // task_id -> attempt
    this.backoff = 0.5; // seconds; doubles per failed attempt up to 15 s, reset on welcome
    this.stopping = false;
  }

  connect() {
    const stream = this.coordination.Connect();
    this.stream = stream;
    this.streamOver = false;
    let heartbeat = null;
    stream.on('data', (msg) => {
      switch (msg.message) {
        case 'welcome': {
          const every = api.seconds(msg.welcome.heartbeat_interval) || 5;
          this.backoff = 0.5;
          heartbeat = setInterval(() => this.send(stream, { heartbeat: { running_task_ids: [...this.running.keys()] } }), every * 1000);
          log('welcome', { agent_id: msg.welcome.agent_id, session_id: msg.welcome.session_id, heartbeat_seconds: every });
          break;
        }
        case 'assignment':
          this.run(stream, msg.assignment);
          break;
        case 'cancel':
          // Drop the task: a result for a cancelled attempt would be ignored by the server anyway.
          if (this.running.get(msg.cancel.task_id) === msg.cancel.attempt) this.running.delete(msg.cancel.task_id);
          log('cancelled', { task_id: msg.cancel.task_id, reason: msg.cancel.reason });
          break;
      }
    });
    // 'error' carries a failed call's status (with its ErrorInfo reason); 'status' ends every call, OK or not.
    stream.on('error', (err) => {
      const d = api.errorDetails(err);
      log('stream_error', { code: api.grpc.status[err.code], reason: d.reason, message: d.message });
      // Final: another connection took over this agent id, or the agent was unregistered. Else reconnect.
      if (d.reason === api.ErrorReason.SESSION_REPLACED || d.reason === api.ErrorReason.SESSION_UNREGISTERED) this.stopping = true;
    });
    stream.on('status', () => {
      this.streamOver = true;
      clearInterval(heartbeat);
      this.running.clear(); // the server re-dispatches whatever was in flight
      if (this.stopping) {
        this.coordination.close();
        return log('stopped');
      }
      const delay = this.backoff * (0.8 + Math.random() * 0.4);
      this.backoff = Math.min(this.backoff * 2, 15);
      log('reconnecting', { in_seconds: Number(delay.toFixed(2)) });
      this.retry = setTimeout(() => this.connect(), delay * 1000);
    });
    this.send(stream, { hello: this.hello });
  }

  async run(stream, a) {
    this.running.set(a.task_id, a.attempt);
    log('assignment', { task_id: a.task_id, attempt: a.attempt, execution_id: a.execution_id, step_id: a.step_id });
    const started = process.hrtime.bigint();
    const result = { task_id: a.task_id, attempt: a.attempt };
    try {
      const { output, structured } = await handle(a);
      Object.assign(result, { output, structured_output: toValue(structured) });
    } catch (err) {
      result.error = { code: 'NODE_WORKER_ERROR', message: String(err && err.message), retryable: true };
    }
    if (this.running.get(a.task_id) !== a.attempt) return; // cancelled or superseded meanwhile
    this.running.delete(a.task_id);
    result.duration = api.duration(Number(process.hrtime.bigint() - started) / 1e9);
    this.send(stream, { result });
    log('result', { task_id: a.task_id, attempt: a.attempt, output: result.output });
  }

  send(stream, message) {
    if (stream === this.stream && !stream.writableEnded) stream.write(message);
  }

  stop() {
    this.stopping = true;
    clearTimeout(this.retry);
    if (this.stream && !this.streamOver) {
      this.stream.end(); // a half-close is a graceful disconnect; 'status' follows
    } else {
      this.coordination.close();
      log('stopped');
    }
  }
}

const worker = new Worker({
  target: opts.target,
  token: opts.token,
  agentId: opts['agent-id'],
  capabilities: opts.capabilities.split(',').filter(Boolean),
  maxConcurrency: Number(opts['max-concurrency']),
});
for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => worker.stop());
worker.connect();
