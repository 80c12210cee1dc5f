// Projects and renames top-level JSON fields, and adds headers: the
// JavaScript twin of the Rust `json-transform` plugin (same config, same
// outputs).
//
// Output values hold only the listed `fields`, in that order, each under its
// `rename`d name. Missing fields are left out. Key and timestamp are kept;
// `headers` are added to the record's own.
import { transform, InvalidConfig, RecordError } from './sluice-sdk/sluice.js';

function config(c) {
  if (!Array.isArray(c.fields)) throw new InvalidConfig('config.fields: missing (a list of field names)');
  const rename = c.rename ?? {};
  for (const old of Object.keys(rename)) {
    if (!c.fields.includes(old)) throw new InvalidConfig(`config.rename.${old}: \`${old}\` is not one of \`fields\``);
  }
  return { pairs: c.fields.map((f) => [f, rename[f] ?? f]), headers: c.headers ?? {} };
}

export const transformApi = transform(
  (record, c, out) => {
    const value = record.json();
    if (value === null || typeof value !== 'object' || Array.isArray(value)) {
      throw new RecordError('value is not a JSON object');
    }
    const projected = {};
    for (const [old, name] of c.pairs) if (old in value) projected[name] = value[old];
    out.emit(record, projected, { headers: c.headers });
  },
  { config, keys: ['fields', 'rename', 'headers'] },
);
