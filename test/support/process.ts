// Whether a process still exists (signal 0 sends nothing): for checking that what a test started is gone.
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
