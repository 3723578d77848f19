// Receives the file service's webhooks: checks each signature, prints each event as a line of JSON, answers 204
// (400 to a request whose signature does not verify, which the service does not retry).
//   FILES_WEBHOOK_SECRET=… PORT=8080 node apps/files/examples/webhook-receiver.ts
// then start the service with FILES_WEBHOOK_URL=http://127.0.0.1:8080/ and the same FILES_WEBHOOK_SECRET.
import { createServer } from 'node:http';
import { verifyWebhook, WebhookSignatureError } from '../src/webhooks.ts';

const secret = process.env.FILES_WEBHOOK_SECRET ?? '';
const seen = new Set<string>(); // delivery ids: a retry of a delivery that did arrive is answered, not acted on twice

const server = createServer(async (req, res) => {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  try {
    // The raw bytes, before any JSON parsing: the signature covers them exactly.
    const event = verifyWebhook({
      secret,
      header: req.headers['x-weft-signature'],
      body: Buffer.concat(chunks),
    });
    if (!seen.has(event.id)) {
      seen.add(event.id);
      if (event.type === 'file.processed') {
        const { fileId, name, derived } = event.data;
        console.log(
          JSON.stringify({ event: event.type, id: event.id, fileId, name, derived: derived.length }),
        );
      } else {
        const { fileId, jobId, error } = event.data;
        console.log(JSON.stringify({ event: event.type, id: event.id, fileId, jobId, code: error.code }));
      }
    }
    res.writeHead(204).end();
  } catch (err) {
    const refused = err instanceof WebhookSignatureError;
    console.log(JSON.stringify(refused ? { refused: err.reason } : { failed: String(err) }));
    res.writeHead(refused ? 400 : 500).end();
  }
});
server.listen(Number(process.env.PORT ?? 8080), '127.0.0.1', () => {
  console.log(`listening on ${(server.address() as { port: number }).port}`);
});
process.on('SIGTERM', () => server.close());
