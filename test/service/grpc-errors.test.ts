// Tests for the gRPC error boundary: kind → code, google.rpc.Status/BadRequest in trailers over a real call.

import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BadRequest } from '../../src/gen/google/rpc/error_details.js';
import { Status } from '../../src/gen/google/rpc/status.js';
import {
  BAD_REQUEST_TYPE_URL,
  MAX_DESCRIPTION_CHARS,
  MAX_FIELD_CHARS,
  MAX_FIELD_VIOLATIONS,
  MAX_MESSAGE_WIRE_CHARS,
  STATUS_DETAILS_KEY,
  decodeStatusDetails,
  statusFromError,
  statusFromJobError,
  toGrpcError,
} from '../../src/service/grpc-errors.js';
import { NarrowtuneError, deserializeError, invalidArgument, quotaExceeded, serializeError, type ErrorKind } from '../../src/util/errors.js';

const KIND_CODES: ReadonlyArray<[ErrorKind, grpc.status]> = [
  ['invalid_argument', grpc.status.INVALID_ARGUMENT],
  ['not_found', grpc.status.NOT_FOUND],
  ['failed_precondition', grpc.status.FAILED_PRECONDITION],
  ['unavailable', grpc.status.UNAVAILABLE],
  ['already_exists', grpc.status.ALREADY_EXISTS],
  ['resource_exhausted', grpc.status.RESOURCE_EXHAUSTED],
  ['internal', grpc.status.INTERNAL],
];

const VIOLATIONS = [
  { field: 'policy.include[0]', description: 'matches no tensor: "nope"' },
  { field: 'hyperparameters.steps', description: 'must be positive' },
];

describe('toGrpcError', () => {
  it.each(KIND_CODES)('maps %s to its status code', (kind, code) => {
    const err = toGrpcError(new NarrowtuneError(kind, 'what went wrong'));
    expect(err).toBeInstanceOf(Error);
    expect(err.code).toBe(code);
    expect(err.details).toBe('what went wrong');
    expect(err.message).toBe('what went wrong');
    const decoded = decodeStatusDetails(err.metadata);
    expect(decoded?.status).toEqual({ code, message: 'what went wrong', details: [] });
    expect(decoded?.badRequest).toBeNull();
  });

  it('puts one BadRequest with every violation in the details, and keeps them readable in the message', () => {
    const err = toGrpcError(new NarrowtuneError('invalid_argument', 'invalid request', VIOLATIONS));
    expect(err.details).toBe(
      'invalid request: policy.include[0]: matches no tensor: "nope"; hyperparameters.steps: must be positive',
    );
    const value = err.metadata.get(STATUS_DETAILS_KEY)[0];
    expect(Buffer.isBuffer(value)).toBe(true);
    const status = Status.decode(value as Buffer);
    expect(status.details).toHaveLength(1);
    expect(status.details[0]!.typeUrl).toBe(BAD_REQUEST_TYPE_URL);
    expect(BadRequest.decode(status.details[0]!.value).fieldViolations).toEqual(VIOLATIONS.map((v) => ({ ...v, reason: '' })));
  });

  it('keeps a message that already names its violation', () => {
    const err = toGrpcError(invalidArgument('training_data', 'must be inside the data root'));
    expect(err.details).toBe('training_data: must be inside the data root');
    expect(decodeStatusDetails(err.metadata)?.badRequest?.fieldViolations).toEqual([
      { field: 'training_data', description: 'must be inside the data root', reason: '' },
    ]);
  });

  it('turns unknown errors into INTERNAL with the message and no stack', () => {
    const thrown = new TypeError('cannot read properties of undefined');
    const err = toGrpcError(thrown);
    expect(err.code).toBe(grpc.status.INTERNAL);
    expect(err.details).toBe('internal error: cannot read properties of undefined');
    const status = decodeStatusDetails(err.metadata)!.status;
    expect(status.message).toBe(err.details);
    expect(status.details).toEqual([]);
    const stackLine = thrown.stack!.split('\n')[1]!.trim();
    expect(err.details).not.toContain(stackLine);
    expect(Buffer.from(err.metadata.get(STATUS_DETAILS_KEY)[0] as Buffer).toString('latin1')).not.toContain('    at ');
  });

  it('handles thrown non-errors', () => {
    expect(toGrpcError('boom').details).toBe('internal error: boom');
    expect(toGrpcError(undefined).code).toBe(grpc.status.INTERNAL);
  });
});

