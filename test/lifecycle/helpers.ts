import type { Logger } from '../../src/lifecycle/index.ts';

/** A logger that keeps every line, for assertions. */
export function memoryLogger(): Logger & {
  lines: { level: string; obj: object; msg: string | undefined }[];
} {
  const lines: { level: string; obj: object; msg: string | undefined }[] = [];
  const at = (level: string) => (obj: object, msg?: string) => {
    lines.push({ level, obj, msg });
  };
  return { lines, info: at('info'), warn: at('warn'), error: at('error') };
}
