/**
 * Live operations' foundation: a QMP client (protocol.ts, client.ts, socket.ts), QEMU's vocabulary
 * (commands.ts, jobs.ts), how a chain is opened (blockdev.ts), and a transcript transport for tests
 * (replay.ts).
 */
export * from './errors.js';
export * from './protocol.js';
export * from './client.js';
export { connectUnixSocket } from './socket.js';
export * from './commands.js';
export * from './jobs.js';
export * from './blockdev.js';
export * from './live-view.js';
export { ReplayTransport, event, greeting, handshake, type ReplayStep } from './replay.js';
