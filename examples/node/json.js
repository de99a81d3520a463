'use strict';
// Plain JSON <-> google.protobuf.Value / Struct, as @grpc/proto-loader (protobufjs) represents them.
//
// protobufjs names Value's fields in camelCase (nullValue, numberValue, stringValue, boolValue, structValue,
// listValue) even with keepCase, because it ships the well-known types pre-built. A misspelled kind
// (e.g. {string_value: 'x'}) is silently dropped and the server sees an empty Value, so always build Values
// through toValue().

function toValue(v) {
  if (v === null || v === undefined) return { nullValue: 'NULL_VALUE' };
  if (Array.isArray(v)) return { listValue: { values: v.map(toValue) } };
  switch (typeof v) {
    case 'number':
      if (!Number.isFinite(v)) throw new TypeError(`JSON has no ${v}`);
      return { numberValue: v };
    case 'string':
      return { stringValue: v };
    case 'boolean':
      return { boolValue: v };
    case 'bigint':
      return { numberValue: Number(v) }; // JSON numbers are doubles
    case 'object':
      return { structValue: toStruct(v) };
    default:
      throw new TypeError(`cannot send a ${typeof v} as JSON`);
  }
}

function toStruct(obj) {
  const fields = {};
  for (const [k, v] of Object.entries(obj || {})) fields[k] = toValue(v);
  return { fields };
}

function fromValue(v) {
  if (v === null || v === undefined) return null;
  // With the loader's `oneofs: true` the set member is named in `kind`; otherwise find the one present.
  const kind = v.kind || ['structValue', 'listValue', 'stringValue', 'numberValue', 'boolValue', 'nullValue'].find((k) => v[k] !== undefined && v[k] !== null);
  switch (kind) {
    case 'structValue':
      return fromStruct(v.structValue);
    case 'listValue':
      return (v.listValue.values || []).map(fromValue);
    case 'stringValue':
      return v.stringValue;
    case 'numberValue':
      return v.numberValue;
    case 'boolValue':
      return v.boolValue;
    default:
      return null; // nullValue, or an unset Value
  }
}

function fromStruct(s) {
  const out = {};
  for (const [k, v] of Object.entries((s && s.fields) || {})) out[k] = fromValue(v);
  return out;
}

module.exports = { toValue, fromValue, toStruct, fromStruct };
