"""Shared helpers for legate's integration tests (Debian python3, standard library only).

- free ports, a temporary directory per test instance;
- a YAML writer for legate's Envoy-v3-bootstrap-shaped configuration;
- `Legate`: start the binary in its own session/process group, wait for its
  listener, find its processes by role, read their RSS, stop them (SIGTERM,
  bounded wait) and kill whatever is left (SIGKILL by pid and process group);
- `Upstream`: the controllable upstream server (upstream.py) as a subprocess;
- `RawConnection`: a raw-socket HTTP/1.1 client that parses responses itself and
  tells a clean close from a reset, for framing and smuggling tests;
- `curl()`, `RssSampler`, `LegateTestCase`.

Every process started here is registered with a watchdog process that kills it
(by pid, checking its start time, and by session) if this Python process dies
without cleaning up, e.g. when ctest kills it on a timeout. Normal cleanup runs
in tearDown / class cleanups / atexit.
"""

import atexit
import json
import os
import random
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)

from upstream import BodyGen  # noqa: E402  (shared deterministic body)

# absolute, since legate is started with its temp directory as the working directory
LEGATE_BIN = os.path.abspath(os.environ.get("LEGATE_BIN") or os.path.join(REPO_ROOT, "build", "legate"))
LEGATE_BUILD_DIR = os.path.abspath(os.environ.get("LEGATE_BUILD_DIR") or os.path.join(REPO_ROOT, "build"))
PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
UPSTREAM_PY = os.path.join(HERE, "upstream.py")
LOOPBACK = "127.0.0.1"
KEEP_TMP = bool(os.environ.get("LEGATE_KEEP_TMP"))

ROLE_RE = re.compile(r"^legate: (supervisor|listener|worker (\d+)|upstream manager)\b")


def require_binary():
    """Fail (not skip) with a clear message when the binary is missing."""
    if not (os.path.isfile(LEGATE_BIN) and os.access(LEGATE_BIN, os.X_OK)):
        raise AssertionError(
            "legate binary not found or not executable at LEGATE_BIN=%r; build it first "
            "(cmake -B build && cmake --build build) or set LEGATE_BIN" % LEGATE_BIN)


# --------------------------------------------------------------------------
# ports, temp dirs

_used_ports = set()


def free_port():
    """A currently free loopback TCP port (bind to port 0), never the same twice
    in this process."""
    for _ in range(50):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.bind((LOOPBACK, 0))
            port = s.getsockname()[1]
        finally:
            s.close()
        if port not in _used_ports:
            _used_ports.add(port)
            return port
    raise RuntimeError("could not find a free port")


def listen_inode(port):
    """The inode of the socket listening on 127.0.0.1:port (/proc/net/tcp), or
    None: the same inode before and after means the very same socket."""
    want = "0100007F:%04X" % port
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            if fields[1] == want and fields[3] == "0A":
                return int(fields[9])
    return None


def port_accepts(port, host=LOOPBACK, timeout=0.5):
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


_TMP_ROOT = None


def tmp_root():
    global _TMP_ROOT
    if _TMP_ROOT is None:
        _TMP_ROOT = tempfile.mkdtemp(prefix="legate-it-%s-" % os.path.basename(sys.argv[0]).replace(".py", ""))
    return _TMP_ROOT


def new_tmpdir(name):
    return tempfile.mkdtemp(prefix=name + "-", dir=tmp_root())


def random_base_id():
    return random.randint(1000, 60000)


# --------------------------------------------------------------------------
# /proc helpers

def _stat_fields(pid):
    """Fields of /proc/PID/stat after the command name: [state, ppid, pgrp, session,
    ...]; None if the process is gone."""
    try:
        with open("/proc/%d/stat" % pid, "rb") as f:
            data = f.read().decode("latin-1")
    except OSError:
        return None
    i = data.rfind(")")
    return data[i + 2:].split()


def proc_state(pid):
    f = _stat_fields(pid)
    return f[0] if f else None


def proc_ppid(pid):
    f = _stat_fields(pid)
    return int(f[1]) if f else None


def proc_session(pid):
    f = _stat_fields(pid)
    return int(f[3]) if f else None


def proc_starttime(pid):
    f = _stat_fields(pid)
    return int(f[19]) if f else None


def alive(pid):
    """True if the process exists and is not a zombie."""
    st = proc_state(pid)
    return st is not None and st not in ("Z", "X")


