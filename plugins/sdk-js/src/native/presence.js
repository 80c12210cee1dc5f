import { host } from './host.js';
export const connected = (client) => host.connected.has(client);
