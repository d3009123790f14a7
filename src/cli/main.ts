#!/usr/bin/env node
// The `tokenmq` command (the package's `bin`, SPEC §9); the work is in run.ts.
import { main } from './run.js';

process.exitCode = await main();
