"""Cockpit's web login through pam_totp.so (issue text: "Cockpit ... its login page in headless
Chromium"): the real cockpit-ws (Debian cockpit-ws, no TLS, on the container's loopback), the
real setuid cockpit-session running the PAM service `cockpit`, and the real login page in
headless Chromium, driven through chromedriver's W3C WebDriver HTTP API.

Chromium, chromedriver and cockpit-ws all run inside the container, whose network is loopback
only. The HTTP requests to chromedriver are made from this process by switching only the
calling thread into the container's network namespace for each request (setns), so nothing
listens on the host. Codes come from oathtool.

Loaded by test_e2e.py (which it imports for its helpers and scenario registry)."""

import base64
import contextlib
import ctypes
import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request

from test_e2e import (INNER_ENV, MODULE, REPO, STATE_DIR, TestFailure, check, next_step, scenario,
                      totp, wrong_code)

COCKPIT_WS = "/usr/lib/cockpit/cockpit-ws"
COCKPIT_SESSION = "/usr/lib/cockpit/cockpit-session"
COCKPIT_BRIDGE = "/usr/bin/cockpit-bridge"
COCKPIT_SHELL = "/usr/share/cockpit/shell/index.html"
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
WS_PORT = 9090
DRIVER_PORT = 9515
CODE_PROMPT = "Verification code:"
ARTEFACTS = os.path.join(REPO, "target", "e2e-artefacts")
SCREENSHOT = os.path.join(ARTEFACTS, "cockpit-code-prompt.png")

# The stack the README shows: the password first (requisite: a wrong one stops before the code
# prompt), then the code, asked by Cockpit's login page from the PAM conversation.
COCKPIT_STACK = ("auth     requisite  pam_unix.so nodelay\n"
                 f"auth     required   {MODULE} dir={STATE_DIR}\n"
                 "account  required   pam_unix.so\n"
                 "session  required   pam_unix.so\n")

CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--no-default-browser-check", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-extensions",
                 "--disable-default-apps", "--disable-dev-shm-usage", "--no-proxy-server",
                 "--password-store=basic", "--lang=en-US"]

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)
_http = urllib.request.build_opener(urllib.request.ProxyHandler({}))   # never a proxy


@contextlib.contextmanager
def in_netns(pid):
    """The calling thread (only) in the network namespace of `pid` for the block."""
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        target = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        try:
            if _libc.setns(target, CLONE_NEWNET) != 0:
                e = ctypes.get_errno()
                raise OSError(e, f"setns into the network namespace of {pid}: {os.strerror(e)}")
        finally:
            os.close(target)
        try:
            yield
        finally:
            if _libc.setns(own, CLONE_NEWNET) != 0:   # never carry on in the wrong namespace
                os.write(2, b"setns back to our own network namespace failed\n")
                os._exit(125)
    finally:
        os.close(own)


def needs_tools():
    """deps.sh installs these: missing at run time is a failure, not a skip."""
    missing = [p for p in (COCKPIT_WS, COCKPIT_SESSION, COCKPIT_BRIDGE, COCKPIT_SHELL, CHROMIUM,
                           CHROMEDRIVER) if not os.path.exists(p)]
    if missing:
        raise TestFailure(f"missing {' '.join(missing)} (tests/deps.sh installs cockpit-ws "
                          "cockpit-bridge cockpit-system chromium chromium-driver)")


