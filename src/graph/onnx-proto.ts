// A minimal protobuf encoder for the subset of onnx.proto that narrowtune emits (ModelProto and
// what it contains). Writing it by hand keeps the runtime free of a protobuf library and lets large
// initializers be appended as chunks without copying them into intermediate buffers.

/** Field numbers and enums from onnx/onnx.proto (IR version 11). */
export const ONNX_IR_VERSION = 11;

export enum TensorDataType {
  FLOAT = 1,
  UINT8 = 2,
  INT8 = 3,
  INT32 = 6,
  INT64 = 7,
  BOOL = 9,
  FLOAT16 = 10,
  DOUBLE = 11,
  BFLOAT16 = 16,
}

enum AttributeType {
  FLOAT = 1,
  INT = 2,
  STRING = 3,
  TENSOR = 4,
  FLOATS = 6,
  INTS = 7,
}

export type AttributeValue = number | string | number[] | { float: number } | { floats: number[] } | TensorProto;

export interface TensorProto {
  name: string;
  dataType: TensorDataType;
  dims: number[];
  /** Inline bytes, or — with `external` — the bytes handed to onnxruntime beside the model. */
  rawData: Uint8Array;
  /** Store the data outside the protobuf under this location name (see CompiledModel). */
  external?: string;
}

export interface NodeProto {
  opType: string;
  inputs: string[]; // '' marks an omitted optional input
  outputs: string[];
  name: string;
  domain?: string;
  attributes?: Record<string, AttributeValue>;
}

export interface ValueInfoProto {
  name: string;
  elemType: TensorDataType;
  shape: number[];
}

export interface GraphProto {
  name: string;
  nodes: NodeProto[];
  initializers: TensorProto[];
  inputs: ValueInfoProto[];
  outputs: ValueInfoProto[];
}

export interface ModelProto {
  graph: GraphProto;
  opsets: { domain: string; version: number }[];
  producerName: string;
  producerVersion: string;
}

const WIRE_VARINT = 0;
const WIRE_FIXED32 = 5;
const WIRE_LEN = 2;

/** Accumulates encoded bytes as a list of chunks; nested messages are spliced in without copying. */
class Writer {
  chunks: Uint8Array[] = [];
  length = 0;
  private scratch: number[] = [];

  private flushScratch(): void {
    if (this.scratch.length === 0) return;
    const bytes = Uint8Array.from(this.scratch);
    this.chunks.push(bytes);
    this.length += bytes.length;
    this.scratch = [];
  }

  private varint(value: number | bigint): void {
    // int64 fields: negative values are encoded as 10-byte two's complement, as protobuf requires.
    let v = BigInt.asUintN(64, BigInt(value));
    while (v >= 0x80n) {
      this.scratch.push(Number(v & 0x7fn) | 0x80);
      v >>= 7n;
    }
    this.scratch.push(Number(v));
  }

  private tag(field: number, wire: number): void {
    this.varint((field << 3) | wire);
  }

  int(field: number, value: number): void {
    this.tag(field, WIRE_VARINT);
    this.varint(value);
  }

  float(field: number, value: number): void {
    this.tag(field, WIRE_FIXED32);
    const b = new Uint8Array(4);
    new DataView(b.buffer).setFloat32(0, value, true);
    this.scratch.push(...b);
  }

  bytes(field: number, data: Uint8Array): void {
    this.tag(field, WIRE_LEN);
    this.varint(data.length);
    this.flushScratch();
    this.chunks.push(data);
    this.length += data.length;
  }

  string(field: number, s: string): void {
    this.bytes(field, new TextEncoder().encode(s));
  }

  message(field: number, encode: (w: Writer) => void): void {
    const child = new Writer();
    encode(child);
    child.flushScratch();
    this.tag(field, WIRE_LEN);
    this.varint(child.length);
    this.flushScratch();
    this.chunks.push(...child.chunks);
    this.length += child.length;
  }

  finish(): Uint8Array {
    this.flushScratch();
    const out = new Uint8Array(this.length);
    let at = 0;
    for (const c of this.chunks) {
      out.set(c, at);
      at += c.length;
    }
    return out;
  }
}

const DATA_LOCATION_EXTERNAL = 1;

function writeTensor(w: Writer, t: TensorProto): void {
  for (const d of t.dims) w.int(1, d);
  w.int(2, t.dataType);
  w.string(8, t.name);
  if (t.external === undefined) {
    w.bytes(9, t.rawData);
    return;
  }
  const entry = (key: string, value: string) =>
    w.message(13, (m) => {
      m.string(1, key);
      m.string(2, value);
    });
  entry('location', t.external);
  entry('offset', '0');
  entry('length', String(t.rawData.byteLength));
  w.int(14, DATA_LOCATION_EXTERNAL);
}

function writeAttribute(w: Writer, name: string, value: AttributeValue): void {
  w.string(1, name);
  if (typeof value === 'number') {
    if (!Number.isInteger(value)) throw new Error(`attribute ${name}: ${value} is not an integer; wrap floats as {float: x}`);
    w.int(3, value);
    w.int(20, AttributeType.INT);
  } else if (typeof value === 'string') {
    w.string(4, value);
    w.int(20, AttributeType.STRING);
  } else if (Array.isArray(value)) {
    for (const v of value) w.int(8, v);
    w.int(20, AttributeType.INTS);
  } else if ('float' in value) {
    w.float(2, value.float);
    w.int(20, AttributeType.FLOAT);
  } else if ('floats' in value) {
    for (const v of value.floats) w.float(7, v);
    w.int(20, AttributeType.FLOATS);
  } else {
    w.message(5, (m) => writeTensor(m, value));
    w.int(20, AttributeType.TENSOR);
  }
}

function writeNode(w: Writer, n: NodeProto): void {
  for (const i of n.inputs) w.string(1, i);
  for (const o of n.outputs) w.string(2, o);
  w.string(3, n.name);
  w.string(4, n.opType);
  for (const [k, v] of Object.entries(n.attributes ?? {})) w.message(5, (m) => writeAttribute(m, k, v));
  if (n.domain) w.string(7, n.domain);
}

function writeValueInfo(w: Writer, v: ValueInfoProto): void {
  w.string(1, v.name);
  w.message(2, (type) =>
    type.message(1, (tensor) => {
      tensor.int(1, v.elemType);
      tensor.message(2, (shape) => {
        for (const d of v.shape) shape.message(1, (dim) => dim.int(1, d));
      });
    }),
  );
}

function writeGraph(w: Writer, g: GraphProto): void {
  for (const n of g.nodes) w.message(1, (m) => writeNode(m, n));
  w.string(2, g.name);
  for (const t of g.initializers) w.message(5, (m) => writeTensor(m, t));
  for (const i of g.inputs) w.message(11, (m) => writeValueInfo(m, i));
  for (const o of g.outputs) w.message(12, (m) => writeValueInfo(m, o));
}

/** Serialises a model to the bytes onnxruntime's `InferenceSession.create` accepts. */
export function encodeModel(model: ModelProto): Uint8Array {
  const w = new Writer();
  w.int(1, ONNX_IR_VERSION);
  w.string(2, model.producerName);
  w.string(3, model.producerVersion);
  w.message(7, (m) => writeGraph(m, model.graph));
  for (const o of model.opsets) {
    w.message(8, (m) => {
      if (o.domain) m.string(1, o.domain);
      m.int(2, o.version);
    });
  }
  return w.finish();
}
