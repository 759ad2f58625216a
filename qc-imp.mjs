const mods = process.argv.slice(2);
const t0 = performance.now();
let prev = t0;
for (const m of mods) {
  await import(m);
  const t = performance.now();
  console.log(m, (t - prev).toFixed(1), 'ms');
  prev = t;
}
console.log('total', (prev - t0).toFixed(1));