class Daemon:
    """A long-running program inside the container, its output in a file of the test dir."""

    def __init__(self, c, name, argv):
        self.c, self.name = c, name
        self.log_path = os.path.join(c.dir, f"{name}.log")
        log = open(self.log_path, "w")
        self.proc = subprocess.Popen(c.nsenter(argv), stdin=subprocess.DEVNULL, stdout=log,
                                     stderr=subprocess.STDOUT, env=INNER_ENV)
        log.close()

    def log(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def wait_listening(self, port, timeout=15):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                break
            with in_netns(self.c.pid), socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    return
            time.sleep(0.05)
        raise TestFailure(f"{self.name} is not listening on 127.0.0.1:{port}:\n{self.log()}")

    def stop(self):
        """Kills the program (the child nsenter forked into the container), then nsenter."""
        if self.proc.poll() is None:
            try:
                with open(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children") as f:
                    kids = [int(p) for p in f.read().split()]
            except OSError:
                kids = []
            for k in kids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(k, signal.SIGKILL)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self.c.transcripts.append(f"--- {self.name} output ---\n{self.log().rstrip()}")


class Browser:
    """One headless Chromium session (fresh profile) through chromedriver's W3C WebDriver API."""

    ELEMENT = "element-6066-11e4-a52e-4f735466cecf"

    def __init__(self, c, profile):
        self.c = c
        c.run("install", "-d", "-m", "0700", profile)
        caps = {"browserName": "chrome", "goog:chromeOptions": {
            "binary": CHROMIUM, "args": CHROMIUM_ARGS + [f"--user-data-dir={profile}"]}}
        value = self.call("POST", "/session", {"capabilities": {"alwaysMatch": caps}},
                          session=False, timeout=60)
        self.id = value["sessionId"]
        self.viewport(1000, 700)

    def viewport(self, width, height):
        """Sizes the window so that the page itself (and so a screenshot) is width x height."""
        self.call("POST", "/window/rect", {"width": width, "height": height})
        inner = self.js("return [window.innerWidth, window.innerHeight];")
        self.call("POST", "/window/rect", {"width": 2 * width - inner[0],
                                           "height": 2 * height - inner[1]})

    def call(self, method, path, body=None, session=True, timeout=20):
        url = f"http://127.0.0.1:{DRIVER_PORT}" + (f"/session/{self.id}" if session else "") + path
        data = json.dumps(body if body is not None else {}).encode() if method == "POST" else None
        req = urllib.request.Request(url, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        with in_netns(self.c.pid):
            try:
                with _http.open(req, timeout=timeout) as r:
                    out = json.loads(r.read())
            except urllib.error.HTTPError as e:
                out = json.loads(e.read() or b"{}")
                v = out.get("value") or {}
                raise TestFailure(f"webdriver {method} {path}: {e.code} {v.get('error')}: "
                                  f"{str(v.get('message'))[:500]}") from None
        return out.get("value")

    def open(self, url):
        self.call("POST", "/url", {"url": url})

    def js(self, script, *args):
        return self.call("POST", "/execute/sync", {"script": script, "args": list(args)})

    def find(self, css):
        el = self.call("POST", "/element", {"using": "css selector", "value": css})
        return el[self.ELEMENT]

    def type(self, css, text):
        el = self.find(css)
        self.call("POST", f"/element/{el}/clear")
        self.call("POST", f"/element/{el}/value", {"text": text})

    def click(self, css):
        self.call("POST", f"/element/{self.find(css)}/click")

    def visible(self, css):
        """Whether the element exists and is not hidden (by itself or an ancestor)."""
        return self.js("const e = document.querySelector(arguments[0]);"
                       "return !!e && !e.closest('[hidden]') && e.offsetParent !== null;", css)

    def text(self, css):
        return self.js("const e = document.querySelector(arguments[0]);"
                       "return e ? e.textContent.trim() : null;", css)

    def wait(self, what, cond, timeout=15):
        deadline = time.time() + timeout
        while time.time() < deadline:
            v = cond()
            if v:
                return v
            time.sleep(0.1)
        page = self.js("return document.body ? document.body.innerText : '';")
        raise TestFailure(f"timed out waiting for {what}; page {self.url()}:\n{page}")

    def url(self):
        return self.call("GET", "/url")

    def session_cookie(self):
        """Cockpit's session cookie, if the browser holds one (a failed login leaves it set
        to "deleted")."""
        values = [ck["value"] for ck in self.call("GET", "/cookie") if ck["name"] == "cockpit"]
        return next((v for v in values if v and v != "deleted"), None)

    def screenshot(self, path):
        png = base64.b64decode(self.call("GET", "/screenshot"))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(png)

    def quit(self):
        with contextlib.suppress(Exception):
            self.call("DELETE", "")


class Cockpit:
    """cockpit-ws and chromedriver inside the container, with the PAM service `cockpit`."""

    def __init__(self, c):
        needs_tools()
        self.c = c
        self.daemons = []
        self.profiles = 0

    def start(self):
        c = self.c
        c.install_stacks()
        c.write_pam("cockpit", COCKPIT_STACK)
        # Without TLS cockpit-ws takes logins from localhost only (no AllowUnencrypted needed).
        for name, argv, port in (
                ("cockpit-ws", [COCKPIT_WS, "--no-tls", "--address", "127.0.0.1",
                                "--port", str(WS_PORT)], WS_PORT),
                ("chromedriver", [CHROMEDRIVER, f"--port={DRIVER_PORT}",
                                  "--allowed-ips=127.0.0.1"], DRIVER_PORT)):
            self.daemons.append(Daemon(c, name, argv))
            self.daemons[-1].wait_listening(port)

    def browser(self):
        self.profiles += 1
        return Browser(self.c, f"/tmp/chromium-profile-{self.profiles}")

    def stop(self):
        for d in reversed(self.daemons):
            d.stop()

    def submit_password(self, b, user, password):
        """The login page: user name and password, then "Log in"."""
        b.open(f"http://127.0.0.1:{WS_PORT}/")
        b.wait("the login form", lambda: b.visible("#login-user-input"))
        b.type("#login-user-input", user)
        b.type("#login-password-input", password)
        b.click("#login-button")

    def login_to_code_prompt(self, b, user, password):
        """User name and password, up to the code prompt; returns the prompt's label."""
        self.submit_password(b, user, password)
        b.wait("the code prompt", lambda: b.visible("#conversation-input"))
        return b.text("#conversation-prompt")

    def answer_code(self, b, code):
        b.type("#conversation-input", code)
        b.click("#login-button")

    def wait_logged_in(self, b):
        """The shell is up: Cockpit's session cookie and the shell's navigation."""
        return b.wait("the logged-in shell",
                      lambda: b.session_cookie() and b.visible("#nav-system"), timeout=20)

    def wait_error(self, b):
        return b.wait("an error on the login page",
                      lambda: b.visible("#login-error-message") and
                      b.text("#login-error-message"))


@contextlib.contextmanager
def cockpit(c):
    ck = Cockpit(c)
    try:
        ck.start()
        yield ck
    finally:
        ck.stop()


@contextlib.contextmanager
def browser(ck):
    b = ck.browser()
    try:
        yield b
    finally:
        b.quit()


def alice(c):
    pw = c.add_user("alice")
    return pw, c.enrol("alice")


@scenario("cockpit_password_then_code_prompt_in_the_browser_logs_in")
def _(c):
    with cockpit(c) as ck, browser(ck) as b:
        pw, secret = alice(c)
        mark = c.syslog.mark()
        prompt = ck.login_to_code_prompt(b, "alice", pw)
        check(prompt == CODE_PROMPT, f"code prompt on the page: {prompt!r}")
        check(c.syslog.module_lines(mark, settle=0) == [],
              "pam_totp logged before the code was given")
        b.screenshot(SCREENSHOT)
        ck.answer_code(b, totp(secret))
        ck.wait_logged_in(b)
        check(c.syslog.wait_for(r"pam_totp\(cockpit:auth\).*user=alice .*accepted step", mark),
              "no 'accepted step' syslog line from the cockpit service")


@scenario("cockpit_wrong_code_shows_an_error_on_the_page")
def _(c):
    with cockpit(c) as ck, browser(ck) as b:
        pw, secret = alice(c)
        mark = c.syslog.mark()
        ck.login_to_code_prompt(b, "alice", pw)
        ck.answer_code(b, wrong_code(secret))
        err = ck.wait_error(b)
        check(not b.session_cookie(), f"a session cookie after a wrong code ({err!r})")
        check(c.syslog.wait_for(r"pam_totp\(cockpit:auth\).*user=alice .*wrong code", mark),
              "no 'wrong code' syslog line from the cockpit service")


@scenario("cockpit_replayed_code_is_refused")
def _(c):
    with cockpit(c) as ck:
        pw, secret = alice(c)
        with browser(ck) as b:
            ck.login_to_code_prompt(b, "alice", pw)
            # The next step's code, with time left in this one: accepted now (offset 1) and
            # still inside the window for over a minute, when the second browser replays it.
            next_step()
            code = totp(secret, offset_steps=1)
            ck.answer_code(b, code)
            ck.wait_logged_in(b)
        mark = c.syslog.mark()
        with browser(ck) as b:   # a fresh profile: no session cookie
            ck.login_to_code_prompt(b, "alice", pw)
            ck.answer_code(b, code)
            err = ck.wait_error(b)
            check(not b.session_cookie(), f"the replayed code logged in ({err!r})")
        check(c.syslog.wait_for(r"pam_totp\(cockpit:auth\).*user=alice .*replayed code", mark),
              "no 'replayed code' syslog line from the cockpit service")


@scenario("cockpit_wrong_password_is_refused_before_the_code_prompt")
def _(c):
    with cockpit(c) as ck, browser(ck) as b:
        alice(c)
        mark = c.syslog.mark()
        ck.submit_password(b, "alice", "not-the-password")
        err = ck.wait_error(b)
        check(not b.visible("#conversation-input"), f"a code prompt after a wrong password: {err}")
        check(not b.session_cookie(), f"a session cookie after a wrong password ({err!r})")
        check(c.syslog.module_lines(mark) == [], "pam_totp ran after a failed password")