describe('statusFromError / statusFromJobError', () => {
  it('agree for domain errors', () => {
    const e = new NarrowtuneError('not_found', 'jobs/x: no such job');
    expect(statusFromError(e)).toEqual(statusFromJobError({ kind: 'not_found', message: 'jobs/x: no such job' }));
  });

  it('treat a job error without a known kind as internal', () => {
    expect(statusFromJobError({ message: 'worker crashed' })).toEqual({
      code: grpc.status.INTERNAL,
      message: 'internal error: worker crashed',
      details: [],
    });
    expect(statusFromJobError({ kind: 'toString', message: 'x' }).code).toBe(grpc.status.INTERNAL);
  });

  it('carry violations of a stored job error', () => {
    const status = statusFromJobError({ kind: 'invalid_argument', message: 'bad data', violations: VIOLATIONS });
    expect(status.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(BadRequest.decode(status.details[0]!.value).fieldViolations.map((v) => v.field)).toEqual(VIOLATIONS.map((v) => v.field));
  });
});

describe('bounds on one error', () => {
  it('keeps the first violations, cut to length, and says how many were left out', () => {
    const many = Array.from({ length: 10_000 }, (_, i) => ({ field: `policy.include[${i}]`, description: `"nope${i}(" is not a valid regular expression` }));
    const status = statusFromError(new NarrowtuneError('invalid_argument', 'invalid request', many));
    const kept = BadRequest.decode(status.details[0]!.value).fieldViolations;
    expect(kept).toHaveLength(MAX_FIELD_VIOLATIONS);
    expect(kept[0]).toEqual({ ...many[0], reason: '' });
    expect(encodeURI(status.message).length).toBeLessThanOrEqual(MAX_MESSAGE_WIRE_CHARS);
    expect(status.message).toMatch(/ \(9968 more field violations not listed\)$/);
  });

  it('cuts huge fields, descriptions and messages, keeping the trailer small', () => {
    const huge = 'x'.repeat(4 << 20);
    const err = toGrpcError(new NarrowtuneError('invalid_argument', huge, [{ field: huge, description: huge }, { field: 'b', description: huge }]));
    const decoded = decodeStatusDetails(err.metadata)!;
    const kept = decoded.badRequest!.fieldViolations;
    expect(kept.map((v) => v.field.length)).toEqual([MAX_FIELD_CHARS, 1]);
    expect(kept.every((v) => v.description.length === MAX_DESCRIPTION_CHARS && v.description.endsWith('…'))).toBe(true);
    expect(encodeURI(err.details).length).toBeLessThanOrEqual(MAX_MESSAGE_WIRE_CHARS);
    expect(err.details.length).toBeGreaterThan(MAX_MESSAGE_WIRE_CHARS - 16);
    expect(err.details.endsWith('…')).toBe(true);
    expect((err.metadata.get(STATUS_DETAILS_KEY)[0] as Buffer).length).toBeLessThan(4 * 1024);
  });

  it('keeps all trailers under the 8 KiB metadata limit of standard clients, whatever the characters', () => {
    // Each of these code points grows 9-fold in grpc-message (percent-encoded UTF-8) and 4-fold in the Status.
    const wide = '語'.repeat(100_000);
    const violations = Array.from({ length: 100 }, () => ({ field: wide, description: wide }));
    const quotaViolations = Array.from({ length: 100 }, () => ({ subject: wide, description: wide }));
    const err = toGrpcError(new NarrowtuneError('resource_exhausted', wide, violations, { details: { quotaViolations, retryDelayMs: 1500 } }));
    const bin = err.metadata.get(STATUS_DETAILS_KEY)[0] as Buffer;
    expect(encodeURI(err.details).length + Math.ceil(bin.length / 3) * 4).toBeLessThan(7.5 * 1024);
    const decoded = decodeStatusDetails(err.metadata)!;
    expect(decoded.quotaFailure!.violations.length).toBeGreaterThan(0);
    expect(decoded.retryDelayMs).toBe(1500);
  });

  it('never splits a surrogate pair or sends a lone one (encodeURI would throw)', () => {
    const emoji = '😀'.repeat(5000);
    for (const message of [emoji, `\ud800${emoji}`, `x\udfff`]) {
      const err = toGrpcError(invalidArgument('name', message));
      expect(() => encodeURI(err.details)).not.toThrow();
    }
  });
});

describe('quota and retry details', () => {
  it('carries QuotaFailure and RetryInfo with the upstream type URLs', () => {
    const err = toGrpcError(quotaExceeded('key:k1', 'StartTune rate limit of 10 per minute reached', 2400));
    expect(err.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
    expect(err.details).toBe('StartTune rate limit of 10 per minute reached; retry in 3 s');
    const decoded = decodeStatusDetails(err.metadata)!;
    expect(decoded.status.details.map((d) => d.typeUrl)).toEqual([
      'type.googleapis.com/google.rpc.QuotaFailure',
      'type.googleapis.com/google.rpc.RetryInfo',
    ]);
    expect(decoded.quotaFailure!.violations).toEqual([{ subject: 'key:k1', description: 'StartTune rate limit of 10 per minute reached' }]);
    expect(decoded.retryDelayMs).toBe(2400);
    expect(decoded.badRequest).toBeNull();
  });

  it('survive a worker boundary', () => {
    const e = deserializeError(serializeError(quotaExceeded('tenant:a', 'too many queued jobs')));
    expect(statusFromError(e).details.map((d) => d.typeUrl)).toEqual(['type.googleapis.com/google.rpc.QuotaFailure']);
  });
});

describe('decodeStatusDetails', () => {
  it('returns null without the trailer or with a corrupt one', () => {
    const md = new grpc.Metadata();
    expect(decodeStatusDetails(md)).toBeNull();
    md.set(STATUS_DETAILS_KEY, Buffer.from([0xff, 0xff, 0xff]));
    expect(decodeStatusDetails(md)).toBeNull();
  });
});

// A raw-bytes service, so the trailers cross a real HTTP/2 connection without any generated stubs.
const identity = (b: Buffer): Buffer => b;
const ECHO_SERVICE = {
  fail: {
    path: '/test.Echo/Fail',
    requestStream: false,
    responseStream: false,
    requestSerialize: identity,
    requestDeserialize: identity,
    responseSerialize: identity,
    responseDeserialize: identity,
  },
  failStream: {
    path: '/test.Echo/FailStream',
    requestStream: false,
    responseStream: true,
    requestSerialize: identity,
    requestDeserialize: identity,
    responseSerialize: identity,
    responseDeserialize: identity,
  },
} satisfies grpc.ServiceDefinition;

const CALL_TIMEOUT_MS = 10_000;

describe('over a real call', { timeout: CALL_TIMEOUT_MS }, () => {
  const thrown = new NarrowtuneError('invalid_argument', 'invalid request', VIOLATIONS);
  let server: grpc.Server;
  let client: grpc.Client & Record<string, (...args: unknown[]) => unknown>;

  beforeAll(async () => {
    server = new grpc.Server();
    server.addService(ECHO_SERVICE, {
      fail: (_call: grpc.ServerUnaryCall<Buffer, Buffer>, callback: grpc.sendUnaryData<Buffer>) => callback(toGrpcError(thrown)),
      failStream: (call: grpc.ServerWritableStream<Buffer, Buffer>) => {
        call.write(Buffer.from('one'));
        // Not call.destroy(err): grpc-js 1.14 then never sends a status and the client hangs.
        call.emit('error', toGrpcError(thrown));
      },
    });
    const port = await new Promise<number>((resolve, reject) =>
      server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
    );
    const Client = grpc.makeGenericClientConstructor(ECHO_SERVICE, 'Echo');
    client = new Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure()) as typeof client;
  });

  afterAll(async () => {
    client?.close();
    await new Promise<void>((resolve) => (server ? server.tryShutdown(() => resolve()) : resolve()));
  });

  function expectBadRequest(err: grpc.ServiceError): void {
    expect(err.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(err.details).toContain('policy.include[0]: matches no tensor');
    const decoded = decodeStatusDetails(err.metadata);
    expect(decoded?.status.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(decoded?.status.message).toBe(err.details);
    expect(decoded?.badRequest?.fieldViolations).toEqual(VIOLATIONS.map((v) => ({ ...v, reason: '' })));
  }

  it('round-trips BadRequest through a unary callback', async () => {
    const err = await new Promise<grpc.ServiceError>((resolve, reject) =>
      client.fail(Buffer.alloc(0), (e: grpc.ServiceError | null) => (e ? resolve(e) : reject(new Error('call succeeded')))),
    );
    expectBadRequest(err);
  });

  it('round-trips BadRequest through a server stream that emits the error', async () => {
    const stream = client.failStream(Buffer.alloc(0)) as grpc.ClientReadableStream<Buffer>;
    const received: string[] = [];
    stream.on('data', (b: Buffer) => received.push(b.toString()));
    const err = await new Promise<grpc.ServiceError>((resolve, reject) => {
      stream.on('error', resolve);
      stream.on('end', () => reject(new Error('stream ended without an error')));
    });
    expect(received).toEqual(['one']);
    expectBadRequest(err);
  });
});
