'use strict';
// A voltorch client in Node.js: state (set, compare-and-set, watch), events (publish, subscribe, resume
// after a disconnect without loss or repeat) and a workflow whose first step is done by a remote worker
// (worker.js), watched to its end.
//
//   node worker.js &          # the worker that owns the "text-stats" capability
//   node client.js [--target 127.0.0.1:50051] [--token <bearer token>] [--text "..."]
//
// Environment: VOLTORCH_TARGET, VOLTORCH_TOKEN. Prints what it sees; the last line is a JSON summary.

const { parseArgs } = require('node:util');
const api = require('./api');
const { toValue, fromValue, toStruct } = require('./json');

const { values: opts } = parseArgs({
  options: {
    target: { type: 'string', default: process.env.VOLTORCH_TARGET || '127.0.0.1:50051' },
    token: { type: 'string', default: process.env.VOLTORCH_TOKEN || '' },
    text: { type: 'string', default: 'Orchestrate agents from any language with one gRPC contract' },
  },
});
const connect = (service) => api.client(service, opts.target, { token: opts.token });
const state = connect('StateService');
const events = connect('EventService');
const workflows = connect('WorkflowService');

/** Reads a server stream until `enough(messages)` is true, then cancels it; resolves with the messages. */
function collect(call, enough) {
  return new Promise((resolve, reject) => {
    const got = [];
    call.on('data', (msg) => {
      got.push(msg);
      if (enough(got)) {
        call.cancel();
        resolve(got);
      }
    });
    call.on('error', (err) => (err.code === api.grpc.status.CANCELLED ? resolve(got) : reject(err)));
    call.on('end', () => resolve(got));
  });
}

async function stateDemo() {
  const key = 'node.example.config';
  const first = await api.call(state, 'SetKey', { key, value: toValue({ maxRetries: 3, tags: ['a', 'b'] }) });
  const got = await api.call(state, 'GetKey', { key });
  console.log('GetKey', key, fromValue(got.kv.value), 'version', got.kv.version);
  // Compare-and-set: the first write with the current version wins, a second with the same version loses.
  await api.call(state, 'SetKey', { key, value: toValue({ maxRetries: 5 }), expected_version: got.kv.version });
  let conflict = null;
  try {
    await api.call(state, 'SetKey', { key, value: toValue({ maxRetries: 7 }), expected_version: got.kv.version });
  } catch (err) {
    conflict = api.errorDetails(err);
    console.log('conflict:', api.grpc.status[err.code], conflict.reason, conflict.metadata);
  }
  // Watch replays from a revision (int64 as a string), then follows live.
  const changes = await collect(state.Watch({ prefix: 'node.example.', start_revision: first.revision }), (c) => c.length >= 2);
  for (const c of changes) console.log('Watch', c.type, c.kv.key, JSON.stringify(fromValue(c.kv.value)), 'revision', c.revision);
  return { conflict_reason: conflict && conflict.reason, watched: changes.map((c) => fromValue(c.kv.value)) };
}

async function eventsDemo() {
  const correlation_id = `node-${process.pid}-${Date.now()}`;
  const published = [];
  for (const step of ['checkout', 'build', 'test']) {
    const r = await api.call(events, 'Publish', {
      event: { type: `node.example.${step}`, source: 'node-client', correlation_id, data: toValue({ step }) },
    });
    published.push(r.sequence);
  }
  const filter = { types: ['node.example.*'], correlation_id };
  // Read two events, then "lose the connection"...
  const isEvent = (m) => m.payload === 'event';
  const part1 = (await collect(events.Subscribe({ filter, from_sequence: published[0] }), (ms) => ms.filter(isEvent).length >= 2)).filter(isEvent);
  // ...and resume from the last sequence received + 1: nothing lost, nothing repeated.
  const resumeFrom = BigInt(part1[part1.length - 1].event.sequence) + 1n;
  const part2 = (await collect(events.Subscribe({ filter, from_sequence: resumeFrom.toString() }), (ms) => ms.filter(isEvent).length >= 1)).filter(isEvent);
  const seen = [...part1, ...part2].map((m) => m.event.sequence);
  console.log('Subscribe saw', seen.join(', '), 'resumed at', resumeFrom.toString());
  return { published, seen };
}

async function workflowDemo() {
  await api.call(workflows, 'RegisterTemplate', {
    template: {
      name: 'node-example',
      description: 'Word statistics by the Node.js worker, then a summary by a built-in agent',
      parameters: [{ name: 'text', type: 'PARAMETER_TYPE_STRING', required: true }],
      steps: [
        { id: 'stats', name: 'Word statistics (Node.js worker)', agent_task: { capabilities: ['text-stats'], task: '{{text}}' } },
        {
          id: 'summary',
          name: 'Summary',
          depends_on: ['stats'],
          agent_task: { capabilities: ['summary'], task: 'Summarise these statistics: {{steps.stats.output}}' },
        },
      ],
      timeout: api.duration(120),
    },
  });
  const started = await api.call(workflows, 'StartExecution', {
    template_name: 'node-example',
    parameters: toStruct({ text: opts.text }),
    request_id: `node-example-${process.pid}-${Date.now()}`,
  });
  const id = started.execution.id;
  console.log('StartExecution', id, started.execution.status);
  // WatchExecution replays, follows live and ends by itself after the terminal event.
  await new Promise((resolve, reject) => {
    const call = workflows.WatchExecution({ execution_id: id });
    call.on('data', ({ event }) => {
      const data = fromValue(event.data) || {};
      console.log('  ', event.sequence, event.type, data.step_id || '');
    });
    call.on('error', reject);
    call.on('end', resolve);
  });
  const { execution } = await api.call(workflows, 'GetExecution', { execution_id: id });
  for (const s of execution.steps) console.log('step', s.step_id, s.status, 'by', s.agent_id, '->', s.output.replace(/\s+/g, ' ').slice(0, 70));
  return {
    execution_id: id,
    status: execution.status,
    steps: execution.steps.map((s) => ({ step_id: s.step_id, status: s.status, agent_id: s.agent_id, structured_output: fromValue(s.structured_output) })),
  };
}

async function main() {
  // The standard health service needs no token; '' is the server as a whole.
  const health = connect('Health');
  const { status } = await api.call(health, 'Check', { service: '' });
  console.log('Health', status);
  health.close();
  const summary = { state: await stateDemo(), events: await eventsDemo(), workflow: await workflowDemo() };
  console.log(JSON.stringify(summary));
  for (const c of [state, events, workflows]) c.close();
  if (summary.workflow.status !== 'EXECUTION_STATUS_COMPLETED') process.exitCode = 1;
}

main().catch((err) => {
  const d = api.errorDetails(err);
  console.error('failed:', err.message, d.reason ? `(reason ${d.reason})` : '', JSON.stringify(d.fieldViolations));
  process.exit(1);
});
