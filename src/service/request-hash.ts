// The digest a StartTune request is remembered by, so that a request_id sent again with a different request is
// told apart from a retry. ts-proto's encoding is canonical for one message type: fields in number order,
// defaults left out, so the same request always hashes the same.
import { createHash } from 'node:crypto';
import { StartTuneRequest } from '../gen/narrowtune/v1/tuning_service.js';

export function startTuneHash(req: StartTuneRequest): string {
  return createHash('sha256').update(StartTuneRequest.encode(req).finish()).digest('hex');
}
