/**
 * A minimal OpenAI-compatible upstream for bench:gateway: answers POST /v1/chat/completions at once (plain, or
 * streamed as three chunks, the usage and [DONE]), so that a gateway in front of it shows only its own cost. Run as
 * a process of its own (`node --import tsx bench/lib/openai-responder.ts PORT`); prints "ready" when listening.
 */
import { createServer } from 'node:http';

const port = Number(process.argv[2] ?? 0);
const created = Math.floor(Date.now() / 1000);
const usage = { prompt_tokens: 12, completion_tokens: 3, total_tokens: 15 };
const plain = (model: string) =>
  JSON.stringify({
    id: 'chatcmpl-bench',
    object: 'chat.completion',
    created,
    model,
    choices: [{ index: 0, message: { role: 'assistant', content: 'Squats, 3x10.' }, finish_reason: 'stop' }],
    usage,
  });
const chunk = (model: string, delta: Record<string, unknown>, finish: string | null, extra = {}) =>
  `data: ${JSON.stringify({ id: 'chatcmpl-bench', object: 'chat.completion.chunk', created, model, choices: [{ index: 0, delta, finish_reason: finish }], ...extra })}\n\n`;

const server = createServer((req, res) => {
  if (req.method !== 'POST' || !req.url?.endsWith('/chat/completions')) {
    res.writeHead(404).end();
    return;
  }
  const parts: Buffer[] = [];
  req.on('data', (c: Buffer) => parts.push(c));
  req.on('end', () => {
    const body = JSON.parse(Buffer.concat(parts).toString('utf8')) as { model: string; stream?: boolean };
    if (!body.stream) {
      res.writeHead(200, { 'content-type': 'application/json' }).end(plain(body.model));
      return;
    }
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
    res.write(chunk(body.model, { role: 'assistant', content: 'Squats' }, null));
    res.write(chunk(body.model, { content: ', 3x10.' }, null));
    res.write(chunk(body.model, {}, 'stop'));
    res.write(
      `data: ${JSON.stringify({ id: 'chatcmpl-bench', object: 'chat.completion.chunk', created, model: body.model, choices: [], usage })}\n\n`,
    );
    res.end('data: [DONE]\n\n');
  });
});
server.keepAliveTimeout = 60_000;
server.listen(port, '127.0.0.1', () => console.log('ready'));
process.on('SIGTERM', () => server.close(() => process.exit(0)));
