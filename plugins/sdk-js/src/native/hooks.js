// Resolves the host's interfaces (`sluice:plugin/NAME@0.1.0`) to the
// in-process stand-ins next to this file, so a plugin runs under node.
const here = new URL('./', import.meta.url);
export async function resolve(specifier, context, next) {
  const m = /^sluice:plugin\/([a-z-]+)@0\.1\.0$/.exec(specifier);
  if (m) return { url: new URL(`${m[1]}.js`, here).href, shortCircuit: true };
  return next(specifier, context);
}
