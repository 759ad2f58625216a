#!/usr/bin/env node
import "../dist/src/s2cs/cli.js";
