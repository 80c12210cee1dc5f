// The host's byte sets, in process.
import { hex } from './host.js';
export class ByteSet {
  constructor(members) {
    this.members = new Set(members.map(hex));
  }
  contains(item) {
    return this.members.has(hex(item));
  }
  containsMany(items, ends, present) {
    if (present.length && present.length !== ends.length) throw new RangeError('present: one byte per item');
    const out = new Uint8Array(ends.length);
    let a = 0;
    for (let i = 0; i < ends.length; i++) {
      const b = ends[i];
      if (b < a || b > items.length) throw new RangeError(`ends[${i}] = ${b} does not fit ${items.length} bytes`);
      if ((!present.length || present[i] & 1) && this.members.has(hex(items.subarray(a, b)))) out[i] = 1;
      a = b;
    }
    return out;
  }
}
