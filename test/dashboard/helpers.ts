import { type ClientRequest, get, type IncomingMessage } from 'node:http';
import { within } from '../helpers.ts';

/** One server-sent event as the browser's EventSource would parse it (comments and `retry:` kept apart). */
export interface SseEvent {
  event: string;
  data: string;
}

/** A server-sent event stream read the way EventSource reads it. */
export interface SseStream {
  res: IncomingMessage;
  events: SseEvent[];
  /** `retry:` values and comment lines, in order. */
  retry: number[];
  comments: string[];
  /** Resolves once `n` events have arrived (or already had); fails naming `what` after `ms`. */
  received(n: number, ms: number, what: string): Promise<SseEvent[]>;
  /** Resolves when the server ends the stream. */
  ended: Promise<void>;
  close(): void;
}

/** Opens `url` as an event stream; rejects with the status when it is not 200. */
export async function openStream(url: string, headers: Record<string, string> = {}): Promise<SseStream> {
  let req: ClientRequest | undefined;
  const res = await within(
    new Promise<IncomingMessage>((resolve, reject) => {
      req = get(url, { headers: { accept: 'text/event-stream', ...headers } }, resolve);
      req.on('error', reject);
    }),
    10_000,
    `the stream ${url}`,
  );
  const stream: SseStream = {
    res,
    events: [],
    retry: [],
    comments: [],
    received: (n, ms, what) =>
      within(
        new Promise<SseEvent[]>((resolve) => {
          const check = () => {
            if (stream.events.length < n) return;
            res.off('sse', check);
            resolve(stream.events.slice(0, n));
          };
          res.on('sse', check);
          check();
        }),
        ms,
        what,
      ),
    ended: new Promise<void>((resolve) => {
      res.once('end', resolve);
      res.once('close', resolve);
    }),
    close: () => req?.destroy(),
  };
  let buffered = '';
  let event = { event: 'message', data: [] as string[] };
  res.setEncoding('utf8');
  res.on('data', (chunk: string) => {
    buffered += chunk;
    for (let nl = buffered.indexOf('\n'); nl >= 0; nl = buffered.indexOf('\n')) {
      const line = buffered.slice(0, nl);
      buffered = buffered.slice(nl + 1);
      if (line === '') {
        if (event.data.length > 0) {
          stream.events.push({ event: event.event, data: event.data.join('\n') });
          res.emit('sse');
        }
        event = { event: 'message', data: [] };
      } else if (line.startsWith(':')) stream.comments.push(line.slice(1).trim());
      else if (line.startsWith('retry: ')) stream.retry.push(Number(line.slice(7)));
      else if (line.startsWith('event: ')) event.event = line.slice(7);
      else if (line.startsWith('data: ')) event.data.push(line.slice(6));
    }
  });
  res.on('error', () => {});
  return stream;
}
