#!/usr/bin/env node
import "../dist/src/s2uc/cli.js";
