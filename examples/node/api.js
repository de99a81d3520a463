'use strict';
// Loads voltorch's .proto files at run time and builds service clients: no generated or copied code.
//
//   const api = require('./api');
//   const state = api.client('StateService', '127.0.0.1:50051', { token });
//
// Loader options (and what they mean for you):
//   keepCase: true   field names as in the .proto (snake_case), e.g. expected_version, from_sequence
//   longs: String    int64 fields (sequence, revision, version, seconds) arrive as decimal strings, not Long
//                    objects; you may send numbers or strings
//   enums: String    enums arrive as their names, e.g. 'EXECUTION_STATUS_COMPLETED'
//   defaults: true   unset scalars arrive as their default ('' / 0 / false) rather than undefined
//   oneofs: true     a oneof's set member is named in a virtual field, e.g. message.message === 'assignment'

const fs = require('node:fs');
const path = require('node:path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');
const protobuf = require('protobufjs');

const PROTOS = process.env.VOLTORCH_PROTOS || path.resolve(__dirname, '..', '..', 'protos');
const INCLUDE = [PROTOS, path.join(PROTOS, 'third_party')];
const FILES = [
  ...['state', 'events', 'coordination', 'workflows', 'orchestrator', 'error_reason'].map((name) => `voltorch/v1/${name}.proto`),
  'grpc/health/v1/health.proto', // from protos/third_party
];
const LOADER = { keepCase: true, longs: String, enums: String, defaults: true, oneofs: true, includeDirs: INCLUDE };

const definition = protoLoader.loadSync(FILES, LOADER);
const loaded = grpc.loadPackageDefinition(definition);
const v1 = loaded.voltorch.v1;

// Adds `authorization: Bearer <token>` (and, when given, a W3C `traceparent`) to every call.
function metadataInterceptor({ token, traceparent }) {
  return (options, nextCall) =>
    new grpc.InterceptingCall(nextCall(options), {
      start(metadata, listener, next) {
        if (token) metadata.set('authorization', `Bearer ${token}`);
        if (traceparent) metadata.set('traceparent', traceparent);
        next(metadata, listener);
      },
    });
}

/** A client of one voltorch service ('StateService', 'EventService', ...) or 'Health' (grpc.health.v1). */
function client(service, target, { token, traceparent, credentials } = {}) {
  const Ctor = service === 'Health' ? loaded.grpc.health.v1.Health : v1[service];
  if (!Ctor) throw new Error(`no service voltorch.v1.${service}`);
  return new Ctor(target, credentials || grpc.credentials.createInsecure(), {
    interceptors: [metadataInterceptor({ token, traceparent })],
  });
}

// Rich error details: a failed call's trailers carry a serialized google.rpc.Status in
// `grpc-status-details-bin`; each of its details is a google.protobuf.Any (ErrorInfo, BadRequest, ...).
const rpcRoot = new protobuf.Root();
rpcRoot.resolvePath = (origin, target) => {
  for (const dir of INCLUDE) {
    const candidate = path.join(dir, target);
    if (fs.existsSync(candidate)) return candidate;
  }
  return protobuf.util.path.resolve(origin, target);
};
rpcRoot.loadSync(['google/rpc/status.proto', 'google/rpc/error_details.proto'], { keepCase: true });
const Status = rpcRoot.lookupType('google.rpc.Status');

/**
 * The details of a failed call: {code, message, reason, domain, metadata, fieldViolations,
 * preconditionViolations, details: [every detail as a plain object with its @type]}.
 */
function errorDetails(err) {
  const out = { code: err.code, message: err.details, reason: '', domain: '', metadata: {}, fieldViolations: [], preconditionViolations: [], details: [] };
  const raw = err.metadata && err.metadata.get('grpc-status-details-bin')[0];
  if (!raw) return out;
  const status = Status.decode(raw);
  for (const any of status.details) {
    const typeName = any.type_url.slice(any.type_url.lastIndexOf('/') + 1);
    let type;
    try {
      type = rpcRoot.lookupType(typeName);
    } catch {
      out.details.push({ '@type': any.type_url });
      continue;
    }
    const detail = type.toObject(type.decode(any.value), { longs: String, enums: String, defaults: true });
    out.details.push({ '@type': any.type_url, ...detail });
    if (typeName === 'google.rpc.ErrorInfo') Object.assign(out, { reason: detail.reason, domain: detail.domain, metadata: detail.metadata });
    if (typeName === 'google.rpc.BadRequest') out.fieldViolations = detail.field_violations;
    if (typeName === 'google.rpc.PreconditionFailure') out.preconditionViolations = detail.violations;
  }
  return out;
}

/** Seconds (may be fractional) as a google.protobuf.Duration. */
function duration(seconds) {
  const nanos = Math.round(seconds * 1e9);
  return { seconds: Math.floor(nanos / 1e9), nanos: nanos % 1e9 };
}

/** A google.protobuf.Duration (seconds as a string with longs: String) in seconds. */
function seconds(d) {
  return d ? Number(d.seconds) + (d.nanos || 0) / 1e9 : 0;
}

/** A promise of a unary call's response. */
function call(clientObj, method, request, { deadlineSeconds = 30 } = {}) {
  return new Promise((resolve, reject) => {
    clientObj[method](request, { deadline: Date.now() + deadlineSeconds * 1000 }, (err, res) => (err ? reject(err) : resolve(res)));
  });
}

// The ErrorInfo.reason values, from the ErrorReason enum of protos/voltorch/v1/error_reason.proto.
const ErrorReason = Object.fromEntries(
  definition['voltorch.v1.ErrorReason'].type.value.map((v) => [v.name, v.name]),
);

module.exports = { grpc, v1, client, call, errorDetails, duration, seconds, ErrorReason, PROTOS };
