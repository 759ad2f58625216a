# Runs a command on a pseudo-terminal (Python's pty module), lets it draw for the given
# seconds, types Ctrl-C, and prints JSON: the exit code and everything it wrote.
# Usage: python3 pty_run.py SECONDS ROWS COLS COMMAND [ARG...]
import fcntl, json, os, pty, select, signal, struct, sys, termios, time

seconds, rows, cols = float(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
pid, fd = pty.fork()
if pid == 0:
    os.execvp(sys.argv[4], sys.argv[4:])
fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack('HHHH', rows, cols, 0, 0))
out = b''
def read_for(t):
    global out
    end = time.time() + t
    while time.time() < end:
        r, _, _ = select.select([fd], [], [], 0.05)
        if r:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                return False
            if not chunk:
                return False
            out += chunk
    return True
read_for(seconds)
os.write(fd, b'\x03')  # Ctrl-C, as typed: the terminal sends SIGINT to the foreground group
read_for(3)
# The terminal closes as the child exits, a moment before it can be reaped: wait for that.
code = -1
deadline = time.time() + 5
while time.time() < deadline:
    done, status = os.waitpid(pid, os.WNOHANG)
    if done != 0:
        code = os.waitstatus_to_exitcode(status)
        break
    time.sleep(0.05)
else:
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
print(json.dumps({'code': code, 'output': out.decode('utf-8', 'replace')}))
