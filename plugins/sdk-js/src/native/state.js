import { host, hex } from './host.js';
export const get = (key) => host.state.get(hex(key))?.[1];
export function put(key, value) {
  if (host.stateLimit !== null) {
    let size = key.length + value.length;
    for (const [k, [rawKey, v]] of host.state) if (k !== hex(key)) size += rawKey.length + v.length;
    if (size > host.stateLimit) throw { tag: 'full', val: `state would exceed its limit of ${host.stateLimit} bytes` };
  }
  host.state.set(hex(key), [Uint8Array.from(key), Uint8Array.from(value)]);
}
export const delete_ = (key) => host.state.delete(hex(key));
export { delete_ as delete };
