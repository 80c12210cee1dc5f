import { host, hex } from './host.js';
export class Table {
  constructor(rows) {
    this.rows = rows;
  }
  static open(name) {
    const rows = host.tables.get(name);
    if (!rows) throw { tag: 'not-declared', val: `no table \`${name}\` is declared for this stage` };
    return new Table(rows);
  }
  get(key) {
    return this.rows.get(hex(key));
  }
}
