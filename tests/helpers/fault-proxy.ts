import { createServer, request, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * A small fault-injecting HTTP proxy in front of a real server (the incumbent's stand-in: a second Ollama through
 * its OpenAI-compatible endpoint). Each request is forwarded unless a fault is set: a connection reset before any
 * answer, a 429 with Retry-After, a 500, a first byte held back for `delayMs`, or a stream cut after `afterBytes`
 * bytes of the answer, or a stream ended cleanly after some events (with nothing more, or with an error event, as
 * providers report a failure mid-stream) (a 500's message echoes the key it was sent, as some providers' errors do). A fault applies to the next `times` requests (Infinity: until cleared). It records the
 * requests it saw (path and headers) so tests can check what reached the provider.
 */
export type Fault =
  | { kind: 'reset' }
  | { kind: '429'; retryAfterS: number }
  | { kind: '500' }
  | { kind: 'slow'; delayMs: number }
  | { kind: 'cut'; afterBytes: number }
  /** A stream that ends cleanly after `events` server-sent events, without `[DONE]` (or with an error event). */
  | { kind: 'truncate'; events: number; then?: 'end' | 'error-event' };

export interface FaultProxy {
  url: string;
  seen: { path: string; authorization: string | undefined }[];
  fail(fault: Fault, times?: number): void;
  clear(): void;
  close(): Promise<void>;
}

export async function startFaultProxy(target: string): Promise<FaultProxy> {
  const upstream = new URL(target);
  let fault: Fault | null = null;
  let left = 0;
  const seen: FaultProxy['seen'] = [];
  const next = (): Fault | null => {
    if (!fault || left <= 0) return null;
    left--;
    return fault;
  };

  const forward = (req: IncomingMessage, res: ServerResponse, f: Fault | null) => {
    const up = request(
      {
        host: upstream.hostname,
        port: upstream.port,
        method: req.method,
        path: req.url,
        headers: { ...req.headers, host: upstream.host },
      },
      (answer) => {
        const start = () => {
          res.writeHead(answer.statusCode ?? 502, answer.headers);
          if (f?.kind === 'truncate') {
            let text = '';
            let done = false;
            answer.setEncoding('utf8');
            answer.on('data', (piece: string) => {
              if (done) return;
              text += piece;
              const events = text.split('\n\n');
              if (events.length <= f.events) return;
              done = true;
              res.write(events.slice(0, f.events).join('\n\n') + '\n\n');
              if (f.then === 'error-event') res.write('data: {"error":{"message":"the model is overloaded"}}\n\n');
              res.end();
              answer.destroy();
            });
            answer.on('end', () => {
              if (!done) res.end(text);
            });
            return;
          }
          if (f?.kind !== 'cut') {
            answer.pipe(res);
            return;
          }
          let sent = 0;
          answer.on('data', (chunk: Buffer) => {
            if (sent >= f.afterBytes) return;
            const part = chunk.subarray(0, f.afterBytes - sent);
            sent += part.length;
            res.write(part);
            if (sent >= f.afterBytes) {
              answer.destroy();
              res.socket?.destroy();
            }
          });
          answer.on('end', () => res.end());
        };
        if (f?.kind === 'slow') setTimeout(start, f.delayMs);
        else start();
      },
    );
    up.on('error', () => res.socket?.destroy());
    req.pipe(up);
  };

  const server: Server = createServer((req, res) => {
    seen.push({ path: req.url ?? '', authorization: req.headers.authorization });
    const f = next();
    switch (f?.kind) {
      case 'reset':
        req.socket.destroy();
        return;
      case '429':
        req.resume();
        res.writeHead(429, { 'content-type': 'application/json', 'retry-after': String(f.retryAfterS) });
        res.end(JSON.stringify({ error: { message: 'Rate limit reached', type: 'rate_limit_error', code: null } }));
        return;
      case '500':
        req.resume();
        res.writeHead(500, { 'content-type': 'application/json' });
        // As some providers do, the error echoes the key it was sent: it must go no further.
        res.end(
          JSON.stringify({
            error: { message: `internal error (key: ${req.headers.authorization ?? 'none'})`, type: 'server_error' },
          }),
        );
        return;
      default:
        forward(req, res, f);
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    seen,
    fail(f, times = Infinity) {
      fault = f;
      left = times;
    },
    clear() {
      fault = null;
      left = 0;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
