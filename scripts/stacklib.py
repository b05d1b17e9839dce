"""What deploy/stack and bench/run share: starting and stopping processes, waiting for them to
answer, and a PostgreSQL cluster of their own. Standard library only: both run on a fresh
machine before anything else is installed."""
import importlib.machinery
import importlib.util
import os
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class SetupError(Exception):
    """Something the machine lacks that scripts/setup could not install."""


def setup():
    """Installs what a fresh machine lacks (scripts/setup), once per run."""
    if not getattr(setup, "done", False):
        subprocess.run([os.path.join(ROOT, "scripts", "setup")], cwd=ROOT, check=True)
        setup.done = True


def release_binaries(products, directory=None, announce=print):
    """Paths of the release executables `products`, built first when missing. `directory`
    (else GREPTILE_MCP_BIN_DIR) names prebuilt ones, which are never built."""
    directory = directory or os.environ.get("GREPTILE_MCP_BIN_DIR")
    if not directory:
        directory = os.path.join(ROOT, ".build", "release")
        for product in products:
            if not os.path.isfile(os.path.join(directory, product)):
                setup()
                announce("building %s (release; the first build takes a few minutes)" % product)
                subprocess.run(["swift", "build", "-c", "release", "--product", product], cwd=ROOT, check=True)
    paths = {product: os.path.join(directory, product) for product in products}
    for product, path in paths.items():
        if not os.access(path, os.X_OK):
            raise SetupError("%s not found at %s (set GREPTILE_MCP_BIN_DIR or build it)" % (product, path))
    return paths


def load_script(name, path):
    """A Python program without the .py suffix (nginx/render, deploy/stack), as a module."""
    loader = importlib.machinery.SourceFileLoader(name, path)
    spec = importlib.util.spec_from_loader(name, loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def free_port():
    """A loopback port nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def spawn(arguments, log_path, environment=None):
    """Starts a process in its own session (a terminal's Ctrl-C does not reach it), its output
    appended to `log_path`; returns the Popen."""
    with open(log_path, "ab") as log:
        return subprocess.Popen(arguments, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, env=environment, cwd=ROOT)


def alive(pid):
    """Whether `pid` runs (a zombie does not)."""
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    try:
        with open("/proc/%d/stat" % pid) as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def stop(pid, sig=signal.SIGTERM, timeout=40):
    """Sends `sig` and waits up to `timeout` seconds for the process to end; then SIGKILL."""
    if not pid or not alive(pid):
        return
    try:
        os.kill(pid, sig)
    except OSError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and alive(pid):
        time.sleep(0.02)
    if alive(pid):
        os.kill(pid, signal.SIGKILL)


def tail(path, lines=15):
    try:
        with open(path, errors="replace") as handle:
            return "".join(handle.readlines()[-lines:])
    except OSError:
        return "(no log)"


def http_get(url, timeout=2, token=None, user_agent="greptile-mcp-scripts"):
    """(status, body) of a GET; raises OSError when nothing answers."""
    context = ssl._create_unverified_context() if url.startswith("https") else None
    headers = {"User-Agent": user_agent}
    if token:
        headers["Authorization"] = "Bearer " + token
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=context) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def wait_healthy(url, pid=None, log_path=None, what=None, timeout=60, accept=(200,), interval=0.05):
    """Waits until `url` answers with a status in `accept` (None: any status). Raises, with the
    end of the process's log, when `pid` exits first or the time is up."""
    what = what or url
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pid is not None and not alive(pid):
            ending = "; its log (%s) ends:\n%s" % (log_path, tail(log_path)) if log_path else ""
            raise RuntimeError("%s exited at start%s" % (what, ending))
        try:
            status, _ = http_get(url, timeout=1)
            if accept is None or status in accept:
                return
        except OSError:
            pass
        time.sleep(interval)
    ending = "; its log (%s) ends:\n%s" % (log_path, tail(log_path)) if log_path else ""
    raise RuntimeError("%s did not answer %s within %ss%s" % (what, url, timeout, ending))


def rss_mb(pid):
    with open("/proc/%d/status" % pid) as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


# --- PostgreSQL ----------------------------------------------------------------------------------
def postgres_bin():
    """The newest installed PostgreSQL's bin directory (installed by scripts/setup if missing)."""
    root = "/usr/lib/postgresql"
    for attempt in range(2):
        versions = sorted((int(name) for name in os.listdir(root) if name.isdigit()), reverse=True) if os.path.isdir(root) else []
        if versions:
            return os.path.join(root, str(versions[0]), "bin")
        if attempt == 0:
            setup()
    raise SetupError("PostgreSQL is not installed, and scripts/setup could not install it")


def as_server(arguments):
    """PostgreSQL refuses to run as root: as root, run it as the postgres user (setpriv keeps the pid)."""
    if os.geteuid() != 0:
        return arguments
    return ["setpriv", "--reuid=postgres", "--regid=postgres", "--clear-groups", "--"] + arguments


def postgres_url(port):
    return "postgres://app@127.0.0.1:%d/postgres?sslmode=disable" % port


def start_postgres(directory, port, log_path, settings=(), announce=print):
    """Starts a PostgreSQL cluster kept in `directory` (created with initdb the first time:
    user app, trust on loopback, durability defaults) on `port`; returns (Popen, url) once it
    accepts connections."""
    data = os.path.join(directory, "data")
    bin_dir = postgres_bin()
    os.makedirs(directory, exist_ok=True)
    if os.geteuid() == 0:
        subprocess.run(["chown", "-R", "postgres:postgres", directory], check=True)
    if os.geteuid() == 0:
        # The server runs as postgres, which must be able to reach its directory.
        reachable = subprocess.run(as_server(["test", "-x", directory]), capture_output=True)
        if reachable.returncode != 0:
            raise SetupError("the postgres user cannot enter %s (a parent directory is private to root, as mkdtemp makes "
                             "them): use a directory others may enter" % directory)
    if not os.path.isfile(os.path.join(data, "PG_VERSION")):
        announce("creating a PostgreSQL cluster in %s" % data)
        created = subprocess.run(
            as_server([os.path.join(bin_dir, "initdb"), "-D", data, "-U", "app", "--auth=trust", "-E", "UTF8", "--locale=C"]),
            capture_output=True, text=True)
        if created.returncode != 0:
            raise SetupError("initdb failed in %s:\n%s" % (data, (created.stderr or created.stdout).strip()))
    arguments = [os.path.join(bin_dir, "postgres"), "-D", data, "-p", str(port), "-k", directory, "-c", "listen_addresses=127.0.0.1"]
    for setting in settings:
        arguments += ["-c", setting]
    process = spawn(as_server(arguments), log_path)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError("PostgreSQL exited at start; its log (%s) ends:\n%s" % (log_path, tail(log_path)))
        ready = subprocess.run([os.path.join(bin_dir, "pg_isready"), "-h", "127.0.0.1", "-p", str(port)], capture_output=True)
        if ready.returncode == 0:
            return process, postgres_url(port)
        time.sleep(0.1)
    raise RuntimeError("PostgreSQL did not accept connections on port %d within 30s; its log (%s) ends:\n%s" % (port, log_path, tail(log_path)))
