import { createHash } from 'node:crypto';

/** Some CPU work for the pool: hash a buffer `rounds` times. */
export function digest(text: string, rounds: number): string {
  let value = Buffer.from(text);
  for (let i = 0; i < rounds; i++) value = createHash('sha256').update(value).digest();
  return value.toString('hex');
}
