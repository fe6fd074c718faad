// Moves a message between its two generated forms: protobuf-es (what connect-node reads and writes, with the
// proto3 JSON mapping) and ts-proto (what TuningService takes and returns). Through the binary wire format, which
// both implement from the same .proto: exact for every field, oneof, enum value and timestamp, and immune to the
// two generators' differences in naming (`$case` against `case`, Date against Timestamp), which a field-by-field
// copy would have to track by hand.
import { type DescMessage, fromBinary, type MessageShape, toBinary } from '@bufbuild/protobuf';
import type { BinaryReader, BinaryWriter } from '@bufbuild/protobuf/wire';

/** The part of a ts-proto message's generated functions that the conversion needs. */
export interface TsProtoCodec<T> {
  encode(message: T, writer?: BinaryWriter): BinaryWriter;
  decode(input: BinaryReader | Uint8Array, length?: number): T;
}

/** One message type in both forms. */
export interface MessageForms<S extends DescMessage, T> {
  es: S;
  ts: TsProtoCodec<T>;
}

export function forms<S extends DescMessage, T>(es: S, ts: TsProtoCodec<T>): MessageForms<S, T> {
  return { es, ts };
}

export function toTsProto<S extends DescMessage, T>(f: MessageForms<S, T>, message: MessageShape<S>): T {
  return f.ts.decode(toBinary(f.es, message));
}

export function toProtobufEs<S extends DescMessage, T>(f: MessageForms<S, T>, message: T): MessageShape<S> {
  return fromBinary(f.es, f.ts.encode(message).finish());
}
