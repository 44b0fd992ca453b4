/**
 * The HTTP API as a fastify instance: zod schemas for every request (schemas.ts) and the OpenAPI 3.1
 * document generated from them (/api/openapi.json, browsable at /api/docs), token authentication on every
 * route but /api/health, errors as `{"error": ...}` documents (http-errors.ts), and the routes. It is built
 * on the library's public entry only: a Volchain (createVolchain) whose calls the routes make.
 * `app.inject()` runs requests without a port (the tests); serve.ts listens.
 */
import Fastify, { type FastifyInstance, type FastifyServerOptions } from 'fastify';
import fastifySwagger from '@fastify/swagger';
import fastifySwaggerUi from '@fastify/swagger-ui';
import { jsonSchemaTransform, serializerCompiler, validatorCompiler, type ZodTypeProvider } from 'fastify-type-provider-zod';
import type { Logger } from 'pino';
import { join } from 'node:path';
import type { Volchain } from '../engine/volchain.js';
import { NotFoundError } from '../errors.js';
import { errorResponse, HttpError } from './http-errors.js';
import { LockProbe } from './lock-probe.js';
import { TaskManager } from './tasks.js';
import { TokenStore } from './tokens.js';
import type { ApiContext } from './context.js';
import { readRoutes } from './routes-read.js';
import { mutateRoutes } from './routes-mutate.js';
import { taskRoutes } from './routes-tasks.js';
import { portableRoutes } from './routes-portable.js';

export interface ApiOptions {
  volchain: Volchain;
  /** The API's state directory (tokens, tasks): tokens.ts apiStateDir(settings) for the server. */
  stateDir: string;
  /** A pino logger (serve.ts: JSON lines on stderr); default: no logging. */
  logger?: Logger;
  /** Largest request body accepted, bytes (default 64 KiB: every request is a few short fields). */
  bodyLimitBytes?: number;
  /** Largest chain stream `POST /api/storages/{storage}/import` accepts, bytes (default 1 TiB: routes-portable.ts). */
  importLimitBytes?: number;
  /** The program's version, for the OpenAPI document and /api/health (the CLI's VERSION). */
  version?: string;
  /** TLS for fastify (serve.ts reads the files). */
  https?: { cert: Buffer; key: Buffer };
}

/**
 * Routes served without a token: the health check, and the documentation page with its static files (the
 * same files for everyone, no data). Decided on the route the router matched, never on the URL's text
 * (`/api/docs/../storages` must not pass as documentation); an unknown route needs a token too.
 */
function isPublic(route: string | undefined): boolean {
  return route === '/api/health' || route === '/api/docs' || route === '/api/docs/' || (route?.startsWith('/api/docs/static/') ?? false);
}

const MUTATING_METHODS = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);

export async function buildApi(options: ApiOptions): Promise<FastifyInstance> {
  const version = options.version ?? 'unknown';
  const serverOptions: FastifyServerOptions = {
    bodyLimit: options.bodyLimitBytes ?? 64 * 1024,
    // Volids carry '/' and ':' (URL-encoded in a path); a long linked clone volid still fits.
    routerOptions: { maxParamLength: 1024 },
    // Unknown fields are refused by the schemas (strict objects); nothing is coerced or removed silently.
    ...(options.logger ? { loggerInstance: options.logger } : { logger: false }),
  };
  const app = Fastify({ ...serverOptions, ...(options.https ? { https: options.https } : {}) } as FastifyServerOptions);
  app.setValidatorCompiler(validatorCompiler);
  app.setSerializerCompiler(serializerCompiler);

  const ctx: ApiContext = {
    vc: options.volchain,
    tasks: await TaskManager.open(join(options.stateDir, 'tasks')),
    tokens: new TokenStore(options.stateDir),
    probe: new LockProbe(),
  };

  app.setErrorHandler((err, request, reply) => {
    const { status, body } = errorResponse(err);
    if (status >= 500) request.log.error({ err, code: body.error.code }, body.error.message);
    else request.log.info({ code: body.error.code }, body.error.message);
    return reply.code(status).send(body);
  });
  app.setNotFoundHandler((request, reply) => {
    const { body } = errorResponse(new NotFoundError(`no route ${request.method} ${request.url.split('?')[0] ?? ''}`));
    return reply.code(404).send(body);
  });

  app.addHook('onRequest', async (request) => {
    const path = request.url.split('?')[0] ?? '';
    if (isPublic(request.routeOptions.url)) return;
    const header = request.headers.authorization;
    const match = header !== undefined ? /^Bearer ([A-Za-z0-9_-]{1,128})$/.exec(header) : null;
    if (!match?.[1])
      throw new HttpError(401, "authentication required: send 'Authorization: Bearer <token>' (volchain token create NAME)", { auth: 'missing' });
    const token = await ctx.tokens.verify(match[1]);
    if (!token) throw new HttpError(401, 'the token is not valid (revoked, or never made here)', { auth: 'invalid' });
    if (token.readOnly && MUTATING_METHODS.has(request.method)) {
      throw new HttpError(403, `token '${token.name}' is read-only: it cannot ${request.method} ${path}`, { auth: 'read-only', token: token.name });
    }
    request.volchainToken = token;
  });

  await app.register(fastifySwagger, {
    openapi: {
      openapi: '3.1.0',
      info: { title: 'volchain', description: 'qcow2 volume chains for QEMU/KVM disks: the HTTP API of `volchain serve`', version },
      components: { securitySchemes: { token: { type: 'http', scheme: 'bearer', description: 'volchain token create NAME' } } },
      security: [{ token: [] }],
    },
    transform: jsonSchemaTransform,
  });
  await app.register(fastifySwaggerUi, { routePrefix: '/api/docs' });

  const typed = app.withTypeProvider<ZodTypeProvider>();
  typed.get('/api/health', { schema: { summary: 'no token needed: the server answers', security: [] } }, () => ({ ok: true, version }));
  typed.get('/api/openapi.json', { schema: { hide: true } }, () => app.swagger());
  await typed.register(readRoutes, { ctx });
  await typed.register(mutateRoutes, { ctx });
  await typed.register(taskRoutes, { ctx });
  await typed.register(portableRoutes, { ctx, ...(options.importLimitBytes !== undefined ? { importLimitBytes: options.importLimitBytes } : {}) });
  // A server closing waits for its tasks (a SIGTERM'd `volchain serve`: serve.ts).
  app.addHook('onClose', async () => ctx.tasks.idle());
  return app;
}
