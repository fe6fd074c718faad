// Job ids: short, url-safe, random, so they can sit in resource names (jobs/ID) and paths unescaped.
import { randomBytes } from 'node:crypto';

const ALPHABET = 'abcdefghijklmnopqrstuvwxyz234567'; // RFC 4648 base32, lower-cased
export const JOB_ID_LENGTH = 12; // 60 random bits

export function newJobId(): string {
  // 256 is a multiple of 32, so masking each byte keeps the choice uniform.
  const bytes = randomBytes(JOB_ID_LENGTH);
  let id = '';
  for (const b of bytes) id += ALPHABET[b & 31];
  return id;
}
