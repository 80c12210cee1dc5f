// What the native stand-ins read and record; `testing.js` drives it.
export const host = {
  logs: [],
  connected: new Set(),
  state: new Map(),
  stateLimit: null,
  tables: new Map(),
};
export const hex = (bytes) => Buffer.from(bytes).toString('hex');
