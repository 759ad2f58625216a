#!/usr/bin/env node
import "../dist/src/app/appctrl-cli.js";