def cmdline(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            raw = f.read()
    except OSError:
        return None
    return raw.replace(b"\0", b" ").decode("utf-8", "replace").strip()


def all_pids():
    out = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            out.append(int(name))
    return out


def children_of(pid):
    """Direct children of pid (via /proc/PID/task/*/children, falling back to a
    ppid scan)."""
    kids = set()
    try:
        for tid in os.listdir("/proc/%d/task" % pid):
            try:
                with open("/proc/%d/task/%s/children" % (pid, tid)) as f:
                    kids.update(int(x) for x in f.read().split())
            except OSError:
                pass
    except OSError:
        pass
    if not kids:
        for p in all_pids():
            if proc_ppid(p) == pid:
                kids.add(p)
    return sorted(kids)


def descendants(pid):
    out = []
    todo = [pid]
    seen = {pid}
    while todo:
        p = todo.pop()
        for c in children_of(p):
            if c not in seen:
                seen.add(c)
                out.append(c)
                todo.append(c)
    return out


def session_members(sid):
    return [p for p in all_pids() if proc_session(p) == sid and alive(p)]


def rss_kib(pid):
    """VmRSS of pid in KiB, or None if gone."""
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def wait_until(pred, timeout, interval=0.05):
    """Poll pred() until truthy (returns its value) or timeout (returns the last value)."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() >= deadline:
            return v
        time.sleep(interval)


# --------------------------------------------------------------------------
# cleanup: registry, watchdog, atexit

_WATCHDOG_SRC = r"""
import os, signal, sys, time
reg = sys.argv[1]
try:
    while os.read(0, 4096):
        pass
except OSError:
    pass
def fields(pid):
    try:
        data = open('/proc/%d/stat' % pid, 'rb').read().decode('latin-1')
    except OSError:
        return None
    return data[data.rfind(')') + 2:].split()
def live(pid, st):
    f = fields(pid)
    return f is not None and f[0] not in ('Z', 'X') and int(f[19]) == st
# first SIGTERM to the session leaders (legate's supervisor, upstream.py), so that
# legate can remove its runtime directory and shared memory; then SIGKILL all
try:
    lines = open(reg).read().split('\n')
except OSError:
    lines = []
sids = {int(ln.split()[1]) for ln in lines if ln.startswith('sid ')}
leaders = [(int(p[1]), int(p[2])) for p in (ln.split() for ln in lines)
           if len(p) == 3 and p[0] == 'pid' and int(p[1]) in sids]
for pid, st in leaders:
    if live(pid, st):
        try: os.kill(pid, signal.SIGTERM)
        except OSError: pass
end = time.time() + 3
while time.time() < end and any(live(pid, st) for pid, st in leaders):
    time.sleep(0.05)
for _ in range(3):
    try:
        lines = open(reg).read().split('\n')
    except OSError:
        break
    sids = set(); pids = []
    for ln in lines:
        p = ln.split()
        if len(p) == 2 and p[0] == 'sid': sids.add(int(p[1]))
        if len(p) == 3 and p[0] == 'pid': pids.append((int(p[1]), int(p[2])))
    for pid, st in pids:
        f = fields(pid)
        if f and int(f[19]) == st:
            try: os.kill(pid, signal.SIGKILL)
            except OSError: pass
    if sids:
        for name in os.listdir('/proc'):
            if name.isdigit():
                f = fields(int(name))
                if f and int(f[3]) in sids and int(name) != os.getpid():
                    try: os.kill(int(name), signal.SIGKILL)
                    except OSError: pass
    time.sleep(0.2)
"""

_registry_path = None
_watchdog = None
_registry_lock = threading.Lock()
_live_objects = []   # Legate / Upstream instances to clean up at exit


def _ensure_watchdog():
    global _registry_path, _watchdog
    if _watchdog is not None:
        return
    _registry_path = os.path.join(tmp_root(), "pids.registry")
    open(_registry_path, "a").close()
    _watchdog = subprocess.Popen(
        [PYTHON, "-c", _WATCHDOG_SRC, _registry_path],
        stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True)


def register_pid(pid, session=False):
    """Remember pid (and, with session=True, its whole session) for the watchdog."""
    _ensure_watchdog()
    st = proc_starttime(pid)
    with _registry_lock, open(_registry_path, "a") as f:
        if st is not None:
            f.write("pid %d %d\n" % (pid, st))
        if session:
            f.write("sid %d\n" % pid)


def _cleanup_all():
    for obj in list(_live_objects):
        try:
            obj.close() if isinstance(obj, Legate) else obj.kill()
        except Exception as e:  # noqa: BLE001 - best effort at exit
            print("cleanup of %r failed: %r" % (obj, e), file=sys.stderr)
    global _watchdog
    if _watchdog is not None:
        try:
            _watchdog.stdin.close()
            _watchdog.wait(5)
        except Exception:  # noqa: BLE001
            pass
        _watchdog = None
    if _TMP_ROOT and not KEEP_TMP:
        shutil.rmtree(_TMP_ROOT, ignore_errors=True)
    elif _TMP_ROOT:
        print("keeping temporary files in %s" % _TMP_ROOT, file=sys.stderr)


atexit.register(_cleanup_all)


def _on_signal(signum, frame):
    _cleanup_all()
    os._exit(128 + signum)


for _sig in (signal.SIGTERM, signal.SIGHUP):
    try:
        signal.signal(_sig, _on_signal)
    except (ValueError, OSError):
        pass


# --------------------------------------------------------------------------
# YAML writer and config builders

_PLAIN_RE = re.compile(r"^(?:[A-Za-z_][A-Za-z0-9_.:/-]*|/[A-Za-z0-9_./-]*|\d+(?:\.\d+)?s|\d+\.\d+\.\d+\.\d+)$")
_YAML_WORDS = {"y", "n", "yes", "no", "on", "off", "true", "false", "null", "~"}


def yaml_scalar(v):
    if v is True:
        return "true"
    if v is False:
        return "false"
    if v is None:
        return "null"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return repr(v)
    s = str(v)
    if _PLAIN_RE.fullmatch(s) and s.lower() not in _YAML_WORDS:
        return s
    return json.dumps(s)   # a JSON string is a valid YAML double-quoted scalar


def _yaml_lines(obj, ind):
    pad = " " * ind
    lines = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            key = yaml_scalar(k)
            if isinstance(v, (dict, list)) and v:
                lines.append("%s%s:" % (pad, key))
                lines.extend(_yaml_lines(v, ind + 2))
            elif isinstance(v, dict):
                lines.append("%s%s: {}" % (pad, key))
            elif isinstance(v, list):
                lines.append("%s%s: []" % (pad, key))
            else:
                lines.append("%s%s: %s" % (pad, key, yaml_scalar(v)))
    elif isinstance(obj, list):
        for item in obj:
            if isinstance(item, (dict, list)) and item:
                sub = _yaml_lines(item, ind + 2)
                sub[0] = pad + "- " + sub[0][ind + 2:]
                lines.extend(sub)
            elif isinstance(item, dict):
                lines.append(pad + "- {}")
            elif isinstance(item, list):
                lines.append(pad + "- []")
            else:
                lines.append("%s- %s" % (pad, yaml_scalar(item)))
    else:
        lines.append(pad + yaml_scalar(obj))
    return lines


def to_yaml(obj):
    return "\n".join(_yaml_lines(obj, 0)) + "\n"


HCM_TYPE = ("type.googleapis.com/envoy.extensions.filters.network."
            "http_connection_manager.v3.HttpConnectionManager")
ROUTER_TYPE = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
FILE_LOG_TYPE = "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog"


def socket_address(port, address=LOOPBACK):
    return {"socket_address": {"address": address, "port_value": port}}


def route_to(cluster, prefix=None, path=None, prefix_rewrite=None, timeout=None):
    """A route forwarding to `cluster`. timeout: e.g. "1s", "0s" (disabled)."""
    r = {"match": {"prefix": prefix} if path is None else {"path": path},
         "route": {"cluster": cluster}}
    if prefix_rewrite is not None:
        r["route"]["prefix_rewrite"] = prefix_rewrite
    if timeout is not None:
        r["route"]["timeout"] = timeout
    return r


def route_direct(status, body=None, prefix=None, path=None):
    r = {"match": {"prefix": prefix} if path is None else {"path": path},
         "direct_response": {"status": status}}
    if body is not None:
        r["direct_response"]["body"] = {"inline_string": body}
    return r


def vhost(name, domains, routes):
    return {"name": name, "domains": list(domains), "routes": list(routes)}


def access_log(path, fmt=None):
    tc = {"@type": FILE_LOG_TYPE, "path": path}
    if fmt is not None:
        tc["log_format"] = {"text_format_source": {"inline_string": fmt}}
    return {"name": "envoy.access_loggers.file", "typed_config": tc}


def listener(name, port, vhosts, access_logs=None, stat_prefix="ingress_http", hcm_extra=None):
    tc = {
        "@type": HCM_TYPE,
        "stat_prefix": stat_prefix,
        "codec_type": "AUTO",
        "route_config": {"name": "local_route", "virtual_hosts": list(vhosts)},
        "http_filters": [{"name": "envoy.filters.http.router",
                          "typed_config": {"@type": ROUTER_TYPE}}],
    }
    if access_logs:
        tc["access_log"] = list(access_logs)
    if hcm_extra:
        tc.update(hcm_extra)
    return {
        "name": name,
        "address": socket_address(port),
        "filter_chains": [{"filters": [{
            "name": "envoy.filters.network.http_connection_manager",
            "typed_config": tc,
        }]}],
    }


def cluster(name, endpoints, connect_timeout="1s"):
    """endpoints: list of ports (on 127.0.0.1) or (host, port) pairs; may be empty."""
    eps = []
    for ep in endpoints:
        host, port = (LOOPBACK, ep) if isinstance(ep, int) else ep
        eps.append({"endpoint": {"address": socket_address(port, host)}})
    c = {
        "name": name,
        "type": "STATIC",
        "connect_timeout": connect_timeout,
        "lb_policy": "ROUND_ROBIN",
        "load_assignment": {"cluster_name": name, "endpoints": []},
    }
    if eps:
        c["load_assignment"]["endpoints"] = [{"lb_endpoints": eps}]
    return c


def bootstrap(listeners, clusters, admin_port=None):
    cfg = {}
    if admin_port is not None:
        cfg["admin"] = {"address": socket_address(admin_port)}
    cfg["static_resources"] = {"listeners": list(listeners), "clusters": list(clusters)}
    return cfg


def simple_config(listen_port, vhosts, clusters, admin_port=None, access_logs=None, hcm_extra=None):
    return bootstrap([listener("main", listen_port, vhosts, access_logs, hcm_extra=hcm_extra)],
                     clusters, admin_port)


# --------------------------------------------------------------------------
# processes

class Legate:
    """One legate instance (supervisor and its children).

        lg = Legate(config_dict_or_yaml_text, listen_port, concurrency=2)
        lg.start()          # waits for the listener port (fails with the log if not)
        lg.roles()          # {'supervisor': pid, 'listener': [..], 'workers': {0: pid}, ...}
        lg.stop()           # SIGTERM + bounded wait; returns (returncode, leftover pids)
        lg.kill()           # SIGKILL everything (idempotent)
    """

    def __init__(self, config, listen_port, concurrency=2, log_level="info", extra_args=(),
                 name="legate", base_id=None):
        require_binary()
        self.dir = new_tmpdir(name)
        self.config_path = os.path.join(self.dir, "legate.yaml")
        text = config if isinstance(config, str) else to_yaml(config)
        with open(self.config_path, "w") as f:
            f.write(text)
        self.config_text = text
        self.listen_port = listen_port
        self.concurrency = concurrency
        self.base_id = base_id if base_id is not None else random_base_id()
        self.log_path = os.path.join(self.dir, "legate.log")
        self.args = [LEGATE_BIN, "-c", self.config_path, "--concurrency", str(concurrency),
                     "--log-level", log_level, "--base-id", str(self.base_id)] + list(extra_args)
        self.proc = None
        self.known = {}   # pid -> starttime of every legate process seen
        self._logf = None

    def __repr__(self):
        return "<Legate pid=%s port=%s dir=%s>" % (self.proc and self.proc.pid, self.listen_port, self.dir)

    @property
    def pid(self):
        return self.proc.pid

    def start(self, timeout=10.0, wait_roles=True):
        self._logf = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.args, stdin=subprocess.DEVNULL, stdout=self._logf,
                                     stderr=subprocess.STDOUT, start_new_session=True,
                                     cwd=self.dir)
        _live_objects.append(self)
        register_pid(self.proc.pid, session=True)
        self.known[self.proc.pid] = proc_starttime(self.proc.pid)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise AssertionError("legate exited with status %s during startup; log:\n%s"
                                     % (self.proc.returncode, self.log_text()))
            if port_accepts(self.listen_port):
                break
            if time.monotonic() > deadline:
                raise AssertionError("legate did not accept on 127.0.0.1:%d within %.0fs; log:\n%s"
                                     % (self.listen_port, timeout, self.log_text()))
            time.sleep(0.05)
        if wait_roles:
            ok = wait_until(lambda: len(self.roles()["workers"]) >= self.concurrency,
                            max(1.0, deadline - time.monotonic() + 2))
            if not ok:
                raise AssertionError("legate's %d workers did not all appear; roles=%r; log:\n%s"
                                     % (self.concurrency, self.roles(), self.log_text()))
            # The listener accepts (into its backlog) before the workers hold the
            # sockets; the supervisor says "legate is ready" once every child is.
            ok = wait_until(lambda: "legate is ready" in self.log_text(limit=1 << 20),
                            max(1.0, deadline - time.monotonic() + 2))
            if not ok:
                raise AssertionError("legate never logged 'legate is ready'; log:\n%s"
                                     % self.log_text())
        return self

    def log_text(self, limit=20000):
        try:
            with open(self.log_path, "rb") as f:
                data = f.read()
        except OSError:
            return "<no log>"
        if len(data) > limit:
            data = b"...\n" + data[-limit:]
        return data.decode("utf-8", "replace")

    # -- process discovery

    def _remember(self, pids):
        for p in pids:
            if p not in self.known:
                st = proc_starttime(p)
                if st is not None:
                    self.known[p] = st
                    register_pid(p)

    def processes(self):
        """Live processes of this instance: the supervisor, its descendants and
        anything else in its session (a child that was reparented)."""
        if self.proc is None:
            return []
        pids = set()
        if alive(self.proc.pid):
            pids.add(self.proc.pid)
            pids.update(descendants(self.proc.pid))
        pids.update(session_members(self.proc.pid))
        pids = sorted(p for p in pids if alive(p))
        self._remember(pids)
        return pids

    def roles(self):
        """{'supervisor': pid or None, 'listener': [pids], 'workers': {index: pid},
        'upstream manager': [pids], 'other': {pid: cmdline}}"""
        out = {"supervisor": None, "listener": [], "workers": {}, "upstream manager": [],
               "other": {}}
        for p in self.processes():
            cl = cmdline(p) or ""
            m = ROLE_RE.match(cl)
            if not m:
                out["other"][p] = cl
            elif m.group(1) == "supervisor":
                out["supervisor"] = p
            elif m.group(2) is not None:
                out["workers"][int(m.group(2))] = p
            else:
                out[m.group(1)].append(p)
        return out

    def worker_pid(self, index=0, timeout=5.0):
        pid = wait_until(lambda: self.roles()["workers"].get(index), timeout)
        if not pid:
            raise AssertionError("no 'legate: worker %d' process; roles=%r" % (index, self.roles()))
        return pid

    def known_alive(self):
        """Every legate process ever seen by this object that is still alive
        (same pid and start time)."""
        return [p for p, st in self.known.items() if alive(p) and proc_starttime(p) == st]

    # -- stopping

    def send_signal(self, sig):
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, sig)

    def stop(self, sig=signal.SIGTERM, timeout=15.0):
        """Send sig to the supervisor (None: send nothing, it was already sent),
        wait (bounded) for it and for every legate process to exit.
        Returns (returncode or None, [pids still alive])."""
        if self.proc is None:
            return None, []
        self.processes()   # snapshot every current pid into self.known
        if sig is not None:
            self.send_signal(sig)
        deadline = time.monotonic() + timeout
        try:
            self.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
        left = wait_until(lambda: not self.known_alive(), max(0.1, deadline - time.monotonic()))
        leftovers = [] if left else self.known_alive()
        return self.proc.poll(), leftovers

    def close(self, grace=5.0):
        """Cleanup: SIGTERM and up to `grace` seconds to exit (so that legate can
        remove its runtime directory and shared memory), then SIGKILL whatever is
        left. Idempotent."""
        if self.proc is not None and self.proc.poll() is None and grace > 0:
            try:
                self.stop(signal.SIGTERM, timeout=grace)
            except Exception as e:  # noqa: BLE001 - kill() below still runs
                print("graceful stop of %r failed: %r" % (self, e), file=sys.stderr)
        self.kill()
        # A supervisor killed by a test leaves its segment behind (a clean stop
        # removes it): do not leave it in /dev/shm for the next run.
        try:
            os.unlink("/dev/shm/legate.%d.stats" % self.base_id)
        except OSError:
            pass
        self.check_sanitizers()

    SANITIZER_MARKS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                       "ERROR: UndefinedBehaviorSanitizer")

    def check_sanitizers(self):
        """Fail if any process of this instance reported a sanitizer error: with
        -DLEGATE_SANITIZE=ON they write to stderr, which is this log file."""
        text = self.log_text(limit=1 << 22)
        for mark in self.SANITIZER_MARKS:
            at = text.find(mark)
            if at >= 0:
                raise AssertionError("sanitizer report in the log of %r:\n%s"
                                     % (self, text[max(0, at - 200):at + 4000]))

    def kill(self):
        """SIGKILL everything that belongs to this instance. Idempotent."""
        if self.proc is None:
            return
        for _ in range(3):
            pids = set(self.known_alive())
            pids.update(session_members(self.proc.pid))
            if alive(self.proc.pid):
                pids.add(self.proc.pid)
                pids.update(descendants(self.proc.pid))
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except OSError:
                pass
            for p in pids:
                try:
                    os.kill(p, signal.SIGKILL)
                except OSError:
                    pass
            if not pids:
                break
            time.sleep(0.05)
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        wait_until(lambda: not self.known_alive(), 5)
        if self._logf:
            self._logf.close()
            self._logf = None
        if self in _live_objects:
            _live_objects.remove(self)


class Upstream:
    """upstream.py as a subprocess on a free port."""

    def __init__(self, name="upstream", port=0, host=LOOPBACK):
        self.want_port = port  # 0: any free one; a port: start again where a killed one was
        self.host = host       # another loopback address (127.0.0.2 ...) for DNS tests
        self.dir = new_tmpdir(name)
        self.stats_file = os.path.join(self.dir, "stats.json")
        self.log_path = os.path.join(self.dir, "upstream.log")
        self.proc = None
        self.port = None

    def __repr__(self):
        return "<Upstream pid=%s port=%s>" % (self.proc and self.proc.pid, self.port)

    def start(self, timeout=10.0):
        self._logf = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [PYTHON, UPSTREAM_PY, "--port", str(self.want_port), "--host", self.host,
             "--stats-file", self.stats_file],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=self._logf,
            start_new_session=True)
        _live_objects.append(self)
        register_pid(self.proc.pid, session=True)
        fd = self.proc.stdout.fileno()
        buf = b""
        deadline = time.monotonic() + timeout
        while b"\n" not in buf:
            left = deadline - time.monotonic()
            if left <= 0 or self.proc.poll() is not None:
                self.kill()
                raise AssertionError("upstream.py did not become ready: %r %s"
                                     % (buf, open(self.log_path, "rb").read()[-2000:]))
            r, _, _ = select.select([fd], [], [], min(left, 0.2))
            if r:
                chunk = os.read(fd, 256)
                if not chunk:
                    continue
                buf += chunk
        line = buf.split(b"\n", 1)[0].decode()
        if not line.startswith("READY "):
            self.kill()
            raise AssertionError("upstream.py said %r" % line)
        self.port = int(line.split()[1])
        return self

    def stats(self, since=None):
        """The upstream's counters, fetched over a fresh control connection (not
        counted as a connection or request)."""
        path = "/stats" if since is None else "/stats?since=%d" % since
        with RawConnection(self.port, host=self.host, timeout=5) as c:
            c.send(("GET %s HTTP/1.1\r\nHost: upstream\r\nConnection: close\r\n\r\n" % path).encode())
            r = c.read_response()
        if r.status != 200:
            raise AssertionError("upstream /stats answered %r" % r.status)
        return json.loads(r.body)

    def control(self, path):
        """A control request (not counted), e.g. /control/fail?code=503."""
        with RawConnection(self.port, host=self.host, timeout=5) as c:
            c.send(("GET %s HTTP/1.1\r\nHost: upstream\r\nConnection: close\r\n\r\n"
                    % path).encode())
            r = c.read_response()
        if r.status != 200:
            raise AssertionError("upstream %s answered %r" % (path, r.status))
        return r

    def stop(self, timeout=5.0):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        self.kill()

    def kill(self):
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except OSError:
            pass
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        if self.proc.stdout:
            self.proc.stdout.close()
        if getattr(self, "_logf", None):
            self._logf.close()
            self._logf = None
        if self in _live_objects:
            _live_objects.remove(self)


# --------------------------------------------------------------------------
# raw HTTP client

class ConnectionClosed(Exception):
    """The peer closed (how: 'eof' or 'rst') or the read timed out (how: 'timeout')."""

    def __init__(self, how, partial=b""):
        super().__init__("connection %s" % how)
        self.how = how
        self.partial = partial


class Response:
    def __init__(self):
        self.version = None
        self.status = None
        self.reason = None
        self.headers = []        # [(name, value)] as received
        self.raw_head = b""
        self.body = b""
        self.body_len = 0
        self.interim = []        # [(status, headers)] for 1xx responses
        self.complete = False    # the body arrived in full according to its framing
        self.framing = None      # 'none' | 'length' | 'chunked' | 'eof'
        self.close_how = None    # set when the connection ended while reading: eof|rst|timeout
        self.trailers = []

    def header(self, name):
        for n, v in self.headers:
            if n.lower() == name.lower():
                return v
        return None

    def header_all(self, name):
        return [v for n, v in self.headers if n.lower() == name.lower()]

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return "<Response %s %s framing=%s complete=%s body=%r>" % (
            self.status, self.reason, self.framing, self.complete, self.body[:200])


class RawConnection:
    """A plain TCP connection with a receive buffer and an HTTP/1.1 response parser.
    Every socket operation has a timeout."""

    def __init__(self, port, host=LOOPBACK, timeout=10.0, rcvbuf=None):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        self.sock.connect((host, port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.timeout = timeout
        self.buf = bytearray()
        self.big = bytearray(1 << 20)
        self.closed_how = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def settimeout(self, t):
        self.timeout = t
        self.sock.settimeout(t)

    def send(self, data):
        """sendall; returns False instead of raising if the peer already closed."""
        try:
            self.sock.sendall(data)
            return True
        except (BrokenPipeError, ConnectionResetError):
            return False

    def request(self, method, path, headers=(), body=None, host="test", version="HTTP/1.1"):
        lines = ["%s %s %s" % (method, path, version)]
        names = {n.lower() for n, _ in headers}
        if host is not None and "host" not in names:
            lines.append("Host: %s" % host)
        lines += ["%s: %s" % (n, v) for n, v in headers]
        if body is not None and "content-length" not in names and "transfer-encoding" not in names:
            lines.append("Content-Length: %d" % len(body))
        data = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        if body:
            data += body
        self.send(data)

    # -- low level reads

    def _recv(self):
        """Append one recv() to the buffer; raise ConnectionClosed at EOF/RST/timeout."""
        try:
            data = self.sock.recv(1 << 20)
        except socket.timeout:
            raise ConnectionClosed("timeout", bytes(self.buf)) from None
        except ConnectionResetError:
            self.closed_how = "rst"
            raise ConnectionClosed("rst", bytes(self.buf)) from None
        if not data:
            self.closed_how = "eof"
            raise ConnectionClosed("eof", bytes(self.buf))
        self.buf += data

    def _read_until(self, sep, limit=1 << 20):
        start = 0
        while True:
            i = self.buf.find(sep, start)
            if i >= 0:
                out = bytes(self.buf[:i + len(sep)])
                del self.buf[:i + len(sep)]
                return out
            if len(self.buf) > limit:
                raise AssertionError("no %r within %d bytes: %r" % (sep, limit, bytes(self.buf[:300])))
            start = max(0, len(self.buf) - len(sep) + 1)
            self._recv()

    def _read_exact(self, n):
        while len(self.buf) < n:
            self._recv()
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def _stream(self, n, sink):
        """Pass exactly n bytes to sink (memoryview pieces). Returns bytes delivered
        if the connection ended early (raises nothing), else n."""
        got = 0
        if self.buf:
            k = min(n, len(self.buf))
            sink(memoryview(bytes(self.buf[:k])))
            del self.buf[:k]
            got += k
        view = memoryview(self.big)
        while got < n:
            try:
                k = self.sock.recv_into(view[:min(len(self.big), n - got)])
            except socket.timeout:
                self.closed_how = "timeout"
                return got
            except ConnectionResetError:
                self.closed_how = "rst"
                return got
            if k == 0:
                self.closed_how = "eof"
                return got
            sink(view[:k])
            got += k
        return got

    # -- responses

    def read_response(self, method="GET", sink=None, max_body=64 << 20):
        """Read one response (skipping and recording 1xx interim responses).

        The body is stored in .body unless `sink` is given (then every body piece
        goes to sink(memoryview) and .body stays empty; .body_len counts). A
        response cut short by a close/reset comes back with complete=False and
        close_how set; a close before any byte of the status line raises
        ConnectionClosed."""
        r = Response()
        while True:
            head = self._read_until(b"\r\n\r\n", limit=1 << 20)
            lines = head.decode("latin-1").split("\r\n")
            status_line = lines[0]
            parts = status_line.split(" ", 2)
            if len(parts) < 2 or not parts[0].startswith("HTTP/"):
                raise AssertionError("bad status line %r" % status_line)
            version, status = parts[0], int(parts[1])
            headers = []
            for ln in lines[1:]:
                if not ln:
                    continue
                name, _, value = ln.partition(":")
                headers.append((name, value.strip(" \t")))
            if 100 <= status < 200 and status != 101:
                r.interim.append((status, headers))
                continue
            r.version, r.status = version, status
            r.reason = parts[2] if len(parts) > 2 else ""
            r.headers = headers
            r.raw_head = head
            break

        chunks = []

        def store(piece):
            if sink is not None:
                sink(piece)
            else:
                if r.body_len + len(piece) > max_body:
                    raise AssertionError("response body over %d bytes" % max_body)
                chunks.append(bytes(piece))
            r.body_len += len(piece)

        te = ",".join(r.header_all("transfer-encoding")).lower()
        cl = r.header("content-length")
        if method == "HEAD" or r.status in (204, 304) or 100 <= r.status < 200:
            r.framing = "none"
            r.complete = True
        elif "chunked" in te:
            r.framing = "chunked"
            try:
                while True:
                    line = self._read_until(b"\r\n", limit=4096)
                    size = int(line.split(b";", 1)[0].strip(), 16)
                    if size == 0:
                        while True:
                            t = self._read_until(b"\r\n", limit=65536)
                            if t == b"\r\n":
                                break
                            r.trailers.append(t[:-2].decode("latin-1"))
                        r.complete = True
                        break
                    if self._stream(size, store) < size:
                        break
                    if self._read_exact(2) != b"\r\n":
                        raise AssertionError("bad chunk terminator")
            except ConnectionClosed as e:
                r.close_how = e.how
        elif cl is not None:
            r.framing = "length"
            n = int(cl)
            got = self._stream(n, store)
            r.complete = got == n
        else:
            r.framing = "eof"
            self._stream(1 << 62, store)
            r.complete = self.closed_how == "eof"
        if r.close_how is None:
            r.close_how = self.closed_how
        r.body = b"".join(chunks)
        return r

    def read_until_close(self, timeout=5.0, limit=16 << 20):
        """Read everything until the peer closes. Returns (bytes, how) where how is
        'eof', 'rst' or 'timeout'."""
        out = bytes(self.buf)
        self.buf.clear()
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return out, "timeout"
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                return out, "timeout"
            except ConnectionResetError:
                return out, "rst"
            except OSError:
                return out, "rst"
            if not data:
                return out, "eof"
            out += data
            if len(out) > limit:
                return out, "limit"

    def is_closed(self, timeout=5.0):
        """True if the peer closes (EOF or RST) within timeout with no further bytes."""
        data, how = self.read_until_close(timeout)
        return how in ("eof", "rst") and not data


def http_request(port, method="GET", path="/", headers=(), body=None, host="test",
                 timeout=10.0, version="HTTP/1.1"):
    """One request on a new connection; returns the Response."""
    with RawConnection(port, timeout=timeout) as c:
        c.request(method, path, headers, body, host=host, version=version)
        return c.read_response(method)


def get(port, path, host="test", headers=(), timeout=10.0):
    return http_request(port, "GET", path, headers=headers, host=host, timeout=timeout)


# --------------------------------------------------------------------------
# curl

def curl(args, timeout=30.0, input=None):
    """Run curl with a hard time bound; returns CompletedProcess (bytes stdout/stderr)."""
    cmd = ["curl", "-sS", "--max-time", str(int(timeout)), "--noproxy", "*"] + list(args)
    return subprocess.run(cmd, input=input, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          timeout=timeout + 5)


# --------------------------------------------------------------------------
# RSS sampling

class RssSampler:
    """Samples VmRSS of one pid every `interval` seconds in a thread.

        with RssSampler(pid) as s: ...
        s.max_kib"""

    def __init__(self, pid, interval=0.1):
        self.pid = pid
        self.interval = interval
        self.samples = []
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            v = rss_kib(self.pid)
            if v is not None:
                self.samples.append(v)
            self._stop.wait(self.interval)

    def __enter__(self):
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join(2)

    @property
    def max_kib(self):
        return max(self.samples) if self.samples else None


# --------------------------------------------------------------------------
# test case base

class LegateTestCase(unittest.TestCase):
    """Base class: tracks Legate/Upstream objects made with self.legate()/self.upstream()
    (or cls.class_legate()/cls.class_upstream() in setUpClass) and kills them in
    cleanups; on a failure prints the legate logs."""

    @classmethod
    def setUpClass(cls):
        require_binary()

    @classmethod
    def class_upstream(cls):
        u = Upstream().start()
        cls.addClassCleanup(u.kill)
        return u

    @classmethod
    def class_legate(cls, config, listen_port, **kw):
        lg = Legate(config, listen_port, **kw)
        cls.addClassCleanup(lg.close)
        lg.start()
        cls._class_legates = getattr(cls, "_class_legates", []) + [lg]
        return lg

    def setUp(self):
        self._legates = []

    def upstream(self):
        u = Upstream().start()
        self.addCleanup(u.kill)
        return u

    def legate(self, config, listen_port, start=True, **kw):
        lg = Legate(config, listen_port, **kw)
        self.addCleanup(lg.close)
        self._legates.append(lg)
        if start:
            lg.start()
        return lg

    def tearDown(self):
        failed = False
        outcome = getattr(self, "_outcome", None)
        result = getattr(outcome, "result", None)
        if result is not None:
            failed = any(getattr(t, "test_case", t) is self
                         for t, _ in list(result.errors) + list(result.failures))
        if failed:
            for lg in self._legates + getattr(type(self), "_class_legates", []):
                sys.stderr.write("\n----- log of %r -----\n%s\n" % (lg, lg.log_text(8000)))


def main():
    unittest.main(verbosity=2)


# --------------------------------------------------------------------------
# statistics, read straight from legate's shared-memory segment (shm/stats.h)

def read_stats(base_id):
    """{name: value} from /dev/shm/legate.<base_id>.stats: counters and gauges
    summed over every slot (counters from their last reset), histograms as
    their count; entries of one name
    (two processes registering it at once) merged."""
    import struct
    with open("/dev/shm/legate.%d.stats" % base_id, "rb") as f:
        data = f.read()
    (magic, _version, _hsize, _base, _epoch, _created, _pid, n_slots, max_stats, max_hists,
     _arena_size, table_off, arena_off, cells_off, hists_off, _total,
     n_reserved) = struct.unpack_from("<QIIIIqiIIIQQQQQQI", data, 0)
    assert magic == 0x3154415453474c00, "not a legate stats segment"
    row_stride, _slots_off, baseline_off = struct.unpack_from("<IQQ", data, 116)
    hist_size = 8 * (2 + 305)
    out = {}
    for i in range(min(n_reserved, max_stats)):
        ready, kind, name_off, name_len, index, _ = struct.unpack_from("<IIIIII", data,
                                                                     table_off + 24 * i)
        if ready != 1:
            continue
        name = data[arena_off + name_off:arena_off + name_off + name_len].decode()
        if kind in (1, 2):
            v = sum(struct.unpack_from("<Q", data, cells_off + 8 * (s * row_stride + index))[0]
                    for s in range(n_slots))
            v &= (1 << 64) - 1
            if kind == 1:  # counted from the last /reset_counters
                v = max(0, v - struct.unpack_from("<Q", data, baseline_off + 8 * index)[0])
            if kind == 2 and v >= 1 << 63:
                v -= 1 << 64
        else:
            v = sum(struct.unpack_from("<Q", data, hists_off + hist_size * (s * max_hists + index))[0]
                    for s in range(n_slots))
        out[name] = out.get(name, 0) + v
    return out
