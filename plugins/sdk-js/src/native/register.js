// node --import ./sluice-sdk/native/register.js --test
// Runs plugins natively: the host's interfaces become in-process stand-ins.
import { register } from 'node:module';
register('./hooks.js', import.meta.url);
