"""mariadb — a private MariaDB server for the manager's tests.

One server per test module (mariadb-install-db takes a few seconds), on a fresh data
directory and a Unix socket under a temporary directory, with networking off: nothing outside
the test can reach it. Each test asks for its own database (new_database), so tests never see
each other's rows. Started and stopped by the tests themselves; needs the mariadb-server
package (tools/setup.sh)."""
import os
import shutil
import subprocess
import tempfile
import time

MARIADBD = shutil.which("mariadbd") or "/usr/sbin/mariadbd"
INSTALL_DB = shutil.which("mariadb-install-db") or "/usr/bin/mariadb-install-db"
CLIENT = shutil.which("mariadb") or "/usr/bin/mariadb"
USER = "zfly"


def available():
    """None when a server can be started, else why not (for skip messages)."""
    for path in (MARIADBD, INSTALL_DB, CLIENT):
        if not os.access(path, os.X_OK):
            return f"{path} missing: install mariadb-server (tools/setup.sh)"
    return None


class MariaDB:
    def __init__(self):
        self.root = tempfile.mkdtemp(prefix="zfly-mariadb-")
        self.datadir = os.path.join(self.root, "data")
        self.socket = os.path.join(self.root, "mysqld.sock")
        self.pidfile = os.path.join(self.root, "mysqld.pid")
        self.errlog = os.path.join(self.root, "error.log")
        #  Its own temporary directory: bootstraps in two tests at once otherwise share /tmp's
        #  "#sql-temptable-<pid>-…" names and one deletes the other's (seen in CI at -j2).
        self.tmpdir = os.path.join(self.root, "tmp")
        os.mkdir(self.tmpdir)
        self.databases = 0
        user = ["--user=root"] if os.geteuid() == 0 else []
        install = subprocess.run([INSTALL_DB, "--no-defaults", f"--datadir={self.datadir}",
                                  "--auth-root-authentication-method=normal", "--skip-test-db",
                                  f"--tmpdir={self.tmpdir}", *user],
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if install.returncode != 0:
            raise AssertionError(f"{INSTALL_DB} exited with {install.returncode}:\n"
                                 + install.stdout[-4000:])
        self.process = subprocess.Popen(
            [MARIADBD, "--no-defaults", f"--datadir={self.datadir}", f"--socket={self.socket}",
             "--skip-networking", f"--tmpdir={self.tmpdir}", f"--pid-file={self.pidfile}",
             f"--log-error={self.errlog}",
             "--innodb-buffer-pool-size=32M", "--innodb-log-file-size=16M",
             "--skip-log-bin", "--max-connections=200", *user],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self._wait_ready()
        self.sql(f"CREATE USER '{USER}'@'localhost'; "
                 f"GRANT ALL PRIVILEGES ON *.* TO '{USER}'@'localhost'")

    def _wait_ready(self, timeout=60):
        """Waits until the server answers on its socket (its log says ready first)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"mariadbd exited with {self.process.returncode}:\n"
                                     + self.error_log())
            if os.path.exists(self.socket):
                probe = subprocess.run([CLIENT, "--no-defaults", "-S", self.socket, "-uroot",
                                        "-e", "SELECT 1"], capture_output=True)
                if probe.returncode == 0:
                    return
            time.sleep(0.05)
        raise AssertionError("mariadbd did not become ready:\n" + self.error_log())

    def error_log(self):
        try:
            with open(self.errlog) as handle:
                return handle.read()[-4000:]
        except OSError:
            return ""

    def sql(self, statements):
        subprocess.run([CLIENT, "--no-defaults", "-S", self.socket, "-uroot", "-e", statements],
                       check=True, capture_output=True)

    def new_database(self, prefix="zfly"):
        """Creates an empty database; returns its zfly URL."""
        self.databases += 1
        name = f"{prefix}_{os.getpid()}_{self.databases}"
        self.sql(f"CREATE DATABASE {name} CHARACTER SET utf8mb4")
        return f"mariadb://{USER}@localhost/{name}?socket={self.socket}"

    def stop(self):
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.root, ignore_errors=True)
