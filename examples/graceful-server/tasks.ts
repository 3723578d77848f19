import { createHash } from 'node:crypto';

/** Some CPU work for the pool: hashes `text` `rounds` times with SHA-256 and returns the hex digest. */
export function digest(text: string, rounds: number): string {
  let value = Buffer.from(text);
  for (let i = 0; i < rounds; i++) value = createHash('sha256').update(value).digest();
  return value.toString('hex');
}
